"""``python -m kn_core store``: the result store's size and contents, export, and removal by model.

- ``store info [--json OUT]``: location, counts, bytes, results per model, recorded batch failures.
- ``store export OUT [--format parquet|csv] [--model M]``: one row per result (Parquet also holds the scores).
- ``store prune --model M``: remove a model's results and failures.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from kn_core.commands import outputs
from kn_core.commands.options import store_option
from kn_core.runs.export import export
from kn_core.runs.store import ResultStore

SHOWN_FAILURES = 20


def register(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", type=store_option, default=None,
                        help="store file (default: $KN_EXPLORER_HOME/store.sqlite)")
    p = subparsers.add_parser("store", help="inspect, export or prune the result store")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = actions.add_parser("info", parents=[common], help="location, counts, size, failures")
    info.add_argument("--json", type=Path, default=None, dest="json_out", help="also write the info as JSON")
    info.add_argument("--check", action="store_true", help="also run SQLite's integrity check (reads everything)")
    export = actions.add_parser("export", parents=[common], help="write the results as Parquet or CSV")
    export.add_argument("out", type=Path)
    export.add_argument("--format", choices=("parquet", "csv"), default=None,
                        help="default: from OUT's suffix (.csv → csv, else parquet); only Parquet holds the scores")
    export.add_argument("--model", default=None, help="only this model's results")
    prune = actions.add_parser("prune", parents=[common], help="remove a model's results")
    prune.add_argument("--model", required=True)
    p.set_defaults(func=run)


def run(args) -> int:
    target = checked_output(args)
    store = ResultStore(args.store, read_only=args.action != "prune" and _read_only(args.store))
    if args.action == "info":
        return show_info(store, target, args.check)
    if args.action == "export":
        assert target is not None  # checked_output checks export's OUT
        fmt: Literal["parquet", "csv"] = args.format or ("csv" if args.out.suffix.lower() == ".csv" else "parquet")
        out = export(store, target, fmt, model=args.model)
        print(f"wrote {out} ({fmt})")
        return 0
    print(f"removed {store.prune(args.model)} result(s) of {args.model} from {store.path}")
    return 0


def _read_only(path: Path | None) -> bool:
    """Whether a reading command must open the store read-only: it exists and this process may not write it
    (or its folder, where SQLite keeps its journal)."""
    from kn_core.runs.store import default_path, writable

    target = (path or default_path()).expanduser()
    return target.is_file() and not (writable(target) and writable(target.parent))


def checked_output(args) -> Path | None:
    """The file ``export`` or ``info --json`` writes, checked before the store is opened."""
    if args.action == "export":
        return outputs.check_file(args.out, "out", outputs.stores(args.store))
    if args.action == "info" and args.json_out is not None:
        return outputs.check_file(args.json_out, "--json", outputs.stores(args.store))
    return None


def show_info(store: ResultStore, json_out: Path | None, check: bool) -> int:
    info = store.info()
    failures = store.failures()
    if check:
        info["integrity"] = store.check()
    print(render(info, failures))
    if json_out is not None:
        outputs.write_json(json_out, {**info, "failed": [asdict(f) for f in failures]}, "--json")
    return 0 if info.get("integrity", "ok") == "ok" else 1


def render(info: dict, failures: list) -> str:
    lines = [f"store: {info['path']}",
             f"results: {info['results']}, {info['bytes'] / 2**20:.1f} MiB on disk; documents: {info['documents']}; "
             f"failures: {info['failures']} (schema {info['schema_version']}, method {info['method_version']})"]
    lines += [f"  {model}: {count}" for model, count in info["models"].items()]
    if "integrity" in info:
        lines.append(f"integrity: {info['integrity']}")
    for f in failures[:SHOWN_FAILURES]:
        lines.append(f"  failed {f.model} {f.fact_id} [{f.lang}] {f.template} ({f.baseline}, {f.rule} m = {f.steps}): "
                     f"{f.reason}")
    if len(failures) > SHOWN_FAILURES:
        lines.append(f"  ... and {len(failures) - SHOWN_FAILURES} more (--json lists all)")
    return "\n".join(lines)
