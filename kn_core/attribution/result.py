"""Configuration and result records of an AMIG attribution (frozen; save/load as .npz + JSON), the engine
contract (:class:`Engine`, :data:`ENGINE_NAMES`) and what an engine returns (:class:`Integrals`)."""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from kn_core.attribution.baselines import BASELINES
from kn_core.attribution.quadrature import check_rule
from kn_core.data.prompts import Prompt
from kn_core.defaults import RULE, STEPS
from kn_core.errors import InputError

if TYPE_CHECKING:
    import torch

    from kn_core.model.loading import LanguageModel
    from kn_core.types import Progress

MAX_STEPS = 1000
ENGINE_NAMES: tuple[str, ...] = ("fast", "reference")
"""The engines' names, the keys of ``kn_core.attribution.ENGINES`` (which checks that they agree): named here so
that a config is checked when it is built, without importing the engines (they import this module)."""


def check_engine(name: object) -> str:
    """``name`` when it names an engine, else an :class:`InputError` listing the engines."""
    if not isinstance(name, str) or name not in ENGINE_NAMES:
        raise InputError("engine", f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    return name


def check_baseline(name: object) -> str:
    """``name`` when it names a baseline, else an :class:`InputError` listing the baselines."""
    if not isinstance(name, str) or name not in BASELINES:
        raise InputError("baseline", f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return name


@dataclass(frozen=True)
class AttributionConfig:
    """How to integrate.

    baseline: IG start point(s), a key of ``kn_core.attribution.baselines.BASELINES``: "masked" = the paper's
        minimal-information baselines, one integral per masked prompt, averaged; "masked-mean" = the authors'
        code, one integral from the mean of the masked baselines; "zero" = Dai et al.
    steps: m, the number of points of each integral.
    engine: the engine asked for, one of :data:`ENGINE_NAMES` (the keys of ``kn_core.attribution.ENGINES``);
        the one that actually ran is :attr:`Attribution.engine_used`.
    layers: layers to attribute (None = all); rows of other layers are left at 0.
    rule: the quadrature rule, a key of ``kn_core.attribution.quadrature.RULES``: "gauss-legendre-adaptive"
        (the default, chosen by measured error: :mod:`kn_core.defaults`), "gauss-legendre", "riemann-right" (the
        paper's, alpha = k/m) or "riemann-left" (the authors' code's, alpha = (k − 1)/m).
    """

    baseline: str = "masked"
    steps: int = STEPS
    engine: str = "fast"
    layers: tuple[int, ...] | None = None
    rule: str = RULE

    def __post_init__(self) -> None:
        check_rule(self.rule)
        check_engine(self.engine)
        check_baseline(self.baseline)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise InputError("steps", f"must be a whole number from 1 to {MAX_STEPS} (got {self.steps!r}); 20 is usual")
        if self.layers is not None:
            given = [self.layers] if isinstance(self.layers, (str, bytes)) else self.layers
            try:
                items = list(given)
            except TypeError:
                raise InputError("layers", f"give a list of layer numbers, e.g. 0,1,2 (got {self.layers!r})") from None
            if not items or any(isinstance(x, bool) or not isinstance(x, numbers.Integral) for x in items):
                raise InputError("layers", f"must be whole layer numbers, e.g. 0,1,2 (got {self.layers!r})")
            object.__setattr__(self, "layers", tuple(sorted(set(int(x) for x in items))))


PATHS_COMBINED = "mean"  # how the integrals of several baseline paths combine (docs/method.md §1): their mean


@dataclass(frozen=True, eq=False)
class Integrals:
    """What an engine returns for one prompt, over ``n_paths`` baseline paths b_j (docs/method.md §1).

    attrs: [k, len(layers), d_ff] — per object token, the MEAN over the paths of the per-path IG
        Attr_j = (a − b_j) · (1/m) Σ_k ∂P(o | b_j + α_k (a − b_j)) / ∂z.
    path_sums: [n_paths, k, len(layers)] — Σ_i Attr_j,l,i of each path.
    path_deltas: [n_paths, k, len(layers)] — each path's completeness residual Σ_i Attr_j − (P(o|a) − P(o|b_j)).
    engine: the name of the engine that computed them (the reference's after the fast engine fell back to it);
        None where the engine does not say (then the one asked for is recorded).
    """

    attrs: torch.Tensor
    path_sums: torch.Tensor
    path_deltas: torch.Tensor
    engine: str | None = None


class Engine(Protocol):
    """An engine: the integrals of one prompt (:class:`Integrals`), for ``kn_core.attribution.ENGINES``.

    lm: the model; prompt: the prompt, built by ``lm``; k = ``prompt.n_object_tokens``, L = ``lm.n_layers``.
    clean: float32 [k, L, d_ff] — the activations a at the k target positions (the prompt's clean pass).
    start: float32 [n_paths, k, L, d_ff] — the baseline paths' starting points b_j (:mod:`.baselines`).
    layers: the layers to integrate, ascending (the rows of the output follow them).
    steps: m, the points of the rule ``rule`` (a key of :data:`kn_core.attribution.quadrature.RULES`, never an
        adaptive one: :func:`kn_core.attribution.quadrature.integrate` refines by calling the engine again).
    progress: called with the fraction done, 0..1.
    Returns :class:`Integrals` with ``attrs`` [k, len(layers), d_ff], ``path_sums`` and ``path_deltas``
    [n_paths, k, len(layers)] on the CPU, and ``engine`` set to the name of the engine that actually ran.
    """

    def __call__(self, lm: LanguageModel, prompt: Prompt, clean: torch.Tensor, start: torch.Tensor,
                 layers: Sequence[int], steps: int, progress: Progress, rule: str = ...) -> Integrals: ...


@dataclass(frozen=True, eq=False)
class Attribution:
    """AMIG attribution of one prompt.

    With several baseline paths (``masked``: one per masked prompt) everything combined is the MEAN over the
    n paths (:data:`PATHS_COMBINED`), which keeps the scale of one integral and of P(a) − P(b):

    scores: float32 [n_layers, d_ff] — mean over the k object tokens of Attr_l,i = mean_j Attr_j,l,i
        (docs/method.md §1); rows of layers not in ``layers`` are 0.
    convergence_delta: float32 [n_layers] — the combined completeness residual Σ_i Attr_l,i − (P(o|a) −
        mean_j P(o|b_j)) = mean_j of the per-path residuals, averaged over tokens (0 for layers not computed).
    token_probs: k floats — P(o_i | prompt) with the gold tokens in place.
    baseline_probs: float32 [n_layers] — mean_j P(o_i | b_j at layer l), averaged over tokens.
    lang: the language of the prompt (it sets the default τ of the knowledge-neuron selection), if known.
    path_deltas: float32 [n_paths, n_layers] — each path's own residual Σ_i Attr_j,l,i − (P(o|a) − P(o|b_j)),
        averaged over tokens (completeness holds per path); None for results stored before paths existed
        (read as one path whose residual is ``convergence_delta``).
    path_baseline_probs: float32 [n_paths, n_layers] — P(o | b_j at layer l) per path, averaged over tokens
        (None: as ``path_deltas``).
    engine_used: the engine that actually computed the integrals: ``config.engine``, or "reference" where the
        fast engine fell back to the reference engine (a model its self-checks refuse); "fast+reference" where
        only some of an adaptive rule's passes fell back. Left out, it is ``config.engine``.
    """

    prompt: Prompt
    scores: np.ndarray
    convergence_delta: np.ndarray
    token_probs: tuple[float, ...]
    baseline_probs: np.ndarray
    config: AttributionConfig
    model: str
    layers: tuple[int, ...]
    lang: str | None = None
    path_deltas: np.ndarray | None = None
    path_baseline_probs: np.ndarray | None = None
    engine_used: str | None = None

    def __post_init__(self) -> None:
        if self.engine_used is None:
            object.__setattr__(self, "engine_used", self.config.engine)

    @property
    def n_paths(self) -> int:
        """How many baseline paths were integrated (and averaged)."""
        return 1 if self.path_deltas is None else int(self.path_deltas.shape[0])

    def _paths(self) -> tuple[np.ndarray, np.ndarray]:
        if self.path_deltas is None or self.path_baseline_probs is None:
            return self.convergence_delta[None], self.baseline_probs[None]
        return self.path_deltas, self.path_baseline_probs

    def worst_path_delta(self) -> np.ndarray:
        """Per layer, the per-path residual of largest magnitude (signed): float32 [n_layers]."""
        deltas, _ = self._paths()
        return np.take_along_axis(deltas, np.abs(deltas).argmax(axis=0)[None], axis=0)[0]

    def worst_relative_path_delta(self) -> np.ndarray:
        """Per layer, max_j |δ_j| / max_j |P(o|a) − P(o|b_j)|: the worst per-path residual relative to the
        largest change any path integrates (a path whose baseline barely moves P would make its own ratio
        noise); NaN where no path moves P."""
        deltas, probs = self._paths()
        gap = np.abs(float(np.mean(self.token_probs)) - probs).max(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(gap > 0, np.abs(deltas).max(axis=0) / gap, np.nan)

    @property
    def p_object(self) -> float:
        """Joint probability of the gold object (product over its tokens)."""
        return float(math.prod(self.token_probs))

    @property
    def n_layers(self) -> int:
        return int(self.scores.shape[0])

    @property
    def d_ff(self) -> int:
        return int(self.scores.shape[1])

    def relative_delta(self) -> np.ndarray:
        """|delta| / |P(o|a) − P(o|b)| per layer, of the combined result (NaN where the difference is 0); see
        :meth:`worst_relative_path_delta` for the paths one by one."""
        gap = np.abs(float(np.mean(self.token_probs)) - self.baseline_probs)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(self.convergence_delta) / gap

    def to_json_dict(self, with_scores: bool = True) -> dict:
        """A JSON-ready dict; ``scores`` as nested lists unless ``with_scores`` is False."""
        out = {
            "model": self.model,
            "prompt": asdict(self.prompt),
            "text": self.prompt.query,
            "p_object": self.p_object,
            "token_probs": list(self.token_probs),
            "config": asdict(self.config),
            "engine_used": self.engine_used,
            "layers": list(self.layers),
            "convergence_delta": self.convergence_delta.tolist(),
            "baseline_probs": self.baseline_probs.tolist(),
            "n_paths": self.n_paths,
            "paths_combined": PATHS_COMBINED,
            "worst_path_delta": self.worst_path_delta().tolist(),
            "lang": self.lang,
        }
        if with_scores:
            out["scores"] = self.scores.tolist()
        return out
