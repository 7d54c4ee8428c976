"""Fact-checking: a checker calibrated and judging on the tiny and demo models — DKN layers only, abstention
without a DKN set, the same masks for a claim and its twin, both wo_DKN rules (the metrics and claims are
tested in test_metrics.py and test_claims.py)."""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_claims import CAPITALS, tiny_factset  # a sibling module: pytest puts tests/method on the path

from kn_core.attribution import AttributionConfig, attribute
from kn_core.data import FactSet
from kn_core.errors import DataError, InputError
from kn_core.method import factcheck
from kn_core.method.checker import first_words
from kn_core.method.factcheck import (
    NO_VERDICT,
    Confusion,
    FactChecker,
    calibrate,
    claim_prompt,
    decode,
    evaluate,
    greedy_answer,
    make_claims,
    model_answers,
    relation_masks,
    with_masks,
)
from kn_core.model.hooks import run
from kn_core.model.loading import DEMO_MODELS, load_model


# -- a checker on the tiny models -------------------------------------------------------------------
@pytest.fixture(scope="module")
def factset() -> FactSet:
    return tiny_factset()


TAU = 0.1  # below the languages' τ: the tiny models' attributions are flat, and few neurons pass 0.3 · max


@pytest.fixture(scope="module")
def checker(lm, factset) -> FactChecker:
    return calibrate(lm, factset, "P36", "en", config=AttributionConfig(steps=8), seed=0, tau=TAU)


def test_calibrated_checker(lm, checker):
    assert checker.dkn, "with τ = 0.1 the tiny models have degenerate pairs on these prompts"
    assert checker.tau == TAU
    assert len(checker.train_facts) + len(checker.test_facts) == len(CAPITALS)
    assert set(checker.train_facts).isdisjoint(checker.test_facts)
    counts = {(layer, index): c for layer, index, c in checker.counts}
    floor = int(0.7 * max(counts.values()))
    assert set(checker.dkn) == {n for n, c in counts.items() if c > floor}
    assert 0 <= checker.train_accept_wrong <= 1 and 0 <= checker.train_accept_true <= 1
    assert not checker.abstains and checker.lam is not None
    assert FactChecker.from_json(checker.to_json()) == checker
    # a masked LM's mask count: the relation's longest object (Buenos Aires, New Delhi have several tokens)
    longest = max(lm.prompt(checker.template, "Peru", o).n_object_tokens for _, o in CAPITALS)  # any subject
    assert checker.n_masks == (longest if lm.kind == "masked" else 0) and longest >= 2


def test_judge_reports_the_baselines(lm, checker, one_thread):
    verdict = checker.judge(lm, "Tanzania", "Dodoma")
    assert 0 < verdict.p_candidate <= 1 and verdict.logprob <= 0
    assert verdict.logprob == pytest.approx(math.log(verdict.p_candidate) / verdict.prompt.n_object_tokens, rel=1e-5)
    assert len(verdict.random_scores) == 30
    full = attribute(lm, verdict.prompt, AttributionConfig(steps=8)).scores
    sets = checker.random_sets(30)
    assert sets == checker.random_sets(30)  # seeded by the checker
    for s, got in zip(sets, verdict.random_scores):
        assert sorted(layer for layer, _ in s) == sorted(layer for layer, _ in checker.dkn)
        assert got == pytest.approx(float(np.mean([full[layer, index] for layer, index in s])), rel=1e-4, abs=1e-7)


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
    assert not verdict.abstained and verdict.reason == ""
    answer = greedy_answer(lm, verdict.prompt)  # token-exact: greedy at each candidate position
    assert len(answer) == verdict.prompt.n_object_tokens
    assert verdict.exact_agrees == (answer == verdict.prompt.object_ids) == verdict.wo_dkn("token_exact")
    assert verdict.exact_prediction == decode(lm, answer)
    assert verdict.wo_dkn("authors") == verdict.model_agrees
    with pytest.raises(InputError):
        verdict.wo_dkn("majority")


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
    assert result.n_no_verdict == 0 and result.n_verdict == len(result.verdicts)
    assert result.with_dkn == Confusion.of(truth, [v.correct for _, v in result.verdicts])
    assert result.wo_dkn == result.wo_dkn_all == Confusion.of(truth, [v.model_agrees for _, v in result.verdicts])
    assert result.wo_dkn_exact == Confusion.of(truth, [v.exact_agrees for _, v in result.verdicts])
    assert result.with_dkn.n == result.wo_dkn.n == len(result.verdicts)
    table = result.table()
    assert list(table["method"]) == ["wo_DKN", "wo_DKN_token_exact", "with_DKN", "wo_DKN_all_claims"]
    assert (table["no_verdict"] == 0).all() and (table["claims"] == len(result.verdicts)).all()
    frame = result.claims_frame()
    assert frame["verdict"].all() and len(frame) == len(result.verdicts)
    assert result.seconds_per_claim < 1.0


