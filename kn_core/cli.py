"""Command-line entry point: ``python -m kn_core <command> ...``.

Each command lives in its own module under :mod:`kn_core.commands` and exposes
``register(subparsers)``, which adds its sub-parser and sets ``func`` (called with the parsed
arguments, returning an exit code); helper modules there have no ``register``. Errors of type
:class:`~kn_core.errors.KNError`, and mistakes on the command line itself, are printed as one line on stderr
with exit code 2, never as a traceback. Anything else is a bug: one ``error: unexpected …`` line, exit code 1
(the traceback goes to the log with ``--verbose``); Ctrl-C is one line and exit code 130. What a command
stored before either stays stored.

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
from kn_core.commands.options import threads_option
from kn_core.errors import KNError
from kn_core.model.loading import THREADS_VARIABLE, default_threads

log = logging.getLogger(__name__)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are KNErrors, so that the CLI reports them as its one ``error:`` line."""

    def error(self, message: str):
        raise KNError(f"{message} (see `{self.prog} --help`)")


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that run a command: ``parser`` itself, or the leaves below its sub-commands."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for sub in subs for child in sub.choices.values() for leaf in _leaves(child)]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m kn_core", description="KN Explorer: knowledge neurons (AMIG).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"kn_core.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    for leaf in _leaves(parser):
        if not any("--threads" in a.option_strings for a in leaf._actions):
            leaf.add_argument("--threads", type=threads_option, default=None,
                              help=f"torch CPU threads (default: ${THREADS_VARIABLE}, else 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        torch.set_num_threads(default_threads() if args.threads is None else args.threads)
        return int(args.func(args) or 0)
    except KNError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; what was finished is stored (run the same command to go on)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 — a bug: one line, not a traceback (the log has it with --verbose)
        log.info("unexpected error", exc_info=True)
        message = " ".join(str(exc).split())[:300]
        print(f"error: unexpected {type(exc).__name__}: {message} (a bug in KN Explorer; rerun with --verbose "
              "for the traceback and report it)", file=sys.stderr)
        return 1
