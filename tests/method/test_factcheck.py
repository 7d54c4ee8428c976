"""Fact-checking: metrics against hand-computed confusion counts (both conventions), seeded claims and split,
threshold choice, and a checker calibrated and judging on the tiny models."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from kn_core.attribution import AttributionConfig, attribute
from kn_core.data import Fact, FactSet, Relation, Template
from kn_core.errors import DataError, InputError
from kn_core.method.factcheck import (
    Confusion,
    FactChecker,
    calibrate,
    choose_threshold,
    decode,
    evaluate,
    greedy_answer,
    make_claims,
    split,
)
from kn_core.model.hooks import run
from kn_core.model.loading import DEMO_MODELS, load_model

CAPITALS = [("Tanzania", "Dodoma"), ("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"),
            ("Peru", "Lima"), ("Argentina", "Buenos Aires"), ("India", "New Delhi")]
CONTINENTS = [("Tanzania", "Africa"), ("Kenya", "Africa"), ("France", "Europe"), ("Japan", "Asia")]


def tiny_factset() -> FactSet:
    """English-only facts whose objects the tiny models' vocabulary knows (two of them multi-token)."""
    relations = {
        "P36": Relation("P36", "capital", "", (Template("P36", "en", "The capital of [X] is [Y].", False),
                                               Template("P36", "en", "The capital city of [X] is [Y].", False))),
        "P30": Relation("P30", "continent", "", (Template("P30", "en", "[X] is in [Y].", False),)),
    }
    facts = [Fact(f"{rid}-{s.lower()}", rid, {"en": (s, o)})
             for rid, rows in (("P36", CAPITALS), ("P30", CONTINENTS)) for s, o in rows]
    return FactSet(relations, facts)


# -- metrics ------------------------------------------------------------------------------------------
def test_metrics_by_hand():
    c = Confusion(tp=3, fp=1, fn=2, tn=4)
    assert c.n == 10
    assert c.precision == pytest.approx(3 / 4)
    assert c.recall == pytest.approx(3 / 5)
    assert c.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert c.authors_precision == pytest.approx(3 / 5)  # the authors' P is our recall
    assert c.authors_recall == pytest.approx(3 / 4)  # and their R our precision
    assert c.accept_true == pytest.approx(3 / 5)
    assert c.accept_wrong == pytest.approx(1 / 5)
    assert c.balanced_accuracy == pytest.approx((0.6 + 0.8) / 2)
    assert c.metrics()["F1"] == pytest.approx(c.f1)


def test_metrics_of_the_published_wo_dkn_shape():
    # a judge that accepts few claims but is nearly always right when it does: high precision, low recall;
    # in the authors' convention that reads as a low "P" and a high "R", as in their wo_DKN rows
    c = Confusion(tp=22, fp=1, fn=78, tn=99)
    assert (c.precision, c.recall) == pytest.approx((22 / 23, 0.22))
    assert (c.authors_precision, c.authors_recall) == pytest.approx((0.22, 22 / 23))
    assert c.f1 == pytest.approx(2 * (22 / 23) * 0.22 / (22 / 23 + 0.22))


def test_zero_denominators_and_counting():
    none_accepted = Confusion(tp=0, fp=0, fn=5, tn=5)
    assert none_accepted.precision == none_accepted.recall == none_accepted.f1 == 0.0
    assert none_accepted.accept_wrong == 0.0 and none_accepted.balanced_accuracy == 0.5
    all_accepted = Confusion(tp=5, fp=5, fn=0, tn=0)
    assert all_accepted.f1 == pytest.approx(2 / 3) and all_accepted.accept_wrong == 1.0
    assert Confusion.of([True, True, False, False, True], [True, False, True, False, True]) == Confusion(2, 1, 1, 1)
    assert Confusion(1, 2, 3, 4) + Confusion(1, 1, 1, 1) == Confusion(2, 3, 4, 5)


