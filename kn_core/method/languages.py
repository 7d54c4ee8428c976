"""Language-independent knowledge neurons across N languages (docs/method.md §3, generalised): pure set maths.

A fact's refined knowledge neurons in each of N languages (``sets``: language -> ``(layer, index[, score])``
items, in the order the languages are compared) give

- the per-language depth profile (:func:`depth_counts`),
- the language × language overlap matrix (:func:`overlap_matrix`, Jaccard; 1 on the diagonal for a non-empty set),
- its baselines (:func:`baseline_matrix`): the fact's language-A set against *other* facts' language-B sets (of
  the same relation, or of other relations),
- the neurons shared by at least k of the N languages (:func:`shared_by`; k = N = 2 is the two-language LIKN),
- the neuron sets the cross-lingual edit compares (:func:`edit_sets_n`; N = 2 gives :func:`likn.edit_sets`),
- and, over many facts, which language pairs share most per relation (:func:`pair_ranking`).

Nothing here runs a model; :mod:`kn_core.method.language_suppression` measures the suppression matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from kn_core.errors import InputError
from kn_core.method.likn import neuron_set
from kn_core.method.neurons import Neuron, per_layer_counts

PAIR_COLUMNS = ("relation", "lang_a", "lang_b", "jaccard", "facts", "rank")


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    array.setflags(write=False)
    return array


def check_langs(langs: Sequence[str], minimum: int = 2) -> tuple[str, ...]:
    """``langs`` as a tuple of distinct codes, at least ``minimum`` of them."""
    langs = tuple(langs)
    if len(set(langs)) != len(langs):
        raise InputError("langs", f"each language once, please (got {', '.join(langs)})")
    if len(langs) < minimum:
        raise InputError("langs", f"comparing languages needs at least {minimum} (got {', '.join(langs) or 'none'}); "
                                  "e.g. en,zh")
    return langs


def as_sets(sets: Mapping[str, Iterable[Sequence]], n_layers: int) -> dict[str, frozenset[Neuron]]:
    """Every language's neurons as a frozenset of ``(layer, index)``, layers checked against ``n_layers``."""
    return {lang: frozenset(neuron_set(neurons, n_layers)) for lang, neurons in sets.items()}


def jaccard(a: Iterable[Sequence], b: Iterable[Sequence]) -> float:
    """|a ∩ b| / |a ∪ b| of two neuron collections, by ``(layer, index)``; 0.0 when both are empty (as
    :func:`kn_core.method.likn.overlap`)."""
    set_a = {(int(n[0]), int(n[1])) for n in a}
    set_b = {(int(n[0]), int(n[1])) for n in b}
    union = set_a | set_b
    return len(set_a & set_b) / len(union) if union else 0.0


def depth_counts(sets: Mapping[str, Iterable[Sequence]], n_layers: int) -> dict[str, tuple[int, ...]]:
    """Language -> its neurons per layer: int tuple of length ``n_layers`` (relative depth is
    :func:`kn_core.runs.queries.relative_depth`)."""
    return {lang: tuple(int(c) for c in per_layer_counts(s, n_layers)) for lang, s in as_sets(sets, n_layers).items()}


@dataclass(frozen=True)
class OverlapMatrix:
    """Pairwise overlap of N languages' neuron sets (rows and columns in ``langs`` order).

    langs: the N languages. sizes: int [N], each set's size. shared: int [N, N], |A ∩ B| (the diagonal: |A|).
    jaccard: float [N, N], symmetric, |A ∩ B| / |A ∪ B|; the diagonal is 1.0 for a non-empty set, 0.0 for an
    empty one (0.0 wherever both sets are empty). Arrays are read-only.
    """

    langs: tuple[str, ...]
    sizes: np.ndarray
    shared: np.ndarray
    jaccard: np.ndarray

    def pairs(self) -> list[tuple[str, str, float]]:
        """``(lang_a, lang_b, jaccard)`` for each unordered pair, a before b in ``langs`` order."""
        return [(self.langs[i], self.langs[j], float(self.jaccard[i, j]))
                for i, j in combinations(range(len(self.langs)), 2)]

    def mean_pairwise(self) -> float:
        """The mean Jaccard over the N(N−1)/2 pairs (NaN for fewer than two languages)."""
        values = [j for _, _, j in self.pairs()]
        return float(np.mean(values)) if values else math.nan


def overlap_matrix(sets: Mapping[str, Iterable[Sequence]], n_layers: int) -> OverlapMatrix:
    """The language × language overlap of ``sets`` (language -> neurons)."""
    langs = tuple(sets)
    found = as_sets(sets, n_layers)
    n = len(langs)
    shared = np.zeros((n, n), dtype=int)
    values = np.zeros((n, n), dtype=float)
    for i, a in enumerate(langs):
        for j, b in enumerate(langs):
            both, union = found[a] & found[b], found[a] | found[b]
            shared[i, j] = len(both)
            values[i, j] = len(both) / len(union) if union else 0.0
    return OverlapMatrix(langs=langs, sizes=_frozen(np.array([len(found[lang]) for lang in langs], dtype=int)),
                         shared=_frozen(shared), jaccard=_frozen(values))


