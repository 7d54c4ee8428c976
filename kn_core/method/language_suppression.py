"""The cross-language suppression matrix (docs/method.md §3, N languages): suppress language A's knowledge neurons
of a fact (×0 at the target positions, as in §2) and measure the relative change of P(object) on the fact's
language-B prompts, for every pair (A, B); the diagonal is each language's own effect.

The control (as in §6, :func:`kn_core.method.controls.random_sets`): for each A, ``draws`` random sets with as many
neurons per layer as A's set (never A's own neurons), each suppressed on every language's prompts; per cell their
mean, sample sd and the rank of the set's own change among them (the share of draws that lower P(object) as much or
more). One batched forward pass per prompt serves every language's set and all its draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from kn_core.data.prompts import Prompt
from kn_core.defaults import RANDOM_DRAWS
from kn_core.errors import InputError
from kn_core.method.controls import random_sets, suppression_changes
from kn_core.method.languages import as_sets

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel


@dataclass(frozen=True)
class SuppressionMatrix:
    """Suppression of each language's set measured in each language (rows: the suppressed set's language A;
    columns: the prompts' language B; both in ``langs`` order). Arrays are read-only.

    change: float [N, N], mean relative change of P(object) over B's prompts (NaN: B has no prompt; 0.0 for an
    empty set). random_mean, random_sd: float [N, N], the mean and sample sd over ``draws`` random same-size sets
    in A's layers of their (prompt-mean) change. random_rank: float [N, N], the share of draws whose change is as
    low as ``change`` or lower (small: beyond random). sizes: int [N], each set's size. n_prompts: int [N].
    """

    langs: tuple[str, ...]
    change: np.ndarray
    random_mean: np.ndarray
    random_sd: np.ndarray
    random_rank: np.ndarray
    sizes: np.ndarray
    n_prompts: np.ndarray
    draws: int

    def own(self) -> dict[str, float]:
        """Each language's own effect: the diagonal."""
        return {lang: float(self.change[i, i]) for i, lang in enumerate(self.langs)}

    def rows(self) -> list[dict]:
        """One record per (suppressed, measured) cell, for tables."""
        return [{"suppressed": a, "n_neurons": int(self.sizes[i]), "measured": b, "n_prompts": int(self.n_prompts[j]),
                 "change": float(self.change[i, j]), "random_mean": float(self.random_mean[i, j]),
                 "random_sd": float(self.random_sd[i, j]), "random_rank": float(self.random_rank[i, j])}
                for i, a in enumerate(self.langs) for j, b in enumerate(self.langs)]


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def suppression_matrix(lm: LanguageModel, prompts: Mapping[str, Sequence[Prompt]],
                       sets: Mapping[str, Iterable[Sequence]], draws: int = RANDOM_DRAWS,
                       seed: int = 0) -> SuppressionMatrix:
    """Suppress each language's set (``sets``: language -> neurons) on every language's ``prompts`` (language ->
    the fact's prompts there), with ``draws`` random same-size sets per language (seeded) as the control."""
    langs = tuple(sets)
    missing = [lang for lang in langs if lang not in prompts]
    if missing:
        raise InputError("langs", f"no prompts given for {', '.join(missing)}; prompts are given for "
                                  f"{', '.join(prompts) or 'none'}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 2:
        raise InputError("draws", f"need at least 2 random draws for a mean and sd (got {draws!r}); "
                                  f"the default is {RANDOM_DRAWS}")
    found = as_sets(sets, lm.n_layers)
    chosen = [sorted(found[lang]) for lang in langs]
    rows: list[list] = []
    for neurons in chosen:  # per language: its set, then its draws
        rows += [neurons, *random_sets(neurons, lm.d_ff, seed, draws)]
    n, width = len(langs), 1 + draws
    change, r_mean, r_sd, r_rank = (np.full((n, n), np.nan) for _ in range(4))
    for j, b in enumerate(langs):
        if not prompts[b]:
            continue
        per_prompt = np.array([suppression_changes(lm, p, rows) for p in prompts[b]])  # [prompts, n · (1 + draws)]
        means = per_prompt.mean(axis=0).reshape(n, width)
        for i in range(n):
            own, rand = means[i, 0], means[i, 1:]
            change[i, j] = own
            r_mean[i, j] = rand.mean()
            r_sd[i, j] = rand.std(ddof=1)
            r_rank[i, j] = float(np.mean(rand <= own)) if chosen[i] else math.nan
    return SuppressionMatrix(langs=langs, change=_frozen(change), random_mean=_frozen(r_mean),
                             random_sd=_frozen(r_sd), random_rank=_frozen(r_rank),
                             sizes=_frozen(np.array([len(c) for c in chosen], dtype=int)),
                             n_prompts=_frozen(np.array([len(prompts[lang]) for lang in langs], dtype=int)),
                             draws=draws)


__all__ = ["SuppressionMatrix", "suppression_matrix"]
