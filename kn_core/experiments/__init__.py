"""Batch experiments reproducing the paper's analyses on a fact set, one module each.

Each module exposes ``TITLE``, ``DEFAULT_MAX_FACTS`` (facts per relation when ``--max-facts`` is not given) and
``run(settings) -> Outcome``; :func:`run` looks one up by name, runs it and writes its report.

- ``localize``: knowledge neurons per fact and language, with suppress / enhance against random neurons and
  unrelated facts (docs/method.md §2).
- ``likn``: language-independent knowledge neurons: overlap of two or more languages' KN (matrices, k of N),
  cross-lingual editing and the cross-language suppression matrix (§3).
- ``dkn``: degenerate knowledge neurons per prompt (§4).
- ``factcheck``: the Table 3 protocol: DKN fact checker against the model's own greedy answer (§5).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from kn_core.errors import InputError

if TYPE_CHECKING:
    from kn_core.experiments.common import Outcome, Settings

NAMES = ("localize", "likn", "dkn", "factcheck")


def __getattr__(name: str):
    """``Outcome`` and ``Settings`` on first use: the package itself imports no pandas or matplotlib, so that
    building the CLI's parser (which lists ``NAMES``) does not pay for them."""
    if name in ("Outcome", "Settings"):
        from kn_core.experiments import common

        return getattr(common, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def module(name: str) -> ModuleType:
    """The experiment module called ``name``."""
    if name not in NAMES:
        raise InputError("experiment", f"unknown experiment {name!r}; choose one of {', '.join(NAMES)}")
    return importlib.import_module(f"kn_core.experiments.{name}")


def run(name: str, settings: Settings) -> tuple[Outcome, Path]:
    """Run experiment ``name`` and write its results; returns the outcome and the report's path."""
    from kn_core.experiments import report

    outcome = module(name).run(settings)
    return outcome, report.write(outcome, settings)


__all__ = ["NAMES", "Outcome", "Settings", "module", "run"]
