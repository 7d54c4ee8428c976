"""Core engine: completeness, Captum vs plain torch, multi-token objects, interventions, hooks, bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import plain_ig_paths

from kn_core.attribution import AttributionConfig, attribute
from kn_core.attribution.baselines import activations, baseline
from kn_core.cli import main
from kn_core.errors import InputError, ModelLoadError, TemplateError, UnsupportedArchitectureError
from kn_core.method.interventions import effect, object_probs, random_like, scaled, verify
from kn_core.method.neurons import coarse_neurons, knowledge_neurons, refine
from kn_core.model.hooks import count_hooks, run
from kn_core.model.loading import load_model

TEMPLATE = "The capital of [X] is [Y]."


def reference(**kw) -> AttributionConfig:
    """Captum's engine with the paper's right-Riemann sums, the rule of the plain-torch oracle."""
    return AttributionConfig(engine="reference", **{"rule": "riemann-right", **kw})


@pytest.mark.parametrize("base", ["masked", "masked-mean", "zero"])
def test_completeness_shrinks_with_steps(lm, base):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    coarse = attribute(lm, prompt, reference(baseline=base, steps=4))
    fine = attribute(lm, prompt, reference(baseline=base, steps=400))
    gap = np.abs(np.mean(fine.token_probs) - fine.baseline_probs)
    assert np.all(gap > 1e-5), "the test model must move P(object) measurably"
    assert np.max(fine.relative_delta()) < 0.1
    assert np.sum(np.abs(fine.convergence_delta)) < np.sum(np.abs(coarse.convergence_delta))
    # completeness recomputed from the result itself: Σ_i Attr_l,i ≈ P(a) − mean_j P(b_j)
    np.testing.assert_allclose(fine.scores.sum(axis=1), np.mean(fine.token_probs) - fine.baseline_probs,
                               atol=0.1 * gap.max())
    # the combined residual and baseline probability are the paths' means
    np.testing.assert_allclose(fine.convergence_delta, fine.path_deltas.mean(axis=0), atol=1e-7)
    np.testing.assert_allclose(fine.baseline_probs, fine.path_baseline_probs.mean(axis=0), rtol=1e-5)
    assert np.sum(np.abs(fine.path_deltas)) < np.sum(np.abs(coarse.path_deltas))


@pytest.mark.parametrize("base", ["masked", "masked-mean", "zero"])
def test_captum_equals_plain_torch(lm, base):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    result = attribute(lm, prompt, reference(baseline=base, steps=12))
    ids = torch.tensor(prompt.input_ids)[None]
    clean = activations(lm, ids, prompt.target_positions)[0]
    starts = baseline(lm, prompt, base)
    assert result.n_paths == len(starts) == (len(prompt.context_positions) if base == "masked" else 1)
    plain = torch.stack([torch.stack([plain_ig_paths(lm, prompt, clean, starts, layer, i, 12)
                                      for layer in range(lm.n_layers)])
                         for i in range(prompt.n_object_tokens)]).mean(dim=0)
    np.testing.assert_allclose(result.scores, plain.numpy(), rtol=1e-4, atol=1e-6 * np.abs(plain.numpy()).max())


def test_multi_token_object_uses_gold_tokens(lm):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    space = " " if lm.kind == "causal" else ""
    gold = lm.tokenizer.encode(space + "Dar es Salaam", add_special_tokens=False)
    assert list(prompt.object_ids) == gold and 2 <= len(gold)
    ids = torch.tensor(prompt.input_ids)
    if lm.kind == "causal":  # teacher-forced gold prefix, predicted one position earlier
        assert ids[list(prompt.target_positions[1:])].tolist() == gold[:-1]
    else:
        assert all(ids[t] == lm.tokenizer.mask_token_id for t in prompt.target_positions)
    result = attribute(lm, prompt, reference(steps=4))
    with torch.no_grad():
        probs = run(lm, ids[None])[0].softmax(-1)
    expected = [float(probs[t, o]) for t, o in zip(prompt.target_positions, prompt.object_ids)]
    np.testing.assert_allclose(result.token_probs, expected, rtol=1e-5)
    assert math.isclose(result.p_object, math.prod(expected), rel_tol=1e-5)


def test_causal_object_has_leading_space(gpt2):
    prompt = gpt2.prompt(TEMPLATE, "Tanzania", "Paris")
    assert gpt2.tokenizer.decode(prompt.object_ids[:1]).startswith(" ")


def test_selection_and_refinement():
    scores = np.zeros((3, 37), dtype=np.float32)
    scores[2, 5], scores[1, 7], scores[0, 0] = 1.0, 0.5, 0.1
    assert [(l, i) for l, i, _ in coarse_neurons(scores, 0.3)] == [(2, 5), (1, 7)]
    assert refine([[(2, 5), (1, 7)], [(2, 5)], [(2, 5), (0, 0)]], p=0.7) == {(2, 5)}
    assert refine([[(1, 1)]], p=0.7) == {(1, 1)}
    assert [(l, i) for l, i, _ in knowledge_neurons([scores, scores], 0.3)] == [(2, 5), (1, 7)]
    with pytest.raises(InputError):
        coarse_neurons(scores, 0.0)
    with pytest.raises(InputError):
        refine([[(1, 1)]], p=1.5)


def planted(folder):
    """A fresh copy of a tiny model whose top-layer neuron most active at the target is trained (its output
    row only) to write the object: a knowledge neuron by construction."""
    lm = load_model(str(folder))
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    layer = lm.n_layers - 1
    ids = torch.tensor(prompt.input_ids)[None]
    neuron = int(torch.argmax(activations(lm, ids, prompt.target_positions)[0, 0, layer]))
    rows = lm.adapter.output_rows(lm.model, layer)
    param = next(p for p in lm.model.parameters() if p.data_ptr() == rows.data_ptr())
    for _ in range(60):
        param.requires_grad_(True)
        try:
            with torch.enable_grad():
                logits = run(lm, ids)[0]
                logp = sum(logits[t].log_softmax(-1)[o] for t, o in zip(prompt.target_positions, prompt.object_ids))
                (grad,) = torch.autograd.grad(logp, param)
        finally:
            param.requires_grad_(False)
        with torch.no_grad():
            g = (grad if grad.shape == rows.shape else grad.T)[neuron]
            rows[neuron] += 0.5 * g / (g.norm() + 1e-12)
    return lm, prompt, (layer, neuron)


@pytest.mark.parametrize("family", ["bert_dir", "gpt2_dir"])
def test_knowledge_neuron_suppression_beats_random(family, request):
    lm, prompt, neuron = planted(request.getfixturevalue(family))
    assert object_probs(lm, prompt, [[]], 1.0)[0] > 0.3
    zero = attribute(lm, prompt, reference(baseline="zero", steps=20))
    assert neuron in [(l, i) for l, i, _ in coarse_neurons(zero.scores, 0.3)[:3]]
    amig = attribute(lm, prompt, reference(steps=20))
    top = [(l, i) for l, i, _ in coarse_neurons(amig.scores, 0.3)[:3]]
    check = verify(lm, [prompt], top, "suppress", seed=1)
    assert check.own < -0.3 and abs(check.random) < 0.5 * abs(check.own)
    assert abs(effect(lm, prompt, [neuron], "enhance").relative) > 0.01  # doubling moves P measurably


def test_batched_interventions_match_single(lm):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dar es Salaam")
    sets = [[], [(0, 3)], [(1, 5), (2, 36)]]
    batched = object_probs(lm, prompt, sets, 0.0)
    single = [object_probs(lm, prompt, [s], 0.0)[0] for s in sets]
    np.testing.assert_allclose(batched, single, rtol=1e-5)
    assert random_like([(1, 5), (1, 6), (2, 0)], 37, seed=3) != [(1, 5), (1, 6), (2, 0)]


def test_no_hook_survives_runs_or_errors(lm):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Paris")
    attribute(lm, prompt, reference(steps=3))
    assert count_hooks(lm) == 0

    def explode(_fraction):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        attribute(lm, prompt, reference(steps=3), progress=explode)
    with pytest.raises(RuntimeError):
        with scaled(lm, [[(0, 1)]], 0.0, prompt.target_positions):
            raise RuntimeError("inside")
    assert count_hooks(lm) == 0


def test_bad_input_is_a_clear_error(lm, tmp_path):
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(UnsupportedArchitectureError, match="BERT .*GPT-2"):
        load_model(str(tmp_path))
    for template in ("The capital of [X] is.", "The capital of is [Y].", "[X] [Y] [Y]", "   "):
        with pytest.raises(InputError):
            lm.prompt(template, "Tanzania", "Paris")
    with pytest.raises(InputError, match="object"):
        lm.prompt(TEMPLATE, "Tanzania", "  ")
    with pytest.raises(InputError, match="at most"):
        lm.prompt("the " * 50 + TEMPLATE, "Tanzania", "Paris")
    with pytest.raises(InputError, match="steps"):
        AttributionConfig(steps=0)


def test_causal_template_needs_object_last(gpt2, bert):
    with pytest.raises(TemplateError, match="before \\[X\\]"):
        gpt2.prompt("[Y] is the capital of [X].", "Tanzania", "Dodoma")
    assert bert.prompt("[Y] is the capital of [X].", "Tanzania", "Paris").target_positions[0] == 1


def test_cli_locate_json(bert_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["locate", "--model", str(bert_dir), "--lang", "en", "--template", TEMPLATE, "--subject", "Tanzania",
                 "--object", "Dar es Salaam", "--steps", "5", "--engine", "reference", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert {"p_object", "scores", "convergence_delta", "neurons"} <= data.keys()
    assert np.array(data["scores"]).shape == (3, 37) and len(data["convergence_delta"]) == 3
    assert "completeness residual" in capsys.readouterr().out
    code = main(["locate", "--model", str(bert_dir), "--lang", "en", "--template", "no slots", "--subject", "a",
                 "--object", "b"])
    assert code == 2 and "template" in capsys.readouterr().err


def test_cli_locate_uses_the_store_unless_no_cache(bert_dir, tmp_path, monkeypatch, capsys):
    import kn_core.runs.store
    from kn_core.runs.store import ResultStore

    db = tmp_path / "store.sqlite"
    base = ["locate", "--model", str(bert_dir), "--lang", "en", "--template", TEMPLATE, "--template",
            "[X] has its capital at [Y].", "--subject", "Tanzania", "--object", "Dodoma", "--steps", "4"]
    assert main(base + ["--no-cache", "--store", str(db)]) == 0
    assert not db.exists() or ResultStore(db).info()["results"] == 0
    capsys.readouterr()
    assert main(base + ["--store", str(db), "--json", str(tmp_path / "a.json")]) == 0
    assert ResultStore(db).info()["results"] == 2
    first = capsys.readouterr().out

    def no_compute(*args, **kwargs):
        raise AssertionError("a stored result was computed again")

    monkeypatch.setattr(kn_core.attribution, "attribute", no_compute)
    assert main(base + ["--store", str(db), "--json", str(tmp_path / "b.json")]) == 0
    assert ResultStore(db).info()["results"] == 2
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["neurons"] == b["neurons"] and a["prompts"] == b["prompts"]
    assert capsys.readouterr().out == first


def test_cli_threads_option_and_environment(bert_dir, monkeypatch, capsys):
    import torch

    before = torch.get_num_threads()
    args = ["locate", "--model", str(bert_dir), "--lang", "en", "--template", TEMPLATE, "--subject", "Tanzania",
            "--object", "Dodoma", "--steps", "2", "--no-cache"]
    try:
        assert main(args + ["--threads", "0"]) == 2 and "threads" in capsys.readouterr().err
        monkeypatch.setenv("KN_EXPLORER_THREADS", "many")
        assert main(args) == 2 and "KN_EXPLORER_THREADS" in capsys.readouterr().err
        monkeypatch.setenv("KN_EXPLORER_THREADS", "1")
        assert main(args) == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_object_probs_of_no_neuron_set_is_empty(bert):
    from kn_core.method.interventions import object_probs

    prompt = bert.prompt(TEMPLATE, "Tanzania", "Dodoma")
    assert object_probs(bert, prompt, [], 0.0).shape == (0,)
    both = object_probs(bert, prompt, [[], [(0, 1)]], 0.0)
    assert both.shape == (2,) and 0 < both[0] <= 1