def test_choose_threshold():
    truth = [True, True, False, False]
    assert choose_threshold([0.9, 0.8, 0.3, 0.1], truth) == pytest.approx(0.55)  # halfway, perfect split
    assert choose_threshold([0.9, 0.8, 0.3, 0.1], truth, "balanced_accuracy") == pytest.approx(0.55)
    assert choose_threshold([0.2, 0.2, 0.2, 0.2], truth) == pytest.approx(0.2)  # uninformative: accept all
    # accept-all and "accept only 0.9" both have F1 2/3; balanced accuracy breaks the tie (0.75 against 0.5)
    assert choose_threshold([0.1, 0.9, 0.5, 0.2], truth) == pytest.approx(0.7)
    with pytest.raises(InputError):
        choose_threshold([], [])
    with pytest.raises(InputError):
        choose_threshold([0.1], [True], "accuracy")


# -- claims and split ----------------------------------------------------------------------------------
def test_make_claims_seeded_and_from_the_relation():
    factset = tiny_factset()
    claims = make_claims(factset, "P36", "en", seed=3)
    assert claims == make_claims(factset, "P36", "en", seed=3)
    assert len(claims) == 2 * len(CAPITALS)
    objects = {o for _, o in CAPITALS}
    for true, wrong in zip(claims[::2], claims[1::2]):
        assert true.is_true and not wrong.is_true
        assert (true.fact_id, true.subject) == (wrong.fact_id, wrong.subject)
        assert wrong.candidate != true.candidate and wrong.candidate in objects
    seeds = {tuple(c.candidate for c in make_claims(factset, "P36", "en", seed=s)[1::2]) for s in range(8)}
    assert len(seeds) > 1, "different seeds must draw different wrong objects"
    subset = factset.facts_of("P36")[2:4]  # a fact's wrong twin does not depend on the other facts drawn
    assert make_claims(factset, "P36", "en", 3, subset) == claims[4:8]
    for wrong in make_claims(factset, "P30", "en", seed=1)[1::2]:  # repeated objects are never the true one
        assert wrong.candidate != factset.fact(wrong.fact_id).object("en")


def test_split_is_seeded_and_partitions():
    facts = tiny_factset().facts_of("P36")
    train, test = split(facts, seed=5)
    assert (train, test) == split(facts, seed=5)
    assert len(train) == round(0.8 * len(facts)) and len(test) == len(facts) - len(train)
    assert set(train) | set(test) == set(facts) and not set(train) & set(test)
    assert split(facts[:2], seed=0)[1], "with two facts both parts get one"
    with pytest.raises(InputError):
        split(facts, train=1.0)


# -- a checker on the tiny models -------------------------------------------------------------------
@pytest.fixture(scope="module")
def factset() -> FactSet:
    return tiny_factset()


@pytest.fixture(scope="module")
def checker(lm, factset) -> FactChecker:
    return calibrate(lm, factset, "P36", "en", config=AttributionConfig(steps=8), seed=0)


def test_calibrated_checker(checker):
    assert checker.dkn, "the tiny models have degenerate pairs on these prompts"
    assert len(checker.train_facts) + len(checker.test_facts) == len(CAPITALS)
    assert set(checker.train_facts).isdisjoint(checker.test_facts)
    counts = {(layer, index): c for layer, index, c in checker.counts}
    floor = int(0.7 * max(counts.values()))
    assert set(checker.dkn) == {n for n, c in counts.items() if c > floor}
    assert 0 <= checker.train_accept_wrong <= 1 and 0 <= checker.train_accept_true <= 1
    assert FactChecker.from_json(checker.to_json()) == checker


