"""GPT-2 family (gpt2, mGPT): neuron = output of ``mlp.act`` (post-GELU)."""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from kn_core.model.adapters.base import CausalLMAdapter

if TYPE_CHECKING:
    from transformers import GPT2Config
    from transformers.pytorch_utils import Conv1D

# nn.Module types every attribute lookup Tensor | Module: the casts below say what the checkpoint's attribute is.


class GPT2Adapter(CausalLMAdapter):
    family = "GPT-2"
    model_types = ("gpt2",)

    @staticmethod
    def _transformer(model: nn.Module) -> nn.Module:
        return cast(nn.Module, model.transformer)

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(cast(nn.ModuleList, self._transformer(model).h))

    def _mlp(self, model: nn.Module, layer: int) -> nn.Module:
        return cast(nn.Module, self.layers(model)[layer].mlp)

    def _attn(self, model: nn.Module, layer: int) -> nn.Module:
        return cast(nn.Module, self.layers(model)[layer].attn)

    def neuron_site(self, model: nn.Module, layer: int) -> nn.Module:
        return cast(nn.Module, self._mlp(model, layer).act)

    def output_rows(self, model: nn.Module, layer: int) -> torch.Tensor:
        return cast("Conv1D", self._mlp(model, layer).c_proj).weight  # Conv1D stores [d_ff, hidden]

    # -- pieces for the fast engine (pre-LN blocks) ---------------------------------------------------
    def _architecture_issue(self, config) -> str | None:
        if getattr(config, "add_cross_attention", False):
            return "cross-attention GPT-2 variants are not implemented"
        return None

    def embed(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        transformer = self._transformer(model)
        return cast(nn.Module, transformer.wte)(input_ids) + cast(nn.Module, transformer.wpe)(positions)

    def _projection(self, model: nn.Module, layer: int, hidden: torch.Tensor, parts: slice) -> torch.Tensor:
        """Columns ``parts`` (in units of hidden) of the fused q|k|v projection (Conv1D: x @ W + b)."""
        block = self.layers(model)[layer]
        attn = cast(nn.Module, block.attn)
        size = cast(int, attn.embed_dim)
        cols = slice(parts.start * size, parts.stop * size)
        x = cast(nn.Module, block.ln_1)(hidden)
        c_attn = cast("Conv1D", attn.c_attn)
        return torch.addmm(c_attn.bias[cols], x.reshape(-1, size), c_attn.weight[:, cols]).view(*x.shape[:2], -1)

    def queries(self, model, layer, hidden, positions):
        return self.split_heads(self._projection(model, layer, hidden, slice(0, 1)),
                                self.layers(model)[layer].attn.head_dim)

    def keys_values(self, model, layer, hidden, positions):
        k, v = self._projection(model, layer, hidden, slice(1, 3)).chunk(2, dim=-1)
        d = self.layers(model)[layer].attn.head_dim
        return self.split_heads(k, d), self.split_heads(v, d)

    def attention_scale(self, model: nn.Module, layer: int) -> float:
        config, attn = cast("GPT2Config", model.config), self._attn(model, layer)
        scale = cast(int, attn.head_dim) ** -0.5 if config.scale_attn_weights else 1.0
        return scale / (layer + 1) if config.scale_attn_by_inverse_layer_idx else scale

    def attention_output(self, model, layer, attended, residual):
        return residual + self.layers(model)[layer].attn.c_proj(attended)

    def neurons(self, model, layer, mid):
        mlp = self.layers(model)[layer].mlp
        return mlp.act(mlp.c_fc(self.layers(model)[layer].ln_2(mid)))

    def ffn_output(self, model, layer, act, mid):
        return mid + self.layers(model)[layer].mlp.c_proj(act)

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return cast(nn.Module, model.lm_head)(cast(nn.Module, self._transformer(model).ln_f)(hidden))
