"""``python -m kn_core locate``: a fact's knowledge neurons, completeness check and edit effects."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kn_core.commands import outputs
from kn_core.commands.options import add_attribution_options, attribution_config, lang_option, seed_option, whole_number
from kn_core.defaults import P_SHARE
from kn_core.method.locate import LocateResult, locate
from kn_core.model.loading import load_model
from kn_core.runs.cached import read_through
from kn_core.runs.store import ResultStore


def register(subparsers) -> None:
    p = subparsers.add_parser("locate", help="find the knowledge neurons of one fact")
    p.add_argument("--model", required=True, help="demo-mlm, demo-clm, a model folder or a Hugging Face id")
    p.add_argument("--lang", required=True, type=lang_option, help="language of the prompts (sets τ: en 0.3, zh 0.2)")
    p.add_argument("--template", action="append", required=True, help="template with [X] and [Y]; repeatable")
    p.add_argument("--subject", required=True)
    p.add_argument("--object", required=True, dest="obj")
    add_attribution_options(p)
    p.add_argument("--tau", type=float, default=None, help="coarse threshold (default: per language)")
    p.add_argument("--p", type=float, default=P_SHARE, help="refinement share across prompts")
    p.add_argument("--top", type=whole_number(0), default=10, help="how many neurons to print")
    p.add_argument("--seed", type=seed_option, default=0, help="seed of the random-neuron control")
    p.add_argument("--json", type=Path, default=None, help="write the full result as JSON (strict: NaN as null)")
    p.add_argument("--store", type=Path, default=None,
                   help="result store file (default: $KN_EXPLORER_HOME/store.sqlite or the user cache folder)")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the result store: compute every attribution afresh")
    p.set_defaults(func=run)


def run(args) -> int:
    json_out = None if args.json is None else outputs.check_file(args.json, "--json", outputs.stores(args.store))
    lm = load_model(args.model)
    config = attribution_config(args)
    store = None if args.no_cache else ResultStore(args.store)
    try:
        result = locate(lm, args.template, args.subject, args.obj, args.lang, config, tau=args.tau, p=args.p,
                        seed=args.seed, attributor=read_through(store))
    finally:
        if store is not None:
            store.close()
    print(render(result, args.top))
    if json_out is not None:
        outputs.write_json(json_out, to_json(result), "--json")
    return 0


def to_json(result: LocateResult) -> dict:
    """A single prompt: that attribution's fields; several: the refined neurons and every prompt's fields."""
    edits = {mode: vars(getattr(result, mode)) for mode in ("suppress", "enhance")}
    prompts = [{**a.to_json_dict(), "neurons": [list(n) for n in coarse]}
               for a, coarse in zip(result.attributions, result.coarse)]
    if len(prompts) == 1:
        return {**prompts[0], **edits, "tau": result.tau}
    return {"neurons": [list(n) for n in result.neurons], "tau": result.tau, "p": result.p, **edits,
            "prompts": prompts}


def render(result: LocateResult, top: int) -> str:
    lines = []
    for attribution, coarse in zip(result.attributions, result.coarse):
        rel = attribution.relative_delta()
        cut = f"   (left out after [Y]: {attribution.prompt.cut!r})" if attribution.prompt.cut else ""
        lines.append(f"prompt: {attribution.prompt.query}{cut}")
        lines.append(f"  P({attribution.prompt.object}) = {attribution.p_object:.4g}   "
                     f"({attribution.prompt.n_object_tokens} object token(s)); {len(coarse)} coarse neurons")
        lines.append("  layer  completeness residual  relative")
        for layer in attribution.layers:
            lines.append(f"  {layer:5d}  {attribution.convergence_delta[layer]:+.3e}           "
                         f"{'n/a' if np.isnan(rel[layer]) else f'{rel[layer]:.2%}'}")
    label = "refined across prompts" if len(result.attributions) > 1 else "coarse"
    lines.append(f"knowledge neurons ({label}, τ={result.tau}, p={result.p}): {len(result.neurons)}")
    lines.append("  layer  index     score")
    lines += [f"  {layer:5d}  {index:5d}  {score:.4e}" for layer, index, score in result.neurons[:top]]
    for v in (result.suppress, result.enhance):
        lines.append(f"{v.mode}: P(object) {v.own:+.1%}; random neurons, same layers {v.random:+.1%}")
    return "\n".join(lines)