def test_judge_scores_only_the_dkn_layers(lm, checker, one_thread):
    start = time.perf_counter()
    verdict = checker.judge(lm, "Tanzania", "Dar es Salaam")  # 3 tokens against the true object's 1
    assert time.perf_counter() - start < 1.0
    assert verdict.prompt.n_object_tokens >= 2 and verdict.prompt.object == "Dar es Salaam"
    full = attribute(lm, verdict.prompt, AttributionConfig(steps=8)).scores
    expected = [full[layer, index] for layer, index in checker.dkn]
    np.testing.assert_allclose([v[2] for v in verdict.voters], expected, rtol=1e-4, atol=1e-7)
    assert verdict.score == pytest.approx(float(np.mean(expected)), rel=1e-4, abs=1e-7)
    assert verdict.correct == (verdict.score >= checker.lam) and verdict.lam == checker.lam
    answer = greedy_answer(lm, verdict.prompt)
    assert len(answer) == verdict.prompt.n_object_tokens
    assert verdict.model_agrees == (answer == verdict.prompt.object_ids)
    assert verdict.model_prediction == decode(lm, answer)


def test_decode_joins_cjk_characters(bert):
    ids = bert.tokenizer.encode("法国 巴黎 the capital", add_special_tokens=False)
    assert decode(bert, ids) == "法国巴黎 the capital"


def test_greedy_answer_is_a_greedy_decode(lm):
    prompt = lm.prompt("The capital of [X] is [Y].", "Tanzania", "Dar es Salaam")
    answer = greedy_answer(lm, prompt)
    with torch.no_grad():
        if lm.kind == "masked":
            logits = run(lm, torch.tensor(prompt.input_ids)[None])[0]
            assert answer == tuple(int(logits[t].argmax()) for t in prompt.target_positions)
        else:
            ids = list(prompt.input_ids[:prompt.target_positions[0] + 1])
            for _ in range(prompt.n_object_tokens):
                ids.append(int(run(lm, torch.tensor(ids)[None])[0, -1].argmax()))
            assert answer == tuple(ids[-prompt.n_object_tokens:])


def test_evaluate_counts_every_held_out_claim(lm, checker, factset, one_thread):
    claims = checker.held_out_claims(factset)
    result = evaluate(lm, checker, claims)
    assert len(result.verdicts) + len(result.skipped) == len(claims) == 2 * len(checker.test_facts)
    truth = [c.is_true for c, _ in result.verdicts]
    assert result.with_dkn == Confusion.of(truth, [v.correct for _, v in result.verdicts])
    assert result.wo_dkn == Confusion.of(truth, [v.model_agrees for _, v in result.verdicts])
    assert result.with_dkn.n == result.wo_dkn.n == len(result.verdicts)
    assert list(result.table()["method"]) == ["wo_DKN", "with_DKN"]
    assert result.seconds_per_claim < 1.0


def test_checker_refuses_another_shape_and_bad_json(lm, checker):
    other = replace(checker, d_ff=lm.d_ff + 1)
    with pytest.raises(InputError):
        other.judge(lm, "Tanzania", "Dodoma")
    with pytest.raises(DataError):
        FactChecker.from_json('{"kind": "something else"}')


@pytest.mark.parametrize("name", list(DEMO_MODELS))
def test_demo_claim_is_judged_within_a_second(name, one_thread):
    if not (DEMO_MODELS[name] / "config.json").is_file():
        pytest.skip(f"demo model {name} is not trained yet ({DEMO_MODELS[name]} is missing)")
    lm = load_model(name)
    dkn = tuple((layer, 7 * layer + 1) for layer in range(lm.n_layers))  # every layer: the slowest case
    checker = FactChecker(model=lm.name, n_layers=lm.n_layers, d_ff=lm.d_ff, relation="P36", lang="zh",
                          template="[X]的首都是[Y]。", dkn=dkn, counts=(), lam=0.0, objective="f1",
                          train_accept_true=1.0, train_accept_wrong=0.0, train_f1=1.0, train_facts=(), test_facts=(),
                          n_prompts=0, n_pairs=0)
    checker.judge(lm, "坦桑尼亚", "多多马")  # warm-up
    start = time.perf_counter()
    verdict = checker.judge(lm, "坦桑尼亚", "多多马")  # a 3-token object
    assert time.perf_counter() - start < 1.0
    assert len(verdict.voters) == lm.n_layers and verdict.prompt.n_object_tokens == 3
