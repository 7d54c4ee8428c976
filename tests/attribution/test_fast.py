"""The fast engine equals the reference (Captum) engine on tiny models of every family, and falls back to it
explicitly where it cannot run; the benchmark script runs."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import INIT, assert_same, bert_tokenizer, gpt2_tokenizer, make_gemma3, make_llama
from transformers import (
    MistralConfig,
    MistralForCausalLM,
    RobertaConfig,
    RobertaForMaskedLM,
)

from kn_core.attribution import Attribution, AttributionConfig, attribute, kernels
from kn_core.model.hooks import count_hooks
from kn_core.model.loading import load_model

TOL = 1e-4  # the fast engine against the reference
TEMPLATE = "The capital of [X] is [Y]."
STEPS = 8
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def onednn_kernel(monkeypatch):
    """Every test here runs on oneDNN's matmul, the kernel real-size models get (``auto`` would give these tiny
    models torch's; tests/test_kernels.py covers the fast engine on torch's)."""
    monkeypatch.setenv(kernels.VARIABLE, "onednn")


def both(lm, obj: str, **config) -> tuple[Attribution, Attribution]:
    prompt = lm.prompt(TEMPLATE, "Tanzania", obj)
    return (attribute(lm, prompt, AttributionConfig(rule="riemann-right", engine="fast", steps=STEPS, **config)),
            attribute(lm, prompt, AttributionConfig(rule="riemann-right", engine="reference", steps=STEPS, **config)))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return load_model(str(make_llama(tmp_path_factory.mktemp("tiny-llama"))))


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    """A tiny RoBERTa (BERT blocks, its own head and position numbering)."""
    folder = tmp_path_factory.mktemp("tiny-roberta")
    tokenizer = bert_tokenizer(folder)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
                           intermediate_size=37, max_position_embeddings=48, type_vocab_size=1,
                           pad_token_id=tokenizer.pad_token_id, initializer_range=INIT)
    RobertaForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder))


@pytest.mark.parametrize("base", ["masked", "zero"])
@pytest.mark.parametrize("obj", ["Paris", "Dar es Salaam"])
def test_fast_equals_reference(lm, base, obj):
    fast, ref = both(lm, obj, baseline=base)
    assert fast.prompt.n_object_tokens >= (1 if obj == "Paris" else 2)
    assert_same(fast, ref, TOL)
    assert count_hooks(lm) == 0


@pytest.mark.parametrize("family", ["llama", "roberta"])
@pytest.mark.parametrize("base", ["masked", "zero"])
def test_fast_equals_reference_other_families(family, base, request):
    lm = request.getfixturevalue(family)
    fast, ref = both(lm, "Dar es Salaam", baseline=base)
    assert fast.prompt.n_object_tokens >= 2
    assert_same(fast, ref, TOL)
    assert count_hooks(lm) == 0


def test_fast_target_at_the_first_position(gpt2):
    """A causal prompt of one token: the first target has no earlier positions to attend to."""
    prompt = gpt2.prompt("[X] [Y]", "The", "Dar es Salaam")
    assert prompt.target_positions[0] == 0
    fast, ref = (attribute(gpt2, prompt,
                           AttributionConfig(rule="riemann-right", engine=engine, steps=STEPS, baseline="zero"))
                 for engine in ("fast", "reference"))
    assert_same(fast, ref, TOL)


def test_fast_layer_subset(lm):
    fast, ref = both(lm, "Dar es Salaam", layers=(2, 0))
    assert fast.layers == (0, 2)
    assert not fast.scores[1].any() and fast.convergence_delta[1] == 0
    assert_same(fast, ref, TOL)


def test_fast_is_default_and_reports_progress(gpt2):
    assert AttributionConfig().engine == "fast"
    seen = []
    attribute(gpt2, gpt2.prompt(TEMPLATE, "Tanzania", "Dar es Salaam"),
              AttributionConfig(rule="riemann-right", steps=3), progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_fast_falls_back_to_reference_when_pieces_disagree(bert, monkeypatch, caplog):
    prompt = bert.prompt(TEMPLATE, "Tanzania", "Paris")
    ref = attribute(bert, prompt, AttributionConfig(rule="riemann-right", engine="reference", steps=STEPS))
    adapter = type(bert.adapter)
    wrong = adapter.neurons
    monkeypatch.setattr(adapter, "neurons", lambda self, *a: 1.01 * wrong(self, *a))
    with caplog.at_level(logging.WARNING, logger="kn_core.attribution.fast"):
        fast = attribute(bert, prompt, AttributionConfig(rule="riemann-right", engine="fast", steps=STEPS))
    assert "using the reference engine" in caplog.text
    assert_same(fast, ref, tol=1e-6)


@pytest.mark.parametrize("piece", ["start", "attend_row", "attend_all", "block"])
def test_fast_falls_back_when_a_stream_piece_is_wrong(lm, piece, monkeypatch, caplog):
    """The streams' self-check (P at α = 1 of the shared stream and of the top layers' streams) notices a
    stream piece that no longer matches the model, whichever path through the pieces it lies on."""
    from kn_core.attribution import fast as engine

    if piece == "attend_all" and lm.kind == "causal":
        pytest.skip("causal streams never run whole sequences")
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    ref = attribute(lm, prompt, AttributionConfig(rule="riemann-right", engine="reference", steps=STEPS))
    right = getattr(engine.Streams, piece)

    def wrong(self, *args):  # a change that layer norms do not undo (unlike a scale or a shift)
        out = right(self, *args)
        return out + 0.05 * out.flip(-1)

    monkeypatch.setattr(engine.Streams, piece, wrong)
    with caplog.at_level(logging.WARNING, logger="kn_core.attribution.fast"):
        fast = attribute(lm, prompt, AttributionConfig(rule="riemann-right", engine="fast", steps=STEPS))
    assert "the streams do not reproduce the clean pass" in caplog.text
    assert_same(fast, ref, tol=1e-6)


def test_fast_falls_back_for_a_sliding_window_shorter_than_the_prompt(tmp_path, caplog):
    """Mistral attends to the last 4 positions only, which the pieces do not implement: the self-check
    notices and the reference engine answers."""
    tokenizer = gpt2_tokenizer()
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=37, max_position_embeddings=40, sliding_window=4,
                           bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                           initializer_range=INIT)
    MistralForCausalLM(config).save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="kn_core.attribution.fast"):
        fast, ref = both(lm, "Dar es Salaam")
    assert "do not reproduce the model" in caplog.text
    assert_same(fast, ref, tol=1e-6)


def test_fast_falls_back_in_training_mode(gpt2, caplog):
    prompt = gpt2.prompt(TEMPLATE, "Tanzania", "Paris")
    gpt2.model.train()
    try:
        with caplog.at_level(logging.WARNING, logger="kn_core.attribution.fast"):
            attribute(gpt2, prompt, AttributionConfig(rule="riemann-right", engine="fast", steps=2, baseline="zero"))
    finally:
        gpt2.model.eval()
    assert "training mode" in caplog.text


def test_bench_quick_runs():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_amig.py"), "--quick"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "speed-up" in out.stdout and "bert" in out.stdout and "gpt2" in out.stdout


# -- Gemma 3 -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    return load_model(str(make_gemma3(tmp_path_factory.mktemp("tiny-gemma3"), softcap=None)))


@pytest.fixture(scope="module")
def gemma3_capped(tmp_path_factory):
    """Final logits soft-capped at 2 (well inside the random logits' range, so the cap bites)."""
    return load_model(str(make_gemma3(tmp_path_factory.mktemp("tiny-gemma3-capped"), softcap=2.0)))


@pytest.mark.parametrize("family", ["gemma3", "gemma3_capped"])
@pytest.mark.parametrize("base", ["masked", "zero"])
def test_fast_equals_reference_gemma3(family, base, request, caplog):
    """The fast engine runs Gemma 3 itself (no fallback) and equals the reference."""
    lm = request.getfixturevalue(family)
    with caplog.at_level(logging.WARNING, logger="kn_core.attribution.fast"):
        fast, ref = both(lm, "Dar es Salaam", baseline=base)
    assert "using the reference engine" not in caplog.text
    assert fast.prompt.n_object_tokens >= 2
    assert len(fast.prompt.input_ids) < lm.config.sliding_window
    assert_same(fast, ref, TOL)
    assert count_hooks(lm) == 0
