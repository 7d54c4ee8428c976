"""Fact-check baselines: AUROC against a hand-computed example, the fact-level bootstrap, the logistic fit, and
every baseline's presence in the summary (issue #25)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kn_core.experiments.baselines import SCORES, summarise, table
from kn_core.method.baselines import auroc, bootstrap, fit_logistic, logistic_scores, mean_relation_auroc


def test_auroc_by_hand():
    # true scores 0.9, 0.4, 0.4; wrong scores 0.4, 0.1. Pairs (true, wrong): 0.9>0.4, 0.9>0.1, 0.4=0.4 (½),
    # 0.4>0.1, 0.4=0.4 (½), 0.4>0.1 → (4 + 2 · ½) / 6 = 5/6
    assert auroc([0.9, 0.4, 0.4, 0.4, 0.1], [True, True, True, False, False]) == pytest.approx(5 / 6)
    assert auroc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert auroc([1, 2, 3, 4], [True, True, False, False]) == 0.0
    assert auroc([1, 1, 1, 1], [True, False, True, False]) == 0.5  # a constant score says nothing
    assert math.isnan(auroc([1, 2], [True, True])) and math.isnan(auroc([1, math.nan], [True, False]))
    # per relation, then the mean: relation a perfect, relation b inverted → 0.5, though pooled it is not
    scores, truth, rel = [10, 1, 3, 4], [True, False, True, False], ["a", "a", "b", "b"]
    assert mean_relation_auroc(scores, truth, rel) == 0.5 and auroc(scores, truth) == 0.75


def test_bootstrap_keeps_facts_together_and_is_seeded():
    groups = np.repeat(np.arange(20).astype(str), 2)
    strata = np.where(np.arange(40) < 20, "a", "b")
    seen = []

    def stat(idx):
        seen.append(idx)
        return float(len(idx))

    lo, hi = bootstrap(stat, groups, strata, n=50, seed=1)
    assert lo == hi == 40.0  # every resample has 10 facts of each relation, 2 claims each
    assert all((groups[i[0::2]] == groups[i[1::2]]).all() for i in seen)  # a claim and its twin together
    assert bootstrap(lambda i: float(i.sum()), groups, strata, 50, 3) == bootstrap(lambda i: float(i.sum()), groups,
                                                                                     strata, 50, 3)


def test_logistic_finds_the_informative_feature():
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.5
    x = np.column_stack([rng.normal(size=400), y * 2.0 + rng.normal(size=400)])
    model = fit_logistic(x, y)
    assert abs(model[0][1]) < 0.3 < model[0][2]
    assert auroc(logistic_scores(model, x), y) > 0.85


def _claims(rng, relations=4, facts=10, informative=("model_probability",)) -> pd.DataFrame:
    rows = []
    for r in range(relations):
        for split, n in (("train", facts), ("test", facts // 2)):
            for f in range(n):
                for truth in (True, False):
                    signal = {m: (1.0 if truth else 0.0) * (m in informative) + rng.normal(scale=0.3)
                              for m in ("dkn", "model_probability")}
                    rows.append({"model": "m", "lang": "en", "seed": 0, "relation": f"P{r}", "verdict": True,
                                 "split": split, "fact_id": f"P{r}-{split}-{f}", "is_true": truth,
                                 "dkn": signal["dkn"], "model_probability": math.exp(signal["model_probability"]),
                                 "logprob": signal["model_probability"], "wo_dkn": float(truth),
                                 "wo_dkn_token_exact": 0.0,
                                 **{f"random_{i}": rng.normal() for i in range(30)}})
    return pd.DataFrame(rows)


def test_summary_has_every_baseline_and_tells_them_apart():
    summary = summarise(_claims(np.random.default_rng(0)), n=200)
    assert set(summary["auroc"]) == set(SCORES)
    assert summary["auroc"]["model_probability"] > 0.9 and summary["auroc"]["wo_dkn"] == 1.0
    assert 0.3 < summary["auroc"]["dkn"] < 0.75 and 0.35 < summary["auroc"]["random_neurons"] < 0.65
    lo, hi = summary["auroc_ci95"]["dkn"]
    assert lo < summary["auroc"]["dkn"] < hi
    assert summary["threshold"]["dkn"]["fixed"]["lam"] == 1e-6 and "F1" in summary["threshold"]["dkn"]["fitted"]
    assert summary["threshold"]["model_probability"]["fitted"]["F1"] > 0.8
    assert "training split" in summary["lambda"]
    logistic = summary["logistic"]
    assert abs(logistic["delta"]) < 0.1 and logistic["delta_ci95"][0] <= logistic["delta"] <= logistic["delta_ci95"][1]
    frame = table(summary, model="m")
    assert list(frame["score"]) == list(SCORES) and frame["AUROC"].notna().all()


def test_dkn_that_adds_information_shows_in_the_logistic_comparison():
    summary = summarise(_claims(np.random.default_rng(1), informative=("dkn",)), n=200)
    assert summary["logistic"]["delta"] > 0.2 and summary["logistic"]["delta_ci95"][0] > 0
