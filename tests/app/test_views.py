"""What the shared views show: tokens as decoded text (a byte-level BPE tokenizer spells ` Tubman` as `ĠTubman`
and Greek as Latin-1 mojibake), and the completeness residual path by path against each path's own gap."""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import gpt2_tokenizer

from kn_core.app import figures
from kn_core.app.views import GAP_FLOOR, neuron_activation, path_residuals, promoted_frame
from kn_core.attribution import Attribution, AttributionConfig
from kn_core.data.prompts import Prompt
from kn_core.model.vocab import piece_texts, promoted_tokens, token_text, token_texts


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


def test_byte_level_tokens_show_as_text(tokenizer):
    ids = tokenizer("the capital ομαι á Paris\n")["input_ids"]
    raw = tokenizer.convert_ids_to_tokens(ids)
    assert any(t.startswith("Ġ") for t in raw) and "Î" in "".join(raw)  # the tokenizer's own spelling
    texts = token_texts(tokenizer, ids)
    assert not any("Ġ" in t or "Î" in t or "Ã" in t for t in texts), texts
    assert token_text(tokenizer, "Ġcapital") == " capital" and token_text(tokenizer, "Ġ") == "␣"
    assert token_text(tokenizer, "Ċ") == "⏎"
    pieces = piece_texts(tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces).replace("…", "").replace("␣", " ").replace("⏎", "\n") == "the capital ομαι á Paris\n"
    assert {"ο", "μ", "α", "ι", "á"} <= set(pieces), pieces  # each letter whole, at its last byte token


def test_the_neuron_views_show_decoded_tokens(gpt2, one_thread):
    """The promoted tokens and a sentence's tokens, as the neuron panel and neuron search show them."""
    raw = [t.token for t in promoted_tokens(gpt2, 1, 3, k=gpt2.tokenizer.vocab_size)]
    frame = promoted_frame(gpt2, 1, 3)
    assert list(frame.columns) == ["token", "logit per unit"]
    assert any(t.startswith("Ġ") for t in raw)
    assert not frame["token"].str.contains("Ġ|Î|Ã").any(), frame
    texts, tokens, values = neuron_activation(gpt2, "The capital of France is Paris.", 1, 3)
    assert len(texts) == len(tokens) == len(values) and " capital" in texts and "Ġcapital" in tokens
    figure = figures.token_activations(texts, values, "t", raw=tokens)
    assert " capital" in "".join(figure.data[0].x) and "Ġcapital" in list(figure.data[0].customdata)


def attribution(path_deltas, path_starts, p_object: float = 0.5, layers=(0, 1)) -> Attribution:
    deltas, starts = np.asarray(path_deltas, dtype=np.float32), np.asarray(path_starts, dtype=np.float32)
    n_layers = deltas.shape[1]
    prompt = Prompt(template="[X] is [Y].", subject="a", object="b", input_ids=(1, 2), target_positions=(1,),
                    object_ids=(3,), context_positions=(0,))
    return Attribution(prompt=prompt, scores=np.zeros((n_layers, 4), np.float32),
                       convergence_delta=deltas.mean(axis=0), token_probs=(p_object,),
                       baseline_probs=starts.mean(axis=0), config=AttributionConfig(), model="m", layers=tuple(layers),
                       lang="en", path_deltas=deltas, path_baseline_probs=starts)


def test_the_residual_is_measured_per_path_against_its_own_gap():
    """Two paths with gaps +0.1 and −0.1: their mean gap is 0, which made the old ratio explode (or cancel);
    each path's own ratio is 0.002 / 0.1 and 0.001 / 0.1."""
    result = attribution([[0.002, 0.0], [-0.001, 0.0]], [[0.4, 0.45], [0.6, 0.55]])
    relative, absolute = path_residuals(result)
    assert relative == pytest.approx(0.02, rel=1e-5) and math.isnan(absolute)
    assert np.all(np.isinf(result.relative_delta()[:1]) | (result.relative_delta()[:1] > 1))  # the old measure


def test_a_path_with_a_tiny_gap_gets_an_absolute_residual():
    result = attribution([[0.01, 3e-4], [0.02, -5e-4]], [[0.3, 0.5 - 1e-4], [0.4, 0.5 + 5e-4]])
    relative, absolute = path_residuals(result)
    assert relative == pytest.approx(max(0.01 / 0.2, 0.02 / 0.1), rel=1e-5)  # layer 0: gaps 0.2 and 0.1
    assert absolute == pytest.approx(5e-4, rel=1e-3)  # layer 1: both gaps below the floor
    assert GAP_FLOOR == 1e-3


def test_layers_not_computed_and_old_results_count_right():
    only_first = attribution([[0.01, 9.0], [0.02, 9.0]], [[0.3, 0.0], [0.4, 0.0]], layers=(0,))
    assert path_residuals(only_first)[0] == pytest.approx(0.2, rel=1e-5)  # layer 1's rows are ignored
    old = Attribution(**{**only_first.__dict__, "path_deltas": None, "path_baseline_probs": None})
    relative, _ = path_residuals(old)  # one combined path: |0.015| / |0.5 − 0.35|
    assert relative == pytest.approx(0.1, rel=1e-5)
