"""``python -m kn_core showcase``: choose, from the stored results, what the app opens on, and precompute the
app's slow first-time work (the Fact-check page's calibration) so that the first look is instant."""
from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from kn_core.attribution import AttributionConfig
from kn_core.commands.options import (
    add_attribution_options,
    attribution_config,
    langs_option,
    relations_option,
    store_option,
)
from kn_core.data import load_bundled
from kn_core.defaults import P_SHARE
from kn_core.errors import InputError
from kn_core.model.loading import load_model
from kn_core.runs.store import ResultStore

if TYPE_CHECKING:
    from kn_core.runs.queries import Showcase


def register(subparsers) -> None:
    p = subparsers.add_parser("showcase", help="choose the app's first look from the stored results (and precompute)")
    p.add_argument("--model", required=True, help="the model the app opens on (its results must be stored: run batch)")
    p.add_argument("--langs", type=langs_option, default=("en", "zh"), help="comma-separated languages (default en,zh)")
    p.add_argument("--relations", type=relations_option, default=None,
                   help="comma-separated relation ids (default: all)")
    p.add_argument("--p", type=float, default=P_SHARE, help=f"refinement share (default {P_SHARE})")
    add_attribution_options(p, engine=False)
    p.add_argument("--factcheck", action="store_true",
                   help="also calibrate the Fact-check page's checker of the chosen relation and language (paper "
                        "settings) and judge its held-out claims, so that the page opens at once")
    p.add_argument("--store", type=store_option, default=None,
                   help="store file (default: $KN_EXPLORER_HOME/store.sqlite)")
    p.set_defaults(func=run)


def run(args) -> int:
    from kn_core.runs import queries  # pandas: only when this command runs, not when any parser is built

    config = attribution_config(args)
    store = ResultStore(args.store)
    factset = load_bundled()
    lm = load_model(args.model)
    try:
        pick = queries.choose_showcase(store, lm, factset, args.langs, config, args.p, relations=args.relations)
    except InputError as exc:
        if exc.field != "model" or "kn_core batch" not in exc.message:
            raise
        head = exc.message.split("; run ")[0]
        raise InputError("model", f"{head}; store them first with `{batch_command(args, config)}`") from None
    print(render(pick))
    if args.factcheck:
        dkn = queries.DKNSettings()
        checker = queries.calibrated_checker(store, lm, factset, pick.relation, pick.lang, config, dkn)
        queries.measured_evaluation(store, lm, factset, checker, pick.relation, pick.lang, config, dkn)
        print(f"fact-check: {pick.relation} [{pick.lang}] calibrated and evaluated ({len(checker.dkn)} DKN neurons)")
    print(f"store: {store.path}")
    return 0


def batch_command(args: argparse.Namespace, config: AttributionConfig) -> str:
    """The ``batch`` command that stores what this showcase reads: the same model, store, relations, languages
    and attribution settings (those that differ from the defaults), so that running it helps."""
    default = AttributionConfig()
    parts = ["python -m kn_core batch", "--model", args.model]
    if args.relations:
        parts += ["--relations", ",".join(args.relations)]
    parts += ["--langs", ",".join(args.langs)]
    for option, value, usual in (("--baseline", config.baseline, default.baseline),
                                 ("--steps", config.steps, default.steps), ("--rule", config.rule, default.rule)):
        if value != usual:
            parts += [option, str(value)]
    if args.store is not None:
        parts += ["--store", str(args.store)]
    return " ".join(parts[:1] + [shlex.quote(part) for part in parts[1:]])


def render(pick: Showcase) -> str:
    lines = [f"model: {pick.model}",
             f"fact browser: {pick.fact} [{pick.lang}], suppressing its knowledge neurons {pick.effect:+.1%} "
             f"(as many random neurons {pick.random_effect:+.1%})"]
    lines.append((f"language page: {pick.language_fact}, {pick.shared} shared neuron(s)") if pick.language_fact
                 else "language page: no stored fact has shared neurons (the page opens on its first fact)")
    return "\n".join(lines)
