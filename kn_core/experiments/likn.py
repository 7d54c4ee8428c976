"""Language-independent knowledge neurons (docs/method.md §3): two languages' knowledge neurons of the same fact.

Per fact: refined KN in each language, their overlap (sizes, Jaccard, per layer) next to two controls — the
first language's KN of the fact against the second language's KN of *another* fact of the same relation,
and of a fact of another relation — and the cross-lingual edit: suppress / enhance the shared set, each
language's KN, each language's exclusive part and as many random neurons as the shared set (same layers),
measured on both languages' prompts and on an unrelated fact's. With ``--seeds N`` the whole run repeats for
seeds ``seed`` … ``seed + N − 1`` (fact sample, random controls) and the summaries report mean ± sd across them.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from kn_core.data import Fact, FactSet, load_dataset
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.experiments import plots
from kn_core.experiments.common import (
    Outcome,
    Settings,
    across_seeds,
    fact_prompts,
    models,
    progress,
    select_facts,
    templates_of,
    unrelated_fact,
)
from kn_core.experiments.report import mean_sd_cells
from kn_core.method.interventions import FACTORS, random_like
from kn_core.method.likn import cross_lingual_edit, edit_sets, overlap
from kn_core.method.neurons import Neuron, default_tau, knowledge_neurons

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

TITLE = "Language-independent knowledge neurons (LIKN)"
DEFAULT_MAX_FACTS = 4
NOTES = (
    "**Overlap.** `jaccard` compares a fact's knowledge neurons in the two languages; `jaccard_same_relation` "
    "compares the first language's KN of the fact with the second language's KN of another fact of the same "
    "relation, and `jaccard_other_relation` with a fact of another relation. Language-independent neurons show "
    "as a same-fact Jaccard well above both controls.",
    "**Cross-lingual editing.** Mean relative change of P(object) over facts whose edited set is non-empty "
    "(`facts` counts them). The shared set should move *both* languages; a language's own KN should move its "
    "own language more than the other; `random` is as many random neurons as the shared set, in its layers.",
)


class FactNeurons(NamedTuple):
    """A fact's prompts and refined knowledge neurons in one language."""

    prompts: list[Prompt]
    neurons: list[Neuron]


def fact_neurons(lm: LanguageModel, factset: FactSet, fact: Fact, lang: str, settings: Settings) -> FactNeurons | None:
    """Refined KN of ``fact`` in ``lang`` (τ of the language, p = 0.7); None when no prompt fits the model."""
    prompts = fact_prompts(lm, templates_of(factset, fact.relation, lang, settings), fact, lang)
    if not prompts:
        return None
    scores = [settings.attribution(lm, p, lang).scores for p in prompts]
    return FactNeurons(prompts, [(layer, index) for layer, index, _ in knowledge_neurons(scores, default_tau(lang))])


def _same_relation_other(found: dict[str, dict[str, FactNeurons]], facts: list[Fact], fact: Fact) -> Fact | None:
    """The next fact of the same relation (cyclic) that has neurons in both languages."""
    peers = [f for f in facts if f.relation == fact.relation and f.id in found]
    return peers[(peers.index(fact) + 1) % len(peers)] if len(peers) > 1 else None


def _jaccard(a: list[Neuron], b: list[Neuron], n_layers: int) -> float:
    return overlap(a, b, n_layers).jaccard


