"""GPT-2 family (gpt2, mGPT): neuron = output of ``mlp.act`` (post-GELU)."""
from __future__ import annotations

import torch
from torch import nn

from kn_core.adapters.base import CausalLMAdapter


class GPT2Adapter(CausalLMAdapter):
    family = "GPT-2"
    model_types = ("gpt2",)

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(model.transformer.h)

    def neuron_site(self, model: nn.Module, layer: int) -> nn.Module:
        return self.layers(model)[layer].mlp.act

    def output_rows(self, model: nn.Module, layer: int) -> torch.Tensor:
        return self.layers(model)[layer].mlp.c_proj.weight  # Conv1D stores [d_ff, hidden]
