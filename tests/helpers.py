"""Shared test helpers: tiny random models built from configs (odd sizes catch hidden assumptions), the
plain-torch AMIG oracle (no Captum), what an AppTest element shows, and result comparisons."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import torch
from streamlit.testing.v1 import AppTest
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertTokenizerFast,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from kn_core.model.hooks import edited, gold_probs, run
from kn_core.app.measure import MEASURING

INIT = 0.5  # larger than the default 0.02 so that activations move probabilities measurably
WORDS = ("the capital of is in a an and city country language spoken official continent currency "
         "Tanzania Dodoma France Paris Japan Tokyo Kenya Nairobi Peru Lima Africa Europe Asia "
         "Dar es Salaam New Delhi Buenos Aires . , 的 首 都 是 法 国 巴 黎 日 本 东 京 。").split()
CORPUS = ["The capital of Tanzania is Dodoma.", "The capital of France is Paris.", "The capital of Japan is Tokyo.",
          "Dar es Salaam is a city in Tanzania.", "Buenos Aires and New Delhi.", "Kenya Nairobi Peru Lima Africa"]


def bert_tokenizer(folder: Path) -> BertTokenizerFast:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS) | set("abcdefghijklmnopqrstuvwxyz"))
    return BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=False,
                             tokenize_chinese_chars=True)


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")


def make_bert(folder: Path, seed: int = 0, layers: int = 3, d_ff: int = 37) -> Path:
    tokenizer = bert_tokenizer(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=d_ff, max_position_embeddings=40, type_vocab_size=1,
                        initializer_range=INIT)
    BertForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def make_gpt2(folder: Path, seed: int = 0, layers: int = 3, d_ff: int = 37) -> Path:
    tokenizer = gpt2_tokenizer()
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=24, n_layer=layers, n_head=2, n_inner=d_ff, n_positions=40,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        initializer_range=INIT)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def make_llama(folder: Path) -> Path:
    """A tiny gated-MLP causal LM with grouped keys/values and rotary positions."""
    tokenizer = gpt2_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=37, max_position_embeddings=40,
                         bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                         initializer_range=INIT)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


WINDOW = 24  # the tiny Gemma's sliding window: longer than every prompt here, except where a test shortens it


def make_gemma3(folder: Path, softcap: float | None = None, window: int = WINDOW, bos: bool = False,
                **options) -> Path:
    """A tiny Gemma 3: 2 query heads share 1 key/value head of 8 dims (q_proj 24 → 16), two sliding layers
    around a full one, rotary bases 100 (local) and 10k (global) so that mixing them up shows;
    ``bos``: the tokenizer puts its BOS in front of every text, as Gemma's does."""
    tokenizer = gpt2_tokenizer()
    if bos:
        tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, tokenizer.bos_token_id)])
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
        head_dim=8, intermediate_size=37, max_position_embeddings=40, query_pre_attn_scalar=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], sliding_window=window,
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
        final_logit_softcapping=softcap, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, initializer_range=INIT, **options)
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():  # RMSNorm weights start at 0 (scale 1 + 0): give them some spread, as trained ones have
        for name, param in model.named_parameters():
            if "norm" in name:
                param.normal_(0.0, INIT)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


# -- the plain-torch oracle ----------------------------------------------------------------------
def oracle_rule(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points α and weights of a quadrature rule, written out here (not read from kn_core): right Riemann
    α = k/m, w = 1/m; Gauss–Legendre nodes x, weights v on [−1, 1] → α = (x + 1)/2, w = v/2."""
    if rule == "riemann-right":
        return torch.arange(1, steps + 1, dtype=torch.float64) / steps, torch.full((steps,), 1.0 / steps,
                                                                               dtype=torch.float64)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return torch.from_numpy((nodes + 1) / 2), torch.from_numpy(weights / 2)


def plain_ig(lm, prompt, clean: torch.Tensor, start: torch.Tensor, layer: int, token: int, steps: int,
             rule: str = "riemann-right"):
    """Attr = (a − b) · Σ_k w_k ∂P(o_i | z(α_k)) / ∂z for object token ``token`` at ``layer`` (right Riemann:
    α_k = k/m, w_k = 1/m): [d_ff]."""
    position, gold = prompt.target_positions[token], prompt.object_ids[token]
    a, b = clean[token, layer], start[token, layer]
    alphas, weights = (x.float() for x in oracle_rule(rule, steps))
    z = (b + alphas[:, None] * (a - b)).requires_grad_(True)

    def replace(act):
        act = act.clone()
        act[:, position] = z
        return act

    ids = torch.tensor(prompt.input_ids)[None].expand(steps, -1)
    with torch.enable_grad(), edited(lm, {layer: replace}):
        probs = gold_probs(run(lm, ids), [position], [gold])[:, 0]
        (grad,) = torch.autograd.grad(probs.sum(), z)
    return (a - b) * (weights[:, None] * grad).sum(dim=0)


def plain_ig_paths(lm, prompt, clean: torch.Tensor, starts: torch.Tensor, layer: int, token: int, steps: int,
                   rule: str = "riemann-right"):
    """The paper's formula over several baselines b_j (``starts`` [n_paths, k, n_layers, d_ff]): one IG integral
    per path, from b_j to a, then their MEAN: mean_j (a − b_j) · Σ_k w_k ∂P(o_i | z_j(α_k)) / ∂z, [d_ff]."""
    return torch.stack([plain_ig(lm, prompt, clean, start, layer, token, steps, rule)
                        for start in starts]).mean(dim=0)


# -- what the app shows ---------------------------------------------------------------------------
_ESCAPE = re.compile(r"\\(.)")


def shown(element) -> str:
    """The element's text with Markdown backslash escapes removed (``\\[X\\]`` → ``[X]``)."""
    return _ESCAPE.sub(r"\1", element.value)


# -- comparing results -----------------------------------------------------------------------------
def relative_error(value, expected, scale: float = 0.0) -> float:
    """Largest deviation relative to the largest magnitude of ``expected`` (or ``scale`` when larger)."""
    value, expected = np.asarray(value, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(value - expected)) / max(np.max(np.abs(expected)), scale))


