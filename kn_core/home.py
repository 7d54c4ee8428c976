"""KN Explorer's home folder: ``$KN_EXPLORER_HOME``, else the platform's user cache folder ``kn-explorer``.

It holds the result store (``store.sqlite``, :mod:`kn_core.runs.store`) and the installed real models
(``models/NAME``, :mod:`kn_core.model.install`). This module imports nothing of KN Explorer, so both the
model room and the runs room can use it.
"""
from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

HOME_VARIABLE = "KN_EXPLORER_HOME"
APP_NAME = "kn-explorer"
MODELS_FOLDER = "models"


def home_dir() -> Path:
    """``$KN_EXPLORER_HOME`` when set (non-empty), else the user cache folder's ``kn-explorer``. The one place
    the home folder is computed: the store (:func:`kn_core.runs.store.default_path`) and the installed models
    (:func:`models_dir`) both ask it."""
    home = os.environ.get(HOME_VARIABLE)
    return Path(home).expanduser() if home else Path(user_cache_dir(APP_NAME))


def models_dir(home: Path | str | None = None) -> Path:
    """Where installed models live: ``HOME/models`` (``home`` defaults to :func:`home_dir`)."""
    return (Path(home).expanduser() if home is not None else home_dir()) / MODELS_FOLDER
