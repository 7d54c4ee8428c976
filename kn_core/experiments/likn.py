"""Language-independent knowledge neurons (docs/method.md §3): N ≥ 2 languages' knowledge neurons of the same fact.

Per fact: refined KN in each language, their overlap (sizes, Jaccard, per layer) next to two controls — the
fact's language-A KN against language B's KN of *another* fact of the same relation, and of a fact of another
relation — and the cross-lingual edit: suppress / enhance the set shared by every language, each language's KN,
each language's exclusive part and as many random neurons as the shared set (same layers), measured on every
language's prompts and on an unrelated fact's. With two languages these are the paper's numbers; with more, the
per-fact scalars (``jaccard`` and its baselines) are means over the language pairs (a before b in ``--langs``
order) and ``n_shared`` counts the neurons in every language. Beside them, for any N: the language × language
overlap matrix with both baselines, the neurons shared by at least k of the N languages, the cross-language
suppression matrix (language A's KN suppressed, measured on language B's prompts, against random same-size sets
in the same layers) and, per relation, the language pairs ranked by mean Jaccard — in the report, its CSV tables
and ``report.json`` (kn_core/experiments/likn_matrices.py). With ``--seeds N`` the whole run repeats for seeds
``seed`` … ``seed + N − 1`` (fact sample, random controls) and the summaries report mean ± sd across them (the
matrices pool every seed's facts).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from kn_core.data import Fact, FactSet, load_dataset
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.experiments import likn_matrices as matrices
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
from kn_core.method.language_suppression import suppression_matrix
from kn_core.method.languages import baseline_matrix, depth_counts, edit_sets_n, overlap_matrix, shared_by
from kn_core.method.likn import cross_lingual_edit
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
    "as a same-fact Jaccard well above both controls. With more than two languages each is the mean over the "
    "language pairs (a before b in --langs order) and `n_shared` counts the neurons in every language.",
    "**Cross-lingual editing.** Mean relative change of P(object) over facts whose edited set is non-empty "
    "(`facts` counts them). The shared set should move *every* language; a language's own KN should move its "
    "own language more than the others; `random` is as many random neurons as the shared set, in its layers.",
    "**Overlap matrix** (`overlap_matrix.csv`, `report.json`). Row A, column B: mean over facts of the Jaccard of "
    "the fact's A and B sets, and in brackets its baselines — the fact's A set against the B set of another fact "
    "of the same relation / of a fact of another relation (the diagonal's baselines: the same language, another "
    "fact). A pair shares fact-level neurons when its cell stands above both brackets, relation-level ones when "
    "it is no higher than the same-relation bracket.",
    "**Suppression matrix** (`suppression_matrix.csv`, `report.json`). Row A, column B: mean relative change of "
    "P(object) on the fact's language-B prompts when its language-A knowledge neurons are suppressed, over facts "
    "whose A set is non-empty, beside the mean ± sd of random sets of the same size in the same layers "
    "(30 draws per fact). The diagonal is each language's own effect.",
    "**Pairs per relation** (`pair_ranking.csv`). Per relation, the language pairs ranked by mean Jaccard over "
    "facts; **shared by k** (`shared_by_k.csv`): the mean number of neurons at least k of the N languages share "
    "(k = N: in every language; k = 2 of 2 is the two-language LIKN).",
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
    return FactNeurons(prompts, [n.neuron for n in knowledge_neurons(scores, default_tau(lang))])


def _same_relation_other(found: dict[str, dict[str, FactNeurons]], facts: list[Fact], fact: Fact) -> Fact | None:
    """The next fact of the same relation (cyclic) that has neurons in every language."""
    peers = [f for f in facts if f.relation == fact.relation and f.id in found]
    return peers[(peers.index(fact) + 1) % len(peers)] if len(peers) > 1 else None


def _sets(found: dict[str, dict[str, FactNeurons]], fact_id: str, langs: tuple[str, ...]) -> dict[str, list[Neuron]]:
    return {lang: found[fact_id][lang].neurons for lang in langs}


def _upper_mean(matrix: np.ndarray) -> float:
    """The mean of the cells above the diagonal (the pairs a before b), NaN when all are NaN or there are none."""
    values = matrix[np.triu_indices(len(matrix), k=1)]
    return float(np.nanmean(values)) if np.isfinite(values).any() else np.nan


class FactRows(NamedTuple):
    """A fact's rows of every per-fact table (each a list of records without seed, model and fact)."""

    overlap: dict
    layers: list[dict]
    pairs: list[dict]
    matrix: list[dict]
    by_k: list[dict]