def _overlap_rows(lm: LanguageModel, langs: tuple[str, str], fact: Fact, found, facts,
                  selection) -> tuple[dict, list[dict]]:
    a, b = langs
    result = overlap(found[fact.id][a].neurons, found[fact.id][b].neurons, lm.n_layers)
    same = _same_relation_other(found, facts, fact)
    other = unrelated_fact(selection, fact)
    row = {"model": lm.name, "relation": fact.relation, "fact_id": fact.id, f"n_{a}": len(found[fact.id][a].neurons),
           f"n_{b}": len(found[fact.id][b].neurons), "n_shared": len(result.shared), "jaccard": result.jaccard,
           "jaccard_same_relation": (np.nan if same is None else
                                     _jaccard(found[fact.id][a].neurons, found[same.id][b].neurons, lm.n_layers)),
           "jaccard_other_relation": (np.nan if other is None or other.id not in found else
                                      _jaccard(found[fact.id][a].neurons, found[other.id][b].neurons, lm.n_layers))}
    layers = [{"model": lm.name, "fact_id": fact.id, "layer": layer, a: result.per_layer_a[layer],
               b: result.per_layer_b[layer], "shared": result.per_layer_shared[layer]} for layer in range(lm.n_layers)]
    return row, layers


def _edit_rows(lm: LanguageModel, langs: tuple[str, str], fact: Fact, found, selection, seed: int) -> pd.DataFrame:
    a, b = langs
    sets = edit_sets(found[fact.id][a].neurons, found[fact.id][b].neurons, a, b, lm.n_layers)
    sets["random"] = tuple(random_like(sets["shared"], lm.d_ff, seed))
    other = unrelated_fact(selection, fact)
    unrelated = {} if other is None or other.id not in found else \
        {lang: found[other.id][lang].prompts[:1] for lang in langs}
    prompts = {lang: found[fact.id][lang].prompts for lang in langs}
    return pd.concat([cross_lingual_edit(lm, prompts, sets, mode, unrelated) for mode in FACTORS],
                     ignore_index=True).assign(model=lm.name, fact_id=fact.id)


def edit_summary(edits: pd.DataFrame) -> pd.DataFrame:
    """Mean relative change per (model, mode, edited set) and (measured language, target), over the facts
    whose edited set is non-empty."""
    used = edits[edits["n_neurons"] > 0].assign(where=lambda f: f["measured_lang"] + " " + f["target"])
    table = used.pivot_table(index=["model", "mode", "edited_set"], columns="where", values="relative_change",
                             aggfunc="mean", sort=False)
    facts = used[used["target"] == "own"].groupby(["model", "mode", "edited_set"], sort=False)["fact_id"].nunique()
    return table.assign(facts=facts).reset_index()


def summary(overlaps: pd.DataFrame, langs: tuple[str, str]) -> pd.DataFrame:
    """Per model: facts, mean set sizes, facts with a shared neuron and the Jaccards with their controls."""
    grouped = overlaps.groupby("model", sort=False)
    out = grouped[[f"n_{langs[0]}", f"n_{langs[1]}", "n_shared", "jaccard", "jaccard_same_relation",
                   "jaccard_other_relation"]].mean().reset_index()
    out.insert(1, "facts", grouped.size().values)
    out.insert(5, "facts_with_shared", grouped["n_shared"].apply(lambda s: int((s > 0).sum())).values)
    return out


def _figures(layers: pd.DataFrame, summary_edits: pd.DataFrame, langs: tuple[str, str]) -> dict:
    """Knowledge neurons per layer (``layers``: one seed's rows) and the suppression bars (``summary_edits``:
    means, over seeds when there are several)."""
    panels = {model: {name: group[name].groupby(group["layer"]).sum().tolist() for name in (*langs, "shared")}
              for model, group in layers.groupby("model", sort=False)}
    suppress = summary_edits[summary_edits["mode"] == "suppress"]
    bars = pd.DataFrame([{"set": f"{r.model} · {r.edited_set}", "measured": lang, "change": r[f"{lang} own"]}
                         for _, r in suppress.iterrows() for lang in langs if f"{lang} own" in r])
    figures = {"likn_per_layer": plots.layer_panels(panels, "Knowledge neurons per layer, summed over facts",
                                                    "neurons")}
    if not bars.empty:
        figures["cross_lingual_suppress"] = plots.grouped_bars(bars, "set", "measured", "change",
                                                               "Suppressing each set: change of P(object)",
                                                               "relative change")
    return figures


