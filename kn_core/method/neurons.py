"""Knowledge-neuron selection (docs/method.md §2): pure functions over attribution matrices.

A neuron is a :class:`~kn_core.types.Neuron` ``(layer, index)``; selections are returned as
:class:`~kn_core.types.ScoredNeuron` ``(layer, index, score)``, highest score first (both are named tuples).
"""
from __future__ import annotations

import numbers
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from kn_core.defaults import P_SHARE as DEFAULT_P
from kn_core.defaults import FALLBACK_TAU, TAU
from kn_core.errors import InputError
from kn_core.types import Neuron, ScoredNeuron

__all__ = ["DEFAULT_P", "TAU", "Neuron", "ScoredNeuron", "default_tau", "check_tau", "check_p", "coarse_neurons",
           "refine", "knowledge_neurons", "per_layer_counts"]


def default_tau(lang: str) -> float:
    """The paper's τ for ``lang`` (en 0.3, zh 0.2); for a language the paper gives none for, the English value
    :data:`~kn_core.defaults.FALLBACK_TAU`. The one rule for τ: the CLI, the app and the experiments all use it."""
    return TAU.get(lang, FALLBACK_TAU)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_tau(tau: float) -> float:
    if not _is_number(tau) or not 0 < tau <= 1:
        raise InputError("tau", f"must lie in (0, 1] (got {tau!r}); the paper uses 0.2–0.3")
    return float(tau)


def check_p(p: float) -> float:
    if not _is_number(p) or not 0 <= p <= 1:
        raise InputError("p", f"must lie in [0, 1] (got {p!r}); the paper uses {DEFAULT_P}")
    return float(p)


def coarse_neurons(scores: np.ndarray, tau: float) -> list[ScoredNeuron]:
    """Neurons with score > τ · max(scores) over the whole [n_layers, d_ff] matrix."""
    tau = check_tau(tau)
    peak = float(np.max(scores)) if scores.size else 0.0
    if peak <= 0:
        return []
    layers, indices = np.nonzero(scores > tau * peak)
    picked = [ScoredNeuron(int(layer), int(index), float(scores[layer, index]))
              for layer, index in zip(layers, indices)]
    return sorted(picked, key=lambda n: -n[2])


def refine(coarse_sets: Sequence[Iterable[Neuron]], p: float = DEFAULT_P) -> set[Neuron]:
    """Neurons coarse in more than a fraction p of the prompts; with one prompt, the coarse set itself."""
    p = check_p(p)
    sets = [{Neuron(int(n[0]), int(n[1])) for n in neurons} for neurons in coarse_sets]
    if len(sets) == 1:
        return sets[0]
    counts = Counter(neuron for s in sets for neuron in s)
    return {neuron for neuron, count in counts.items() if count / len(sets) > p}


def knowledge_neurons(score_matrices: Sequence[np.ndarray], tau: float, p: float = DEFAULT_P) -> list[ScoredNeuron]:
    """Refined knowledge neurons of a fact from its prompts' matrices, scored by their mean attribution."""
    refined = refine([[Neuron(layer, index) for layer, index, _ in coarse_neurons(m, tau)] for m in score_matrices], p)
    mean = np.mean(np.stack(score_matrices), axis=0)
    return sorted((ScoredNeuron(layer, index, float(mean[layer, index])) for layer, index in refined),
                  key=lambda n: -n[2])


def per_layer_counts(neurons: Iterable[Sequence], n_layers: int) -> np.ndarray:
    """How many of ``neurons`` sit in each layer: int [n_layers]."""
    counts = np.zeros(n_layers, dtype=int)
    for neuron in neurons:
        counts[int(neuron[0])] += 1
    return counts
