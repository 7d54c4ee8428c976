"""What a neuron writes: its FFN output row projected onto the vocabulary (the unembedding matrix)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel


def promoted_tokens(lm: LanguageModel, layer: int, index: int, k: int = 10) -> list[tuple[str, float]]:
    """The k tokens whose logits neuron (layer, index) raises most per unit of activation, with the logit."""
    with torch.inference_mode():
        row = lm.adapter.output_rows(lm.model, layer)[index]
        logits = lm.model.get_output_embeddings().weight @ row.to(lm.model.get_output_embeddings().weight.dtype)
        top = logits.float().topk(min(k, logits.numel()))
    tokens = lm.tokenizer.convert_ids_to_tokens(top.indices.tolist())
    return [(str(tok), float(val)) for tok, val in zip(tokens, top.values.tolist())]
