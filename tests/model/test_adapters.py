"""Every adapter, directly, on tiny random models of its family (odd sizes):

- structure: as many layers as the config, ``output_rows`` [d_ff, hidden], ``d_ff`` the config's FFN size;
- the neuron site (docs/method.md "neuron"): its activation is the input of the FFN's output projection, whose
  output is that activation times ``output_rows`` (plus bias), and the output of the activation function
  (BERT: ``intermediate``'s GELU, GPT-2: ``mlp.act``, gated MLPs: ``act(gate) * up``);
- the pieces the fast engine runs: assembled here with a plain attention (an oracle independent of the
  engine), every layer's ``neurons`` equal the site's activation, and ``head`` the model's logits;
- Gemma 3 specifics: embedding scale, final-logit softcapping, per-layer-type rotary bases, the BOS token in
  front of prompts, the sliding window as the longest prompt, and the options the pieces refuse.
"""
from __future__ import annotations

import pytest
import torch
from helpers import make_gemma3, make_llama
from transformers import Gemma3TextConfig

from kn_core.errors import InputError, UnsupportedArchitectureError
from kn_core.model.adapters import ADAPTERS, adapter_for, supported
from kn_core.model.adapters.gemma3 import Gemma3Adapter
from kn_core.model.adapters.llama import GatedMLPAdapter
from kn_core.model.hooks import recorded, run
from kn_core.model.loading import load_model

TEMPLATE = "The capital of [X] is [Y]."
SENTENCE = "The capital of Tanzania is Dar es Salaam."


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return load_model(str(make_llama(tmp_path_factory.mktemp("tiny-llama"))))


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    return load_model(str(make_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))))


@pytest.fixture(scope="module")
def gemma3_capped(tmp_path_factory):
    """Final logits soft-capped at 2 (the random logits reach well beyond, so the cap bites)."""
    return load_model(str(make_gemma3(tmp_path_factory.mktemp("tiny-gemma3-capped"), softcap=2.0)))


FAMILIES = ["bert", "gpt2", "llama", "gemma3", "gemma3_capped"]


@pytest.fixture(params=FAMILIES)
def any_lm(request):
    return request.getfixturevalue(request.param)


def ffn_parts(lm, layer: int):
    """(output projection, post-activation from the captured pre-activations) of ``layer``'s FFN, named the
    way each family's checkpoint names them."""
    block = lm.adapter.layers(lm.model)[layer]
    if lm.adapter.family == "BERT":
        inter = block.intermediate
        return block.output.dense, [inter.dense], lambda h: inter.intermediate_act_fn(h)
    if lm.adapter.family == "GPT-2":
        return block.mlp.c_proj, [block.mlp.c_fc], lambda h: block.mlp.act(h)
    mlp = block.mlp
    return mlp.down_proj, [mlp.gate_proj, mlp.up_proj], lambda g, u: mlp.act_fn(g) * u


def ids_of(lm) -> torch.Tensor:
    return torch.tensor(lm.tokenizer(SENTENCE)["input_ids"])[None]


