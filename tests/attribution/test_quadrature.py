"""Quadrature rules of the IG integral: the rules' own maths, both engines against an independent oracle that
writes the rule out itself (left Riemann included: α = 0, the baseline itself, is a point), Gauss–Legendre's
smaller completeness residual at equal m on a nonlinear model, the adaptive rule's splicing of refined paths,
and the store keeping results of different rules apart (and the default's old keys reachable)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import helpers
import numpy as np
import pytest
import torch
from helpers import plain_ig, plain_ig_paths, relative_error
from test_fast import TEMPLATE, TOL
from test_paper_formula import ORACLE_TOL, clean_activations, oracle_baselines

from kn_core.attribution import AttributionConfig, attribute
from kn_core.attribution import quadrature
from kn_core.attribution.quadrature import ADAPTIVE, DEFAULT_RULE, RULES, rule
from kn_core.errors import InputError
from kn_core.runs.store import ResultKey, ResultStore


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread is fastest (and kind to a shared machine)."""


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("steps", [1, 2, 5, 13])
def test_rules_integrate_polynomials(name, steps):
    alphas, weights = rule(name, steps)
    assert len(alphas) == len(weights) == steps and np.all((alphas >= 0) & (alphas <= 1))
    assert weights.sum() == pytest.approx(1.0, abs=1e-12) and np.all(np.diff(alphas) > 0)
    gauss = name.startswith("gauss-legendre")  # the adaptive rule's first pass is Gauss–Legendre
    exact_up_to = 2 * steps - 1 if gauss else 0  # Gauss–Legendre: degree 2m − 1
    for degree in range(exact_up_to + 1):
        assert np.dot(weights, alphas ** degree) == pytest.approx(1 / (degree + 1), rel=1e-10)
    if name == "riemann-right":
        assert alphas[-1] == 1.0  # the clean activation: the fast engine reads it from the clean pass
    if name == "riemann-left":  # the authors' code: α = (k − 1)/m, the baseline itself first
        np.testing.assert_array_equal(alphas, np.arange(steps) / steps)
    if gauss:
        assert np.all((alphas > 0) & (alphas < 1))


def test_unknown_rule_lists_the_rules():
    with pytest.raises(InputError, match="riemann-right, riemann-left, gauss-legendre, gauss-legendre-adaptive"):
        AttributionConfig(rule="simpson")
    # the engines' own default: the paper's
    assert AttributionConfig().rule in RULES and DEFAULT_RULE == "riemann-right"


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
    riemann = attribute(lm, prompt, AttributionConfig(engine=engine, steps=steps, rule="riemann-right"))
    assert relative_error(riemann.scores, expected) > 10 * ORACLE_TOL  # the rule changes the result


def _left_oracle(rule_name: str, steps: int):
    """The oracle's rule, with left Riemann written out here too: α = (k − 1)/m, w = 1/m, k = 1 … m."""
    if rule_name == "riemann-left":
        return torch.arange(steps, dtype=torch.float64) / steps, torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    return ORIGINAL_ORACLE_RULE(rule_name, steps)


ORIGINAL_ORACLE_RULE = helpers.oracle_rule


def _oracle(lm, prompt, steps: int, rule_name: str, paths=None) -> np.ndarray:
    """The paper's formula by the plain-torch oracle, every layer: [n_layers, d_ff]."""
    clean, starts = clean_activations(lm, prompt), oracle_baselines(lm, prompt)
    starts = starts if paths is None else starts[paths]
    return torch.stack([torch.stack([plain_ig_paths(lm, prompt, clean, starts, layer, i, steps, rule_name)
                                     for layer in range(lm.n_layers)])
                        for i in range(prompt.n_object_tokens)]).mean(dim=0).numpy()


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("steps", [1, 5])
def test_riemann_left_matches_the_oracle(lm, engine, steps, monkeypatch):
    monkeypatch.setattr(helpers, "oracle_rule", _left_oracle)
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    result = attribute(lm, prompt, AttributionConfig(engine=engine, steps=steps, rule="riemann-left"))
    expected = _oracle(lm, prompt, steps, "riemann-left")
    assert relative_error(result.scores, expected) <= ORACLE_TOL
    right = attribute(lm, prompt, AttributionConfig(engine=engine, steps=steps, rule="riemann-right"))
    assert relative_error(right.scores, expected) > 10 * ORACLE_TOL  # the rule changes the result
    if steps == 1:  # one point, α = 0: the gradient at the baseline itself, P there exact
        np.testing.assert_allclose(result.path_baseline_probs, right.path_baseline_probs, atol=1e-6)


def test_engines_agree_for_riemann_left(lm):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    fast = attribute(lm, prompt, AttributionConfig(steps=4, rule="riemann-left"))
    reference = attribute(lm, prompt, AttributionConfig(steps=4, rule="riemann-left", engine="reference"))
    assert relative_error(fast.scores, reference.scores) <= TOL
    np.testing.assert_allclose(fast.path_deltas, reference.path_deltas, atol=TOL * max(fast.token_probs))


