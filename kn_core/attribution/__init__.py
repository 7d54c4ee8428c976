"""AMIG attribution: the single verb :func:`attribute` and its engines (:data:`ENGINES`, each an :class:`Engine`).

An engine integrates ∂P(o_i)/∂z along the straight path from each baseline b_j to the clean activation at
each target position, for each requested layer, and returns the paths' mean attribution and each path's
completeness residual (:class:`~kn_core.attribution.result.Integrals`, which names the engine that actually
ran: the fast engine falls back to the reference one on a model its self-checks refuse, and the result records
it in :attr:`Attribution.engine_used`). The default ``masked`` baseline has
one path per masked prompt (the paper's formula, docs/method.md §1); ``masked-mean`` and ``zero`` have one.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from kn_core.attribution import fast, kernels, quadrature, reference
from kn_core.attribution.baselines import baseline
from kn_core.attribution.result import (
    ENGINE_NAMES,
    PATHS_COMBINED,
    Attribution,
    AttributionConfig,
    Engine,
    Integrals,
)
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.model.hooks import gold_probs, recorded, run
from kn_core.types import Progress

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

ENGINES: dict[str, Engine] = {"fast": fast.integrate, "reference": reference.integrate}
if tuple(ENGINES) != ENGINE_NAMES:  # a config is checked against ENGINE_NAMES when it is built
    raise ImportError(f"ENGINES {tuple(ENGINES)} and result.ENGINE_NAMES {ENGINE_NAMES} differ: keep them equal")


def _no_progress(_fraction: float) -> None:
    return None


def _engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise InputError("engine", f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}") from None


def _clean_pass(lm: LanguageModel, ids: torch.Tensor, prompt: Prompt) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of the prompt: P(o_i) at each target [k] and the activations there [k, n_layers, d_ff]."""
    layers = range(lm.n_layers)
    with torch.inference_mode(), recorded(lm, layers, prompt.target_positions) as acts:
        token_probs = gold_probs(run(lm, ids), prompt.target_positions, prompt.object_ids)[0]
    return token_probs, torch.stack([acts[layer][0].float() for layer in layers], dim=1)


def attribute(lm: LanguageModel, prompt: Prompt, config: AttributionConfig = AttributionConfig(),
              progress: Progress | None = None, lang: str | None = None) -> Attribution:
    """AMIG attribution of ``prompt`` on ``lm`` (see :class:`Attribution` for shapes); ``lang`` is recorded
    in the result. With several baseline paths the result is their mean (:data:`PATHS_COMBINED`), and the
    completeness residual is checked path by path (``path_deltas``)."""
    check_prompt = getattr(lm, "check_prompt", None)  # a prompt another model's tokenizer built is refused
    if check_prompt is not None:
        check_prompt(prompt)
    engine = _engine(config.engine)
    ran: list[str] = []

    def recording(*args, **kwargs) -> Integrals:  # the engine that ran each pass (an adaptive rule runs several)
        out = engine(*args, **kwargs)
        ran.append(out.engine or config.engine)
        return out

    layers = tuple(range(lm.n_layers)) if config.layers is None else config.layers
    if any(not 0 <= layer < lm.n_layers for layer in layers):
        raise InputError("layers", f"layers must lie in 0..{lm.n_layers - 1}")
    with lm.lock:
        ids = torch.tensor(prompt.input_ids, device=lm.device)[None]
        with kernels.matmuls(model=lm.model):  # the passes that every engine starts from
            token_probs, clean = _clean_pass(lm, ids, prompt)
            start = baseline(lm, prompt, config.baseline)
        out: Integrals = quadrature.integrate(recording, lm, prompt, clean, start, layers, config.steps,
                                              progress or _no_progress, rule=config.rule)  # adaptive rules refine
    rows = list(layers)
    n_paths = out.path_deltas.shape[0]
    # per path j and token i: delta = Σ attr_j − (P(a) − P(b_j))  ⇒  P(b_j) = P(a) − (Σ attr_j − delta)
    path_starts = token_probs.cpu().float()[None, :, None] - (out.path_sums - out.path_deltas)  # [n, k, layers]
    path_deltas = np.zeros((n_paths, lm.n_layers), dtype=np.float32)
    path_probs = np.zeros((n_paths, lm.n_layers), dtype=np.float32)
    path_deltas[:, rows] = out.path_deltas.mean(dim=1).numpy()
    path_probs[:, rows] = path_starts.mean(dim=1).numpy()
    scores = np.zeros((lm.n_layers, lm.d_ff), dtype=np.float32)
    scores[rows] = out.attrs.mean(dim=0).numpy()
    # combined (mean over paths): delta = Σ attr − (P(a) − mean_j P(b_j)) = mean_j delta_j
    delta = np.zeros(lm.n_layers, dtype=np.float32)
    p_start = np.zeros(lm.n_layers, dtype=np.float32)
    delta[rows] = path_deltas[:, rows].mean(axis=0)
    p_start[rows] = path_probs[:, rows].mean(axis=0)
    return Attribution(prompt=prompt, scores=scores, convergence_delta=delta,
                       token_probs=tuple(float(p) for p in token_probs.cpu()), baseline_probs=p_start,
                       config=config, model=lm.name, layers=layers, lang=lang, path_deltas=path_deltas,
                       path_baseline_probs=path_probs, engine_used="+".join(dict.fromkeys(ran)) or config.engine)


class Attributor(Protocol):
    """Where the method layer gets a prompt's attribution from: :func:`compute` (always computes) or
    :func:`kn_core.runs.cached.read_through` (the store first, then compute and store)."""

    def __call__(self, lm: LanguageModel, prompt: Prompt, config: AttributionConfig, lang: str | None,
                 progress: Progress | None = None) -> Attribution: ...


def compute(lm: LanguageModel, prompt: Prompt, config: AttributionConfig, lang: str | None,
            progress: Progress | None = None) -> Attribution:
    """The plain :class:`Attributor`: attribute ``prompt`` now, keep nothing."""
    return attribute(lm, prompt, config, progress=progress, lang=lang)


__all__ = ["ENGINES", "ENGINE_NAMES", "PATHS_COMBINED", "Attribution", "AttributionConfig", "Attributor", "Engine",
           "Integrals", "attribute", "compute"]