def baseline_matrix(sets: Mapping[str, Iterable[Sequence]], others: Sequence[Mapping[str, Iterable[Sequence]]],
                    n_layers: int) -> np.ndarray:
    """The control for :func:`overlap_matrix`: cell [A, B] is the mean, over the ``others`` (other facts: language
    -> neurons) that have language B, of Jaccard(this fact's A set, the other fact's B set). NaN where no other fact
    has B. Not symmetric (rows: this fact's language; columns: the other fact's). Returns float [N, N] in the order
    of ``sets``. With one other fact, cell [a, b] is the two-language experiment's ``jaccard_same_relation`` (or
    ``jaccard_other_relation``)."""
    langs = tuple(sets)
    found = as_sets(sets, n_layers)
    other_sets = [as_sets(other, n_layers) for other in others]
    out = np.full((len(langs), len(langs)), np.nan)
    for j, b in enumerate(langs):
        columns = [other[b] for other in other_sets if b in other]
        if not columns:
            continue
        for i, a in enumerate(langs):
            out[i, j] = float(np.mean([jaccard(found[a], column) for column in columns]))
    return _frozen(out)


@dataclass(frozen=True)
class SharedNeurons:
    """The neurons in at least ``k`` of the N languages' sets ("language-independent", generalised).

    langs: the N languages. neurons: sorted ``(layer, index)``. languages: for each neuron, the languages whose
    set holds it (in ``langs`` order). per_layer: int tuple [n_layers], the shared neurons in each layer.
    by_k: int tuple [N], entry k−1 the number of neurons in at least k languages (non-increasing in k).
    """

    k: int
    langs: tuple[str, ...]
    neurons: tuple[Neuron, ...]
    languages: tuple[tuple[str, ...], ...]
    per_layer: tuple[int, ...]
    by_k: tuple[int, ...]

    def rows(self) -> list[dict]:
        """One record per shared neuron: layer, neuron, the number of languages and which."""
        return [{"layer": layer, "neuron": index, "languages": len(which), "in": ", ".join(which)}
                for (layer, index), which in zip(self.neurons, self.languages)]


def shared_by(sets: Mapping[str, Iterable[Sequence]], k: int, n_layers: int) -> SharedNeurons:
    """The neurons of ``sets`` (language -> neurons) that at least ``k`` languages share, 1 ≤ k ≤ N. k = N is the
    intersection of all sets; with N = 2 it is :func:`kn_core.method.likn.overlap`'s ``shared``."""
    langs = tuple(sets)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= max(len(langs), 1):
        raise InputError("k", f"must be a whole number from 1 to {len(langs)}, the number of languages (got {k!r})")
    found = as_sets(sets, n_layers)
    holders: dict[Neuron, list[str]] = {}
    for lang in langs:
        for neuron in found[lang]:
            holders.setdefault(neuron, []).append(lang)
    counts = np.array([len(v) for v in holders.values()], dtype=int)
    by_k = tuple(int((counts >= j).sum()) for j in range(1, len(langs) + 1))
    chosen = sorted(n for n, which in holders.items() if len(which) >= k)
    return SharedNeurons(k=int(k), langs=langs, neurons=tuple(chosen),
                         languages=tuple(tuple(holders[n]) for n in chosen),
                         per_layer=tuple(int(c) for c in per_layer_counts(chosen, n_layers)), by_k=by_k)


def edit_sets_n(sets: Mapping[str, Iterable[Sequence]], n_layers: int) -> dict[str, tuple[Neuron, ...]]:
    """The neuron sets a cross-lingual edit of N languages compares: ``"shared"`` (in every language), each
    language's whole set ``"<lang> KN"`` and its exclusive part ``"<lang>-only KN"`` (in no other language). With
    N = 2 this is :func:`kn_core.method.likn.edit_sets`, in the same order."""
    langs = tuple(sets)
    found = as_sets(sets, n_layers)
    everyone = frozenset.intersection(*found.values()) if found else frozenset()
    out: dict[str, tuple[Neuron, ...]] = {"shared": tuple(sorted(everyone))}
    out.update({f"{lang} KN": tuple(sorted(found[lang])) for lang in langs})
    for lang in langs:
        rest = frozenset().union(*(found[o] for o in langs if o != lang))
        out[f"{lang}-only KN"] = tuple(sorted(found[lang] - rest))
    return out


def pair_ranking(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per relation, the language pairs ranked by their mean Jaccard over facts.

    pairs: one row per (fact, language pair), columns ``relation, lang_a, lang_b, jaccard`` (e.g. from
    :meth:`OverlapMatrix.pairs`); rows with a NaN Jaccard are left out. Returns columns ``relation, lang_a,
    lang_b, jaccard`` (the mean), ``facts`` (how many) and ``rank`` (1 = shares most; ties share the better rank),
    relations in first-seen order, best pair first."""
    used = pairs.dropna(subset=["jaccard"])
    if used.empty:
        return pd.DataFrame(columns=list(PAIR_COLUMNS))
    grouped = used.groupby(["relation", "lang_a", "lang_b"], sort=False)["jaccard"]
    table = grouped.agg(jaccard="mean", facts="size").reset_index()
    order = {rid: i for i, rid in enumerate(dict.fromkeys(used["relation"]))}
    table = table.assign(_r=table["relation"].map(order)).sort_values(["_r", "jaccard"], ascending=[True, False],
                                                                      kind="stable")
    table["rank"] = table.groupby("relation", sort=False)["jaccard"].rank(method="min", ascending=False).astype(int)
    return table.drop(columns="_r").reset_index(drop=True)[list(PAIR_COLUMNS)]


__all__ = ["PAIR_COLUMNS", "OverlapMatrix", "SharedNeurons", "as_sets", "baseline_matrix", "check_langs",
           "depth_counts", "edit_sets_n", "jaccard", "overlap_matrix", "pair_ranking", "shared_by"]
