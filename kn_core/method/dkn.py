"""Degenerate knowledge neurons (docs/method.md §4).

Degenerate neurons carry the same fact redundantly: suppressing one of them barely lowers P(object),
suppressing them together does. Per prompt:

1. candidates: the top-K *knowledge neurons* of the prompt by attribution score — only neurons above
   τ · max(score), τ of the prompt's language (the coarse selection of docs/method.md §2; the authors' code:
   ``neurons[:20]`` after thresholding) — not the top-K of all positive scores;
2. aggregate: keep those whose suppression *alone* lowers P by at most ``t_low`` (relative);
3. filter: a pair of kept neurons is degenerate when suppressing *both* lowers P by more than ``t_high``.

Beyond pairs (``max_size > 2``) groups grow level by level under the same two conditions: a group of size s
is tried only when all of its (s−1)-subsets were tried and stayed quiet (dropped ≤ ``t_low``), and it is
degenerate when suppressing all of it drops P by more than ``t_high``. So every proper subset of a
degenerate group is quiet — a *minimal* degenerate group, which for s = 2 is exactly the paper's pair.

All suppressions of one level share batched forward passes (:func:`~kn_core.method.interventions.object_probs`,
``chunk`` sets per pass); no set is evaluated twice, and P0 rides in the first pass with the single neurons.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from kn_core.data import FrozenMapping
from kn_core.data.prompts import Prompt
from kn_core.defaults import DKN_T, T_HIGH, T_LOW, TOP_K
from kn_core.errors import InputError
from kn_core.method.interventions import FACTORS, object_probs
from kn_core.method.neurons import Neuron, ScoredNeuron, check_tau, coarse_neurons

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

MAX_GROUP_SIZE = 5  # the level-wise search grows combinatorially; larger groups are not offered
CHUNK = 128  # neuron sets per batched forward pass
Group = tuple[Neuron, ...]


@dataclass(frozen=True)
class DKNResult:
    """Degenerate knowledge neurons of one prompt.

    prompt: the prompt the suppressions ran on; p0: its unmodified P(object).
    candidates: the top-K knowledge neurons (score > τ · max) as ``(layer, index, score)``, best first.
    single_drop: neuron -> relative drop (P0 − P) / P0 when suppressed alone (positive = P went down;
        0.0 for every neuron when P0 = 0).
    kept: candidates whose single drop ≤ t_low (the aggregate step), in candidate order.
    group_drop: every tried group of size ≥ 2 (neurons sorted) -> its relative drop.
    pairs: degenerate pairs (neurons sorted), sorted; pairs may share neurons.
    groups: degenerate groups of size 3..max_size, sorted (empty when max_size = 2).
    forward_passes: batched forward passes actually run.
    """

    prompt: Prompt
    p0: float
    candidates: tuple[ScoredNeuron, ...]
    single_drop: Mapping[Neuron, float]
    kept: tuple[Neuron, ...]
    group_drop: Mapping[Group, float]
    pairs: tuple[tuple[Neuron, Neuron], ...]
    groups: tuple[Group, ...]
    forward_passes: int
    top_k: int
    t_low: float
    t_high: float
    max_size: int
    tau: float | None = None  # the knowledge-neuron threshold the candidates were taken above

    @property
    def neurons(self) -> tuple[Neuron, ...]:
        """Every neuron in a degenerate pair or group, sorted."""
        return tuple(sorted({n for group in (*self.pairs, *self.groups) for n in group}))


def check_settings(top_k: int, t_low: float, t_high: float, max_size: int) -> None:
    """Raise :class:`InputError` unless the DKN search's settings are usable (1 ≤ top_k; 0 ≤ T_low ≤ T_high < 1;
    2 ≤ max_size ≤ MAX_GROUP_SIZE)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError("top_k", f"must be a whole number ≥ 1 (got {top_k!r}); the paper uses {TOP_K}")
    if not 0 <= t_low <= t_high < 1:
        raise InputError("thresholds", f"need 0 ≤ T_low ≤ T_high < 1 (got {t_low!r}, {t_high!r}); "
                                       f"the paper uses {T_LOW} and {T_HIGH}")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or not 2 <= max_size <= MAX_GROUP_SIZE:
        raise InputError("max_size", f"must be a whole number from 2 to {MAX_GROUP_SIZE} (got {max_size!r})")


def top_candidates(scores: np.ndarray, top_k: int, tau: float) -> tuple[ScoredNeuron, ...]:
    """The ``top_k`` knowledge neurons of a [n_layers, d_ff] score matrix — the neurons with score > τ · max
    (:func:`~kn_core.method.neurons.coarse_neurons`), ``tau`` being the language's τ — as
    ``(layer, index, score)``, best first (ties broken by position). Fewer than ``top_k`` when fewer pass τ;
    none when no score is positive."""
    return tuple(coarse_neurons(np.asarray(scores), check_tau(tau))[:top_k])


