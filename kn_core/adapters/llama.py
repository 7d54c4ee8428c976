"""Gated-MLP family (llama, qwen2, mistral): neuron = ``act(gate) * up``, the input of ``down_proj``."""
from __future__ import annotations

import torch
from torch import nn

from kn_core.adapters.base import CausalLMAdapter


class GatedMLPAdapter(CausalLMAdapter):
    family = "LLaMA"
    model_types = ("llama", "qwen2", "mistral")
    site_kind = "input"

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(model.model.layers)

    def neuron_site(self, model: nn.Module, layer: int) -> nn.Module:
        return self.layers(model)[layer].mlp.down_proj

    def output_rows(self, model: nn.Module, layer: int) -> torch.Tensor:
        return self.layers(model)[layer].mlp.down_proj.weight.T  # Linear stores [hidden, d_ff]
