"""Quadrature rules of the IG integral: the rules' own maths, both engines against an independent oracle that
writes the rule out itself, Gauss–Legendre's smaller completeness residual at equal m on a nonlinear model,
and the store keeping results of different rules apart (and the default's old keys reachable)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from helpers import plain_ig_paths, relative_error
from test_fast import TEMPLATE, TOL
from test_paper_formula import ORACLE_TOL, clean_activations, oracle_baselines

from kn_core.attribution import AttributionConfig, attribute
from kn_core.attribution.quadrature import DEFAULT_RULE, RULES, rule
from kn_core.errors import InputError
from kn_core.runs.store import ResultKey, ResultStore


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread is fastest (and kind to a shared machine)."""


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("steps", [1, 2, 5, 13])
def test_rules_integrate_polynomials(name, steps):
    alphas, weights = rule(name, steps)
    assert len(alphas) == len(weights) == steps and np.all((alphas > 0) & (alphas <= 1))
    assert weights.sum() == pytest.approx(1.0, abs=1e-12) and np.all(np.diff(alphas) > 0)
    exact_up_to = 2 * steps - 1 if name == "gauss-legendre" else 0  # Gauss–Legendre: degree 2m − 1
    for degree in range(exact_up_to + 1):
        assert np.dot(weights, alphas ** degree) == pytest.approx(1 / (degree + 1), rel=1e-10)
    if name == "riemann-right":
        assert alphas[-1] == 1.0  # the clean activation: the fast engine reads it from the clean pass


def test_unknown_rule_lists_the_rules():
    with pytest.raises(InputError, match="riemann-right, gauss-legendre"):
        AttributionConfig(rule="simpson")
    assert AttributionConfig().rule == DEFAULT_RULE == "riemann-right"


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("steps", [1, 5])
def test_gauss_legendre_matches_the_oracle(lm, engine, steps):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    result = attribute(lm, prompt, AttributionConfig(engine=engine, steps=steps, rule="gauss-legendre"))
    clean, starts = clean_activations(lm, prompt), oracle_baselines(lm, prompt)
    expected = torch.stack([torch.stack([plain_ig_paths(lm, prompt, clean, starts, layer, i, steps, "gauss-legendre")
                                         for layer in range(lm.n_layers)])
                            for i in range(prompt.n_object_tokens)]).mean(dim=0).numpy()
    assert relative_error(result.scores, expected) <= ORACLE_TOL
    riemann = attribute(lm, prompt, AttributionConfig(engine=engine, steps=steps))
    assert relative_error(riemann.scores, expected) > 10 * ORACLE_TOL  # the rule changes the result


def test_engines_agree_for_gauss_legendre(lm):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    config = AttributionConfig(steps=4, rule="gauss-legendre")
    fast = attribute(lm, prompt, config)
    reference = attribute(lm, prompt, AttributionConfig(steps=4, rule="gauss-legendre", engine="reference"))
    assert relative_error(fast.scores, reference.scores) <= TOL
    np.testing.assert_allclose(fast.path_deltas, reference.path_deltas, atol=TOL * max(fast.token_probs))


def test_gauss_legendre_converges_faster(lm):
    """At equal m, the Gauss–Legendre residual is far below the right-Riemann one on these nonlinear models."""
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    residual = {name: np.abs(attribute(lm, prompt, AttributionConfig(steps=6, rule=name)).path_deltas).sum()
                for name in RULES}
    assert residual["gauss-legendre"] < 0.2 * residual["riemann-right"]


def test_the_store_keeps_rules_apart(bert, tmp_path):
    prompt = bert.prompt(TEMPLATE, "Tanzania", "Paris")
    riemann, legendre = AttributionConfig(steps=3), AttributionConfig(steps=3, rule="gauss-legendre")
    key = ResultKey.of(bert, prompt, riemann, "en")
    old = {k: v for k, v in asdict(key).items() if k != "rule"}  # how keys were written before rules existed
    text = json.dumps(old, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert key.digest == hashlib.sha256(text.encode("utf-8")).hexdigest() and key.rule == DEFAULT_RULE
    assert ResultKey.of(bert, prompt, legendre, "en").digest != key.digest
    store = ResultStore(tmp_path / "store.sqlite")
    store.put(ResultKey.of(bert, prompt, legendre, "en"), attribute(bert, prompt, legendre, lang="en"))
    assert store.get(ResultKey.of(bert, prompt, riemann, "en")) is None
    got = store.get(ResultKey.of(bert, prompt, legendre, "en"))
    assert got is not None and got.config.rule == "gauss-legendre"
