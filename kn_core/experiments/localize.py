"""Knowledge neurons per fact and language (docs/method.md §1–2), verified by suppression and enhancement.

For every sampled fact and language: AMIG over the relation's train templates, coarse selection (τ of the
language), refinement across prompts (p = 0.7), then suppress (×0) / enhance (×2) against as many random
neurons in the same layers and against an unrelated fact; then the controls of docs/method.md §6 (suppression on
other facts of the same relation, on other relations' facts and of 30 random same-layer sets, with the
specificity verdict of :mod:`kn_core.method.controls`) and the critics' checks (:mod:`kn_core.method.checks`:
top-1 flips, paraphrase transfer, the reverse probe), and once per model and language the syntactic control.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kn_core.data import Fact, FactSet, load_dataset
from kn_core.errors import InputError
from kn_core.experiments import plots
from kn_core.experiments.common import (
    Outcome,
    Settings,
    fact_prompts,
    models,
    progress,
    select_facts,
    templates_of,
    unrelated_fact,
)
from kn_core.method.checks import Checks, fact_checks, syntactic_control
from kn_core.method.controls import RULE, VERDICTS, control_prompts
from kn_core.method.locate import LocateResult, locate
from kn_core.method.neurons import per_layer_counts

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

TITLE = "Knowledge neurons per fact (localization and verification)"
DEFAULT_MAX_FACTS = 5
EFFECTS = ("own", "random", "unrelated")
CONTROLS = ("ctrl_own", "ctrl_same_relation", "ctrl_other_relation", "ctrl_random_mean")
CHECKS = ("top1_flip_rate", "paraphrase_change", "transfer", "reverse_change")
SYNTAX_CASES = 2  # grammatical cases of the syntactic control per model and language (a locate each)
NOTES = (
    "**Effects** are mean relative changes (P_after − P_before) / P_before of P(object): *own* on the fact's "
    "prompts, *random* on the same prompts with as many random neurons in the same layers, *unrelated* on "
    "another fact's prompt with the same knowledge neurons edited. Knowledge neurons should move their own "
    "fact far more than either control.",
    "**Residual** is the largest relative completeness residual "
    "|Σ attributions − (P(a) − P(b))| / |P(a) − P(b)| "
    "over layers and prompts; it shrinks as the number of steps grows.",
    "**Controls and specificity** (docs/method.md §6): the knowledge neurons are suppressed on the fact's own prompts "
    "(`ctrl_own`), on up to 5 other facts of the same relation with other objects under the same templates "
    "(`ctrl_same_relation`), on 5 facts of other relations (`ctrl_other_relation`) and 30 random same-size sets "
    "in the same layers are suppressed on the fact's prompts (`ctrl_random_mean` / `_sd`; `ctrl_random_rank`: "
    f"share of draws as low as the own change or lower). Verdict rule: {RULE}. `share_<verdict>` counts the "
    "facts with knowledge neurons.",
    "**Critics' checks** (Niu et al., ICLR 2024): `top1_flip_rate` is the share of the fact's prompts whose top-1 "
    "token at the object changes when the neurons are suppressed (`top1_before` → `top1_after`); "
    "`paraphrase_change` the relative change of P(object) on the relation's templates the neurons were not "
    "found on (held-out first), `transfer` its ratio to `ctrl_own` (the headline: the median over facts); "
    "`reverse_change` the change of P(subject) on "
    "the reverse question (capital ↔ capital of; only relations that have one). The *syntactic control* puts "
    "grammatical agreement through the same pipeline: if its neurons move the grammatical word as much as facts' "
    "neurons move facts, the method localises grammar as readily as knowledge.",
)


def locate_fact(lm: LanguageModel, factset: FactSet, selection: dict[str, tuple[Fact, ...]], fact: Fact, lang: str,
                settings: Settings) -> LocateResult | None:
    """Locate one fact in one language, with an unrelated fact's first prompt as the control and the controls of
    docs/method.md §6 from ``factset``; None when the model can take none of its prompts."""
    prompts = fact_prompts(lm, templates_of(factset, fact.relation, lang, settings), fact, lang)
    if not prompts:
        return None
    other = unrelated_fact(selection, fact)
    unrelated = [] if other is None else fact_prompts(lm, templates_of(factset, other.relation, lang, settings)[:1],
                                                      other, lang)
    templates = [p.template for p in prompts]
    controls = control_prompts(lm, factset, lang, templates, fact.subject(lang), fact.object(lang), fact.relation,
                               seed=settings.seed)
    return locate(lm, templates, fact.subject(lang), fact.object(lang), lang, settings.config,
                  unrelated=unrelated, seed=settings.seed, attributor=settings.attributor(), controls=controls)


def _fact_row(lm_name: str, fact: Fact, result: LocateResult, checks: Checks) -> dict:
    residual = np.nanmax([np.nan_to_num(a.relative_delta(), nan=0.0) for a in result.attributions])
    row = {"model": lm_name, "lang": result.lang, "relation": fact.relation, "fact_id": fact.id,
           "subject": fact.subject(result.lang), "object": fact.object(result.lang),
           "n_prompts": len(result.attributions), "p_object": float(np.mean([a.p_object for a in result.attributions])),
           "n_kn": len(result.neurons), "residual": float(residual)}
    for verification in (result.suppress, result.enhance):
        row.update({f"{verification.mode}_{k}": getattr(verification, k) for k in EFFECTS})
    c = result.controls
    assert c is not None  # locate_fact gives locate the control prompts, so it measured them
    row.update({"ctrl_own": c.own, "ctrl_same_relation": c.same_relation, "ctrl_other_relation": c.other_relation,
                "ctrl_random_mean": c.random.mean, "ctrl_random_sd": c.random.sd, "ctrl_random_rank": c.random.rank,
                "n_same_relation": len(c.same_facts), "n_other_relation": len(c.other_facts),
                "specificity": (c.specificity or "no verdict") if result.neurons else "no neurons",
                "top1_flip_rate": checks.flip_rate, "top1_before": " | ".join(f.before for f in checks.flips),
                "top1_after": " | ".join(f.after for f in checks.flips),
                "top1_was_object": float(np.mean([f.was_top1 for f in checks.flips])),
                "paraphrase_change": checks.paraphrase_change, "n_paraphrases": len(checks.paraphrases),
                "transfer": checks.transfer, "reverse_change": checks.reverse_change})
    return row


def summary(facts: pd.DataFrame) -> pd.DataFrame:
    """Per model and language: facts, mean P(object), mean KN count and the mean edit effects."""
    columns = (["p_object", "n_kn"] + [f"{m}_{k}" for m in ("suppress", "enhance") for k in EFFECTS]
               + [c for c in (*CONTROLS, *CHECKS) if c in facts])
    grouped = facts.groupby(["model", "lang"], sort=False)
    out = grouped[columns].mean().reset_index()
    if "transfer" in facts:  # a ratio to the own effect: a fact with a tiny own effect would dominate a mean
        out["transfer"] = grouped["transfer"].median().values
    out.insert(2, "facts", grouped.size().values)
    out.insert(3, "facts_without_kn", grouped["n_kn"].apply(lambda s: int((s == 0).sum())).values)
    if "specificity" in facts:
        for label in VERDICTS:
            out[f"share_{label}"] = grouped.apply(
                lambda g, label=label: float((g.loc[g["n_kn"] > 0, "specificity"] == label).mean())
                if (g["n_kn"] > 0).any() else float("nan"), include_groups=False).values
    return out


def run(settings: Settings) -> Outcome:
    """Locate every sampled fact in every language on every model."""
    factset = load_dataset(settings.data)
    selection = select_facts(factset, settings, DEFAULT_MAX_FACTS)
    everything = [f for facts in selection.values() for f in facts]
    fact_rows, neuron_rows, syntax_rows = [], [], []
    layers: dict[str, dict[str, list[int]]] = {}  # model -> language -> knowledge neurons per layer
    for lm in models(settings):
        for lang in settings.langs:
            counts = np.zeros(lm.n_layers, dtype=int)
            for fact in progress(everything, f"{lm.name} {lang}"):
                result = locate_fact(lm, factset, selection, fact, lang, settings)
                if result is None:
                    continue
                checks = fact_checks(lm, factset, lang, fact.relation, result.prompts,
                                     [n.neuron for n in result.neurons])
                fact_rows.append(_fact_row(lm.name, fact, result, checks))
                neuron_rows += [{"model": lm.name, "lang": lang, "fact_id": fact.id, "layer": layer, "index": index,
                                 "score": score} for layer, index, score in result.neurons]
                counts += per_layer_counts(result.neurons, lm.n_layers)
            layers.setdefault(lm.name, {})[lang] = counts.tolist()
            syntax = syntactic_control(lm, lang, settings.config, attributor=settings.attributor(), seed=settings.seed,
                                       cases=SYNTAX_CASES)
            syntax_rows += [] if syntax is None else [{"model": lm.name, "lang": lang, **vars(c)} for c in syntax.cases]
    facts = pd.DataFrame(fact_rows)
    if facts.empty:
        raise InputError("data", "no fact of the selection can be put to these models (labels outside the vocabulary)")
    head = summary(facts)
    effects = pd.DataFrame([{"setting": f"{r.model} · {r.lang}", "control": k.removeprefix("ctrl_"), "change": r[k]}
                            for _, r in head.iterrows() for k in CONTROLS + ("suppress_unrelated",)])
    syntax = pd.DataFrame(syntax_rows, columns=["model", "lang", "template", "subject", "object", "p_object",
                                                "n_neurons", "change", "random_mean", "random_sd", "beyond_random"])
    checks = facts[["model", "lang", "relation", "subject", "object", "n_kn", "specificity", "ctrl_own",
                    "ctrl_same_relation", "ctrl_other_relation", "ctrl_random_mean", "top1_flip_rate", "top1_before",
                    "top1_after", "paraphrase_change", "reverse_change"]]
    return Outcome(name="localize", title=TITLE, headline=head,
                   shown={"Controls and critics' checks per fact": checks,
                          "Syntactic control (grammar through the same pipeline)": syntax},
                   tables={"facts": facts, "syntax": syntax,
                           "neurons": pd.DataFrame(neuron_rows, columns=["model", "lang", "fact_id", "layer", "index",
                                                                        "score"])},
                   figures={"kn_per_layer": plots.layer_panels(layers, "Knowledge neurons per layer (all facts)",
                                                               "neurons"),
                            "suppress": plots.grouped_bars(effects, "setting", "control", "change",
                                                           "Suppressing the knowledge neurons", "relative change")},
                   notes=NOTES)
