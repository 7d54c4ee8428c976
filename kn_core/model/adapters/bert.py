"""BERT family (bert, m-BERT; roberta and xlm-roberta share the layout): neuron = ``intermediate`` output."""
from __future__ import annotations

import torch
from torch import nn

from kn_core.model.adapters.base import MaskedLMAdapter


class BertAdapter(MaskedLMAdapter):
    family = "BERT"
    model_types = ("bert", "roberta", "xlm-roberta")

    @staticmethod
    def _encoder(model: nn.Module) -> nn.Module:
        return model.base_model.encoder

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(self._encoder(model).layer)

    def neuron_site(self, model: nn.Module, layer: int) -> nn.Module:
        return self.layers(model)[layer].intermediate

    def output_rows(self, model: nn.Module, layer: int) -> torch.Tensor:
        return self.layers(model)[layer].output.dense.weight.T  # Linear stores [hidden, d_ff]

    # -- pieces for the fast engine (post-LN blocks: attention.output and output hold the LayerNorms) --
    def _architecture_issue(self, config) -> str | None:
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            return "decoder / cross-attention BERT variants are not implemented"
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            return f"position embeddings of type {config.position_embedding_type!r} are not implemented"
        return None

    def embed(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return model.base_model.embeddings(input_ids=input_ids)

    def queries(self, model, layer, hidden, positions):
        attn = self.layers(model)[layer].attention.self
        return self.split_heads(attn.query(hidden), attn.attention_head_size)

    def keys_values(self, model, layer, hidden, positions):
        attn = self.layers(model)[layer].attention.self
        d = attn.attention_head_size
        return self.split_heads(attn.key(hidden), d), self.split_heads(attn.value(hidden), d)

    def attention_scale(self, model: nn.Module, layer: int) -> float:
        return self.layers(model)[layer].attention.self.attention_head_size ** -0.5

    def attention_output(self, model, layer, attended, residual):
        return self.layers(model)[layer].attention.output(attended, residual)

    def neurons(self, model, layer, mid):
        return self.layers(model)[layer].intermediate(mid)

    def ffn_output(self, model, layer, act, mid):
        return self.layers(model)[layer].output(act, mid)

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        head = model.cls if hasattr(model, "cls") else model.lm_head  # BERT / RoBERTa naming
        return head(hidden)
