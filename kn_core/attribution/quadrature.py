"""Quadrature rules for the IG path integral ∫₀¹ ∂P(b + α(a − b))/∂z dα: m points α_k with weights w_k.

- ``riemann-right`` (default; the paper's rule, METHOD.md §1): α_k = k/m, w_k = 1/m, k = 1 … m. Its last
  point is α = 1, the clean activation, which every layer and baseline path share (the fast engine takes its
  gradient from the clean pass).
- ``gauss-legendre`` (Captum's default): the m Gauss–Legendre nodes and weights mapped from [−1, 1] to
  [0, 1]. Exact for polynomials of degree 2m − 1 along the path; no node is α = 1, so all m points are
  computed. ``bench/bench_quadrature.py`` measures the completeness residual of both rules against m.

A registry of plain functions: name → m → :class:`Rule`.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from kn_core.errors import InputError

DEFAULT_RULE = "riemann-right"


class Rule(NamedTuple):
    """The points α [m] in (0, 1] and their weights [m] (summing to 1), float64, ascending α."""

    alphas: np.ndarray
    weights: np.ndarray


def riemann_right(steps: int) -> Rule:
    return Rule(np.arange(1, steps + 1, dtype=np.float64) / steps, np.full(steps, 1.0 / steps))


def gauss_legendre(steps: int) -> Rule:
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return Rule((nodes + 1.0) / 2.0, weights / 2.0)


RULES: dict[str, Callable[[int], Rule]] = {"riemann-right": riemann_right, "gauss-legendre": gauss_legendre}
CAPTUM_METHODS = {"riemann-right": "riemann_right", "gauss-legendre": "gausslegendre"}  # Captum's names


def check_rule(name: object) -> str:
    """``name`` when it names a rule, else an :class:`InputError` listing the rules."""
    if not isinstance(name, str) or name not in RULES:
        raise InputError("rule", f"unknown quadrature rule {name!r}; choose one of {', '.join(RULES)}")
    return name


def rule(name: str, steps: int) -> Rule:
    """The ``steps`` points and weights of the rule ``name``."""
    return RULES[check_rule(name)](steps)
