"""Metrics of the fact-checking protocol (docs/method.md §5): confusion counts of the class "correct", both P / R
conventions, and the choice of the threshold λ.

Only claims that got a verdict are counted: a claim left without one (its relation has no DKN set) is in
no cell of a :class:`Confusion`, and a :class:`Confusion` of no claim has no metric (NaN), not 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from kn_core.errors import InputError

OBJECTIVES = ("f1", "balanced_accuracy")
METRICS = ("P", "R", "F1", "authors_P", "authors_R", "accept_true", "accept_wrong", "balanced_accuracy")


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


@dataclass(frozen=True)
class Confusion:
    """Confusion counts of the class "correct": tp = true claims accepted, fp = wrong claims accepted,
    fn = true claims rejected, tn = wrong claims rejected. Ratios with a zero denominator are 0.0."""

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, truth: Iterable[bool], accepted: Iterable[bool]) -> "Confusion":
        pairs = list(zip(truth, accepted, strict=True))
        return cls(tp=sum(t and a for t, a in pairs), fp=sum(not t and a for t, a in pairs),
                   fn=sum(t and not a for t, a in pairs), tn=sum(not t and not a for t, a in pairs))

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        """Conventional precision of "correct": tp / (tp + fp)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Conventional recall of "correct": tp / (tp + fn) — the accept rate of true claims."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def accept_true(self) -> float:
        return self.recall

    @property
    def accept_wrong(self) -> float:
        """Share of wrong claims accepted: fp / (fp + tn)."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def balanced_accuracy(self) -> float:
        return (self.recall + 1 - self.accept_wrong) / 2

    @property
    def authors_precision(self) -> float:
        """The authors' "P" (docs/method.md §5): roles swapped, so it is our recall."""
        return self.recall

    @property
    def authors_recall(self) -> float:
        """The authors' "R": our precision."""
        return self.precision

    def metrics(self) -> dict[str, float]:
        """Every ratio by name (P/R/F1 conventional, the authors' P/R, accept rates, balanced accuracy); all
        NaN when no claim was counted (no verdict to measure)."""
        if self.n == 0:
            return dict.fromkeys(METRICS, math.nan)
        return {"P": self.precision, "R": self.recall, "F1": self.f1, "authors_P": self.authors_precision,
                "authors_R": self.authors_recall, "accept_true": self.accept_true, "accept_wrong": self.accept_wrong,
                "balanced_accuracy": self.balanced_accuracy}

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise InputError("objective", f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    return objective


def choose_threshold(scores: Sequence[float], truth: Sequence[bool], objective: str = "f1") -> float:
    """λ maximising ``objective`` ("f1" of class "correct", or "balanced_accuracy") for the rule score ≥ λ.

    Ties go to the other metric, then to the larger λ. λ sits halfway between the chosen score and the next
    lower one, so the training decisions are unchanged but unseen scores are not judged on a knife edge;
    when every claim is accepted, λ is the lowest score.
    """
    check_objective(objective)
    if not len(scores) or len(scores) != len(truth):
        raise InputError("scores", "need one score per claim and at least one claim to calibrate λ on")
    values = np.unique(np.asarray(scores, dtype=np.float64))
    other = OBJECTIVES[1 - OBJECTIVES.index(objective)]

    def key(i: int) -> tuple[float, float, float]:
        confusion = Confusion.of(truth, (s >= values[i] for s in scores))
        return getattr(confusion, objective), getattr(confusion, other), values[i]

    best = max(range(len(values)), key=key)
    return float(values[best] if best == 0 else (values[best] + values[best - 1]) / 2)


__all__ = ["METRICS", "OBJECTIVES", "Confusion", "check_objective", "choose_threshold"]
