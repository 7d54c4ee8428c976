"""Configuration and result records of an AMIG attribution (frozen; save/load as .npz + JSON)."""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np

from kn_core.data.prompts import Prompt
from kn_core.defaults import STEPS
from kn_core.errors import InputError

MAX_STEPS = 1000


@dataclass(frozen=True)
class AttributionConfig:
    """How to integrate.

    baseline: IG start point, a key of ``kn_core.attribution.baselines.BASELINES`` ("masked" = minimal information).
    steps: m, the number of Riemann steps (right rule, alpha = k/m).
    engine: a key of ``kn_core.attribution.ENGINES``.
    layers: layers to attribute (None = all); rows of other layers are left at 0.
    """

    baseline: str = "masked"
    steps: int = STEPS
    engine: str = "fast"
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise InputError("steps", f"must be a whole number from 1 to {MAX_STEPS} (got {self.steps!r}); 20 is usual")
        if self.layers is not None:
            items = [self.layers] if isinstance(self.layers, (str, bytes)) else self.layers
            try:
                items = list(items)
            except TypeError:
                raise InputError("layers", f"give a list of layer numbers, e.g. 0,1,2 (got {self.layers!r})") from None
            if not items or any(isinstance(x, bool) or not isinstance(x, numbers.Integral) for x in items):
                raise InputError("layers", f"must be whole layer numbers, e.g. 0,1,2 (got {self.layers!r})")
            object.__setattr__(self, "layers", tuple(sorted(set(int(x) for x in items))))


@dataclass(frozen=True, eq=False)
class Attribution:
    """AMIG attribution of one prompt.

    scores: float32 [n_layers, d_ff] — mean over the k object tokens of Attr_l,i (METHOD.md §1);
        rows of layers not in ``layers`` are 0.
    convergence_delta: float32 [n_layers] — Σ_i Attr_l,i − (P(o|a) − P(o|b)), averaged over tokens
        (the completeness residual; 0 for layers not computed).
    token_probs: k floats — P(o_i | prompt) with the gold tokens in place.
    baseline_probs: float32 [n_layers] — P(o_i | baseline at layer l), averaged over tokens.
    lang: the language of the prompt (it sets the default τ of the knowledge-neuron selection), if known.
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
        """|delta| / |P(o|a) − P(o|b)| per layer (NaN where the difference is 0)."""
        gap = np.abs(float(np.mean(self.token_probs)) - self.baseline_probs)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(self.convergence_delta) / gap

    def to_json_dict(self, with_scores: bool = True) -> dict:
        """A JSON-ready dict (strict JSON: no NaN); ``scores`` as nested lists unless ``with_scores`` is False."""
        out = {
            "model": self.model,
            "prompt": asdict(self.prompt),
            "text": self.prompt.query,
            "p_object": self.p_object,
            "token_probs": list(self.token_probs),
            "config": asdict(self.config),
            "layers": list(self.layers),
            "convergence_delta": self.convergence_delta.tolist(),
            "baseline_probs": self.baseline_probs.tolist(),
            "lang": self.lang,
        }
        if with_scores:
            out["scores"] = self.scores.tolist()
        return out
