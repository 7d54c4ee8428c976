"""``python -m kn_core batch``: attribute and store every prompt of a data set, resumably, with progress."""
from __future__ import annotations

from kn_core.commands.options import (
    add_attribution_options,
    attribution_config,
    langs_option,
    relations_option,
    store_option,
)
from kn_core.data import BUNDLED_NAME
from kn_core.runs.batch import BatchReport, run_batch
from kn_core.runs.executors import CONNECT_TIMEOUT_S, EXECUTORS
from kn_core.runs.store import ResultStore

SHOWN_FAILURES = 10


def register(subparsers) -> None:
    p = subparsers.add_parser("batch", help="compute and store every prompt's attribution (resumable)")
    p.add_argument("--model", action="append", required=True,
                   help="demo-mlm, demo-clm, a model folder or a Hugging Face id; repeatable")
    p.add_argument("--data", default=BUNDLED_NAME, help=f"'{BUNDLED_NAME}' or a bundled-format / mLAMA folder")
    p.add_argument("--langs", type=langs_option, default=("en", "zh"), help="comma-separated languages (default en,zh)")
    p.add_argument("--relations", type=relations_option, default=None,
                   help="comma-separated relation ids (default: all)")
    p.add_argument("--max-facts", type=int, default=None, help="only the first N facts (file order)")
    add_attribution_options(p)
    p.add_argument("--executor", default="local", choices=sorted(EXECUTORS),
                   help="local (default) or ray (optional: pip install -r requirements-ray.txt)")
    p.add_argument("--address", default=None,
                   help="an existing Ray cluster (with --executor ray): auto for the one `ray start --head` started "
                        "on this machine, or HOST:PORT")
    p.add_argument("--ray-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="SECONDS",
                   help=f"how long to wait for the cluster at --address (default {CONNECT_TIMEOUT_S:g})")
    p.add_argument("--store", type=store_option, default=None,
                   help="store file (default: $KN_EXPLORER_HOME/store.sqlite)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    config = attribution_config(args)
    store = ResultStore(args.store)
    for model in args.model:
        report = run_batch(model, args.data, args.langs, config, store, executor=args.executor,
                           relations=args.relations, max_facts=args.max_facts, progress=not args.no_progress,
                           address=args.address, connect_timeout=args.ray_timeout)
        print(render(model, report))
    print(f"store: {store.path}")
    return 0


def render(model: str, report: BatchReport) -> str:
    lines = [f"{model}: {report.done} computed, {report.skipped} already stored, {len(report.failed)} failed"]
    for fact_id, lang, template, reason in report.failed[:SHOWN_FAILURES]:
        lines.append(f"  {fact_id} [{lang}] {template}: {reason}")
    if len(report.failed) > SHOWN_FAILURES:
        lines.append(f"  ... and {len(report.failed) - SHOWN_FAILURES} more (python -m kn_core store info lists them)")
    return "\n".join(lines)
