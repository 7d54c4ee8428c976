"""Command-line entry point: ``python -m kn_core <command> ...``.

Each command lives in its own module under :mod:`kn_core.commands` and exposes
``register(subparsers)``, which adds its sub-parser and sets ``func`` (called with the parsed
arguments, returning an exit code). Errors of type :class:`~kn_core.errors.KNError` are printed as
one line on stderr with exit code 2, never as a traceback.

Every command takes ``--threads N`` (default ``$KN_EXPLORER_THREADS``, else 1): torch's CPU threads. One
thread suits the demo models and busy machines (a demo-mlm attribution was measured ~80× slower with 2
threads than with 1 on two cores loaded by other jobs); give more for large models on an idle machine.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import Sequence

import torch

from kn_core import commands
from kn_core.errors import InputError, KNError
from kn_core.model.loading import THREADS_VARIABLE, default_threads


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kn_core", description="KN Explorer: knowledge neurons (AMIG).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"kn_core.commands.{info.name}")
        module.register(sub)
    for command in sub.choices.values():
        actions = command._actions
        if not any("--threads" in a.option_strings or isinstance(a, argparse._SubParsersAction) for a in actions):
            command.add_argument("--threads", type=int, default=None,
                                 help=f"torch CPU threads (default: ${THREADS_VARIABLE}, else 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        threads = default_threads() if getattr(args, "threads", None) is None else args.threads
        if threads < 1:
            raise InputError("threads", f"must be at least 1 (got {threads})")
        torch.set_num_threads(threads)
        return int(args.func(args) or 0)
    except KNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
