"""``python -m kn_core locate``: a fact's knowledge neurons, completeness check and edit effects."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kn_core.commands import outputs
from kn_core.commands.options import add_attribution_options, attribution_config, lang_option, seed_option, whole_number
from kn_core.data import load_dataset
from kn_core.defaults import CONTROL_FACTS, P_SHARE, RANDOM_DRAWS
from kn_core.method.checks import Checks, fact_checks
from kn_core.method.controls import RULE, control_prompts
from kn_core.method.locate import LocateResult, locate
from kn_core.model.loading import load_model
from kn_core.runs.cached import read_through
from kn_core.runs.store import ResultStore
from kn_core.types import Neuron


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
    p.add_argument("--data", default="bundled",
                   help="fact set the control facts come from ('bundled', or a bundled- or mLAMA-layout folder)")
    p.add_argument("--relation", default=None,
                   help="the fact's relation id in --data (default: the relation of the template, else of the fact)")
    p.add_argument("--draws", type=whole_number(2), default=RANDOM_DRAWS,
                   help=f"random same-size neuron sets of the random control (default {RANDOM_DRAWS})")
    p.add_argument("--control-facts", type=whole_number(1), default=CONTROL_FACTS,
                   help=f"facts of the same relation and of other relations suppressed as controls "
                        f"(default {CONTROL_FACTS})")
    p.add_argument("--json", type=Path, default=None, help="write the full result as JSON (strict: NaN as null)")
    p.add_argument("--store", type=Path, default=None,
                   help="result store file (default: $KN_EXPLORER_HOME/store.sqlite or the user cache folder)")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the result store: compute every attribution afresh")
    p.set_defaults(func=run)


def run(args) -> int:
    json_out = None if args.json is None else outputs.check_file(args.json, "--json", outputs.stores(args.store))
    factset = load_dataset(args.data)
    if args.relation is not None:
        factset.relation(args.relation)  # an unknown id is refused before the model loads
    lm = load_model(args.model)
    config = attribution_config(args)
    controls = control_prompts(lm, factset, args.lang, args.template, args.subject, args.obj, args.relation,
                               args.control_facts, args.seed)
    store = None if args.no_cache else ResultStore(args.store)
    try:
        result = locate(lm, args.template, args.subject, args.obj, args.lang, config, tau=args.tau, p=args.p,
                        seed=args.seed, attributor=read_through(store), controls=controls, draws=args.draws)
    finally:
        if store is not None:
            store.close()
    checks = fact_checks(lm, factset, args.lang, controls.relation, result.prompts,
                         [Neuron(n[0], n[1]) for n in result.neurons])
    print(render(result, args.top, checks))
    if json_out is not None:
        outputs.write_json(json_out, to_json(result, checks), "--json")
    return 0


def to_json(result: LocateResult, checks: Checks | None = None) -> dict:
    """A single prompt: that attribution's fields; several: the refined neurons and every prompt's fields. With
    controls: ``"controls"`` (own, same_relation, other_relation, random {mean, sd, draws, rank}, the control
    facts, the rule) and ``"specificity"``; with checks: ``"checks"`` (top-1 flips, paraphrase, reverse)."""
    edits = {mode: vars(getattr(result, mode)) for mode in ("suppress", "enhance")}
    if result.controls is not None:
        edits.update(controls=result.controls.to_json(), specificity=result.controls.specificity)
    if checks is not None:
        edits["checks"] = checks.to_json()
    prompts = [{**a.to_json_dict(), "neurons": [list(n) for n in coarse]}
               for a, coarse in zip(result.attributions, result.coarse)]
    if len(prompts) == 1:
        return {**prompts[0], **edits, "tau": result.tau}
    return {"neurons": [list(n) for n in result.neurons], "tau": result.tau, "p": result.p, **edits,
            "prompts": prompts}


def render(result: LocateResult, top: int, checks: Checks | None = None) -> str:
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
    c = result.controls
    if c is not None:
        lines.append(f"controls (suppress): this fact {c.own:+.1%}; other facts of {c.relation or 'its relation'} "
                     f"{c.same_relation:+.1%} ({len(c.same_facts)}); other relations {c.other_relation:+.1%} "
                     f"({len(c.other_facts)}); random sets {c.random.mean:+.1%} ± {c.random.sd:.1%} "
                     f"({c.random.draws} draws, {c.random.rank:.0%} as low or lower)")
        lines.append(f"specificity: {c.specificity or 'no verdict'}: {c.reason}")
        lines.append(f"  rule: {RULE}")
    if checks is not None:
        flips = ", ".join(f"{f.before!r}→{f.after!r}" for f in checks.flips)
        lines.append(f"top-1 flip: {checks.flip_rate:.0%} of prompts ({flips})")
        if checks.paraphrases:
            lines.append(f"paraphrases ({len(checks.paraphrases)} templates not searched): "
                         f"{checks.paraphrase_change:+.1%} against {checks.own_change:+.1%} on the searched ones")
        if checks.reverse_template:
            lines.append(f"reverse probe {checks.reverse_template!r}: P(subject) {checks.reverse_change:+.1%}")
    return "\n".join(lines)