def test_adaptive_extremes(lm, monkeypatch):
    """Nothing flagged: the adaptive rule is Gauss–Legendre m. Everything flagged, one doubling allowed: every
    path refined and spliced in is Gauss–Legendre 2m (the old integrals taken out exactly)."""
    assert ADAPTIVE["gauss-legendre-adaptive"] == "gauss-legendre"
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    gl = {m: attribute(lm, prompt, AttributionConfig(steps=m, rule="gauss-legendre")) for m in (2, 4)}
    adaptive = AttributionConfig(steps=2, rule="gauss-legendre-adaptive")
    monkeypatch.setattr(quadrature, "ADAPTIVE_MAX_STEPS", 4)
    monkeypatch.setattr(quadrature, "needs_refining", lambda sums, deltas: torch.zeros(sums.shape[0], sums.shape[2],
                                                                                         dtype=torch.bool))
    assert relative_error(attribute(lm, prompt, adaptive).scores, gl[2].scores) <= 1e-6
    monkeypatch.setattr(quadrature, "needs_refining", lambda sums, deltas: torch.ones(sums.shape[0], sums.shape[2],
                                                                                        dtype=torch.bool))
    everything = attribute(lm, prompt, adaptive)
    assert relative_error(everything.scores, gl[4].scores) <= TOL
    np.testing.assert_allclose(everything.path_deltas, gl[4].path_deltas, atol=TOL * max(gl[4].token_probs))


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_adaptive_splices_one_path(gpt2, engine, monkeypatch):
    """One (layer, path) flagged twice: that path's integral at that layer is Gauss–Legendre 4m, every other
    one Gauss–Legendre m, against the oracle path by path."""
    prompt = gpt2.prompt(TEMPLATE, "Tanzania", "Paris")
    flag = {"layer": 1, "path": 2}

    def one(sums, deltas):
        out = torch.zeros(sums.shape[0], sums.shape[2], dtype=torch.bool)
        if sums.shape[0] > 1:
            out[flag["path"], flag["layer"]] = True
        elif sums.shape[2] == 1:  # the refined path, alone on its layer: flag it again, once
            out[0, 0] = quadrature.ADAPTIVE_MAX_STEPS == 16 and not one.__dict__.setdefault("done", False)
            one.done = True
        return out

    monkeypatch.setattr(quadrature, "needs_refining", one)
    monkeypatch.setattr(quadrature, "ADAPTIVE_MAX_STEPS", 16)
    result = attribute(gpt2, prompt, AttributionConfig(steps=2, rule="gauss-legendre-adaptive", engine=engine))
    clean, starts = clean_activations(gpt2, prompt), oracle_baselines(gpt2, prompt)
    n = starts.shape[0]
    expected = _oracle(gpt2, prompt, 2, "gauss-legendre")
    layer, j = flag["layer"], flag["path"]
    own = {m: torch.stack([plain_ig(gpt2, prompt, clean, starts[j], layer, i, m, "gauss-legendre")
                           for i in range(prompt.n_object_tokens)]).mean(dim=0).numpy() for m in (2, 8)}
    expected[layer] += (own[8] - own[2]) / n
    assert relative_error(result.scores, expected) <= ORACLE_TOL


def test_adaptive_refines_what_the_residual_flags(lm):
    """With the real criterion: every (layer, path) left unrefined meets the bound, or m reached the cap."""
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    result = attribute(lm, prompt, AttributionConfig(steps=2, rule="gauss-legendre-adaptive"))
    gaps = np.abs(np.mean(result.token_probs) - result.path_baseline_probs)
    rel = np.abs(result.path_deltas) / np.maximum(gaps, quadrature.ADAPTIVE_FLOOR)
    fixed = attribute(lm, prompt, AttributionConfig(steps=2, rule="gauss-legendre"))
    fixed_rel = np.abs(fixed.path_deltas) / np.maximum(gaps, quadrature.ADAPTIVE_FLOOR)
    assert rel.max() <= max(quadrature.ADAPTIVE_BOUND, fixed_rel.max()) + 1e-6
    refined = fixed_rel > quadrature.ADAPTIVE_BOUND
    np.testing.assert_array_equal(result.path_deltas[~refined], fixed.path_deltas[~refined])


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
                for name in ("riemann-right", "gauss-legendre")}
    assert residual["gauss-legendre"] < 0.2 * residual["riemann-right"]


def test_the_store_keeps_rules_apart(bert, tmp_path):
    prompt = bert.prompt(TEMPLATE, "Tanzania", "Paris")
    riemann = AttributionConfig(steps=3, rule="riemann-right")  # the rule of every result stored before rules
    legendre = AttributionConfig(steps=3, rule="gauss-legendre")
    key = ResultKey.of(bert, prompt, riemann, "en")
    old = {k: v for k, v in asdict(key).items() if k != "rule"}  # how keys were written before rules existed
    text = json.dumps(old, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert key.digest == hashlib.sha256(text.encode("utf-8")).hexdigest() and key.rule == "riemann-right"
    assert ResultKey.of(bert, prompt, legendre, "en").digest != key.digest
    store = ResultStore(tmp_path / "store.sqlite")
    store.put(ResultKey.of(bert, prompt, legendre, "en"), attribute(bert, prompt, legendre, lang="en"))
    assert store.get(ResultKey.of(bert, prompt, riemann, "en")) is None
    got = store.get(ResultKey.of(bert, prompt, legendre, "en"))
    assert got is not None and got.config.rule == "gauss-legendre"
