"""Quadrature rules for the IG path integral ∫₀¹ ∂P(b + α(a − b))/∂z dα: m points α_k with weights w_k.

- ``riemann-right`` (the paper's rule, docs/method.md §1): α_k = k/m, w_k = 1/m, k = 1 … m. Its last point is
  α = 1, the clean activation, which every layer and baseline path share (the fast engine takes its gradient
  from the clean pass).
- ``riemann-left`` (the numerics of the authors' code: Dai et al.'s ``scaled_input`` in
  Hunter-DDM/knowledge-neurons ``src/1_analyze_mlm.py`` builds ``baseline + step * i`` for i = 0 … m − 1 with
  step (a − b)/m, and the AMIG code derives from it): α_k = (k − 1)/m, w_k = 1/m. Its first point is α = 0,
  the baseline itself. (EleutherAI's ``knowledge-neurons`` package, ``KnowledgeNeurons.scaled_input``, uses
  neither: α = linspace(0, 1, m), weight 1/m each.)
- ``gauss-legendre`` (Captum's default): the m Gauss–Legendre nodes and weights mapped from [−1, 1] to
  [0, 1]. Exact for polynomials of degree 2m − 1 along the path; no node is α = 1, so all m points are
  computed.
- ``gauss-legendre-adaptive``: Gauss–Legendre m, then every (layer, baseline path) whose own completeness
  residual exceeds :data:`ADAPTIVE_BOUND` of the change it integrates is integrated again with 2m, 4m, …
  points (up to :data:`ADAPTIVE_MAX_STEPS`) and spliced in (:func:`integrate`). Some masked paths are nearly
  a step in P (a jump between two α), where a fixed low-m rule is erratic; the residual is what flags them.

``bench/bench_quadrature.py`` measures every rule's score error against m on the real models.

A registry of plain functions: name → m → :class:`Rule`.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from kn_core.data.prompts import Prompt
    from kn_core.model.loading import LanguageModel

from kn_core.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_RULE = "riemann-right"


class Rule(NamedTuple):
    """The points α [m] in [0, 1] and their weights [m] (summing to 1), float64, ascending α."""

    alphas: np.ndarray
    weights: np.ndarray


def riemann_right(steps: int) -> Rule:
    return Rule(np.arange(1, steps + 1, dtype=np.float64) / steps, np.full(steps, 1.0 / steps))


def riemann_left(steps: int) -> Rule:
    return Rule(np.arange(0, steps, dtype=np.float64) / steps, np.full(steps, 1.0 / steps))


def gauss_legendre(steps: int) -> Rule:
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return Rule((nodes + 1.0) / 2.0, weights / 2.0)


RULES: dict[str, Callable[[int], Rule]] = {"riemann-right": riemann_right, "riemann-left": riemann_left,
                                           "gauss-legendre": gauss_legendre,
                                           "gauss-legendre-adaptive": gauss_legendre}  # its first pass
ADAPTIVE: dict[str, str] = {"gauss-legendre-adaptive": "gauss-legendre"}  # adaptive rule → the rule it refines
CAPTUM_METHODS = {"riemann-right": "riemann_right", "riemann-left": "riemann_left",
                  "gauss-legendre": "gausslegendre", "gauss-legendre-adaptive": "gausslegendre"}  # Captum's names

ADAPTIVE_BOUND = 0.01  # refine a (layer, path) whose |residual| exceeds this share of |P(a) − P(b_j)| …
ADAPTIVE_FLOOR = 1e-3  # … or of this, where the path changes P by less
ADAPTIVE_MAX_STEPS = 64  # m doubles up to this


def check_rule(name: object) -> str:
    """``name`` when it names a rule, else an :class:`InputError` listing the rules."""
    if not isinstance(name, str) or name not in RULES:
        raise InputError("rule", f"unknown quadrature rule {name!r}; choose one of {', '.join(RULES)}")
    return name


def rule(name: str, steps: int) -> Rule:
    """The ``steps`` points and weights of the rule ``name`` (an adaptive rule: those of its first pass)."""
    return RULES[check_rule(name)](steps)


def needs_refining(path_sums: torch.Tensor, path_deltas: torch.Tensor, bound: float = ADAPTIVE_BOUND,
                   floor: float = ADAPTIVE_FLOOR) -> torch.Tensor:
    """Which (path, layer) to integrate again: |δ_j| > bound · max(|P(a) − P(b_j)|, floor) for some object
    token (``path_sums``, ``path_deltas`` [n_paths, k, layers], as in :class:`Integrals`): bool [n_paths, layers]."""
    gaps = (path_sums - path_deltas).abs()  # Σ Attr − δ = P(a) − P(b_j)
    return (path_deltas.abs() > bound * gaps.clamp(min=floor)).any(dim=1)


def integrate(engine: Callable, lm: LanguageModel, prompt: Prompt, clean: torch.Tensor, start: torch.Tensor,
              layers: Sequence[int], steps: int, progress: Callable[[float], None], rule: str = DEFAULT_RULE):
    """``engine``'s :class:`~kn_core.attribution.result.Integrals` by the rule ``rule``; for an adaptive rule,
    the first pass at ``steps`` points, then each (layer, path) that :func:`needs_refining` again at twice the
    points, path by path on its flagged layers only, until none is flagged or m reaches
    :data:`ADAPTIVE_MAX_STEPS`. A refined path's new integral replaces its old one in the paths' mean (the old
    one is computed again, alone, to be taken out: the first pass only keeps the mean)."""
    base = ADAPTIVE.get(rule)
    if base is None:
        return engine(lm, prompt, clean, start, layers, steps, progress, rule=rule)
    from kn_core.attribution.result import Integrals

    layers = list(layers)
    out = engine(lm, prompt, clean, start, layers, steps, progress, rule=base)
    attrs, sums, deltas = out.attrs.clone(), out.path_sums.clone(), out.path_deltas.clone()
    n_paths, quiet = start.shape[0], (lambda _fraction: None)
    flagged = needs_refining(sums, deltas)  # [n_paths, layers]
    held: dict[int, tuple[list[int], torch.Tensor]] = {}  # path → (rows, its own attrs there at m)
    m = steps
    while bool(flagged.any()) and 2 * m <= ADAPTIVE_MAX_STEPS:
        next_flagged = torch.zeros_like(flagged)
        for j in map(int, flagged.any(dim=1).nonzero()[:, 0]):
            rows = [int(r) for r in flagged[j].nonzero()[:, 0]]
            sub = [layers[r] for r in rows]
            if j in held:
                before = held[j][1][:, [held[j][0].index(r) for r in rows]]
            else:  # the first pass kept only the paths' mean: this path's own integral at m, again
                before = engine(lm, prompt, clean, start[j:j + 1], sub, m, quiet, rule=base).attrs
            finer = engine(lm, prompt, clean, start[j:j + 1], sub, 2 * m, quiet, rule=base)
            attrs[:, rows] += (finer.attrs - before) / n_paths
            sums[j, :, rows], deltas[j, :, rows] = finer.path_sums[0], finer.path_deltas[0]
            held[j] = (rows, finer.attrs)
            next_flagged[j, rows] = needs_refining(finer.path_sums, finer.path_deltas)[0]
        log.debug("adaptive quadrature: %d (layer, path) integrals refined to m = %d", int(flagged.sum()), 2 * m)
        flagged, m = next_flagged, 2 * m
    return Integrals(attrs=attrs, path_sums=sums, path_deltas=deltas)
