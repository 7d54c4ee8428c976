"""Where the store lives and what may be there: the default path in the home folder, the checks on a store path
(a folder, a device, a read-only location), and SQLite's errors said as what went wrong and what to do."""
from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from kn_core.errors import StoreError
from kn_core import home
from kn_core.home import HOME_VARIABLE

FILE_NAME = "store.sqlite"
BUSY_TIMEOUT_S = 30.0
REMEDY = f"move or delete it, or set {HOME_VARIABLE} (or pass --store) to use another location"


def default_path() -> Path:
    """``store.sqlite`` in the home folder (:func:`kn_core.home.home_dir`: ``$KN_EXPLORER_HOME``, else the user
    cache folder's ``kn-explorer``)."""
    return home.home_dir() / FILE_NAME


def writable(path: Path) -> bool:
    """Writable for this process *and* not marked read-only (no write bit), which root would ignore."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _check_location(path: Path, read_only: bool = False) -> None:
    """Refuse, with the remedy, a store path that is a folder, a device, a FIFO or a socket (also through a
    symlink: SQLite would write a ``-journal`` beside the device), a name the file system cannot hold, or a
    location this process cannot write (``read_only``: a file that does not exist)."""
    remedy = f"set {HOME_VARIABLE} (or pass --store) to a writable location"
    try:
        if read_only:
            if not path.is_file():
                raise StoreError(f"there is no store file at {path}; {remedy.replace('a writable', 'an existing')}")
            return
        if path.is_dir():
            raise StoreError(f"the store path {path} is a folder; give a file path such as {path / FILE_NAME}")
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            raise StoreError(f"the store path {path} is not a regular file (a device, FIFO or socket); give the path "
                             f"of a store file, or {remedy}")
        path.parent.mkdir(parents=True, exist_ok=True)
        targets = (path.parent, path) if path.exists() else (path.parent,)
        problem = next((t for t in targets if not writable(t)), None)
    except OSError as exc:
        raise StoreError(f"cannot use the store path {path}: {exc.strerror or exc}; {remedy}") from None
    if problem is not None:
        raise StoreError(f"the store at {path} is read-only ({problem} is not writable); make it writable, or "
                         f"{remedy}")


def _explain(path: Path, exc: sqlite3.Error) -> StoreError:
    """A StoreError saying what went wrong with the file at ``path`` and what to do."""
    message = str(exc)
    lowered = message.lower()
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return StoreError(f"the store file {path} is corrupt or not a database ({message}); {REMEDY}")
    if "locked" in lowered or "busy" in lowered:
        return StoreError(f"the store {path} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s; "
                          "retry when the other job has finished")
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return StoreError(f"cannot write the store {path} ({message}); make it writable, or set "
                          f"{HOME_VARIABLE} (or pass --store) to a writable location")
    return StoreError(f"the store {path} failed: {message}")