def assert_same(got, want, tol: float = 0.0) -> None:
    """Two attributions are the same result.

    tol = 0: bit for bit (float32 arrays) and equal records (prompt, probabilities, config, model, layers,
    language). tol > 0: scores, deltas and baseline probabilities within ``tol``; a delta is a residual,
    Σ attr − (P(a) − P(b)), far smaller than its terms, so its error is measured against their size,
    P(object) (the baseline probabilities, which carry the same terms, are held to their own size).
    """
    if tol == 0:
        for name in ("scores", "convergence_delta", "baseline_probs"):
            x, y = getattr(got, name), getattr(want, name)
            assert x.dtype == y.dtype == np.float32 and np.array_equal(x, y), name
        for name in ("path_deltas", "path_baseline_probs"):  # per-path arrays: both absent, or equal
            x, y = getattr(got, name, None), getattr(want, name, None)
            assert (x is None) == (y is None), name
            assert x is None or (x.dtype == y.dtype == np.float32 and np.array_equal(x, y)), name
        assert (got.prompt, got.token_probs, got.config, got.model, got.layers, got.lang) == \
               (want.prompt, want.token_probs, want.config, want.model, want.layers, want.lang)
        return
    rows = list(want.layers)
    assert relative_error(got.scores, want.scores) <= tol
    p_object = float(np.mean(want.token_probs))
    assert relative_error(got.convergence_delta[rows], want.convergence_delta[rows], p_object) <= tol
    assert relative_error(got.baseline_probs[rows], want.baseline_probs[rows]) <= tol
    assert got.n_paths == want.n_paths
    if got.path_deltas is not None and want.path_deltas is not None:
        assert relative_error(got.path_deltas[:, rows], want.path_deltas[:, rows], p_object) <= tol
        assert relative_error(got.path_baseline_probs[:, rows], want.path_baseline_probs[:, rows]) <= tol
    np.testing.assert_allclose(got.token_probs, want.token_probs, rtol=1e-6)


# -- the app in AppTest: waiting for the model's background worker -------------------------------------
# A page that queued work shows a watching fragment (with a Cancel button) until everything is stored; AppTest
# does not re-run fragments by itself, so a test runs the page again until the fragment is gone.
WAIT_S = 240
TIMEOUT = 300  # AppTest's timeout for one run of a page


def watching(at: AppTest) -> bool:
    """Whether the page shows work still waiting: prompts for the worker (a Cancel button), or a measurement
    for the measurer (its place says "⏳ Measuring …")."""
    return (any(button.label == "Cancel" for button in at.button)
            or any(str(c.value).startswith(MEASURING) for c in at.caption))


def until_stored(at: AppTest, timeout: float = WAIT_S) -> AppTest:
    """Run ``at`` again until nothing it queued or asked to measure waits any more (at most ``timeout``
    seconds)."""
    deadline = time.monotonic() + timeout
    while watching(at):
        assert time.monotonic() < deadline, "the worker did not finish in time"
        time.sleep(0.3)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def open_app(page: str | None = None, params: dict | None = None, model: str = "demo-mlm",
             state: dict | None = None) -> AppTest:
    """The app on ``page`` (default: the first) with ``model`` chosen, URL ``params`` and session ``state`` set,
    run until nothing it queued waits any more."""
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=TIMEOUT)
    at.session_state["model_choice"] = model
    for key, value in (state or {}).items():
        at.session_state[key] = value
    if params:
        at.query_params.update(params)
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return until_stored(at)


def texts(elements) -> list[str]:
    """What each element shows, as text."""
    return [shown(e) for e in elements]
