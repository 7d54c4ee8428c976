"""Configuration and result records of an AMIG attribution (frozen; save/load as .npz + JSON)."""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kn_core.errors import InputError
from kn_core.prompts import Prompt

MAX_STEPS = 1000


@dataclass(frozen=True)
class AttributionConfig:
    """How to integrate.

    baseline: IG start point, a key of ``kn_core.baselines.BASELINES`` ("masked" = minimal information).
    steps: m, the number of Riemann steps (right rule, alpha = k/m).
    engine: a key of ``kn_core.attribution.ENGINES``.
    layers: layers to attribute (None = all); rows of other layers are left at 0.
    """

    baseline: str = "masked"
    steps: int = 20
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
    """

    prompt: Prompt
    scores: np.ndarray
    convergence_delta: np.ndarray
    token_probs: tuple[float, ...]
    baseline_probs: np.ndarray
    config: AttributionConfig
    model: str
    layers: tuple[int, ...]
    meta: dict = field(default_factory=dict)

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
        from kn_core.neurons import coarse_neurons, default_tau

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
            "meta": self.meta,
        }
        lang = self.meta.get("lang")
        if lang is not None:
            out["neurons"] = [list(n) for n in coarse_neurons(self.scores, default_tau(lang))]
        if with_scores:
            out["scores"] = self.scores.tolist()
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz: arrays + JSON metadata)."""
        path = Path(path)
        meta = self.to_json_dict(with_scores=False)
        np.savez_compressed(path, scores=self.scores, convergence_delta=self.convergence_delta,
                            baseline_probs=self.baseline_probs, meta=np.array(json.dumps(meta)))
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    @classmethod
    def load(cls, path: str | Path) -> "Attribution":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(prompt=Prompt(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["prompt"].items()}),
                       scores=data["scores"], convergence_delta=data["convergence_delta"],
                       token_probs=tuple(meta["token_probs"]), baseline_probs=data["baseline_probs"],
                       config=AttributionConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                   for k, v in meta["config"].items()}),
                       model=meta["model"], layers=tuple(meta["layers"]), meta=meta["meta"])
