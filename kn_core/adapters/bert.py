"""BERT family (bert, m-BERT; roberta and xlm-roberta share the layout): neuron = ``intermediate`` output."""
from __future__ import annotations

import torch
from torch import nn

from kn_core.adapters.base import MaskedLMAdapter


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