def _per_seed(frame: pd.DataFrame, make) -> pd.DataFrame:
    """``make`` (a summary of one seed's rows) for every seed, with a ``seed`` column first."""
    return pd.concat([make(group).assign(seed=seed) for seed, group in frame.groupby("seed", sort=False)],
                     ignore_index=True).pipe(lambda f: f[["seed", *[c for c in f.columns if c != "seed"]]])


def run(settings: Settings) -> Outcome:
    """Overlap and cross-lingual editing of every sampled fact's KN in two languages, on every model; with
    several seeds (``--seeds``) the headline and the editing summary are the mean ± sd across seeds."""
    if len(settings.langs) != 2:
        raise InputError("langs", f"LIKN compares exactly two languages (got {', '.join(settings.langs)}); "
                                  "e.g. --langs en,zh")
    langs = (settings.langs[0], settings.langs[1])
    factset = load_dataset(settings.data)
    overlap_rows, layer_rows, edit_frames = [], [], []
    for lm in models(settings):
        known: dict[tuple[str, str], FactNeurons | None] = {}  # a fact's KN do not depend on the seed
        for seed in settings.seed_list:
            run_settings = settings.with_seed(seed)
            selection = select_facts(factset, run_settings, DEFAULT_MAX_FACTS)
            everything = [f for facts in selection.values() for f in facts]
            found: dict[str, dict[str, FactNeurons]] = {}
            for fact in progress(everything, f"{lm.name} neurons, seed {seed}"):
                for lang in langs:
                    if (fact.id, lang) not in known:
                        known[fact.id, lang] = fact_neurons(lm, factset, fact, lang, run_settings)
                both = {lang: known[fact.id, lang] for lang in langs}
                if all(v is not None for v in both.values()):
                    found[fact.id] = both
            kept = [f for f in everything if f.id in found]
            for fact in progress(kept, f"{lm.name} edits, seed {seed}"):
                row, layers = _overlap_rows(lm, langs, fact, found, kept, selection)
                overlap_rows.append({"seed": seed, **row})
                layer_rows += [{"seed": seed, **r} for r in layers]
                edit_frames.append(_edit_rows(lm, langs, fact, found, selection, seed).assign(seed=seed))
    if not overlap_rows:
        raise InputError("data", "no fact can be put to these models in both languages")
    overlaps, layers, edits = pd.DataFrame(overlap_rows), pd.DataFrame(layer_rows), pd.concat(edit_frames)
    per_seed = _per_seed(overlaps, lambda f: summary(f, langs))
    edits_per_seed = _per_seed(edits, edit_summary)
    if settings.seeds > 1:
        headline = mean_sd_cells(across_seeds(per_seed, ["model"]), ["model"])
        summary_edits = across_seeds(edits_per_seed, ["model", "mode", "edited_set"])
        shown_edits = mean_sd_cells(summary_edits, ["model", "mode", "edited_set"])
    else:
        headline, summary_edits = per_seed.drop(columns="seed"), edits_per_seed.drop(columns="seed")
        shown_edits = summary_edits
    first_seed = layers[layers["seed"] == settings.seed_list[0]].drop(columns="seed")
    return Outcome(name="likn", title=TITLE, headline=headline,
                   caption=(f"Mean ± sample sd across {settings.seeds} seeds "
                            f"({', '.join(map(str, settings.seed_list))}); each seed redraws the fact sample and the "
                            "random controls." if settings.seeds > 1 else ""),
                   shown={"Cross-lingual editing (mean relative change of P(object))": shown_edits},
                   tables={"overlap": overlaps, "overlap_per_layer": layers, "edits": edits.reset_index(drop=True),
                           "summary_per_seed": per_seed, "edits_summary": summary_edits,
                           "edits_summary_per_seed": edits_per_seed},
                   figures=_figures(first_seed, summary_edits, langs), notes=NOTES)
