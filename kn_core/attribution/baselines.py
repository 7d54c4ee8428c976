"""IG baselines: the reference points b_j that the integrals start from, one or several *paths*, each with
one vector per target and layer. :func:`baseline` returns them as one tensor [n_paths, k, n_layers, d_ff];
the attribution integrates once per path and averages the paths' integrals (docs/method.md §1).

- ``masked`` (default) — the paper's minimal-information baseline (docs/method.md §1): for each context token j
  (``Prompt.context_positions``: no special tokens, not the object's own positions), the prompt with token j
  replaced by the architecture's no-information token ([MASK] / end-of-text); b_j is the activation at the
  target position. One path per masked prompt (n = number of context tokens): the attribution is
  Attr = mean_j (a − b_j) · (1/m) Σ_k ∂P(o | b_j + α_k (a − b_j)) / ∂z — the *mean* over the n integrals.
  One forward pass per replaced token, batched, serves every layer.
- ``masked-mean`` — the authors' code (not the paper): the same masked prompts, their activations averaged
  into one baseline b̄ = mean_j b_j and integrated once (one path). Kept for comparison.
- ``zero`` — b = 0 (Dai et al.; the paper's "B-KN"), one path.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.model.hooks import recorded, run_body

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

CHUNK = 16  # prompts per forward pass when building the baseline


def activations(lm: LanguageModel, input_ids: torch.Tensor, positions) -> torch.Tensor:
    """Neuron activations at ``positions`` for every layer: [batch, k, n_layers, d_ff]. The LM head does not
    run (no logits are needed)."""
    layers = range(lm.n_layers)
    parts = []
    for chunk in input_ids.split(CHUNK):
        with torch.inference_mode(), recorded(lm, layers, positions) as acts:
            run_body(lm, chunk)
        parts.append(torch.stack([acts[layer].float() for layer in layers], dim=2))
    return torch.cat(parts)


def masked_prompts(lm: LanguageModel, prompt: Prompt) -> torch.Tensor:
    """The n masked prompts [n, T]: row j is the prompt with context token j (``prompt.context_positions[j]``)
    replaced by the no-information token."""
    if not prompt.context_positions:
        raise InputError("template", "the prompt has no context tokens to mask; add words around [X] and [Y]")
    no_info = lm.adapter.no_info_token_id(lm.tokenizer)
    ids = torch.tensor(prompt.input_ids).repeat(len(prompt.context_positions), 1)
    ids[torch.arange(len(prompt.context_positions)), torch.tensor(prompt.context_positions)] = no_info
    return ids


def minimal_information(lm: LanguageModel, prompt: Prompt) -> torch.Tensor:
    """The paper's baselines: one path per masked prompt, [n_context_tokens, k, n_layers, d_ff]."""
    return activations(lm, masked_prompts(lm, prompt), prompt.target_positions)


def minimal_information_mean(lm: LanguageModel, prompt: Prompt) -> torch.Tensor:
    """The authors' code: the masked prompts' activations averaged into one path, [1, k, n_layers, d_ff]."""
    return minimal_information(lm, prompt).mean(dim=0, keepdim=True)


def zero(lm: LanguageModel, prompt: Prompt) -> torch.Tensor:
    """b = 0, one path: [1, k, n_layers, d_ff]."""
    return torch.zeros(1, len(prompt.target_positions), lm.n_layers, lm.d_ff, device=lm.device)


BASELINES: dict[str, Callable[[LanguageModel, Prompt], torch.Tensor]] = {
    "masked": minimal_information, "masked-mean": minimal_information_mean, "zero": zero}


def baseline(lm: LanguageModel, prompt: Prompt, name: str) -> torch.Tensor:
    """The baseline paths named ``name``: [n_paths, k, n_layers, d_ff] (n_paths = 1 except for ``masked``)."""
    try:
        fn = BASELINES[name]
    except KeyError:
        raise InputError("baseline", f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}") from None
    return fn(lm, prompt)
