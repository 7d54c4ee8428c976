"""Causal LMs read a template up to [Y]: text after it is cut (and shown as cut), never silently used or
refused; a template whose subject would be cut away is refused (issue #14, real mLAMA templates)."""
from __future__ import annotations

import pytest

from kn_core.errors import TemplateError


def test_text_after_the_object_is_cut_for_a_causal_lm(gpt2):
    cut = gpt2.prompt("[X] is a [Y] city .", "Tanzania", "Dodoma")
    assert cut.cut == "city ." and cut.query == "Tanzania is a [Y]"
    assert cut.input_ids == gpt2.prompt("[X] is a [Y].", "Tanzania", "Dodoma").input_ids


def test_punctuation_after_the_object_is_not_a_cut(gpt2):
    prompt = gpt2.prompt("The capital of [X] is [Y].", "Tanzania", "Dodoma")
    assert prompt.cut == "" and prompt.query == "The capital of Tanzania is [Y]."


def test_a_masked_lm_reads_the_whole_template(bert):
    prompt = bert.prompt("[X] is a [Y] city .", "Tanzania", "Dodoma")
    assert prompt.cut == "" and prompt.query == "Tanzania is a [Y] city ."


def test_a_template_whose_subject_follows_the_object_is_refused_for_a_causal_lm(gpt2):
    with pytest.raises(TemplateError, match="subject would be cut away"):
        gpt2.prompt("[Y] is the capital of [X].", "Tanzania", "Dodoma")



def test_an_adapter_that_prepends_tokens_keeps_the_cut(tmp_path):
    """Gemma 3 puts <bos> in front of every prompt; the cut text must survive that."""
    from helpers import make_gemma3

    from kn_core.model.loading import load_model

    lm = load_model(str(make_gemma3(tmp_path, bos=True)))
    prompt = lm.prompt("[X] is a [Y] city .", "Tanzania", "Dodoma")
    assert prompt.input_ids[0] == lm.tokenizer.bos_token_id
    assert prompt.cut == "city ." and prompt.query == "Tanzania is a [Y]"
