"""The fact-check against fair baselines (issue #25; docs/method.md §6): what ``experiment factcheck`` adds to Table 3.

Every claim of a relation *with a DKN set* gets, beside the DKN score (the paper), the scores of:
``model_probability`` (the model's own P(candidate) on the same scoring prompt), ``logprob`` (its mean
log-probability per token, length-normalised), ``random_neurons`` (the mean attribution over a random set of the
DKN set's size in its layers; 30 seeded draws, every number is the mean over draws) and the binary wo_DKN
answers (``wo_dkn``: the authors' rule; ``wo_dkn_token_exact``).

- **AUROC** (threshold-free): per relation, then the mean over relations (a DKN score's scale is per relation;
  ``auroc_pooled`` pools the claims instead). 95 % intervals: percentile bootstrap over facts (a true claim and
  its wrong twin stay together) within each relation, 1,000 resamples, seeded.
- **P / R / F1** of the class "correct", micro-averaged over relations, at two thresholds: ``fixed`` — the
  paper's raw λ = 1e-6 (DKN and random neurons only: the other scores have no published λ) — and ``fitted`` —
  per relation, maximising the run's objective on that relation's *training split* claims (80 % of its facts,
  seeded; the same claims the DKN λ is calibrated on), never on the held-out claims it is scored on.
- **Does DKN add anything over P(candidate)?** A logistic regression on the training claims of every relation
  with both features — the DKN score z-scored per relation with its training mean and sd, and ``logprob`` —
  against ``logprob`` alone, both scored on the held-out claims by mean per-relation AUROC; the difference with
  its bootstrap interval.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import numpy as np
import pandas as pd

from kn_core.defaults import BOOTSTRAP, PAPER_LAMBDA
from kn_core.method.baselines import auroc, bootstrap, fit_logistic, logistic_scores, mean_relation_auroc
from kn_core.method.metrics import Confusion, choose_threshold

SCORES = ("dkn", "model_probability", "logprob", "random_neurons", "wo_dkn", "wo_dkn_token_exact")
THRESHOLDED = ("dkn", "model_probability", "logprob", "random_neurons")
FIT = ("λ fitted per relation on its training split's claims (80 % of its facts, seeded; objective {objective}), "
       "never on the held-out claims it is scored on; 'fixed' is the paper's raw λ = 1e-6")
KEY = ("model", "lang", "seed", "relation")


def _random_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("random_") and c[7:].isdigit()]


def _unit(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(KEY)].astype(str).agg("|".join, axis=1).to_numpy()


def _auroc_of(test: pd.DataFrame, method: str, idx: np.ndarray | None = None) -> float:
    part = test if idx is None else test.iloc[idx]
    truth, units = part["is_true"].to_numpy(bool), _unit(part)
    if method == "random_neurons":
        draws = _random_columns(part)
        values = [mean_relation_auroc(part[c].to_numpy(float), truth, units) for c in draws]
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan
    return mean_relation_auroc(part[method].to_numpy(float), truth, units)


def _thresholds(train: pd.DataFrame, column: str, objective: str) -> dict[str, float]:
    """Per relation unit, λ fitted on its training claims (NaN without any)."""
    out = {}
    for unit, group in train.groupby(_unit(train), sort=False):
        scores = group[column].to_numpy(float)
        ok = ~np.isnan(scores)
        out[unit] = (choose_threshold(scores[ok].tolist(), group["is_true"].to_numpy(bool)[ok].tolist(), objective)
                     if ok.any() else math.nan)
    return out


def _confusion(test: pd.DataFrame, column: str, lam: float | dict[str, float]) -> Confusion:
    units = _unit(test)
    lams = np.array([lam.get(u, math.nan) for u in units]) if isinstance(lam, dict) else np.full(len(test), lam)
    scores = test[column].to_numpy(float)
    keep = ~np.isnan(lams) & ~np.isnan(scores)
    return Confusion.of(test["is_true"].to_numpy(bool)[keep].tolist(), (scores[keep] >= lams[keep]).tolist())


def _metrics(confusions: Sequence[Confusion]) -> dict[str, float]:
    """P / R / F1 and accept rates, the mean over ``confusions`` (one per random draw; one otherwise)."""
    rows = [c.metrics() for c in confusions if c.n]
    if not rows:
        return {k: math.nan for k in ("P", "R", "F1", "accept_true", "accept_wrong")}
    return {k: float(np.mean([r[k] for r in rows])) for k in ("P", "R", "F1", "accept_true", "accept_wrong")}


def _threshold_block(train: pd.DataFrame, test: pd.DataFrame, method: str, objective: str) -> dict:
    columns = _random_columns(test) if method == "random_neurons" else [method]
    fitted = [_confusion(test, c, _thresholds(train, c, objective)) for c in columns]
    block = {"fitted": _metrics(fitted)}
    if method in ("dkn", "random_neurons"):
        block["fixed"] = {"lam": PAPER_LAMBDA, **_metrics([_confusion(test, c, PAPER_LAMBDA) for c in columns])}
    return block


def _logistic(train: pd.DataFrame, test: pd.DataFrame, seed: int, n: int) -> dict:
    """Both features against logprob alone: fit on the training claims, mean per-relation AUROC on the test ones."""
    stats = {u: (g["dkn"].mean(), g["dkn"].std(ddof=0) or 1.0) for u, g in train.groupby(_unit(train), sort=False)}

    def z(frame: pd.DataFrame) -> np.ndarray:
        mean_sd = [stats.get(u, (math.nan, 1.0)) for u in _unit(frame)]
        return (frame["dkn"].to_numpy(float) - [m for m, _ in mean_sd]) / [s or 1.0 for _, s in mean_sd]

    tr = np.column_stack([z(train), train["logprob"].to_numpy(float)])
    te = np.column_stack([z(test), test["logprob"].to_numpy(float)])
    ok_tr, ok_te = ~np.isnan(tr).any(axis=1), ~np.isnan(te).any(axis=1)
    if ok_tr.sum() < 4 or not ok_te.any() or len(set(train["is_true"][ok_tr])) < 2:
        return {"fit": "too few training claims", "auroc_p_only": math.nan, "auroc_both": math.nan,
                "delta": math.nan, "delta_ci95": [math.nan, math.nan]}
    truth_tr = train["is_true"].to_numpy(bool)[ok_tr]
    both = fit_logistic(tr[ok_tr], truth_tr)
    alone = fit_logistic(tr[ok_tr][:, 1], truth_tr)
    scored = test[ok_te].assign(both=logistic_scores(both, te[ok_te]), alone=logistic_scores(alone, te[ok_te][:, 1]))
    truth, units = scored["is_true"].to_numpy(bool), _unit(scored)

    def delta(idx: np.ndarray) -> float:
        part = scored.iloc[idx]
        t, u = part["is_true"].to_numpy(bool), _unit(part)
        return mean_relation_auroc(part["both"].to_numpy(), t, u) - mean_relation_auroc(part["alone"].to_numpy(), t, u)

    p_only = mean_relation_auroc(scored["alone"].to_numpy(), truth, units)
    with_dkn = mean_relation_auroc(scored["both"].to_numpy(), truth, units)
    return {"fit": "logistic regression on the training claims of every relation with a DKN set; features: the "
                   "DKN score z-scored per relation (training mean / sd) and logprob; scored on the held-out claims",
            "weights_standardised": {"intercept": float(both[0][0]), "dkn_z": float(both[0][1]),
                                     "logprob": float(both[0][2])},
            "auroc_p_only": p_only, "auroc_both": with_dkn, "delta": with_dkn - p_only,
            "delta_ci95": list(bootstrap(delta, scored["fact_id"].to_numpy(), units, n, seed)),
            "train_claims": int(ok_tr.sum()), "test_claims": int(ok_te.sum())}


def summarise(scores: pd.DataFrame, objective: str = "f1", seed: int = 0, n: int = BOOTSTRAP) -> dict:
    """Every baseline's AUROC (mean per relation, with its bootstrap interval, and pooled), P / R / F1 at the fixed
    and fitted λ, and the logistic comparison, over the claims of ``scores`` (one row per claim, ``split`` train
    / test; only relations with a DKN set count)."""
    scores = scores[scores["verdict"].astype(bool)]
    train, test = scores[scores["split"] == "train"], scores[scores["split"] == "test"]
    units = _unit(test)
    out: dict = {"claims": int(len(test)), "relations": int(len(set(units))),
                 "auroc": {}, "auroc_ci95": {}, "auroc_pooled": {}, "threshold": {},
                 "lambda": FIT.format(objective=objective)}
    if test.empty:  # no relation with a DKN set: every number is missing, every key is there
        nan = {k: math.nan for k in ("P", "R", "F1", "accept_true", "accept_wrong")}
        out.update(auroc=dict.fromkeys(SCORES, math.nan), auroc_ci95={m: [math.nan, math.nan] for m in SCORES},
                   auroc_pooled={m: math.nan for m in SCORES if m != "random_neurons"},
                   threshold={**{m: {"fitted": nan, **({"fixed": {"lam": PAPER_LAMBDA, **nan}}
                                                        if m in ("dkn", "random_neurons") else {})}
                                 for m in THRESHOLDED}, "wo_dkn": {"rule": nan}},
                   logistic={"fit": "no relation with a DKN set", "auroc_p_only": math.nan, "auroc_both": math.nan,
                             "delta": math.nan, "delta_ci95": [math.nan, math.nan]})
        return out
    for method in SCORES:
        out["auroc"][method] = _auroc_of(test, method)
        out["auroc_ci95"][method] = list(bootstrap(partial(_auroc_of, test, method),
                                                   test["fact_id"].to_numpy(), units, n, seed))
        if method != "random_neurons":
            out["auroc_pooled"][method] = auroc(test[method].to_numpy(float), test["is_true"].to_numpy(bool))
    for method in THRESHOLDED:
        out["threshold"][method] = _threshold_block(train, test, method, objective)
    out["threshold"]["wo_dkn"] = {"rule": _metrics([Confusion.of(test["is_true"].astype(bool).tolist(),
                                                                 test["wo_dkn"].astype(bool).tolist())])}
    out["logistic"] = _logistic(train, test, seed, n)
    return out


def table(summary: dict, **keys) -> pd.DataFrame:
    """One row per score of :func:`summarise`: AUROC [95 % interval], pooled AUROC, F1 at the fitted and fixed λ."""
    rows = []
    for method in SCORES:
        lo, hi = summary.get("auroc_ci95", {}).get(method, [math.nan, math.nan])
        block = summary.get("threshold", {}).get(method, {})
        rows.append({**keys, "score": method, "AUROC": summary["auroc"].get(method, math.nan), "AUROC_lo": lo,
                     "AUROC_hi": hi, "AUROC_pooled": summary.get("auroc_pooled", {}).get(method, math.nan),
                     "F1_fitted": block.get("fitted", block.get("rule", {})).get("F1", math.nan),
                     "accept_wrong_fitted": block.get("fitted", block.get("rule", {})).get("accept_wrong", math.nan),
                     "F1_fixed": block.get("fixed", {}).get("F1", math.nan)})
    return pd.DataFrame(rows)


__all__ = ["FIT", "SCORES", "THRESHOLDED", "summarise", "table"]
