"""Edge cases of ``attribute``: very few Riemann steps (m = 1 included) in both engines, and the number of
passes the clean prompt and the baseline cost."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from helpers import assert_same, plain_ig_paths
from test_fast import TEMPLATE, TOL

from kn_core.attribution import AttributionConfig, attribute
from kn_core.attribution.baselines import activations, baseline
from kn_core.model.hooks import count_hooks, gold_probs, recorded, run


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("base", ["masked", "masked-mean", "zero"])
def test_few_steps_engines_agree(lm, steps, base):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    fast, ref = (attribute(lm, prompt,
                           AttributionConfig(rule="riemann-right", engine=engine, steps=steps, baseline=base))
                 for engine in ("fast", "reference"))
    assert_same(fast, ref, TOL)
    assert count_hooks(lm) == 0


def test_one_step_is_the_gradient_at_the_prompt_times_the_difference(lm):
    """m = 1, right rule: one point, α = 1: Attr = mean_j (a − b_j) · ∂P/∂z at a = (a − b̄) · ∂P/∂z at a (every
    path's only point is a, so ``masked`` and ``masked-mean`` coincide here); the delta is Σ Attr − (P(a) −
    mean_j P(b_j)), and each path's is Σ Attr_j − (P(a) − P(b_j))."""
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    result = attribute(lm, prompt, AttributionConfig(rule="riemann-right", engine="reference", steps=1))
    ids = torch.tensor(prompt.input_ids)[None]
    clean = activations(lm, ids, prompt.target_positions)[0]
    starts = baseline(lm, prompt, "masked")
    plain = torch.stack([plain_ig_paths(lm, prompt, clean, starts, layer, 0, 1) for layer in range(lm.n_layers)])
    np.testing.assert_allclose(result.scores, plain.numpy(), rtol=1e-4, atol=1e-6 * float(plain.abs().max()))
    mean = attribute(lm, prompt,
                     AttributionConfig(rule="riemann-right", engine="reference", steps=1, baseline="masked-mean"))
    np.testing.assert_allclose(result.scores, mean.scores, rtol=1e-4, atol=1e-6 * float(plain.abs().max()))
    gap = np.mean(result.token_probs) - result.baseline_probs
    np.testing.assert_allclose(result.convergence_delta, result.scores.sum(axis=1) - gap, atol=1e-6)
    assert result.n_paths == len(prompt.context_positions) > 1


@contextmanager
def calls(*modules: torch.nn.Module):
    """Count the forward calls of each module (hooks removed on exit)."""
    counts = [0] * len(modules)
    handles = []
    try:
        for i, module in enumerate(modules):
            def count(_module, _args, i=i):
                counts[i] += 1
            handles.append(module.register_forward_pre_hook(count))
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def test_baseline_activations_skip_the_lm_head(lm):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    ids = torch.tensor(prompt.input_ids)[None].repeat(3, 1)
    with calls(lm.model.get_output_embeddings()) as count:
        acts = activations(lm, ids, prompt.target_positions)
    assert count == [0]
    assert acts.shape == (3, prompt.n_object_tokens, lm.n_layers, lm.d_ff)
    with torch.no_grad(), recorded(lm, range(lm.n_layers), prompt.target_positions) as expected:
        run(lm, ids)
    torch.testing.assert_close(acts, torch.stack([expected[layer] for layer in range(lm.n_layers)], dim=2),
                               rtol=0, atol=0)
    assert count_hooks(lm) == 0


@pytest.mark.parametrize("base", ["masked", "masked-mean", "zero"])
def test_clean_prompt_runs_once(lm, base):
    """The whole model (head included) runs once for the clean prompt: P(object) and the activations come
    from the same pass; the baseline runs without the head. (Fast engine: its self-check of the head runs a
    plain pass once per loaded model, hence the warm-up.)"""
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    config = AttributionConfig(rule="riemann-right", steps=2, baseline=base)
    attribute(lm, prompt, config)
    with calls(lm.model, lm.adapter.body(lm.model)) as (count):
        result = attribute(lm, prompt, config)
    assert count == [1, 1 if base == "zero" else 2]  # the masked prompts: one batched pass (≤ CHUNK of them)
    with torch.no_grad():
        expected = gold_probs(run(lm, torch.tensor(prompt.input_ids)[None]), prompt.target_positions,
                              prompt.object_ids)[0]
    np.testing.assert_allclose(result.token_probs, expected.numpy(), rtol=1e-6)
