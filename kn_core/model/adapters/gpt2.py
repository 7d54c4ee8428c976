"""GPT-2 family (gpt2, mGPT): neuron = output of ``mlp.act`` (post-GELU)."""
from __future__ import annotations

import torch
from torch import nn

from kn_core.model.adapters.base import CausalLMAdapter


class GPT2Adapter(CausalLMAdapter):
    family = "GPT-2"
    model_types = ("gpt2",)

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(model.transformer.h)

    def neuron_site(self, model: nn.Module, layer: int) -> nn.Module:
        return self.layers(model)[layer].mlp.act

    def output_rows(self, model: nn.Module, layer: int) -> torch.Tensor:
        return self.layers(model)[layer].mlp.c_proj.weight  # Conv1D stores [d_ff, hidden]

    # -- pieces for the fast engine (pre-LN blocks) ---------------------------------------------------
    def _architecture_issue(self, config) -> str | None:
        if getattr(config, "add_cross_attention", False):
            return "cross-attention GPT-2 variants are not implemented"
        return None

    def embed(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return model.transformer.wte(input_ids) + model.transformer.wpe(positions)

    def _projection(self, model: nn.Module, layer: int, hidden: torch.Tensor, parts: slice) -> torch.Tensor:
        """Columns ``parts`` (in units of hidden) of the fused q|k|v projection (Conv1D: x @ W + b)."""
        block = self.layers(model)[layer]
        size = block.attn.embed_dim
        cols = slice(parts.start * size, parts.stop * size)
        x = block.ln_1(hidden)
        return torch.addmm(block.attn.c_attn.bias[cols], x.reshape(-1, size),
                           block.attn.c_attn.weight[:, cols]).view(*x.shape[:2], -1)

    def queries(self, model, layer, hidden, positions):
        return self.split_heads(self._projection(model, layer, hidden, slice(0, 1)),
                                self.layers(model)[layer].attn.head_dim)

    def keys_values(self, model, layer, hidden, positions):
        k, v = self._projection(model, layer, hidden, slice(1, 3)).chunk(2, dim=-1)
        d = self.layers(model)[layer].attn.head_dim
        return self.split_heads(k, d), self.split_heads(v, d)

    def attention_scale(self, model: nn.Module, layer: int) -> float:
        config, attn = model.config, self.layers(model)[layer].attn
        scale = attn.head_dim ** -0.5 if config.scale_attn_weights else 1.0
        return scale / (layer + 1) if config.scale_attn_by_inverse_layer_idx else scale

    def attention_output(self, model, layer, attended, residual):
        return residual + self.layers(model)[layer].attn.c_proj(attended)

    def neurons(self, model, layer, mid):
        mlp = self.layers(model)[layer].mlp
        return mlp.act(mlp.c_fc(self.layers(model)[layer].ln_2(mid)))

    def ffn_output(self, model, layer, act, mid):
        return mid + self.layers(model)[layer].mlp.c_proj(act)

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return model.lm_head(model.transformer.ln_f(hidden))
