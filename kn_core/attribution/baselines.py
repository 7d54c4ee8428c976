"""IG baselines: the reference point b that the integral starts from (one vector per layer and target).

- ``masked`` — the minimal-information baseline of METHOD.md §1: for each context token j, the prompt with
  token j replaced by the architecture's no-information token ([MASK] / end-of-text); b is the mean of the
  activations at the target position. One forward pass per replaced token, batched, serves every layer.
- ``zero`` — b = 0 (Dai et al.).
"""
from __future__ import annotations

from typing import Callable

import torch

from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.model.hooks import recorded, run_body

CHUNK = 16  # prompts per forward pass when building the baseline


def activations(lm, input_ids: torch.Tensor, positions) -> torch.Tensor:
    """Neuron activations at ``positions`` for every layer: [batch, k, n_layers, d_ff]. The LM head does not
    run (no logits are needed)."""
    layers = range(lm.n_layers)
    parts = []
    for chunk in input_ids.split(CHUNK):
        with torch.inference_mode(), recorded(lm, layers, positions) as acts:
            run_body(lm, chunk)
        parts.append(torch.stack([acts[layer].float() for layer in layers], dim=2))
    return torch.cat(parts)


def minimal_information(lm, prompt: Prompt) -> torch.Tensor:
    if not prompt.context_positions:
        raise InputError("template", "the prompt has no context tokens to mask; add words around [X] and [Y]")
    no_info = lm.adapter.no_info_token_id(lm.tokenizer)
    ids = torch.tensor(prompt.input_ids).repeat(len(prompt.context_positions), 1)
    ids[torch.arange(len(prompt.context_positions)), torch.tensor(prompt.context_positions)] = no_info
    return activations(lm, ids, prompt.target_positions).mean(dim=0)


def zero(lm, prompt: Prompt) -> torch.Tensor:
    return torch.zeros(len(prompt.target_positions), lm.n_layers, lm.d_ff, device=lm.device)


BASELINES: dict[str, Callable[[object, Prompt], torch.Tensor]] = {"masked": minimal_information, "zero": zero}


def baseline(lm, prompt: Prompt, name: str) -> torch.Tensor:
    """The baseline activations [k, n_layers, d_ff] named ``name``."""
    try:
        fn = BASELINES[name]
    except KeyError:
        raise InputError("baseline", f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}") from None
    return fn(lm, prompt)
