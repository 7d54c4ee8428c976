"""Fact-checking with DKN, the paper's Table 3 protocol (docs/method.md §5), per model, language and relation.

For every seed and relation: split its (sampled) facts 80 / 20, calibrate a
:class:`~kn_core.method.factcheck.FactChecker` on the 80 % part and judge the 20 % part's true claims and
wrong twins with the DKN score (with_DKN) and with the model's own answer (wo_DKN, by the authors' rule and
token-exact). A relation whose training part yields no DKN set gives no verdict: its claims are counted as
"no verdict" and left out of every P / R / F1 (the wo_DKN rows too, so both methods are measured on the
same claims; ``wo_DKN_all_claims`` is the authors' rule on every claim). Confusion counts are pooled over
relations (micro-average) into one Table 3 row per language and model and seed; with several seeds the
headline shows the mean ± sd across seeds.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kn_core.data import FactSet, load_dataset
from kn_core.errors import InputError
from kn_core.experiments import plots
from kn_core.experiments.common import (
    Outcome,
    Settings,
    across_seeds,
    models,
    progress,
    select_facts,
    templates_of,
)
from kn_core.experiments.report import pm
from kn_core.experiments import baselines
from kn_core.method.factcheck import (
    Confusion,
    Evaluation,
    FactChecker,
    calibrate_scored,
    evaluate,
)

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

TITLE = "Fact-checking with degenerate knowledge neurons (Table 3 protocol)"
DEFAULT_MAX_FACTS = 20
LANG_NAMES = {"en": "English", "zh": "Chinese"}
METHODS = ("wo_DKN", "wo_DKN_token_exact", "with_DKN")  # over the claims with a verdict
ALL_CLAIMS = "wo_DKN_all_claims"  # the authors' wo_DKN rule over every claim, with a verdict or not
COUNTS = ("tp", "fp", "fn", "tn")
PUBLISHED = pd.DataFrame(
    [("English", "m-BERT", "0.222 / 0.986 / 0.362", "0.493 / 0.599 / 0.541"),
     ("English", "m-GPT", "0.010 / 1.000 / 0.021", "0.311 / 0.709 / 0.433"),
     ("Chinese", "m-BERT", "0.010 / 1.000 / 0.020", "— / 0.524 / 0.654"),
     ("Chinese", "m-GPT", "0.0002 / 1.000 / 0.0004", "0.966 / 0.511 / 0.669"),
     ("English", "BERT", "0.301 / 0.983 / 0.460", "0.504 / 0.571 / 0.535"),
     ("English", "GPT-2", "0.010 / 1.000 / 0.021", "0.315 / 0.608 / 0.415")],
    columns=["Data", "Model", "wo_DKN authors' P / R / F1", "with_DKN authors' P / R / F1"])
CAPTION = (
    "P / R / F1 of the class 'correct' (conventional; the authors' P / R are swapped), counted only over the "
    "claims that got a verdict: a relation whose training part has no DKN set gives no verdict, and "
    "'relations (no verdict)' / 'claims (no verdict)' count what was left out. wo_DKN is the authors' rule "
    "(masked LM: one [MASK], the top-1 token, decoded, equals the WHOLE object string, so a multi-token candidate "
    "is never accepted; causal LM: the greedily generated word(s) equal the candidate); 'wo_DKN token-exact' requires "
    "the greedy token at each candidate position. A masked LM scores every candidate of a relation with the same "
    "number of masks (the relation's longest object; shorter candidates are read at the first masks), so a "
    "claim and its wrong twin are inputs of equal length. 'wo_DKN F1, all claims': the authors' rule over every "
    "claim, with or without a verdict. With several seeds: mean ± sd across the seeds, the metrics across the "
    "seeds with a verdict ('seeds (with verdict)').")
NOTES = (
    "**Claims.** Every held-out fact gives a true claim and a wrong twin whose object is drawn (seeded) from "
    "the other facts' objects of the same relation, so the test set is balanced 1 : 1.",
    "**No verdict.** A relation whose training prompts gave no degenerate pair above the DKN threshold has an "
    "empty DKN set. Its checker abstains (as the authors' code skips such relations): no λ is calibrated and "
    "its claims get no verdict. They are counted in `relations (no verdict)` and `claims (no verdict)` and left "
    "out of every P / R / F1 (the wo_DKN columns too, so both methods are compared on the same claims). A row "
    "whose claims all went without a verdict has no metric ('–'). `experiment dkn` shows the single and pair "
    "drops that decide it.",
    "**Metrics.** `P / R / F1` are precision, recall and F1 of the class *correct* (conventional); `authors' P / R` "
    "are the same numbers with the roles swapped, as the authors' code computes them (their P is our recall, "
    "the accept rate of true claims); F1 is the same either way. `accept true / wrong` are the shares of true "
    "and of wrong claims judged correct. Counts are pooled over relations (micro-average). With several seeds "
    "(`--seeds`), every cell is the mean ± sample sd of the per-seed values; each seed redraws the fact sample, "
    "the 80 / 20 split and the wrong objects.",
    "**with_DKN** accepts a claim when the mean AMIG attribution toward the candidate over the relation's DKN "
    "set reaches λ, calibrated per relation on the training claims (objective in the settings). For a masked "
    "LM every candidate of a relation is scored with the same number of masks — the token count of the "
    "relation's longest object — and read at the first masks, so the input does not reveal the candidate's "
    "length (one mask per candidate token would).",
    "**wo_DKN** (the authors' rule): a masked LM gets the query with one [MASK] and accepts the claim when its "
    "top-1 token, decoded, is the whole object string, as the authors' code compares it — a candidate of "
    "several tokens is never accepted (`claims` counts them in `multi_token_claims`; the lenient first-token "
    "variant, which earlier tables used and which lets `New` accept both New Delhi and New York, is the "
    "`wo_DKN_first_token` column of `claims`). A causal LM continues the query greedily and accepts the claim "
    "when the generated word(s), as many as the candidate has, equal it. **wo_DKN token-exact**: the greedy "
    "token at each of the candidate's positions is the candidate's token (masked LM: on the same equal-mask "
    "prompt as the DKN score).",
    "**Reading it against the paper.** On a balanced test set, accepting everything scores F1 = 0.667 with "
    "accept rates 1 / 1, so F1 alone can flatter a checker that does not discriminate: look at the wrong-claim "
    "accept rate. The paper's wo_DKN rows have a precision near 1 and a tiny recall because real pretrained "
    "models rarely produce the exact object; small demo models trained on these very facts know most of "
    "them, so their wo_DKN baseline is far stronger than the paper's.",
)


def _relation_row(lm_name: str, lang: str, seed: int, checker: FactChecker, evaluation: Evaluation,
                  seconds: float) -> dict:
    multi = sum(v.prompt.n_object_tokens > 1 for _, v in evaluation.verdicts)
    row = {"seed": seed, "model": lm_name, "lang": lang, "relation": checker.relation,
           "n_train": len(checker.train_facts), "n_test": len(checker.test_facts), "verdict": not checker.abstains,
           "n_claims": len(evaluation.verdicts), "n_no_verdict": evaluation.n_no_verdict,
           "n_skipped": len(evaluation.skipped), "multi_token_claims": multi,
           "n_prompts": checker.n_prompts, "n_pairs": checker.n_pairs, "n_dkn": len(checker.dkn),
           "n_masks": checker.n_masks,
           "dkn_layers": " ".join(str(x) for x in sorted({layer for layer, _ in checker.dkn})),
           "lam": float("nan") if checker.lam is None else checker.lam,
           **{k: float("nan") if getattr(checker, k) is None else getattr(checker, k)
              for k in ("train_accept_true", "train_accept_wrong", "train_f1")},
           "calibrate_s": seconds, "judge_s_per_claim": evaluation.seconds_per_claim}
    for method, confusion in (*evaluation.methods().items(), (ALL_CLAIMS, evaluation.wo_dkn_all)):
        row.update({f"{method}_{k}": v for k, v in {**asdict(confusion), **confusion.metrics()}.items()})
    return row


def _check_relation(lm: LanguageModel, factset: FactSet, settings: Settings, relation: str, lang: str, facts,
                    suffix: str = "") -> dict | None:
    """Calibrate and evaluate one relation; stores the checker as JSON. None when the model cannot take it."""
    start = time.perf_counter()
    try:
        checker, trained = calibrate_scored(lm, factset, relation, lang,
                                            templates_of(factset, relation, lang, settings), settings.config,
                                            seed=settings.seed, top_k=settings.top_k, t=settings.t,
                                            t_low=settings.t_low, t_high=settings.t_high,
                                            objective=settings.objective, facts=facts,
                                            attributor=settings.attributor())
    except InputError as exc:
        log.warning("%s %s %s skipped: %s", lm.name, lang, relation, exc)
        return None
    seconds = time.perf_counter() - start
    evaluation = evaluate(lm, checker, checker.held_out_claims(factset))
    folder = settings.out / "checkers"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_slug(lm.name)}-{lang}-{relation}{suffix}.json"
    path.write_text(checker.to_json(), encoding="utf-8")
    claims = evaluation.claims_frame().assign(seed=settings.seed, model=lm.name,
                                              margin=lambda f: f["score"] - f["lam"])
    keys = {"model": lm.name, "lang": lang, "seed": settings.seed, "relation": relation,
            "verdict": not checker.abstains}
    rows = [{**keys, "split": "train", "fact_id": c.claim.fact_id, "candidate": c.claim.candidate,
             "is_true": c.claim.is_true, "dkn": c.score, "model_probability": c.p_candidate, "logprob": c.logprob,
             "wo_dkn": math.nan, "wo_dkn_token_exact": math.nan,
             **{f"random_{i}": x for i, x in enumerate(c.random_scores)}} for c in trained]
    rows += [{**keys, "split": "test", "fact_id": c.fact_id, "candidate": c.candidate, "is_true": c.is_true,
              "dkn": v.score, "model_probability": v.p_candidate, "logprob": v.logprob,
              "wo_dkn": float(v.model_agrees), "wo_dkn_token_exact": float(v.exact_agrees),
              **{f"random_{i}": x for i, x in enumerate(v.random_scores)}} for c, v in evaluation.verdicts]
    return {"row": _relation_row(lm.name, lang, settings.seed, checker, evaluation, seconds), "claims": claims,
            "path": path, "scores": rows}


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name.strip("/")).strip("_") or "model"


def pooled(relations: pd.DataFrame) -> pd.DataFrame:
    """Micro-averaged metrics per (seed, lang, model, method): confusion counts summed over relations, over the
    claims with a verdict (``wo_DKN_all_claims``: over every claim); metrics NaN where no claim had one. Each
    row also counts the relations and claims, and those without a verdict."""
    rows = []
    for (seed, lang, model), group in relations.groupby(["seed", "lang", "model"], sort=False):
        claims = group["n_claims"].sum()
        seconds = float((group["judge_s_per_claim"] * group["n_claims"]).sum() / claims) if claims else float("nan")
        for method in (*METHODS, ALL_CLAIMS):
            total = Confusion(*(int(group[f"{method}_{k}"].sum()) for k in COUNTS))
            rows.append({"seed": seed, "lang": lang, "model": model, "method": method,
                         "n_relations": len(group), "n_relations_no_verdict": int((~group["verdict"]).sum()),
                         "n_claims": int(claims), "n_claims_no_verdict": int(group["n_no_verdict"].sum()),
                         "multi_token_claims": int(group["multi_token_claims"].sum()),
                         "has_verdict": int(total.n > 0), **asdict(total), **total.metrics(),
                         "judge_s_per_claim": seconds,
                         "mean_lam": float(group["lam"].mean()), "mean_n_dkn": float(group["n_dkn"].mean())})
    return pd.DataFrame(rows)


def summary(pooled_rows: pd.DataFrame) -> pd.DataFrame:
    """Per (lang, model, method): the mean over seeds of every number of :func:`pooled` and its sd (``_sd``)."""
    return across_seeds(pooled_rows, ["lang", "model", "method"])


def _cell(row, *names: str) -> str:
    return " / ".join(pm(row[n], row.get(f"{n}_sd", float("nan"))) for n in names)


def _count(row, name: str) -> str:
    sd = row.get(f"{name}_sd", float("nan"))
    return f"{row[name]:.0f}" if math.isnan(sd) else pm(row[name], sd, 1)


def table3(summary_rows: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 3 layout from :func:`summary`: one row per (language, model); each method's P / R / F1
    (over claims with a verdict), the authors' P / R and the accept rates as text cells (mean ± sd with
    several seeds), and the relations and claims without a verdict."""
    rows = []
    for (lang, model), group in summary_rows.groupby(["lang", "model"], sort=False):
        by = {r.method: r for _, r in group.iterrows()}
        row = {"Data": LANG_NAMES.get(lang, lang), "Model": model}
        for method, label in (("wo_DKN", "wo_DKN"), ("wo_DKN_token_exact", "wo_DKN token-exact"),
                              ("with_DKN", "with_DKN")):
            r = by[method]
            row[f"{label} P / R / F1"] = _cell(r, "P", "R", "F1")
            if method != "wo_DKN_token_exact":
                row[f"{label} authors' P / R"] = _cell(r, "authors_P", "authors_R")
                row[f"{label} accept true / wrong"] = _cell(r, "accept_true", "accept_wrong")
        first = by["with_DKN"]
        row["relations (no verdict)"] = f"{_count(first, 'n_relations')} ({_count(first, 'n_relations_no_verdict')})"
        row["claims (no verdict)"] = f"{_count(first, 'n_claims')} ({_count(first, 'n_claims_no_verdict')})"
        row["wo_DKN F1, all claims"] = _cell(by[ALL_CLAIMS], "F1")
        row["s / claim"] = pm(first.judge_s_per_claim)
        if int(first.n_seeds) > 1:  # the metrics' mean ± sd runs over the seeds with a verdict
            row["seeds (with verdict)"] = f"{int(first.n_seeds)} ({round(first.has_verdict * first.n_seeds)})"
        rows.append(row)
    return pd.DataFrame(rows)


