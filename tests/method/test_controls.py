"""Controls and the specificity verdict (docs/method.md §6): the rule on numbers, and on constructed tiny models whose
one live FFN neuron writes one object's logit only (fact), every object of a relation (relation), or every
object of every relation (generic); a dead neuron changes nothing (none)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import gpt2_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from kn_core.data import Fact, FactSet, Relation, Template
from kn_core.errors import InputError
from kn_core.method.controls import (
    VERDICTS,
    control_prompts,
    fact_controls,
    find_relation,
    measure,
    random_sets,
    verdict,
)
from kn_core.model.loading import load_model

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Tanzania", "Dodoma"), ("Kenya", "Nairobi"), ("Peru", "Lima")]
CONTINENTS = [("Tanzania", "Africa"), ("Kenya", "Africa"), ("Peru", "Africa")]  # single-token objects only
TEMPLATE = "The capital of [X] is [Y]."
LIVE = (1, 0)  # the constructed models' one live neuron (layer, index)
DEAD = (1, 5)


def factset() -> FactSet:
    relations = {"P36": Relation("P36", "capital", "", (Template("P36", "en", TEMPLATE, False),)),
                 "P30": Relation("P30", "continent", "", (Template("P30", "en", "[X] is in [Y].", False),))}
    facts = [Fact(f"{rid}-{s.lower()}", rid, {"en": (s, o)})
             for rid, rows in (("P36", CAPITALS), ("P30", CONTINENTS)) for s, o in rows]
    return FactSet(relations, facts)


# -- the rule on numbers ---------------------------------------------------------------------------
@pytest.mark.parametrize("own, same, other, rmean, rsd, want", [
    (-0.67, -0.64, -0.01, -0.005, 0.01, "relation"),  # the showcase's measured shape
    (-0.60, -0.05, 0.02, 0.0, 0.01, "fact"),
    (-0.15, -0.01, 0.0, 0.0, 0.01, "fact"),  # small but clean: twice and 10 points beyond both controls
    (-0.60, -0.50, -0.40, 0.0, 0.01, "generic"),
    (-0.60, -0.10, -0.50, 0.0, 0.01, "generic"),  # other relations fall, not its own: not a fact
    (-0.04, 0.0, 0.0, 0.0, 0.001, "none"),  # below the 5-point floor
    (-0.30, -0.01, 0.0, -0.20, 0.05, "none"),  # within 3 sd of random
    (0.20, 0.0, 0.0, 0.0, 0.01, "none"),  # P rose
    (-0.60, math.nan, -0.01, 0.0, 0.01, None),  # no same-relation control: no verdict
    (-0.60, -0.05, math.nan, 0.0, 0.01, "fact"),
    (-0.60, -0.55, math.nan, 0.0, 0.01, None),
])
def test_verdict_rule(own, same, other, rmean, rsd, want):
    label, reason = verdict(own, same, other, rmean, rsd)
    assert label == want and reason
    assert label is None or label in VERDICTS


def test_random_sets_are_seeded_same_layers_and_avoid_the_set():
    neurons = [(2, 5), (2, 7), (4, 1)]
    draws = random_sets(neurons, 37, seed=3, draws=30)
    assert draws == random_sets(neurons, 37, seed=3, draws=30) != random_sets(neurons, 37, seed=4, draws=30)
    for s in draws:
        assert sorted(layer for layer, _ in s) == [2, 2, 4] and not set(s) & set(neurons) and len(set(s)) == 3
    assert len({tuple(s) for s in draws}) > 20


# -- constructed models ----------------------------------------------------------------------------
def constructed(folder, written: set[str]):
    """A LLaMA whose attention writes nothing and whose only live FFN neuron, LIVE, fires at every position and
    writes a channel that the LM head reads into the logits of the ``written`` objects' tokens only. A big
    constant residual dimension keeps the final RMSNorm's scale nearly fixed."""
    tokenizer = gpt2_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=16, max_position_embeddings=40, mlp_bias=True,
                         tie_word_embeddings=False, bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id, initializer_range=0.5)
    model = LlamaForCausalLM(config)
    ids = {o: tokenizer(" " + o, add_special_tokens=False)["input_ids"] for o in written}
    assert all(len(v) == 1 for v in ids.values()), ids
    with torch.no_grad():
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb[:, :4] = 0.0
        emb[:, 3] = 20.0
        head[:, :4] = 0.0
        for token in ids.values():
            head[token[0], 0] = 4.0
        for block in model.model.layers:
            block.self_attn.o_proj.weight.zero_()
            for proj in (block.mlp.gate_proj, block.mlp.up_proj, block.mlp.down_proj):
                proj.weight.zero_()
                proj.bias.zero_()
        mlp = model.model.layers[LIVE[0]].mlp
        mlp.gate_proj.bias[LIVE[1]] = 3.0
        mlp.up_proj.bias[LIVE[1]] = 1.0
        mlp.down_proj.weight[0, LIVE[1]] = 2.0
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder))


