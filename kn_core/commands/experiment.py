"""``python -m kn_core experiment NAME``: batch experiments (localize, likn, dkn, factcheck) over a fact set.

Writes tidy tables (CSV, Parquet when pyarrow is present), PNG figures and ``report.md`` to ``--out`` and
prints the headline table (for ``factcheck``, the paper's Table 3 layout). ``--threads`` is handled by the
CLI, as for every command.
"""
from __future__ import annotations

from pathlib import Path

from kn_core import experiments
from kn_core.commands import outputs
from kn_core.commands.options import (add_attribution_options, attribution_config, langs_option, relations_option,
                                     seed_option, seeds_option, store_option)
from kn_core.defaults import DKN_T, T_HIGH, T_LOW, TOP_K
from kn_core.method.metrics import OBJECTIVES
from kn_core.runs.store import default_path


def register(subparsers) -> None:
    p = subparsers.add_parser("experiment", help="run a batch experiment and write a report",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=experiments.NAMES, help="which experiment")
    p.add_argument("--model", action="append", required=True, dest="models",
                   help="demo-mlm, demo-clm, a model folder or a Hugging Face id; repeatable")
    p.add_argument("--data", default="bundled", help="'bundled', a bundled-format folder or an mLAMA-layout folder")
    p.add_argument("--langs", type=langs_option, default=("en", "zh"),
                   help="comma-separated languages (default: en,zh)")
    p.add_argument("--out", type=Path, required=True, help="folder for the tables, figures and report.md")
    p.add_argument("--relations", type=relations_option, default=None,
                   help="comma-separated relation ids (default: all)")
    p.add_argument("--max-facts", type=int, default=None,
                   help="facts per relation, a seeded sample (default: per experiment; 0 = all)")
    p.add_argument("--first-facts", action="store_true",
                   help="take each relation's first --max-facts facts (file order) instead of a seeded sample: the "
                        "facts the atlas holds, whose attributions are then read, not computed")
    p.add_argument("--max-templates", type=int, default=None, help="train templates per fact (default: all)")
    add_attribution_options(p, engine=False)
    p.add_argument("--seed", type=seed_option, default=0,
                   help="first seed (fact sample, split, wrong objects, controls)")
    p.add_argument("--seeds", type=seeds_option, default=1,
                   help="factcheck, likn: run seeds SEED .. SEED+N-1 and report mean ± sd of every metric (default 1)")
    p.add_argument("--top-k", type=int, default=TOP_K, help="DKN candidates per prompt")
    p.add_argument("--t-low", type=float, default=T_LOW, help="DKN: largest single-neuron drop kept")
    p.add_argument("--t-high", type=float, default=T_HIGH, help="DKN: smallest pair drop that is degenerate")
    p.add_argument("--max-group", type=int, default=2, help="DKN: largest degenerate group searched (2 = pairs)")
    p.add_argument("--t", type=float, default=DKN_T, help="fact check: DKN set = pair count > floor(t * max)")
    p.add_argument("--objective", default="f1", choices=OBJECTIVES, help="fact check: what λ maximises")
    p.add_argument("--store", type=store_option, default=None,
                   help="result store file (default: $KN_EXPLORER_HOME/store.sqlite): true facts' attributions are "
                        "read from it (e.g. after a batch run) and stored")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the result store")
    p.set_defaults(func=run)


def run(args) -> int:
    from kn_core.experiments.common import Settings  # pandas and matplotlib: only when an experiment runs
    from kn_core.experiments.report import text_table

    out = outputs.check_folder(args.out, "--out")
    config = attribution_config(args)
    settings = Settings(models=tuple(args.models), out=out, data=args.data, langs=args.langs,
                        relations=args.relations, max_facts=args.max_facts, max_templates=args.max_templates,
                        steps=config.steps, baseline=config.baseline, rule=config.rule, seed=args.seed,
                        seeds=args.seeds, top_k=args.top_k,
                        t_low=args.t_low, t_high=args.t_high, max_group=args.max_group, t=args.t,
                        objective=args.objective, store=None if args.no_cache else (args.store or default_path()),
                        first_facts=args.first_facts)
    outcome, report = experiments.run(args.name, settings)
    print(outcome.title)
    print(text_table(outcome.headline))
    if outcome.caption:
        print(f"\n{outcome.caption}")
    print(f"\nreport: {report}")
    return 0
