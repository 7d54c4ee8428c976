"""Questions asked of the store for the N-language comparison (Streamlit-free; reading only, computing nothing):
a fact's knowledge neurons in each language whose prompts are all stored, the stored facts that serve as the
overlap matrix's baselines (other facts of the same relation, facts of other relations), and a relation's facts
ranked by what their languages share.

Prompts are every template of the relation in the language (train and held-out, as the Language comparison page
attributes them) that the model can take; τ per language (:func:`kn_core.method.neurons.default_tau`), refinement
share ``p``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from kn_core.attribution import AttributionConfig
from kn_core.data import Fact, FactSet
from kn_core.defaults import CONTROL_FACTS
from kn_core.method.languages import baseline_matrix, overlap_matrix, shared_by
from kn_core.method.neurons import Neuron, default_tau, knowledge_neurons
from kn_core.model.loading import LanguageModel
from kn_core.runs import cached
from kn_core.runs.queries import fact_label
from kn_core.runs.store import ResultStore

BASELINE_FACTS = 2 * CONTROL_FACTS  # stored facts per baseline, at most
SCAN_FACTS = 60  # candidate facts looked up per baseline, at most (a store holding few facts is not scanned whole)


def stored_neurons(store: ResultStore, lm: LanguageModel, factset: FactSet, fact: Fact, lang: str,
                   config: AttributionConfig, p: float) -> list[Neuron] | None:
    """The fact's refined knowledge neurons in ``lang`` when every prompt of it the model can take is stored
    (store or atlas); None when one is missing, or the fact has no such prompt or no ``lang`` labels."""
    if lang not in fact.labels:
        return None
    templates = [t.text for t in factset.relation(fact.relation).templates_for(lang)]
    prompts = lm.prompts(templates, fact.subject(lang), fact.object(lang)).prompts
    if not prompts:
        return None
    results = []
    for prompt in prompts:
        found = cached.attribution(store, lm, prompt, config, lang, compute_missing=False)
        if found is None:
            return None
        results.append(found)
    return [n.neuron for n in knowledge_neurons([r.scores for r in results], default_tau(lang), p)]


def stored_sets(store: ResultStore, lm: LanguageModel, factset: FactSet, fact: Fact, langs: Sequence[str],
                config: AttributionConfig, p: float) -> dict[str, list[Neuron]]:
    """Language -> the fact's knowledge neurons, for each of ``langs`` that is stored (see :func:`stored_neurons`)."""
    found = {lang: stored_neurons(store, lm, factset, fact, lang, config, p) for lang in langs}
    return {lang: neurons for lang, neurons in found.items() if neurons is not None}


@dataclass(frozen=True)
class StoredBaselines:
    """The overlap matrix's two baselines for one fact, from stored facts only.

    same_relation, other_relation: float [N, N] (rows: this fact's language; columns: the other fact's; NaN where
    no stored fact has the column's language), see :func:`kn_core.method.languages.baseline_matrix`.
    same_facts, other_facts: the ids of the stored facts averaged over."""

    langs: tuple[str, ...]
    same_relation: np.ndarray
    other_relation: np.ndarray
    same_facts: tuple[str, ...]
    other_facts: tuple[str, ...]


def _round_robin(factset: FactSet, relation: str) -> list[Fact]:
    """Facts of the other relations, one per relation in turn (file order)."""
    pools = [list(factset.facts_of(rid)) for rid in factset.relations if rid != relation]
    out = []
    while any(pools):
        for pool in pools:
            if pool:
                out.append(pool.pop(0))
    return out


def stored_baselines(store: ResultStore, lm: LanguageModel, factset: FactSet, fact: Fact,
                     sets: dict[str, Sequence[Neuron]], config: AttributionConfig, p: float,
                     limit: int = BASELINE_FACTS, scan: int = SCAN_FACTS) -> StoredBaselines:
    """Baselines of ``sets`` (the fact's language -> neurons): at most ``limit`` other facts of its relation and
    ``limit`` facts of other relations (one relation after another), each with at least one of the languages stored
    (its stored languages are used), among the first ``scan`` candidates of each."""
    langs = tuple(sets)
    groups = []
    for candidates in ([f for f in factset.facts_of(fact.relation) if f.id != fact.id],
                       _round_robin(factset, fact.relation)):
        chosen: list[tuple[str, dict[str, list[Neuron]]]] = []
        for candidate in candidates[:scan]:
            if len(chosen) >= limit:
                break
            found = stored_sets(store, lm, factset, candidate, langs, config, p)
            if found:
                chosen.append((candidate.id, found))
        groups.append(chosen)
    same, other = groups
    return StoredBaselines(langs=langs, same_relation=baseline_matrix(sets, [s for _, s in same], lm.n_layers),
                           other_relation=baseline_matrix(sets, [s for _, s in other], lm.n_layers),
                           same_facts=tuple(i for i, _ in same), other_facts=tuple(i for i, _ in other))


def language_ranking(store: ResultStore, lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str],
                     config: AttributionConfig, p: float) -> pd.DataFrame:
    """The relation's facts stored in every one of ``langs``, ranked by the neurons all of them share, then by
    the mean pairwise Jaccard. Columns: fact, ``KN <lang>`` for each language, ``shared`` (in every language) and
    ``Jaccard`` (the mean over the language pairs; with two languages, the two-language ranking's numbers)."""
    langs = tuple(langs)
    columns = ["fact", *(f"KN {lang}" for lang in langs), "shared", "Jaccard"]
    rows = []
    for fact in factset.facts_of(relation):
        if not all(lang in fact.labels for lang in langs):
            continue
        sets = stored_sets(store, lm, factset, fact, langs, config, p)
        if len(sets) < len(langs):
            continue
        rows.append([fact_label(fact), *(len(sets[lang]) for lang in langs),
                     len(shared_by(sets, len(langs), lm.n_layers).neurons),
                     overlap_matrix(sets, lm.n_layers).mean_pairwise()])
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["shared", "Jaccard"], ascending=False, kind="stable").reset_index(drop=True)


__all__ = ["BASELINE_FACTS", "StoredBaselines", "language_ranking", "stored_baselines", "stored_neurons",
           "stored_sets"]
