"""Choosing a loader: :func:`load_dataset` reads ``"bundled"``, a bundled-format folder (strict) or an
mLAMA-layout folder (lenient)."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Literal

from kn_core.data.bundled import BUNDLED_NAME, RELATIONS_FILE, TEMPLATES_FILE, load_bundled
from kn_core.data.mlama import is_mlama_layout, load_mlama
from kn_core.data.records import FactSet
from kn_core.errors import DataError

Layout = Literal["bundled", "mlama"]


def dataset_layout(path_or_name: str | os.PathLike | None) -> tuple[Layout, Path | None]:
    """Which format a data set argument names: ``(layout, folder)``; the folder is None for the bundled
    set. Raises :class:`DataError` saying what was expected when it is neither."""
    if path_or_name is None or str(path_or_name) == BUNDLED_NAME:
        return "bundled", None
    root = Path(path_or_name)
    try:
        if (root / RELATIONS_FILE).is_file():
            return "bundled", root
        if is_mlama_layout(root):
            return "mlama", root
        state = ("does not exist" if not root.exists() else "is not a folder" if not root.is_dir()
                 else "has neither layout")
    except OSError as exc:  # a name too long for the file system, a folder that cannot be read, ...
        shown = str(root) if len(str(root)) <= 80 else str(root)[:80] + "…"
        too_long = exc.errno == errno.ENAMETOOLONG
        raise DataError(shown, None, "a part of this path is longer than the file system allows (255 bytes): give "
                                     "a shorter path" if too_long else
                                     f"cannot be read ({exc.strerror or exc}); give a readable folder") from None
    raise DataError(str(root), None, f"{state}; expected '{BUNDLED_NAME}', a bundled-format folder "
                                     f"({RELATIONS_FILE}, {TEMPLATES_FILE}, <relation>.tsv) or an mLAMA-layout "
                                     "folder (<lang>/templates.jsonl, <lang>/<relation>.jsonl)")


def load_dataset(path_or_name: str | os.PathLike | None = None) -> FactSet:
    """Load ``None``/``"bundled"`` (the bundled set), a bundled-format folder (strict) or an mLAMA-layout
    folder (lenient; skipped lines are in ``problems``)."""
    layout, root = dataset_layout(path_or_name)
    if layout == "bundled" or root is None:
        return load_bundled(root)
    return load_mlama(root)
