"""Files the commands write: every output path is checked before anything is computed, and written atomically.

:func:`check_file` refuses a path that is a result store (the same file, also through a symbolic or hard link),
a folder, a device, a pipe or anything else that is not a regular file, or a new name in a folder that does not
exist. :func:`write_json` writes strict JSON (non-finite numbers become null) through a temporary file in the
same folder, replaced in one step: a failed write leaves the old file as it was.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import stat
from pathlib import Path
from typing import Iterable

import numpy as np

from kn_core.errors import InputError
from kn_core.runs.store import default_path

STORE_COMPANIONS = ("", "-wal", "-shm", "-journal")  # SQLite's files beside the store


def stores(store: Path | None) -> tuple[Path, ...]:
    """The store files an output must never replace: the default store and ``store`` (--store), if given."""
    return (default_path(),) if store is None else (default_path(), Path(store).expanduser())


def _is_store(target: Path, protected: Iterable[Path]) -> Path | None:
    for store in protected:
        for companion in (Path(f"{store}{suffix}") for suffix in STORE_COMPANIONS):
            if companion.exists() and os.path.samefile(target, companion):
                return store
    return None


NAME_MAX = 255  # bytes of one path component on Linux file systems (ext4, xfs, tmpfs, ...)
PATH_MAX = 4096


def check_path_name(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a Path, refused (:class:`InputError` naming ``option``) when a part of it is longer than a
    file system allows, before anything is computed."""
    text = os.fsencode(Path(path).expanduser())
    longest = max((len(part) for part in text.split(b"/")), default=0)
    if longest > NAME_MAX:
        raise InputError(option, f"a part of the path is {longest} bytes long; file systems allow at most "
                                 f"{NAME_MAX} per part: give a shorter name")
    if len(text) > PATH_MAX:
        raise InputError(option, f"the path is {len(text)} bytes long; at most {PATH_MAX} are allowed: give a "
                                 "shorter path")
    return Path(path)


def check_file(path: Path, option: str, protected: Iterable[Path]) -> Path:
    """The path to write ``option``'s output to (symbolic links resolved): an existing regular file that is no
    store, or a new name in an existing, writable folder. Raises :class:`InputError` naming ``option``."""
    check_path_name(path, option)
    try:
        return _check_file(path, option, protected)
    except OSError as exc:  # a loop of links, a folder that cannot be searched, ...
        raise InputError(option, f"cannot use {path}: {exc.strerror or exc}; choose another file") from None


def _check_file(path: Path, option: str, protected: Iterable[Path]) -> Path:
    target = Path(os.path.realpath(Path(path).expanduser()))
    if target.exists():
        mode = target.stat().st_mode
        if stat.S_ISDIR(mode):
            raise InputError(option, f"{path} is a folder; give a file name, e.g. {Path(path) / 'out.json'}")
        if not stat.S_ISREG(mode):
            raise InputError(option, f"{path} is not a regular file (a device, pipe or socket); give a file path")
        store = _is_store(target, protected)
        if store is not None:
            raise InputError(option, f"{path} is the result store {store}; writing there would destroy it, so "
                                     "choose another file")
    elif not target.parent.is_dir():
        raise InputError(option, f"the folder {target.parent} does not exist; create it or choose another folder")
    if not os.access(target.parent, os.W_OK):
        raise InputError(option, f"cannot write in the folder {target.parent}; choose a writable folder")
    return target


def check_folder(path: Path, option: str) -> Path:
    """A folder for several outputs: an existing folder, or a new one whose nearest existing parent is a writable
    folder (it is created when written)."""
    check_path_name(path, option)
    try:
        return _check_folder(path, option)
    except OSError as exc:
        raise InputError(option, f"cannot use {path}: {exc.strerror or exc}; choose another folder") from None


def _check_folder(path: Path, option: str) -> Path:
    folder = Path(path).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise InputError(option, f"{path} is not a folder (it is a file); give a folder for the results")
        base = folder
    else:
        base = next(parent for parent in folder.parents if parent.exists())
        if not base.is_dir():
            raise InputError(option, f"{base} is a file, so the folder {path} cannot be created there")
    if not os.access(base, os.W_OK):
        raise InputError(option, f"cannot write in the folder {base}; choose a writable folder")
    return folder


def strict(value: object) -> object:
    """``value`` with every non-finite float (NaN, ±Infinity) as None and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(item) for item in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_text(target: Path, text: str, option: str) -> None:
    """Write ``text`` to ``target`` (checked by :func:`check_file`) through a temporary file beside it, replaced
    in one step; the old file keeps its permissions and stays as it was if anything fails."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temp, "x", encoding="utf-8") as out:
            out.write(text)
        if target.exists():
            os.chmod(temp, stat.S_IMODE(target.stat().st_mode))
        os.replace(temp, target)
    except OSError as exc:
        raise InputError(option, f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)


def write_json(target: Path, payload: object, option: str) -> None:
    """Strict JSON (no NaN or Infinity: they are written as null), UTF-8, indented."""
    text = json.dumps(strict(payload), ensure_ascii=False, indent=2, allow_nan=False)
    write_text(target, text + "\n", option)
