"""Knowledge neurons per fact and language (METHOD.md §1–2), verified by suppression and enhancement.

For every sampled fact and language: AMIG over the relation's train templates, coarse selection (τ of the
language), refinement across prompts (p = 0.7), then suppress (×0) / enhance (×2) against as many random
neurons in the same layers and against an unrelated fact.
"""
from __future__ import annotations

import logging

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
from kn_core.method.locate import LocateResult, locate
from kn_core.method.neurons import per_layer_counts

log = logging.getLogger(__name__)

TITLE = "Knowledge neurons per fact (localization and verification)"
DEFAULT_MAX_FACTS = 5
EFFECTS = ("own", "random", "unrelated")
NOTES = (
    "**Effects** are mean relative changes (P_after − P_before) / P_before of P(object): *own* on the fact's "
    "prompts, *random* on the same prompts with as many random neurons in the same layers, *unrelated* on "
    "another fact's prompt with the same knowledge neurons edited. Knowledge neurons should move their own "
    "fact far more than either control.",
    "**Residual** is the largest relative completeness residual "
    "|Σ attributions − (P(a) − P(b))| / |P(a) − P(b)| "
    "over layers and prompts; it shrinks as the number of steps grows.",
)


def locate_fact(lm, factset: FactSet, selection: dict[str, tuple[Fact, ...]], fact: Fact, lang: str,
                settings: Settings) -> LocateResult | None:
    """Locate one fact in one language, with an unrelated fact's first prompt as the control; None when the
    model can take none of its prompts."""
    prompts = fact_prompts(lm, templates_of(factset, fact.relation, lang, settings), fact, lang)
    if not prompts:
        return None
    other = unrelated_fact(selection, fact)
    unrelated = [] if other is None else fact_prompts(lm, templates_of(factset, other.relation, lang, settings)[:1],
                                                      other, lang)
    return locate(lm, [p.template for p in prompts], fact.subject(lang), fact.object(lang), lang, settings.config,
                  unrelated=unrelated, seed=settings.seed, attributor=settings.attributor())


def _fact_row(lm_name: str, fact: Fact, result: LocateResult) -> dict:
    residual = np.nanmax([np.nan_to_num(a.relative_delta(), nan=0.0) for a in result.attributions])
    row = {"model": lm_name, "lang": result.lang, "relation": fact.relation, "fact_id": fact.id,
           "subject": fact.subject(result.lang), "object": fact.object(result.lang),
           "n_prompts": len(result.attributions), "p_object": float(np.mean([a.p_object for a in result.attributions])),
           "n_kn": len(result.neurons), "residual": float(residual)}
    for verification in (result.suppress, result.enhance):
        row.update({f"{verification.mode}_{k}": getattr(verification, k) for k in EFFECTS})
    return row


def summary(facts: pd.DataFrame) -> pd.DataFrame:
    """Per model and language: facts, mean P(object), mean KN count and the mean edit effects."""
    columns = ["p_object", "n_kn"] + [f"{m}_{k}" for m in ("suppress", "enhance") for k in EFFECTS]
    grouped = facts.groupby(["model", "lang"], sort=False)
    out = grouped[columns].mean().reset_index()
    out.insert(2, "facts", grouped.size().values)
    out.insert(3, "facts_without_kn", grouped["n_kn"].apply(lambda s: int((s == 0).sum())).values)
    return out


def run(settings: Settings) -> Outcome:
    """Locate every sampled fact in every language on every model."""
    factset = load_dataset(settings.data)
    selection = select_facts(factset, settings, DEFAULT_MAX_FACTS)
    everything = [f for facts in selection.values() for f in facts]
    fact_rows, neuron_rows, layers = [], [], {}
    for lm in models(settings):
        for lang in settings.langs:
            counts = np.zeros(lm.n_layers, dtype=int)
            for fact in progress(everything, f"{lm.name} {lang}"):
                result = locate_fact(lm, factset, selection, fact, lang, settings)
                if result is None:
                    continue
                fact_rows.append(_fact_row(lm.name, fact, result))
                neuron_rows += [{"model": lm.name, "lang": lang, "fact_id": fact.id, "layer": layer, "index": index,
                                 "score": score} for layer, index, score in result.neurons]
                counts += per_layer_counts(result.neurons, lm.n_layers)
            layers.setdefault(lm.name, {})[lang] = counts.tolist()
    facts = pd.DataFrame(fact_rows)
    if facts.empty:
        raise InputError("data", "no fact of the selection can be put to these models (labels outside the vocabulary)")
    head = summary(facts)
    effects = pd.DataFrame([{"setting": f"{r.model} · {r.lang}", "control": k, "change": r[f"suppress_{k}"]}
                            for _, r in head.iterrows() for k in EFFECTS])
    return Outcome(name="localize", title=TITLE, headline=head,
                   tables={"facts": facts, "neurons": pd.DataFrame(neuron_rows,
                                                                   columns=["model", "lang", "fact_id", "layer",
                                                                            "index", "score"])},
                   figures={"kn_per_layer": plots.layer_panels(layers, "Knowledge neurons per layer (all facts)",
                                                               "neurons"),
                            "suppress": plots.grouped_bars(effects, "setting", "control", "change",
                                                           "Suppressing the knowledge neurons", "relative change")},
                   notes=NOTES)
