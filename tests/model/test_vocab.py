"""What a neuron writes: promoted_tokens is the top-k of unembedding @ the neuron's output row."""
from __future__ import annotations

import pytest
import torch

from kn_core.model.vocab import promoted_tokens


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_promoted_tokens_are_the_top_logits_of_the_output_row(request, name):
    lm = request.getfixturevalue(name)
    layer, index = lm.n_layers - 1, 5
    got = promoted_tokens(lm, layer, index, k=4)
    unembed = lm.model.get_output_embeddings().weight.detach()
    row = lm.adapter.output_rows(lm.model, layer)[index].detach()
    expected = torch.topk(unembed @ row, 4)
    assert [found.token for found in got] == lm.tokenizer.convert_ids_to_tokens(expected.indices.tolist())
    assert [found.logit for found in got] == pytest.approx(expected.values.tolist(), rel=1e-5)
    assert got[0].logit >= got[-1].logit


def test_k_larger_than_the_vocabulary_gives_the_whole_vocabulary(bert):
    assert len(promoted_tokens(bert, 0, 0, k=10**6)) == bert.model.get_output_embeddings().weight.shape[0]
