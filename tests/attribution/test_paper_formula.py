"""The default ``masked`` baseline is the paper's formula (docs/method.md §1): one IG integral per masked prompt, each
from its own baseline b_j, combined by their MEAN — checked against an independent per-masked-prompt oracle on
the nonlinear tiny models; completeness holds path by path; ``masked-mean`` (the authors' code: one integral
from the mean baseline) gives a measurably different result; both engines agree for every baseline, also when
a layer's paths are split across batches; per-path results survive the store."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import assert_same, plain_ig, plain_ig_paths, relative_error
from test_fast import TEMPLATE, TOL

from kn_core.attribution import PATHS_COMBINED, AttributionConfig, attribute, fast
from kn_core.attribution.baselines import BASELINES, baseline
from kn_core.model.hooks import count_hooks, edited, gold_probs, recorded, run

ORACLE_TOL = 1e-3  # the engines against the independent per-masked-prompt oracle (relative to the largest score)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread is fastest (and kind to a shared machine)."""


def no_info_token(lm) -> int:
    """The no-information token, read from the tokenizer directly: [MASK] for masked LMs, end-of-text for causal."""
    return lm.tokenizer.eos_token_id if lm.kind == "causal" else lm.tokenizer.mask_token_id


def oracle_baselines(lm, prompt) -> torch.Tensor:
    """b_j for each masked prompt, built one prompt at a time with plain forward passes (head included), not
    with :mod:`kn_core.attribution.baselines`: [n, k, n_layers, d_ff]."""
    tok = lm.tokenizer  # the structural specials; [UNK] stands for a word of the prompt and is masked like one
    specials = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id} if lm.kind != "causal" else set()
    object_prefix = set(prompt.target_positions[1:]) if lm.kind == "causal" else set(prompt.target_positions)
    out = []
    for j in range(len(prompt.input_ids)):
        if prompt.input_ids[j] in specials or j in object_prefix:
            continue
        ids = torch.tensor(prompt.input_ids)
        ids[j] = no_info_token(lm)
        with torch.no_grad(), recorded(lm, range(lm.n_layers), prompt.target_positions) as acts:
            run(lm, ids[None])
        out.append(torch.stack([acts[layer][0].float() for layer in range(lm.n_layers)], dim=1))
    return torch.stack(out)


def clean_activations(lm, prompt) -> torch.Tensor:
    with torch.no_grad(), recorded(lm, range(lm.n_layers), prompt.target_positions) as acts:
        run(lm, torch.tensor(prompt.input_ids)[None])
    return torch.stack([acts[layer][0].float() for layer in range(lm.n_layers)], dim=1)


def prob_at(lm, prompt, layer: int, token: int, z: torch.Tensor) -> float:
    """P(o_token) with the activation of ``layer`` at the token's target replaced by ``z``."""
    position = prompt.target_positions[token]

    def replace(act):
        act = act.clone()
        act[:, position] = z
        return act

    with torch.no_grad(), edited(lm, {layer: replace}):
        logits = run(lm, torch.tensor(prompt.input_ids)[None])
    return float(gold_probs(logits, [position], [prompt.object_ids[token]])[0, 0])


