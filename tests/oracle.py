"""A plain-torch implementation of the AMIG integral, the test oracle for the engines (no Captum)."""
from __future__ import annotations

import torch

from kn_core.model.hooks import edited, gold_probs, run


def plain_ig(lm, prompt, clean: torch.Tensor, start: torch.Tensor, layer: int, token: int, steps: int):
    """Attr = (a − b) · mean_k ∂P(o_i | z(k/m)) / ∂z for object token ``token`` at ``layer``: [d_ff]."""
    position, gold = prompt.target_positions[token], prompt.object_ids[token]
    a, b = clean[token, layer], start[token, layer]
    alphas = torch.arange(1, steps + 1, dtype=torch.float32) / steps
    z = (b + alphas[:, None] * (a - b)).requires_grad_(True)

    def replace(act):
        act = act.clone()
        act[:, position] = z
        return act

    ids = torch.tensor(prompt.input_ids)[None].expand(steps, -1)
    with torch.enable_grad(), edited(lm, {layer: replace}):
        probs = gold_probs(run(lm, ids), [position], [gold])[:, 0]
        (grad,) = torch.autograd.grad(probs.sum(), z)
    return (a - b) * grad.mean(dim=0)