def _figures(summary_rows: pd.DataFrame, claims: pd.DataFrame) -> dict:
    shown = summary_rows[summary_rows["method"].isin(METHODS)]
    bars = shown.assign(setting=shown["model"] + " · " + shown["lang"])
    judged = claims[claims["verdict"].astype(bool)]
    margins = {f"{model} · {lang}": (group.loc[group["is_true"], "margin"], group.loc[~group["is_true"], "margin"])
               for (model, lang), group in judged.groupby(["model", "lang"], sort=False)}
    figures = {"f1": plots.grouped_bars(bars, "setting", "method", "F1",
                                        "F1 of the class 'correct' (held-out claims with a verdict)", "F1"),
               "accept_wrong": plots.grouped_bars(bars, "setting", "method", "accept_wrong",
                                                  "Share of wrong claims accepted (lower is better)", "accept rate")}
    if margins:
        figures["margins"] = plots.margin_histograms(margins, "DKN score − λ of held-out claims")
    return figures


def run(settings: Settings) -> Outcome:
    """Calibrate and evaluate a checker per (model, seed, language, relation); Table 3 pooled over relations,
    mean ± sd over seeds."""
    factset = load_dataset(settings.data)
    several = settings.seeds > 1
    results = []
    for lm in models(settings):
        for seed in settings.seed_list:
            run_settings = settings.with_seed(seed)
            selection = select_facts(factset, run_settings, DEFAULT_MAX_FACTS)
            for lang in settings.langs:
                for relation, facts in progress(selection.items(), f"{lm.name} {lang} seed {seed}",
                                                total=len(selection)):
                    result = _check_relation(lm, factset, run_settings, relation, lang, facts,
                                             f"-seed{seed}" if several else "")
                    if result is not None:
                        results.append(result)
    if not results:
        raise InputError("relations", "no relation could be calibrated on these models and languages")
    relations = pd.DataFrame([r["row"] for r in results])
    claims = pd.concat([r["claims"] for r in results], ignore_index=True)
    pooled_rows = pooled(relations)
    summary_rows = summary(pooled_rows)
    per_relation = ["seed", "model", "lang", "relation", "n_train", "n_claims", "n_no_verdict", "n_dkn", "n_masks",
                    "lam", "train_f1", "wo_DKN_all_claims_F1", "wo_DKN_F1", "with_DKN_F1", "with_DKN_accept_true",
                    "with_DKN_accept_wrong"]
    scores = pd.DataFrame([row for r in results for row in r["scores"]])
    report, baseline_table = baseline_report(scores, settings)
    path = settings.out / "report.json"
    path.write_text(json.dumps(_strict(report), ensure_ascii=False, indent=1, allow_nan=False), encoding="utf-8")
    return Outcome(name="factcheck", title=TITLE, headline=table3(summary_rows), caption=CAPTION,
                   shown={"Against fair baselines (AUROC threshold-free, mean per relation [95 % bootstrap interval]; "
                          "F1 at the fitted and the paper's fixed λ)": baseline_table,
                          "Published Table 3 (for comparison; P / R as the authors computed them)": PUBLISHED,
                          "Per relation": relations[per_relation if several else per_relation[1:]]},
                   tables={"table3": summary_rows, "table3_per_seed": pooled_rows, "relations": relations,
                           "claims": claims, "baselines": baseline_table, "claim_scores": scores},
                   figures=_figures(summary_rows, claims), notes=NOTES + (BASELINE_NOTE,),
                   files=(*(r["path"] for r in results), path))


