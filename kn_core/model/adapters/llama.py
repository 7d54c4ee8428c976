"""Gated-MLP family (llama, qwen2, mistral): neuron = ``act(gate) * up``, the input of ``down_proj``."""
from __future__ import annotations

import torch
from torch import nn

from kn_core.model.adapters.base import CausalLMAdapter


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

    # -- pieces for the fast engine (pre-RMSNorm blocks, rotary positions, grouped keys/values) --------
    def _architecture_issue(self, config) -> str | None:
        kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
        if kinds != {"full_attention"}:
            return f"attention layer types {sorted(kinds)} are not implemented"
        return None

    def embed(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return model.model.embed_tokens(input_ids)

    def _rotary(self, model: nn.Module, x: torch.Tensor, positions: torch.Tensor, head_dim: int) -> torch.Tensor:
        """Split ``x`` [batch, seq, heads * d] into heads and rotate them by their positions."""
        heads = self.split_heads(x, head_dim)
        cos, sin = model.model.rotary_emb(heads, positions[None])  # [1, seq, d]
        half = head_dim // 2
        rotated = torch.cat([-heads[..., half:], heads[..., :half]], dim=-1)
        return heads * cos[:, None] + rotated * sin[:, None]

    def queries(self, model, layer, hidden, positions):
        block = self.layers(model)[layer]
        attn = block.self_attn
        return self._rotary(model, attn.q_proj(block.input_layernorm(hidden)), positions, attn.head_dim)

    def keys_values(self, model, layer, hidden, positions):
        block = self.layers(model)[layer]
        attn, x = block.self_attn, block.input_layernorm(hidden)
        return (self._rotary(model, attn.k_proj(x), positions, attn.head_dim),
                self.split_heads(attn.v_proj(x), attn.head_dim))

    def attention_scale(self, model: nn.Module, layer: int) -> float:
        return self.layers(model)[layer].self_attn.scaling

    def attention_output(self, model, layer, attended, residual):
        return residual + self.layers(model)[layer].self_attn.o_proj(attended)

    def neurons(self, model, layer, mid):
        block = self.layers(model)[layer]
        x = block.post_attention_layernorm(mid)
        return block.mlp.act_fn(block.mlp.gate_proj(x)) * block.mlp.up_proj(x)

    def ffn_output(self, model, layer, act, mid):
        return mid + self.layers(model)[layer].mlp.down_proj(act)

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        return model.lm_head(model.model.norm(hidden))
