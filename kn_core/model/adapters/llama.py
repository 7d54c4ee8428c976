"""Gated-MLP family (llama, qwen2, mistral): neuron = ``act(gate) * up``, the input of ``down_proj``."""
from __future__ import annotations

from typing import ClassVar, cast

import torch
from torch import nn

from kn_core.model.adapters.base import CausalLMAdapter

# nn.Module types every attribute lookup Tensor | Module: the casts below say what the checkpoint's attribute is.


class GatedMLPAdapter(CausalLMAdapter):
    family = "LLaMA"
    model_types: ClassVar[tuple[str, ...]] = ("llama", "qwen2", "mistral")
    site_kind = "input"

    @staticmethod
    def _decoder(model: nn.Module) -> nn.Module:
        """The model without its LM head (``model.model``): embeddings, blocks, final norm, rotary embedding."""
        return cast(nn.Module, model.model)

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(cast(nn.ModuleList, self._decoder(model).layers))

    def _down_proj(self, model: nn.Module, layer: int) -> nn.Linear:
        return cast(nn.Linear, cast(nn.Module, self.layers(model)[layer].mlp).down_proj)

    def neuron_site(self, model: nn.Module, layer: int) -> nn.Module:
        return self._down_proj(model, layer)

    def output_rows(self, model: nn.Module, layer: int) -> torch.Tensor:
        return self._down_proj(model, layer).weight.T  # Linear stores [hidden, d_ff]

    # -- pieces for the fast engine (pre-RMSNorm blocks, rotary positions, grouped keys/values) --------
    def _architecture_issue(self, config) -> str | None:
        kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
        if kinds != {"full_attention"}:
            return f"attention layer types {sorted(kinds)} are not implemented"
        return None

    def embed(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return cast(nn.Module, self._decoder(model).embed_tokens)(input_ids)

    def _split_rotary(self, model: nn.Module, x: torch.Tensor, positions: torch.Tensor,
                      head_dim: int) -> torch.Tensor:
        """Split ``x`` [batch, seq, heads * d] into heads and rotate them by their positions."""
        heads = self.split_heads(x, head_dim)
        cos, sin = cast(nn.Module, self._decoder(model).rotary_emb)(heads, positions[None])  # [1, seq, d]
        half = head_dim // 2
        rotated = torch.cat([-heads[..., half:], heads[..., :half]], dim=-1)
        return heads * cos[:, None] + rotated * sin[:, None]

    def queries(self, model, layer, hidden, positions):
        block = self.layers(model)[layer]
        attn = block.self_attn
        return self._split_rotary(model, attn.q_proj(block.input_layernorm(hidden)), positions, attn.head_dim)

    def keys_values(self, model, layer, hidden, positions):
        block = self.layers(model)[layer]
        attn, x = block.self_attn, block.input_layernorm(hidden)
        return (self._split_rotary(model, attn.k_proj(x), positions, attn.head_dim),
                self.split_heads(attn.v_proj(x), attn.head_dim))

    def attention_scale(self, model: nn.Module, layer: int) -> float:
        return cast(float, cast(nn.Module, self.layers(model)[layer].self_attn).scaling)

    def attention_output(self, model, layer, attended, residual):
        return residual + self.layers(model)[layer].self_attn.o_proj(attended)

    def neurons(self, model, layer, mid):
        block = self.layers(model)[layer]
        x = block.post_attention_layernorm(mid)
        return block.mlp.act_fn(block.mlp.gate_proj(x)) * block.mlp.up_proj(x)

    def ffn_output(self, model, layer, act, mid):
        return mid + self.layers(model)[layer].mlp.down_proj(act)

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return cast(nn.Module, model.lm_head)(cast(nn.Module, self._decoder(model).norm)(hidden))