def test_masked_baselines_are_one_path_per_context_token(lm):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    starts = baseline(lm, prompt, "masked")
    n = len(prompt.context_positions)
    assert starts.shape == (n, prompt.n_object_tokens, lm.n_layers, lm.d_ff) and n >= 3
    torch.testing.assert_close(starts, oracle_baselines(lm, prompt), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(baseline(lm, prompt, "masked-mean"), starts.mean(dim=0, keepdim=True))
    assert not baseline(lm, prompt, "zero").any() and len(baseline(lm, prompt, "zero")) == 1
    assert set(BASELINES) == {"masked", "masked-mean", "zero"} and AttributionConfig().baseline == "masked"


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_default_is_the_papers_formula(lm, engine):
    """mean_j (a − b_j) · (1/m) Σ_k ∂P(o | b_j + (k/m)(a − b_j)) / ∂z, averaged over the object's tokens."""
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    steps = 6
    result = attribute(lm, prompt, AttributionConfig(rule="riemann-right", engine=engine, steps=steps))
    assert PATHS_COMBINED == "mean" and result.n_paths == len(prompt.context_positions)
    clean, starts = clean_activations(lm, prompt), oracle_baselines(lm, prompt)
    expected = torch.stack([torch.stack([plain_ig_paths(lm, prompt, clean, starts, layer, i, steps)
                                         for layer in range(lm.n_layers)])
                            for i in range(prompt.n_object_tokens)]).mean(dim=0).numpy()
    assert relative_error(result.scores, expected) <= ORACLE_TOL
    # per path: P(o | b_j), read with the activation replaced in a plain forward pass
    probs = np.array([[np.mean([prob_at(lm, prompt, layer, i, start[i, layer]) for i in range(prompt.n_object_tokens)])
                       for layer in range(lm.n_layers)] for start in starts])
    np.testing.assert_allclose(result.path_baseline_probs, probs, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(result.baseline_probs, probs.mean(axis=0), rtol=1e-3, atol=1e-7)
    assert count_hooks(lm) == 0


def test_completeness_holds_per_path_and_shrinks_with_steps(lm):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    coarse = attribute(lm, prompt, AttributionConfig(rule="riemann-right", steps=3))
    fine = attribute(lm, prompt, AttributionConfig(rule="riemann-right", steps=200))
    gaps = np.abs(np.mean(fine.token_probs) - fine.path_baseline_probs)  # [n_paths, n_layers]
    big = gaps > 0.05 * gaps.max()  # paths whose baseline moves P measurably (a relative residual is meaningful)
    assert big.sum() >= fine.n_layers
    assert np.max(np.abs(fine.path_deltas)[big] / gaps[big]) < 0.05
    assert np.max(np.abs(fine.path_deltas)) < 0.05 * gaps.max()
    assert np.nanmax(fine.worst_relative_path_delta()) < 0.05
    for j in range(fine.n_paths):  # each path's residual shrinks, not only their mean
        assert np.sum(np.abs(fine.path_deltas[j])) < np.sum(np.abs(coarse.path_deltas[j]))
    np.testing.assert_allclose(fine.worst_path_delta(),
                               fine.path_deltas[np.abs(fine.path_deltas).argmax(axis=0), range(fine.n_layers)])
    assert np.all(np.abs(fine.worst_path_delta()) >= np.abs(fine.convergence_delta) - 1e-9)
    # the oracle's own per-path completeness: Σ_i Attr_j = P(a) − P(b_j) up to the Riemann error
    clean, starts = clean_activations(lm, prompt), oracle_baselines(lm, prompt)
    layer = lm.n_layers - 1
    for j, start in enumerate(starts[:2]):
        attr = plain_ig(lm, prompt, clean, start, layer, 0, 200)
        gap = prob_at(lm, prompt, layer, 0, clean[0, layer]) - prob_at(lm, prompt, layer, 0, start[0, layer])
        assert float(attr.sum()) == pytest.approx(gap, abs=0.05 * abs(gap) + 1e-7)
        assert float(attr.sum()) - gap == pytest.approx(float(fine.path_deltas[j, layer]), abs=1e-3 * abs(gap) + 1e-8)


def test_masked_and_masked_mean_differ_measurably(lm):
    """The integral of the averaged path is not the average of the integrals on a nonlinear model: the scores
    differ by far more than the engines' tolerance, and so do the baselines' probabilities, mean_j P(b_j) against
    P(b̄); ``masked-mean`` is the one integral from b̄."""
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    steps = 8
    paper = attribute(lm, prompt, AttributionConfig(rule="riemann-right", steps=steps))
    authors = attribute(lm, prompt, AttributionConfig(rule="riemann-right", steps=steps, baseline="masked-mean"))
    assert authors.n_paths == 1 and paper.n_paths > 1
    assert relative_error(paper.scores, authors.scores) > 0.05
    assert relative_error(paper.baseline_probs, authors.baseline_probs) > 0.01
    clean, starts = clean_activations(lm, prompt), oracle_baselines(lm, prompt)
    mean = starts.mean(dim=0)
    expected = torch.stack([torch.stack([plain_ig(lm, prompt, clean, mean, layer, i, steps)
                                         for layer in range(lm.n_layers)])
                            for i in range(prompt.n_object_tokens)]).mean(dim=0).numpy()
    assert relative_error(authors.scores, expected) <= ORACLE_TOL


@pytest.mark.parametrize("base", list(BASELINES))
def test_fast_equals_reference_for_every_baseline(lm, base):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    fast_result, ref = (attribute(lm, prompt,
                                  AttributionConfig(rule="riemann-right", engine=engine, steps=8, baseline=base))
                        for engine in ("fast", "reference"))
    assert_same(fast_result, ref, TOL)
    assert count_hooks(lm) == 0


def test_fast_splits_a_layers_paths_across_batches(lm, monkeypatch):
    """With a tiny batch budget a layer's paths span several batches (and batches mix layers): same result."""
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    config = AttributionConfig(rule="riemann-right", steps=5)
    whole = attribute(lm, prompt, config)
    rows = 1 if lm.kind == "causal" else len(prompt.input_ids)
    monkeypatch.setattr(fast, "GROUP_BYTES", 2 * fast._stream_bytes(lm, 0, rows, config.steps))
    batches = fast.groups(lm, range(lm.n_layers), rows, config.steps, whole.n_paths)
    assert any(len(paths) < whole.n_paths for batch in batches for paths in batch.values())
    assert sorted((layer, j) for batch in batches for layer, paths in batch.items() for j in paths) == \
           [(layer, j) for layer in range(lm.n_layers) for j in range(whole.n_paths)]
    seen = []
    split = attribute(lm, prompt, config, progress=seen.append)
    assert_same(split, whole, 1e-5)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_paths_survive_the_store_and_old_rows_read_as_one_path(bert, tmp_path):
    from kn_core.runs import store as store_module
    from kn_core.runs.store import ResultKey, ResultStore

    prompt = bert.prompt(TEMPLATE, "Tanzania", "Paris")
    config = AttributionConfig(rule="riemann-right", steps=3)
    result = attribute(bert, prompt, config, lang="en")
    db = ResultStore(tmp_path / "store.sqlite")
    key = ResultKey.of(bert, prompt, config, "en")
    db.put(key, result)
    again = db.get(key)
    assert_same(again, result)
    assert again.n_paths == result.n_paths > 1
    assert store_module.METHOD_VERSION >= 2 and key.method_version == store_module.METHOD_VERSION
    # a row written before paths existed (no per-path arrays in its record) reads as one path
    row = store_module._encode(key, result)
    record = json.loads(row["record"])
    del record["path_deltas"], record["path_baseline_probs"]
    old = store_module._decode({**row, "record": json.dumps(record)})
    assert old.path_deltas is None and old.n_paths == 1
    np.testing.assert_array_equal(old.worst_path_delta(), result.convergence_delta)
    data = json.loads(json.dumps(result.to_json_dict(with_scores=False), allow_nan=False))
    assert data["n_paths"] == result.n_paths and data["paths_combined"] == "mean"
    assert len(data["worst_path_delta"]) == bert.n_layers
