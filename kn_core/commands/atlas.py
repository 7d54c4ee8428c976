"""``python -m kn_core atlas``: build the atlas that ships with the repository (``build``), or say what it holds
and whether the installed models' weights are the ones it was computed on (``info``)."""
from __future__ import annotations

from pathlib import Path

from kn_core.attribution import AttributionConfig
from kn_core.data import load_bundled
from kn_core.runs.store import ResultStore


def register(subparsers) -> None:
    p = subparsers.add_parser("atlas", help="the precomputed results that ship with the repository")
    sub = p.add_subparsers(dest="atlas_command", required=True, metavar="ACTION")
    build = sub.add_parser("build", help="compute what the atlas plan lacks (through the store, resumable) and write "
                                         "assets/atlas/MODEL at the default attribution settings")
    build.add_argument("--model", action="append", default=None,
                       help="a model with an atlas plan (repeatable; default: every installed one)")
    build.add_argument("--out", type=Path, default=None, help="atlas folder (default: the repository's assets/atlas)")
    build.add_argument("--write-only", action="store_true",
                       help="compute no attribution: write the atlas from what the store holds now (suppression "
                            "effects and the showcase are still measured: forward passes only; fact-check checkers "
                            "go in only where already stored)")
    build.add_argument("--store", type=Path, default=None, help="store file (default: $KN_EXPLORER_HOME/store.sqlite)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=run_build)
    info = sub.add_parser("info", help="what the atlas holds, and whether it is used here")
    info.add_argument("--json", type=Path, default=None, help="also write it as JSON")
    info.set_defaults(func=run_info)


def run_build(args) -> int:
    from kn_core.model.install import installed_path
    from kn_core.runs.atlas import ROOT
    from kn_core.runs.atlas_build import PLANS, build, plan_of

    names = args.model or [name for name in PLANS if installed_path(name) is not None]
    for name in names:
        plan_of(name)  # an unknown name fails before anything loads
    if not names:
        print(f"no model with an atlas plan is installed ({', '.join(PLANS)}); install one with "
              "`python -m kn_core models install NAME`")
        return 0
    store = ResultStore(args.store)
    out = args.out or ROOT
    for name in names:
        build(name, load_bundled(), AttributionConfig(), store, out, compute_missing=not args.write_only,
              progress=not args.no_progress, report=print)
    print(f"store: {store.path}")
    return 0


def run_info(args) -> int:
    from kn_core.commands.outputs import write_json
    from kn_core.runs.atlas import Atlas

    atlas = Atlas.default()
    info = atlas.info()
    if not info:
        print(f"no atlas at {atlas.root}")
    for name, entry in info.items():
        if "problem" in entry:
            print(f"{name}: not used: {entry['problem']}")
            continue
        state = "used" if entry["used"] else "not used here (this model is not installed with these weights)"
        print(f"{name}: {entry['results']} results, {entry['documents']} documents, weights sha256 "
              f"{entry['fingerprint'][:12]}…, {state}")
    if args.json is not None:
        write_json(args.json, info, "--json")
    return 0