def _overlap_rows(lm: LanguageModel, langs: tuple[str, ...], fact: Fact, found, facts, selection) -> FactRows:
    sets = _sets(found, fact.id, langs)
    matrix = overlap_matrix(sets, lm.n_layers)
    same, other = _same_relation_other(found, facts, fact), unrelated_fact(selection, fact)
    no_fact = np.full((len(langs), len(langs)), np.nan)
    same_base = no_fact if same is None else baseline_matrix(sets, [_sets(found, same.id, langs)], lm.n_layers)
    other_base = (no_fact if other is None or other.id not in found or other.relation == fact.relation else
                  baseline_matrix(sets, [_sets(found, other.id, langs)], lm.n_layers))  # one relation: no such baseline
    everyone = shared_by(sets, len(langs), lm.n_layers)
    row = {"model": lm.name, "relation": fact.relation, "fact_id": fact.id,
           **{f"n_{lang}": len(sets[lang]) for lang in langs}, "n_shared": len(everyone.neurons),
           "jaccard": matrix.mean_pairwise(), "jaccard_same_relation": _upper_mean(same_base),
           "jaccard_other_relation": _upper_mean(other_base)}
    counts = depth_counts(sets, lm.n_layers)
    layers = [{"model": lm.name, "fact_id": fact.id, "layer": layer, **{lang: counts[lang][layer] for lang in langs},
               "shared": everyone.per_layer[layer]} for layer in range(lm.n_layers)]
    ids = {"model": lm.name, "relation": fact.relation, "fact_id": fact.id}
    return FactRows(row, layers, [{**ids, **r} for r in matrices.pair_rows(matrix, same_base, other_base)],
                    [{**ids, **r} for r in matrices.matrix_rows(matrix, same_base, other_base)],
                    [{**ids, **r} for r in matrices.k_rows(everyone)])


def _edit_rows(lm: LanguageModel, langs: tuple[str, ...], fact: Fact, found, selection, seed: int) -> pd.DataFrame:
    sets = edit_sets_n(_sets(found, fact.id, langs), lm.n_layers)
    sets["random"] = tuple(random_like(sets["shared"], lm.d_ff, seed))
    other = unrelated_fact(selection, fact)
    unrelated = {} if other is None or other.id not in found else \
        {lang: found[other.id][lang].prompts[:1] for lang in langs}
    prompts = {lang: found[fact.id][lang].prompts for lang in langs}
    return pd.concat([cross_lingual_edit(lm, prompts, sets, mode, unrelated) for mode in FACTORS],
                     ignore_index=True).assign(model=lm.name, fact_id=fact.id)


def _suppression_rows(lm: LanguageModel, langs: tuple[str, ...], fact: Fact, found, seed: int) -> list[dict]:
    matrix = suppression_matrix(lm, {lang: found[fact.id][lang].prompts for lang in langs},
                                _sets(found, fact.id, langs), seed=seed)
    ids = {"model": lm.name, "relation": fact.relation, "fact_id": fact.id}
    return [{**ids, **r} for r in matrices.suppression_rows(matrix)]


def edit_summary(edits: pd.DataFrame) -> pd.DataFrame:
    """Mean relative change per (model, mode, edited set) and (measured language, target), over the facts
    whose edited set is non-empty."""
    used = edits[edits["n_neurons"] > 0].assign(where=lambda f: f["measured_lang"] + " " + f["target"])
    table = used.pivot_table(index=["model", "mode", "edited_set"], columns="where", values="relative_change",
                             aggfunc="mean", sort=False)
    facts = used[used["target"] == "own"].groupby(["model", "mode", "edited_set"], sort=False)["fact_id"].nunique()
    return table.assign(facts=facts).reset_index()


def summary(overlaps: pd.DataFrame, langs: tuple[str, ...]) -> pd.DataFrame:
    """Per model: facts, mean set sizes, facts with a neuron shared by every language and the Jaccards with
    their controls."""
    grouped = overlaps.groupby("model", sort=False)
    out = grouped[[*(f"n_{lang}" for lang in langs), "n_shared", "jaccard", "jaccard_same_relation",
                   "jaccard_other_relation"]].mean().reset_index()
    out.insert(1, "facts", grouped.size().values)
    out.insert(3 + len(langs), "facts_with_shared", grouped["n_shared"].apply(lambda s: int((s > 0).sum())).values)
    return out


def _figures(layers: pd.DataFrame, summary_edits: pd.DataFrame, langs: tuple[str, ...], overlaps: pd.DataFrame,
             suppression: pd.DataFrame) -> dict:
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
    for i, (model, group) in enumerate(overlaps.groupby("model", sort=False)):
        squares = {name: matrices.square(group, langs, "lang_a", "lang_b", metric) for name, metric in
                   (("same fact", "jaccard"), ("another fact, same relation", "jaccard_same_relation"),
                    ("a fact of another relation", "jaccard_other_relation"))}
        figures["overlap_matrix" + (f"_{i + 1}" if i else "")] = matrices.matrix_figure(
            squares, langs, f"{model}: Jaccard of the fact's KN (rows) with KN in each language (columns)")
    for i, (model, group) in enumerate(suppression.groupby("model", sort=False)):
        squares = {name: matrices.square(group, langs, "suppressed", "measured", metric) for name, metric in
                   (("knowledge neurons", "change"), ("random, same size and layers", "random_mean"))}
        figures["suppression_matrix" + (f"_{i + 1}" if i else "")] = matrices.matrix_figure(
            squares, langs, f"{model}: suppress the row language's KN, change of P(object) on the column's prompts",
            percent=True, xlabel="measured on", ylabel="suppressed")
    return figures