def test_checker_refuses_another_shape_and_bad_json(lm, checker):
    other = replace(checker, d_ff=lm.d_ff + 1)
    with pytest.raises(InputError):
        other.judge(lm, "Tanzania", "Dodoma")
    with pytest.raises(DataError):
        FactChecker.from_json('{"kind": "something else"}')
    old = {**json.loads(checker.to_json()), "version": 1}  # before abstention and equal masks
    with pytest.raises(DataError, match="calibrate again"):
        FactChecker.from_json(old)


# -- no verdict from an empty DKN set ----------------------------------------------------------------
def _accept_everything(lm, **changes) -> FactChecker:
    """What an empty DKN set used to give: every score 0 and λ = 0, so 0 ≥ λ accepted every claim."""
    fields = {"model": lm.name, "n_layers": lm.n_layers, "d_ff": lm.d_ff, "relation": "P36", "lang": "en",
              "template": "The capital of [X] is [Y].", "dkn": (), "counts": (), "lam": 0.0, "objective": "f1",
              "train_accept_true": 1.0, "train_accept_wrong": 1.0, "train_f1": 2 / 3, "train_facts": (),
              "test_facts": (), "n_prompts": 3, "n_pairs": 0}
    return FactChecker(**{**fields, **changes})


def test_an_empty_dkn_set_gives_no_verdict(lm, factset, one_thread):
    checker = _accept_everything(lm)
    assert checker.abstains
    verdict = checker.judge(lm, "Tanzania", "Dodoma")
    assert verdict.correct is None and verdict.correct is not True, "an empty DKN set must not accept a claim"
    assert verdict.abstained and verdict.reason == NO_VERDICT
    assert math.isnan(verdict.score) and verdict.lam is None and verdict.voters == ()
    assert isinstance(verdict.model_agrees, bool)  # the model's own answer is still given
    claims = make_claims(factset, "P36", "en", 0)
    result = evaluate(lm, checker, claims)
    judged = len(result.verdicts)
    assert judged + len(result.skipped) == len(claims) and judged >= 4  # (some subjects the tiny vocab lacks)
    assert result.n_no_verdict == judged and result.n_verdict == 0
    assert result.with_dkn.n == result.wo_dkn.n == result.wo_dkn_exact.n == 0  # counted over verdicts only
    assert result.wo_dkn_all.n == judged
    table = result.table()
    rows = table.set_index("method")
    assert (table["no_verdict"] == judged).all() and rows.loc["wo_DKN_all_claims", "claims"] == judged
    verdicts_only = rows.drop(index="wo_DKN_all_claims")
    assert (verdicts_only["claims"] == 0).all()
    assert verdicts_only[["P", "R", "F1"]].isna().all().all(), "no verdict, no metric (never 0, never accept-all)"
    assert result.claims_frame()["with_DKN"].isna().all()


def test_no_lambda_is_calibrated_on_an_empty_dkn_set(lm, factset, monkeypatch, one_thread):
    real = factcheck.degenerate

    def no_pairs(*args, **kwargs):
        return replace(real(*args, **kwargs), pairs=(), groups=())

    def never(*args, **kwargs):
        raise AssertionError("claims were scored on an empty DKN set")

    monkeypatch.setattr(factcheck, "degenerate", no_pairs)
    monkeypatch.setattr(factcheck, "_score_claims", never)
    checker = calibrate(lm, factset, "P36", "en", config=AttributionConfig(steps=4), seed=0)
    assert checker.dkn == () and checker.abstains and checker.n_pairs == 0 and checker.n_prompts > 0
    assert checker.lam is None and checker.train_f1 is None and checker.train_accept_true is None
    assert FactChecker.from_json(checker.to_json()) == checker
    assert checker.judge(lm, "Tanzania", "Paris").correct is None


# -- equal masks for a claim and its twin ------------------------------------------------------------
def _masks(lm, prompt) -> int:
    return sum(t == lm.tokenizer.mask_token_id for t in prompt.input_ids)


