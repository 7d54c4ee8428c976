"""The model's typed interface (issue #28): ``max_positions``, ``n_parameters`` and the one length check,
``check_length``, that every input a model reads goes through."""
from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from kn_core.errors import InputError
from kn_core.method.checker import with_masks

TEMPLATE = "The capital of [X] is [Y]."


def test_max_positions_and_n_parameters(lm):
    assert lm.max_positions == 40  # the tiny models' context (tests/helpers.py)
    assert lm.n_parameters == sum(p.numel() for p in lm.model.parameters()) > 0
    assert lm.n_parameters == lm.n_parameters  # cached
    assert isinstance(lm.tokenizer, PreTrainedTokenizerBase)


@pytest.mark.parametrize("fits", [0, 1, 40])
def test_check_length_takes_what_fits(lm, fits):
    for ids in (fits, [7] * fits, torch.zeros(fits, dtype=torch.long), torch.zeros(1, fits, dtype=torch.long)):
        lm.check_length(ids, "sentence")


def test_check_length_refuses_what_does_not_fit(lm):
    for ids in (41, [7] * 41, torch.zeros(1, 41, dtype=torch.long)):
        with pytest.raises(InputError, match="41 tokens long.*at most 40") as caught:
            lm.check_length(ids, "sentence")
        assert caught.value.field == "sentence"
    with pytest.raises(InputError, match="shorten the template") as caught:
        lm.check_length(100, "template", "shorten the template")
    assert caught.value.field == "template"


def test_check_length_without_a_limit(lm, monkeypatch):
    monkeypatch.setattr(type(lm.adapter), "max_positions", staticmethod(lambda config: None))
    assert lm.max_positions is None
    lm.check_length(10**6, "sentence")


def test_every_input_goes_through_check_length(bert):
    with pytest.raises(InputError, match="at most 40") as caught:
        bert.sentence_ids(" ".join(["Paris"] * 60))
    assert caught.value.field == "sentence"
    with pytest.raises(InputError, match="at most 40") as caught:
        bert.prompt(TEMPLATE + " Paris" * 40, "Tanzania", "Paris")
    assert caught.value.field == "template"
    prompt = bert.prompt(TEMPLATE, "Tanzania", "Paris")
    with pytest.raises(InputError, match="with 60 masks") as caught:
        with_masks(bert, prompt, 60)
    assert caught.value.field == "template"


def test_reads_token_strings_and_piece_texts(lm):
    """What the app reads of a tokenizer goes through the model interface: whether a text has no unknown token, the
    raw vocabulary entries and what each token adds to the decoded text."""
    ids = lm.sentence_ids("The capital of France is Paris.")[0].tolist()
    raw, pieces = lm.token_strings(ids), lm.piece_texts(ids)
    assert raw == [str(t) for t in lm.tokenizer.convert_ids_to_tokens(ids)] and len(pieces) == len(ids)
    decoded = lm.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert "".join(p for p in pieces if p != "…").replace("␣", " ") == decoded
    assert lm.reads("Paris")
    # WordPiece (the tiny BERT) reads a character outside its vocabulary as [UNK]; byte-level BPE reads everything
    assert lm.reads("\u2603") is (lm.kind != "masked")
