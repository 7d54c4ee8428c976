"""Small shared records: a neuron, a scored neuron and the progress callback.

Both are named tuples, so ``(layer, index)`` and ``(layer, index, score)`` tuples keep working wherever
a neuron is expected, and ``neuron.layer`` / ``neuron.index`` read better than ``n[0]`` / ``n[1]``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

Progress = Callable[[float], None]
"""A progress callback: called with the fraction done, 0..1."""


class Neuron(NamedTuple):
    """An FFN post-activation unit: ``layer`` (0-based) and ``index`` within the layer's d_ff units."""

    layer: int
    index: int  # type: ignore[assignment]  # a field named like tuple.index: mypy objects; at runtime the field wins


class ScoredNeuron(NamedTuple):
    """A neuron with its attribution score (the selection functions return these, highest first)."""

    layer: int
    index: int  # type: ignore[assignment]  # a field named like tuple.index: mypy objects; at runtime the field wins
    score: float

    @property
    def neuron(self) -> Neuron:
        return Neuron(self.layer, self.index)