def _suppress(lm: LanguageModel, prompt: Prompt, sets: Sequence[Sequence[Neuron]],
              chunk: int) -> tuple[np.ndarray, int]:
    """P(object) with each set suppressed, ``chunk`` sets per forward pass: (probs [len(sets)], passes run)."""
    parts = [object_probs(lm, prompt, sets[i:i + chunk], FACTORS["suppress"]) for i in range(0, len(sets), chunk)]
    return (np.concatenate(parts) if parts else np.zeros(0)), len(parts)


def _relative_drop(p0: float, probs: np.ndarray) -> np.ndarray:
    return (p0 - probs) / p0 if p0 > 0 else np.zeros_like(probs)


def _next_level(quiet: set[Group], kept: Sequence[Neuron], size: int) -> list[Group]:
    """Groups of ``size`` whose every (size−1)-subset is quiet (pairs: every pair of kept neurons)."""
    if size == 2:
        return [tuple(sorted(pair)) for pair in combinations(kept, 2)]
    out = []
    for group in sorted(quiet):
        for neuron in kept:
            if neuron > group[-1]:
                grown = group + (neuron,)
                if all(sub in quiet for sub in combinations(grown, size - 1)):
                    out.append(grown)
    return out


def degenerate(lm: LanguageModel, prompt: Prompt, scores: np.ndarray, top_k: int = TOP_K, t_low: float = T_LOW,
               t_high: float = T_HIGH, max_size: int = 2, chunk: int = CHUNK, *, tau: float) -> DKNResult:
    """Degenerate pairs (and, with ``max_size`` > 2, larger minimal groups) of ``prompt`` among its top-K
    knowledge neurons: those of ``scores`` (its attribution matrix [n_layers, d_ff]) above ``tau`` · max, where
    ``tau`` is the τ of the prompt's language (e.g. ``default_tau(lang)``; required, since it decides the
    candidates)."""
    check_settings(top_k, t_low, t_high, max_size)
    tau = check_tau(tau)
    if np.shape(scores) != (lm.n_layers, lm.d_ff):
        raise InputError("scores", f"shape {np.shape(scores)} does not match the model's "
                                   f"[{lm.n_layers}, {lm.d_ff}] neurons")
    candidates = top_candidates(scores, top_k, tau)
    singles = [Neuron(layer, index) for layer, index, _ in candidates]
    probs, passes = _suppress(lm, prompt, [[], *[[n] for n in singles]], chunk)
    p0 = float(probs[0])
    single_drop = dict(zip(singles, (float(d) for d in _relative_drop(p0, probs[1:]))))
    kept = tuple(n for n in singles if single_drop[n] <= t_low)
    group_drop: dict[Group, float] = {}
    found: list[Group] = []
    quiet: set[Group] = {(n,) for n in kept}
    for size in range(2, max_size + 1):
        level = _next_level(quiet, sorted(kept), size)
        probs, ran = _suppress(lm, prompt, level, chunk)
        passes += ran
        drops = _relative_drop(p0, probs)
        group_drop.update(zip(level, (float(d) for d in drops)))
        found += [g for g, d in zip(level, drops) if d > t_high]
        quiet = {g for g, d in zip(level, drops) if d <= t_low}
    return DKNResult(prompt=prompt, p0=p0, candidates=candidates, single_drop=FrozenMapping(single_drop),
                     kept=kept, group_drop=FrozenMapping(group_drop),
                     pairs=tuple(sorted(g for g in found if len(g) == 2)),
                     groups=tuple(sorted(g for g in found if len(g) > 2)), forward_passes=passes, top_k=top_k,
                     t_low=t_low, t_high=t_high, max_size=max_size, tau=tau)


def pair_counts(results: Iterable[DKNResult]) -> Counter[Neuron]:
    """How many degenerate pairs each neuron appears in, over many prompts."""
    return Counter(n for result in results for pair in result.pairs for n in pair)


def check_t(t: float) -> float:
    """``t`` of :func:`dkn_set`, checked: a fraction in [0, 1]."""
    if not 0 <= t <= 1:
        raise InputError("t", f"must lie in [0, 1] (got {t!r}); the paper uses {DKN_T}")
    return t


def dkn_set(counts: Mapping[Neuron, int], t: float = DKN_T) -> tuple[Neuron, ...]:
    """A relation's DKN set (docs/method.md §5): neurons whose pair count exceeds ⌊t · max count⌋, most frequent
    first (ties by position); empty when no pair was found."""
    check_t(t)
    if not counts:
        return ()
    floor = math.floor(t * max(counts.values()))
    return tuple(sorted((n for n, c in counts.items() if c > floor), key=lambda n: (-counts[n], n)))
