"""BERT family (bert, m-BERT; roberta and xlm-roberta share the layout): neuron = ``intermediate`` output."""
from __future__ import annotations

from typing import cast

import torch
from torch import nn

from kn_core.model.adapters.base import MaskedLMAdapter

# nn.Module types every attribute lookup Tensor | Module: the casts below say what the checkpoint's attribute is.


class BertAdapter(MaskedLMAdapter):
    family = "BERT"
    model_types = ("bert", "roberta", "xlm-roberta")

    @staticmethod
    def _base(model: nn.Module) -> nn.Module:
        return cast(nn.Module, model.base_model)

    @classmethod
    def _encoder(cls, model: nn.Module) -> nn.Module:
        return cast(nn.Module, cls._base(model).encoder)

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(cast(nn.ModuleList, self._encoder(model).layer))

    def neuron_site(self, model: nn.Module, layer: int) -> nn.Module:
        return cast(nn.Module, self.layers(model)[layer].intermediate)

    def output_rows(self, model: nn.Module, layer: int) -> torch.Tensor:
        output = cast(nn.Module, self.layers(model)[layer].output)
        return cast(nn.Linear, output.dense).weight.T  # Linear stores [hidden, d_ff]

    # -- pieces for the fast engine (post-LN blocks: attention.output and output hold the LayerNorms) --
    def _architecture_issue(self, config) -> str | None:
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            return "decoder / cross-attention BERT variants are not implemented"
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            return f"position embeddings of type {config.position_embedding_type!r} are not implemented"
        return None

    def embed(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return cast(nn.Module, self._base(model).embeddings)(input_ids=input_ids)

    def queries(self, model, layer, hidden, positions):
        attn = self.layers(model)[layer].attention.self
        return self.split_heads(attn.query(hidden), attn.attention_head_size)

    def keys_values(self, model, layer, hidden, positions):
        attn = self.layers(model)[layer].attention.self
        d = attn.attention_head_size
        return self.split_heads(attn.key(hidden), d), self.split_heads(attn.value(hidden), d)

    def attention_scale(self, model: nn.Module, layer: int) -> float:
        attention = cast(nn.Module, self.layers(model)[layer].attention)
        return cast(int, cast(nn.Module, attention.self).attention_head_size) ** -0.5

    def attention_output(self, model, layer, attended, residual):
        return self.layers(model)[layer].attention.output(attended, residual)

    def neurons(self, model, layer, mid):
        return self.layers(model)[layer].intermediate(mid)

    def ffn_output(self, model, layer, act, mid):
        return self.layers(model)[layer].output(act, mid)

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        head = cast(nn.Module, model.cls if hasattr(model, "cls") else model.lm_head)  # BERT / RoBERTa naming
        return head(hidden)
