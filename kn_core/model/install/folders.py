"""The models folder: one exclusive lock for installs and removals, and the build and removal folders that a
killed install or removal leaves (``models/.NAME.partial-XXXX``, ``models/.NAME.removing-XXXX``)."""
from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from kn_core.model.install.base import PHASES, InstallError, InstallProgress

try:  # POSIX: installs and removals of one models folder take turns
    import fcntl
    HAVE_FCNTL = True
except ImportError:  # pragma: no cover - Windows
    HAVE_FCNTL = False

log = logging.getLogger(__name__)

PARTIAL = ".partial-"  # build folders: models/.NAME.partial-XXXX
REMOVING = ".removing-"  # folders being deleted: models/.NAME.removing-XXXX

@contextmanager
def _locked(folder: Path, progress: InstallProgress | None = None) -> Iterator[None]:
    """An exclusive lock on the models folder (flock on the folder itself: no lock file is written)."""
    if not HAVE_FCNTL:  # pragma: no cover
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                progress(PHASES["gguf"], f"waiting for another install or removal in {folder} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _leftovers(folder: Path, name: str) -> list[Path]:
    """Build and removal folders of ``name`` left by an install or removal that was killed."""
    return [p for p in folder.glob(f".{name}.*") if p.is_dir() and (PARTIAL in p.name or REMOVING in p.name)]


def _clear_leftovers(folder: Path, name: str) -> None:
    for stale in _leftovers(folder, name):
        log.info("removing %s, left by an interrupted install", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstallError(f"cannot create {folder}: {exc.strerror}; set KN_EXPLORER_HOME to a writable "
                           "location") from None
    if not os.access(folder, os.W_OK):
        raise InstallError(f"{folder} is not writable; set KN_EXPLORER_HOME to a writable location")