def plain_pieces(lm, ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The adapter's pieces assembled with a plain attention: every layer's neuron activations [1, T, d_ff]
    and the logits [1, T, vocab]."""
    adapter, model = lm.adapter, lm.model
    positions = torch.arange(ids.shape[1])
    hidden, acts = adapter.embed(model, ids), []
    for layer in range(lm.n_layers):
        q = adapter.queries(model, layer, hidden, positions)
        k, v = adapter.keys_values(model, layer, hidden, positions)
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = q @ k.transpose(-1, -2) * adapter.attention_scale(model, layer)
        if lm.kind == "causal":
            later = torch.ones(len(positions), len(positions), dtype=torch.bool).triu(1)
            scores = scores.masked_fill(later, float("-inf"))
        mid = adapter.attention_output(model, layer, (scores.softmax(-1) @ v).transpose(1, 2).flatten(2), hidden)
        acts.append(adapter.neurons(model, layer, mid))
        hidden = adapter.ffn_output(model, layer, acts[-1], mid)
    return acts, adapter.head(model, hidden)


def assert_close(value: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


# -- every family ---------------------------------------------------------------------------------
def test_structure(any_lm):
    config, adapter = any_lm.config, any_lm.adapter
    d_ff = getattr(config, "intermediate_size", None) or config.n_inner
    assert any_lm.n_layers == adapter.n_layers(any_lm.model) == config.num_hidden_layers == 3
    assert any_lm.d_ff == d_ff == 37
    for layer in range(any_lm.n_layers):
        assert tuple(adapter.output_rows(any_lm.model, layer).shape) == (d_ff, config.hidden_size)
    assert ADAPTERS[config.model_type] is type(adapter)
    assert adapter.fast_path_issue(any_lm.model) is None


def test_site_is_the_input_of_the_output_projection_and_the_output_of_the_activation(any_lm):
    """docs/method.md: the neuron is the FFN post-activation, the input of the FFN's output projection."""
    ids, layers = ids_of(any_lm), range(any_lm.n_layers)
    seen: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for layer in layers:
        projection, pre, activation = ffn_parts(any_lm, layer)
        handles.append(projection.register_forward_hook(
            lambda _m, args, out, layer=layer: seen.update({(layer, "in"): args[0], (layer, "out"): out})))
        for j, module in enumerate(pre):
            handles.append(module.register_forward_hook(
                lambda _m, _a, out, layer=layer, j=j: seen.update({(layer, f"pre{j}"): out})))
    try:
        with torch.no_grad(), recorded(any_lm, layers) as acts:
            run(any_lm, ids)
    finally:
        for handle in handles:
            handle.remove()
    for layer in layers:
        projection, pre, activation = ffn_parts(any_lm, layer)
        act = acts[layer]
        assert act.shape == (1, ids.shape[1], any_lm.d_ff)
        assert torch.equal(act, seen[layer, "in"])
        assert_close(act, activation(*(seen[layer, f"pre{j}"] for j in range(len(pre)))))
        rows = any_lm.adapter.output_rows(any_lm.model, layer)
        bias = projection.bias if projection.bias is not None else 0
        assert_close(act @ rows + bias, seen[layer, "out"])


def test_pieces_reproduce_the_model(any_lm):
    """Every layer's ``neurons`` piece computes the site's activation; ``head`` the model's logits."""
    ids = ids_of(any_lm)
    with torch.no_grad():
        with recorded(any_lm, range(any_lm.n_layers)) as expected:
            logits = run(any_lm, ids)
        acts, head = plain_pieces(any_lm, ids)
    for layer in range(any_lm.n_layers):
        assert_close(acts[layer], expected[layer])
    assert_close(head, logits)


def test_registry():
    assert isinstance(adapter_for("gemma3_text"), Gemma3Adapter)
    assert isinstance(adapter_for("llama"), GatedMLPAdapter) and not isinstance(adapter_for("llama"), Gemma3Adapter)
    assert "Gemma 3 (gemma3_text)" in supported()
    with pytest.raises(UnsupportedArchitectureError, match="gemma2"):
        adapter_for("gemma2")


# -- Gemma 3 ---------------------------------------------------------------------------------------
def test_gemma3_embedding_is_scaled_by_the_square_root_of_hidden(gemma3):
    ids = ids_of(gemma3)
    table = gemma3.model.model.embed_tokens.weight
    assert_close(gemma3.adapter.embed(gemma3.model, ids), table[ids] * 24 ** 0.5)


def test_gemma3_head_soft_caps_the_logits(gemma3_capped):
    hidden = gemma3_capped.adapter.embed(gemma3_capped.model, ids_of(gemma3_capped))
    with torch.no_grad():
        raw = gemma3_capped.model.lm_head(gemma3_capped.model.model.norm(hidden))
        capped = gemma3_capped.adapter.head(gemma3_capped.model, hidden)
    assert float(raw.abs().max()) > 4  # the cap changes something
    assert float(capped.abs().max()) < 2
    assert_close(capped, 2 * torch.tanh(raw / 2))


def test_gemma3_rotary_base_is_per_layer_type(gemma3):
    """Layers 0 and 2 slide (base 100), layer 1 is global (base 10k): the same keys at position 5 rotate
    differently, and as the model's own rotary embedding says for that type."""
    adapter, model = gemma3.adapter, gemma3.model
    hidden = torch.randn(1, 1, 24)
    position = torch.tensor([5])
    block = adapter.layers(model)[0]
    heads = block.self_attn.k_norm(adapter.split_heads(block.self_attn.k_proj(block.input_layernorm(hidden)), 8))
    local, full = adapter._rotary(model, 0, heads, position), adapter._rotary(model, 1, heads, position)
    assert not torch.allclose(local, full)
    cos, sin = model.model.rotary_emb(heads, position[None], "sliding_attention")
    half = torch.cat([-heads[..., 4:], heads[..., :4]], dim=-1)
    assert_close(local, heads * cos[:, None] + half * sin[:, None])


def test_gemma3_prompt_starts_with_the_tokenizers_bos(tmp_path, gemma3):
    with_bos = load_model(str(make_gemma3(tmp_path, bos=True)))
    bos = with_bos.tokenizer.bos_token_id
    plain = gemma3.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    prompt = with_bos.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    assert plain.input_ids[0] != bos  # this tokenizer adds nothing: the prompt is the plain causal one
    assert prompt.input_ids == (bos, *plain.input_ids)
    assert prompt.target_positions == tuple(p + 1 for p in plain.target_positions)
    assert prompt.context_positions == tuple(p + 1 for p in plain.context_positions)  # BOS is never replaced
    assert prompt.object_ids == plain.object_ids
    assert [prompt.input_ids[t + 1] for t in prompt.target_positions[:-1]] == list(prompt.object_ids[:-1])


def test_gemma3_refuses_a_prompt_longer_than_its_sliding_window(tmp_path):
    lm = load_model(str(make_gemma3(tmp_path, window=5)))
    assert lm.adapter.max_positions(lm.config) == 5
    assert len(lm.prompt("[X] is [Y]", "Peru", "Lima").input_ids) <= 5
    with pytest.raises(InputError, match="at most 5"):
        lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")


def test_gemma3_without_sliding_layers_reads_its_whole_context():
    config = Gemma3TextConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, head_dim=8,
                              layer_types=["full_attention"] * 2, sliding_window=5, max_position_embeddings=40)
    assert Gemma3Adapter.max_positions(config) == 40


@pytest.mark.parametrize("options, issue", [
    ({"use_bidirectional_attention": True}, "bidirectional"),
    ({"rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                          "full_attention": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}}}, "dynamic"),
])
def test_gemma3_options_the_pieces_do_not_implement(options, issue):
    config = Gemma3TextConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, head_dim=8,
                              layer_types=["sliding_attention", "full_attention"], **options)
    assert issue in Gemma3Adapter()._architecture_issue(config)