def test_a_claim_and_its_twin_get_equal_inputs(bert, factset):
    template = "The capital of [X] is [Y]."
    n = relation_masks(bert, template, [o for _, o in CAPITALS])
    assert n == max(bert.prompt(template, "Peru", o).n_object_tokens for _, o in CAPITALS) >= 2
    pairs = [(t, w) for t, w in zip(*[iter(make_claims(factset, "P36", "en", seed=0))] * 2)
             if bert.prompts([template], t.subject, "Lima").prompts]  # subjects the tiny vocabulary can spell
    assert len(pairs) >= 3 and any(len(bert.prompt(template, "Peru", w.candidate).object_ids) !=
                                   len(bert.prompt(template, "Peru", t.candidate).object_ids) for t, w in pairs)
    for true, wrong in pairs:
        a, b = (claim_prompt(bert, template, c.subject, c.candidate, n) for c in (true, wrong))
        assert len(a.input_ids) == len(b.input_ids) and _masks(bert, a) == _masks(bert, b) == n
        # the inputs are identical: only which tokens are read at the first masks differs
        assert a.input_ids == b.input_ids
        for p in (a, b):
            k = p.n_object_tokens
            assert p.target_positions == tuple(range(p.target_positions[0], p.target_positions[0] + k))
            assert all(p.input_ids[t] == bert.tokenizer.mask_token_id for t in p.target_positions)
            assert not set(p.context_positions) & {j for j, t in enumerate(p.input_ids)
                                                   if t == bert.tokenizer.mask_token_id}
    own = bert.prompt(template, "Peru", "Buenos Aires")
    padded = claim_prompt(bert, template, "Peru", "Lima", n)
    for start in (own, padded):  # the authors' input: one [MASK], whatever the masks before
        one = with_masks(bert, start, 1)
        assert _masks(bert, one) == 1 and one.object_ids == start.object_ids[:1]
        assert len(one.input_ids) == len(bert.prompt(template, "Peru", "Lima").input_ids)


def test_the_checker_scores_claim_and_twin_on_equal_inputs(bert, factset):
    checker = calibrate(bert, factset, "P36", "en", config=AttributionConfig(steps=4), seed=0, tau=TAU)
    for true, wrong in zip(*[iter(checker.held_out_claims(factset))] * 2):
        a, b = (checker.prompt(bert, c.subject, c.candidate) for c in (true, wrong))
        assert len(a.input_ids) == len(b.input_ids)
    result = evaluate(bert, checker, checker.held_out_claims(factset))
    frame = result.claims_frame()
    assert frame.groupby("fact_id")["input_len"].nunique().eq(1).all()


def test_a_causal_lm_needs_no_masks(gpt2):
    assert relation_masks(gpt2, "The capital of [X] is [Y].", [o for _, o in CAPITALS]) == 0
    plain = gpt2.prompt("The capital of [X] is [Y].", "Peru", "Lima")
    assert claim_prompt(gpt2, "The capital of [X] is [Y].", "Peru", "Lima", 5) == plain


# -- wo_DKN: the authors' rule and token-exact ----------------------------------------------------------
def test_first_words():
    assert first_words(" Dodoma. The", 1) == ("Dodoma", True)
    assert first_words(" Buenos Aires, the", 2) == ("Buenos Aires", True)
    assert first_words(" Dodo", 1) == ("Dodo", False)  # the word may go on
    assert first_words("多多马。", 1) == ("多多马", True)
    assert first_words(" Guinea-Bissau is", 1) == ("Guinea-Bissau", True)
    assert first_words(" St. Louis", 1)[1] is True and first_words(" Dodoma.", 1) == ("Dodoma", False)
    assert first_words("多多\ufffd", 1)[1] is False  # half a character (byte-level BPE): not complete yet


def _demo(name: str):
    if not (DEMO_MODELS[name] / "config.json").is_file():
        pytest.skip(f"demo model {name} is not trained yet ({DEMO_MODELS[name]} is missing)")
    return load_model(name)


@pytest.mark.parametrize("lang, template, subject, true, wrong", [
    ("en", "The capital of [X] is [Y].", "Tanzania", "Dodoma", "Canberra"),
    ("zh", "[X]的首都是[Y]。", "坦桑尼亚", "多多马", "堪培拉")])