def _per_seed(frame: pd.DataFrame, make) -> pd.DataFrame:
    """``make`` (a summary of one seed's rows) for every seed, with a ``seed`` column first."""
    return pd.concat([make(group).assign(seed=seed) for seed, group in frame.groupby("seed", sort=False)],
                     ignore_index=True).pipe(lambda f: f[["seed", *[c for c in f.columns if c != "seed"]]])


def run(settings: Settings) -> Outcome:
    """Overlap, cross-lingual editing and the language × language matrices of every sampled fact's KN in
    N ≥ 2 languages, on every model; with several seeds (``--seeds``) the headline and the editing summary are
    the mean ± sd across seeds."""
    if len(settings.langs) < 2 or len(set(settings.langs)) != len(settings.langs):
        raise InputError("langs", f"LIKN compares two or more distinct languages (got {', '.join(settings.langs)}); "
                                  "e.g. --langs en,zh or --langs en,zh,fr")
    langs = tuple(settings.langs)
    factset = load_dataset(settings.data)
    overlap_rows, layer_rows, edit_frames = [], [], []
    pair_rows, matrix_rows, k_rows, suppression_rows = [], [], [], []
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
                every = {lang: neurons for lang in langs if (neurons := known[fact.id, lang]) is not None}
                if len(every) == len(langs):
                    found[fact.id] = every
            kept = [f for f in everything if f.id in found]
            for fact in progress(kept, f"{lm.name} edits, seed {seed}"):
                rows = _overlap_rows(lm, langs, fact, found, kept, selection)
                overlap_rows.append({"seed": seed, **rows.overlap})
                layer_rows += [{"seed": seed, **r} for r in rows.layers]
                pair_rows += [{"seed": seed, **r} for r in rows.pairs]
                matrix_rows += [{"seed": seed, **r} for r in rows.matrix]
                k_rows += [{"seed": seed, **r} for r in rows.by_k]
                edit_frames.append(_edit_rows(lm, langs, fact, found, selection, seed).assign(seed=seed))
                suppression_rows += [{"seed": seed, **r} for r in _suppression_rows(lm, langs, fact, found, seed)]
    if not overlap_rows:
        raise InputError("data", f"no fact can be put to these models in every one of {', '.join(langs)}")
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
    pairs, suppression = pd.DataFrame(pair_rows), pd.DataFrame(suppression_rows)
    overlap_matrix_ = matrices.overlap_summary(pd.DataFrame(matrix_rows))
    suppression_matrix_ = matrices.suppression_summary(suppression)
    by_k, ranking = matrices.k_summary(pd.DataFrame(k_rows)), matrices.ranking(pairs)
    report = matrices.write_report_json(matrices.report_json(langs, overlap_matrix_, suppression_matrix_, by_k,
                                                             ranking), settings.out)
    first_seed = layers[layers["seed"] == settings.seed_list[0]].drop(columns="seed")
    return Outcome(name="likn", title=TITLE, headline=headline,
                   caption=(f"Mean ± sample sd across {settings.seeds} seeds "
                            f"({', '.join(map(str, settings.seed_list))}); each seed redraws the fact sample and the "
                            "random controls." if settings.seeds > 1 else ""),
                   shown={"Cross-lingual editing (mean relative change of P(object))": shown_edits,
                          "Overlap matrix: Jaccard of the row language's KN with the column language's (same "
                          "relation / other relation baselines)": matrices.overlap_shown(overlap_matrix_, langs),
                          "Suppression matrix: the row language's KN suppressed, change of P(object) on the "
                          "column language's prompts (random same-size sets)":
                              matrices.suppression_shown(suppression_matrix_, langs),
                          "Neurons shared by at least k of the languages": by_k,
                          "Language pairs sharing most, per relation (top 3 by mean Jaccard)":
                              matrices.ranking_shown(ranking)},
                   tables={"overlap": overlaps, "overlap_per_layer": layers, "edits": edits.reset_index(drop=True),
                           "summary_per_seed": per_seed, "edits_summary": summary_edits,
                           "edits_summary_per_seed": edits_per_seed, "overlap_pairs": pairs,
                           "overlap_matrix": overlap_matrix_, "suppression": suppression,
                           "suppression_matrix": suppression_matrix_, "shared_by_k": by_k, "pair_ranking": ranking},
                   figures=_figures(first_seed, summary_edits, langs, pd.DataFrame(matrix_rows),
                                    suppression[suppression["n_neurons"] > 0]),
                   notes=NOTES, files=(report,))
