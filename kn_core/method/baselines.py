"""Statistics of the fact-check against fair baselines (docs/method.md §6; beyond the paper): pure functions.

- :func:`auroc`: the area under the ROC curve of a score for the class "correct" (threshold-free): the
  probability that a random true claim scores above a random wrong one, ties counting one half
  (Mann–Whitney U / (n_true · n_wrong)); NaN without both classes or with NaN scores.
- :func:`bootstrap`: a percentile 95 % interval of any statistic of claims, resampling *facts* (a true claim and
  its wrong twin stay together) within each relation, seeded.
- :func:`fit_logistic` / :func:`logistic_scores`: a logistic regression (Newton–Raphson with a small ridge
  penalty; features standardised on the data it is fitted on) to ask whether the DKN score adds anything to
  the model's own P(candidate): fit on the training claims, score the held-out ones.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from kn_core.defaults import BOOTSTRAP


def auroc(scores: Sequence[float], truth: Sequence[bool]) -> float:
    """AUROC of ``scores`` for ``truth`` (higher score = more likely true), ties counted one half."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    if s.shape != t.shape:
        raise ValueError("one score per claim")
    if not t.any() or t.all() or np.isnan(s).any():
        return math.nan
    pos, neg = s[t], s[~t]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def mean_relation_auroc(scores: Sequence[float] | np.ndarray, truth: Sequence[bool] | np.ndarray,
                        relations: Sequence[str] | np.ndarray) -> float:
    """The mean over relations of each relation's AUROC (scores of different relations are not compared: a
    DKN score's scale is per relation); relations without both classes are left out."""
    s, t, r = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=bool), np.asarray(relations)
    values = [auroc(s[r == rel], t[r == rel]) for rel in dict.fromkeys(r.tolist())]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def bootstrap(statistic: Callable[[np.ndarray], float], groups: Sequence[str] | np.ndarray,
              strata: Sequence[str] | np.ndarray,
              n: int = BOOTSTRAP, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``statistic(index)`` over ``n`` resamples: the claims' ``groups`` (fact ids) are
    drawn with replacement within each of their ``strata`` (relations) and every claim of a drawn group is
    kept. ``statistic`` gets the row indices of a resample (repeats included). (NaN, NaN) when no resample
    gives a number."""
    groups, strata = np.asarray(groups), np.asarray(strata)
    by_stratum: dict[str, dict[str, np.ndarray]] = {}
    for stratum in dict.fromkeys(strata.tolist()):
        rows = np.flatnonzero(strata == stratum)
        by_stratum[stratum] = {g: rows[groups[rows] == g] for g in dict.fromkeys(groups[rows].tolist())}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        picked = []
        for members in by_stratum.values():
            keys = list(members)
            picked += [members[keys[i]] for i in rng.integers(len(keys), size=len(keys))]
        value = statistic(np.concatenate(picked) if picked else np.zeros(0, dtype=int))
        if not math.isnan(value):
            values.append(value)
    if not values:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def fit_logistic(features: np.ndarray, truth: Sequence[bool], ridge: float = 1e-3,
                 iterations: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logistic regression of ``truth`` on ``features`` [n, k]: (weights [k + 1] with the intercept first, the
    features' means, their sds) — features are standardised with these before the fit."""
    x = np.asarray(features, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / sd])
    y = np.asarray(truth, dtype=np.float64)
    w = np.zeros(z.shape[1])
    penalty = ridge * np.eye(z.shape[1])
    penalty[0, 0] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (p - y) + penalty @ w
        hess = z.T @ (z * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w, mean, sd


def logistic_scores(model: tuple[np.ndarray, np.ndarray, np.ndarray], features: np.ndarray) -> np.ndarray:
    """The fitted model's P(correct) for each row of ``features``."""
    w, mean, sd = model
    x = np.asarray(features, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / sd])
    return 1 / (1 + np.exp(-np.clip(z @ w, -30, 30)))


__all__ = ["auroc", "bootstrap", "fit_logistic", "logistic_scores", "mean_relation_auroc"]