def test_wo_dkn_rules_on_the_demo_mlm(lang, template, subject, true, wrong, one_thread):
    lm = _demo("demo-mlm")
    n = 5  # more masks than either candidate has tokens: the padding must not change the one-mask rule
    for candidate in (true, wrong):
        prompt = claim_prompt(lm, template, subject, candidate, n)
        answers = model_answers(lm, prompt)
        one = with_masks(lm, prompt, 1)  # the authors' input: the query with ONE [MASK]
        with torch.no_grad():
            top = int(run(lm, torch.tensor(one.input_ids)[None])[0, one.target_positions[0]].argmax())
        word = decode(lm, [top])
        assert answers["authors"] == (word, word == decode(lm, prompt.object_ids))  # the whole object string
        assert answers["first_token"] == (word, top == prompt.object_ids[0])  # the lenient variant
        exact = greedy_answer(lm, prompt)
        assert answers["token_exact"] == (decode(lm, exact), exact == prompt.object_ids)
    # the demo model knows the fact: by the first-token rule the true claim is accepted, its twin is not; by the
    # authors' whole-string rule only when the object is one token
    right = model_answers(lm, claim_prompt(lm, template, subject, true, n))
    assert right["first_token"][1]
    assert right["authors"][1] == (len(claim_prompt(lm, template, subject, true).object_ids) == 1)
    assert not model_answers(lm, claim_prompt(lm, template, subject, wrong, n))["first_token"][1]
    assert not model_answers(lm, claim_prompt(lm, template, subject, wrong, n))["authors"][1]


@pytest.mark.parametrize("lang, template, subject, true, wrong", [
    ("en", "The capital of [X] is [Y].", "Tanzania", "Dodoma", "Canberra"),
    ("zh", "[X]的首都是[Y]。", "坦桑尼亚", "多多马", "堪培拉")])
def test_wo_dkn_rules_on_the_demo_clm(lang, template, subject, true, wrong, one_thread):
    lm = _demo("demo-clm")
    right = model_answers(lm, claim_prompt(lm, template, subject, true))
    assert right["authors"] == (true, True), "the greedily generated word is the object"
    assert right["token_exact"][1]
    other = model_answers(lm, claim_prompt(lm, template, subject, wrong))
    assert other["authors"] == (true, False) and not other["token_exact"][1]
    # token-exact is the greedy decode at the candidate's positions
    prompt = claim_prompt(lm, template, subject, wrong)
    assert other["token_exact"][0] == decode(lm, greedy_answer(lm, prompt))


def test_a_multi_token_candidate_by_whole_string_and_first_token(one_thread):
    lm = _demo("demo-mlm")
    template, subject = "[X]的首都是[Y]。", "坦桑尼亚"
    prompt = claim_prompt(lm, template, subject, "多多马", 3)
    top = model_answers(lm, prompt)["first_token"]
    # a candidate that only shares the first character is judged alike by the lenient first-token rule …
    twin = claim_prompt(lm, template, subject, "多哈", 3)
    assert twin.object_ids[0] == prompt.object_ids[0]
    assert model_answers(lm, twin)["first_token"] == top
    assert model_answers(lm, twin)["token_exact"][1] is False
    # … while the authors' rule compares the whole object string: one token never equals several
    assert model_answers(lm, prompt)["authors"][1] is False and model_answers(lm, twin)["authors"][1] is False


@pytest.mark.parametrize("name", list(DEMO_MODELS))
def test_demo_claim_is_judged_on_every_dkn_layer(name, one_thread):
    """Judging a claim with DKN in every layer (the slowest case) works on a 3-token object; how fast it is
    belongs to bench/bench_app.py (a timed test fails on a loaded machine, not on a slow change)."""
    lm = _demo(name)
    dkn = tuple((layer, 7 * layer + 1) for layer in range(lm.n_layers))  # every layer: the slowest case
    checker = FactChecker(model=lm.name, n_layers=lm.n_layers, d_ff=lm.d_ff, relation="P36", lang="zh",
                          template="[X]的首都是[Y]。", dkn=dkn, counts=(), lam=0.0, objective="f1",
                          train_accept_true=1.0, train_accept_wrong=0.0, train_f1=1.0, train_facts=(), test_facts=(),
                          n_prompts=0, n_pairs=0)
    verdict = checker.judge(lm, "坦桑尼亚", "多多马")  # a 3-token object
    assert len(verdict.voters) == lm.n_layers and verdict.prompt.n_object_tokens == 3