BASELINE_NOTE = ("**Baselines** (`report.json`, `baselines.csv`; kn_core/experiments/baselines.py): the DKN score is "
                 "compared, on the same held-out claims of the relations with a DKN set, with the model's own "
                 "P(candidate) (`model_probability`), its mean log-probability per token (`logprob`), random sets of "
                 "the DKN set's size in its layers (`random_neurons`, 30 seeded draws, means over draws) and the "
                 "wo_DKN answers. AUROC is threshold-free (per relation, then the mean; bootstrap over facts within "
                 "relations, 1,000 resamples). F1 at λ fitted per relation on its training split's claims (never "
                 "on the claims scored) and at the paper's fixed λ = 1e-6. `logistic`: DKN z-score + logprob "
                 "against logprob alone, fitted on the training claims: does DKN add anything over P(candidate)?")


def _strict(value):
    """NaN and ±Infinity as None, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _strict(value.item())
    return value


def baseline_report(scores: pd.DataFrame, settings: Settings) -> tuple[dict, pd.DataFrame]:
    """``report.json``'s content — the baselines over every run (model × language × seed) pooled as relation units
    at the top (``"auroc"``: {"dkn", "model_probability", "logprob", "random_neurons", "wo_dkn", …}) and per
    run under ``"runs"`` — and the table of the report, one row per run and score."""
    overall = baselines.summarise(scores, settings.objective, settings.seed)
    runs, tables = [], []
    for (model, lang, seed), group in scores.groupby(["model", "lang", "seed"], sort=False):
        summary = baselines.summarise(group, settings.objective, int(seed))
        runs.append({"model": model, "lang": lang, "seed": int(seed), **summary})
        tables.append(baselines.table(summary, model=model, lang=lang, seed=int(seed)))
    report = {"kind": "kn-explorer/factcheck-report", "version": 1, "objective": settings.objective,
              "rule": settings.rule, "steps": settings.steps, "baseline": settings.baseline, **overall, "runs": runs}
    return report, pd.concat(tables, ignore_index=True)