CASES = {"fact": {"Paris"}, "relation": {o for _, o in CAPITALS}, "generic": {o for _, o in CAPITALS + CONTINENTS}}


@pytest.mark.parametrize("case", list(CASES))
def test_constructed_models_get_their_verdict(case, tmp_path, one_thread):
    lm = constructed(tmp_path, CASES[case])
    facts = factset()
    prompts = [lm.prompt(TEMPLATE, "France", "Paris")]
    controls = fact_controls(lm, facts, "en", prompts, [LIVE], n_facts=3, draws=30, seed=0)
    assert controls.relation == "P36"
    assert len(controls.same_facts) == 3 and len(controls.other_facts) == 3
    assert {o for _, _, o, _ in controls.same_facts}.isdisjoint({"Paris"})
    assert all(fid.startswith("P30") for fid, *_ in controls.other_facts)
    assert controls.own < -0.9, "the live neuron carries P(Paris)"
    assert controls.random.draws == 30 and controls.random.mean == pytest.approx(0.0, abs=1e-6)
    assert controls.random.rank == 0.0  # below every random draw
    assert controls.specificity == case, controls.reason
    if case == "fact":
        assert controls.same_relation > 0 and controls.other_relation > 0  # competitors gain
    if case == "relation":
        assert controls.same_relation < -0.9 < 0 < controls.other_relation
    if case == "generic":
        assert controls.other_relation < -0.9
    dead = measure(lm, prompts, [DEAD], control_prompts(lm, facts, "en", [TEMPLATE], "France", "Paris", n_facts=3))
    assert dead.specificity == "none" and dead.own == 0.0
    empty = measure(lm, prompts, [], control_prompts(lm, facts, "en", [TEMPLATE], "France", "Paris", n_facts=3))
    assert empty.specificity == "none"
    json = controls.to_json()
    assert set(json) >= {"own", "same_relation", "other_relation", "random"}
    assert set(json["random"]) == {"mean", "sd", "draws", "rank"}


def test_control_facts_follow_language_relation_and_seed(gpt2):
    facts = factset()
    assert find_relation(facts, "en", ["The capital of [X] is [Y]."], "x", "y") == "P36"
    assert find_relation(facts, "en", ["[X] rules from [Y]."], "Japan", "Tokyo") == "P36"  # by the fact's labels
    assert find_relation(facts, "en", ["[X] rules from [Y]."], "Atlantis", "Poseidonis") is None
    chosen = control_prompts(gpt2, facts, "en", ["[X] rules from [Y]."], "Japan", "Tokyo", n_facts=3, seed=1)
    assert chosen == control_prompts(gpt2, facts, "en", ["[X] rules from [Y]."], "Japan", "Tokyo", n_facts=3, seed=1)
    assert all(p.template == "[X] rules from [Y]." for *_, ps in chosen.same_relation for p in ps)  # the same wording
    assert all(p.template == "[X] is in [Y]." for *_, ps in chosen.other_relation for p in ps)
    assert "Tokyo" not in {o for _, _, o, _ in chosen.same_relation}
    with pytest.raises(InputError, match="known: P36, P30"):
        control_prompts(gpt2, facts, "en", [TEMPLATE], "Japan", "Tokyo", relation="P999")
    with pytest.raises(InputError, match="draws"):
        measure(gpt2, [gpt2.prompt(TEMPLATE, "Japan", "Tokyo")], [(0, 1)], chosen, draws=1)
    unknown = fact_controls(gpt2, facts, "en", [gpt2.prompt("[X] rules from [Y].", "Atlantis", "Poseidonis")],
                            [(0, 1)], n_facts=2, draws=5)
    assert unknown.relation is None and math.isnan(unknown.same_relation) and unknown.specificity in ("none", None)
    assert np.isfinite(unknown.other_relation)
