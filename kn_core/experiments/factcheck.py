"""Fact-checking with DKN, the paper's Table 3 protocol (METHOD.md §5), per model, language and relation.

For every relation: split its (sampled) facts 80 / 20, calibrate a :class:`~kn_core.method.factcheck.FactChecker` on
the 80 % part and judge the 20 % part's true claims and wrong twins, with the DKN score (with_DKN) and with
the model's own greedy answer (wo_DKN). Confusion counts are pooled over relations (micro-average) into one
Table 3 row per language and model.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict

import pandas as pd

from kn_core.data import FactSet, load_dataset
from kn_core.errors import InputError
from kn_core.experiments import plots
from kn_core.experiments.common import Outcome, Settings, models, progress, select_facts, templates_of
from kn_core.method.factcheck import Confusion, Evaluation, FactChecker, calibrate, evaluate

log = logging.getLogger(__name__)

TITLE = "Fact-checking with degenerate knowledge neurons (Table 3 protocol)"
DEFAULT_MAX_FACTS = 20
LANG_NAMES = {"en": "English", "zh": "Chinese"}
METHODS = ("wo_DKN", "with_DKN")
PUBLISHED = pd.DataFrame(
    [("English", "m-BERT", "0.222 / 0.986 / 0.362", "0.493 / 0.599 / 0.541"),
     ("English", "m-GPT", "0.010 / 1.000 / 0.021", "0.311 / 0.709 / 0.433"),
     ("Chinese", "m-BERT", "0.010 / 1.000 / 0.020", "— / 0.524 / 0.654"),
     ("Chinese", "m-GPT", "0.0002 / 1.000 / 0.0004", "0.966 / 0.511 / 0.669"),
     ("English", "BERT", "0.301 / 0.983 / 0.460", "0.504 / 0.571 / 0.535"),
     ("English", "GPT-2", "0.010 / 1.000 / 0.021", "0.315 / 0.608 / 0.415")],
    columns=["Data", "Model", "wo_DKN authors' P / R / F1", "with_DKN authors' P / R / F1"])
NOTES = (
    "**Claims.** Every held-out fact gives a true claim and a wrong twin whose object is drawn (seeded) from "
    "the other facts' objects of the same relation, so the test set is balanced 1 : 1.",
    "**Metrics.** `P / R / F1` are precision, recall and F1 of the class *correct* (conventional); `authors' P / R` "
    "are the same numbers with the roles swapped, as the authors' code computes them (their P is our recall, "
    "the accept rate of true claims); F1 is the same either way. `accept true / wrong` are the shares of true "
    "and of wrong claims judged correct. Counts are pooled over relations (micro-average).",
    "**with_DKN** accepts a claim when the mean AMIG attribution toward the candidate over the relation's DKN "
    "set reaches λ, calibrated per relation on the training claims (objective in the settings). A relation "
    "whose training prompts gave no degenerate pair has an empty DKN set: every score is 0, so its checker "
    "accepts every claim or none (`relations (no DKN)` counts them; `experiment dkn` shows the single and pair "
    "drops that decide it). **wo_DKN** "
    "accepts it when the model's greedy answer at the candidate's object positions is the candidate, token "
    "for token.",
    "**Reading it against the paper.** On a balanced test set, accepting everything scores F1 = 0.667 with "
    "accept rates 1 / 1, so F1 alone can flatter a checker that does not discriminate: look at the wrong-claim "
    "accept rate. The paper's wo_DKN rows have a precision near 1 and a tiny recall because real pretrained "
    "models rarely produce the exact object; small demo models trained on these very facts know most of "
    "them, so their wo_DKN baseline is far stronger than the paper's.",
)


def _relation_row(lm_name: str, lang: str, checker: FactChecker, evaluation: Evaluation, seconds: float) -> dict:
    row = {"model": lm_name, "lang": lang, "relation": checker.relation, "n_train": len(checker.train_facts),
           "n_test": len(checker.test_facts), "n_claims": len(evaluation.verdicts),
           "n_skipped": len(evaluation.skipped),
           "n_prompts": checker.n_prompts, "n_pairs": checker.n_pairs, "n_dkn": len(checker.dkn),
           "dkn_layers": " ".join(str(x) for x in sorted({layer for layer, _ in checker.dkn})), "lam": checker.lam,
           "train_accept_true": checker.train_accept_true, "train_accept_wrong": checker.train_accept_wrong,
           "train_f1": checker.train_f1, "calibrate_s": seconds, "judge_s_per_claim": evaluation.seconds_per_claim}
    for method, confusion in zip(METHODS, (evaluation.wo_dkn, evaluation.with_dkn)):
        row.update({f"{method}_{k}": v for k, v in {**asdict(confusion), **confusion.metrics()}.items()})
    return row


def _check_relation(lm, factset: FactSet, settings: Settings, relation: str, lang: str, facts) -> dict | None:
    """Calibrate and evaluate one relation; stores the checker as JSON. None when the model cannot take it."""
    start = time.perf_counter()
    try:
        checker = calibrate(lm, factset, relation, lang, templates_of(factset, relation, lang, settings),
                            settings.config, seed=settings.seed, top_k=settings.top_k, t=settings.t,
                            t_low=settings.t_low, t_high=settings.t_high, objective=settings.objective, facts=facts,
                            attributor=settings.attributor())
    except InputError as exc:
        log.warning("%s %s %s skipped: %s", lm.name, lang, relation, exc)
        return None
    seconds = time.perf_counter() - start
    evaluation = evaluate(lm, checker, checker.held_out_claims(factset))
    folder = settings.out / "checkers"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_slug(lm.name)}-{lang}-{relation}.json"
    path.write_text(checker.to_json(), encoding="utf-8")
    claims = evaluation.claims_frame().assign(model=lm.name, margin=lambda f: f["score"] - f["lam"])
    return {"row": _relation_row(lm.name, lang, checker, evaluation, seconds), "claims": claims, "path": path}


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name.strip("/")).strip("_") or "model"


def pooled(relations: pd.DataFrame) -> pd.DataFrame:
    """Micro-averaged metrics per (lang, model, method): confusion counts summed over relations."""
    rows = []
    for (lang, model), group in relations.groupby(["lang", "model"], sort=False):
        claims = group["n_claims"].sum()
        seconds = float((group["judge_s_per_claim"] * group["n_claims"]).sum() / claims) if claims else float("nan")
        for method in METHODS:
            total = Confusion(*(int(group[f"{method}_{k}"].sum()) for k in ("tp", "fp", "fn", "tn")))
            rows.append({"lang": lang, "model": model, "method": method, "n_relations": len(group),
                         "n_relations_without_dkn": int((group["n_dkn"] == 0).sum()),
                         **asdict(total), **total.metrics(), "judge_s_per_claim": seconds,
                         "mean_lam": float(group["lam"].mean()), "mean_n_dkn": float(group["n_dkn"].mean())})
    return pd.DataFrame(rows)


def table3(pooled_rows: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 3 layout: one row per (language, model), each method's P / R / F1, the authors' P / R
    and the accept rates as text cells."""
    rows = []
    for (lang, model), group in pooled_rows.groupby(["lang", "model"], sort=False):
        row = {"Data": LANG_NAMES.get(lang, lang), "Model": model}
        for method, r in ((m, group[group["method"] == m].iloc[0]) for m in METHODS):
            row[f"{method} P / R / F1"] = f"{r.P:.3f} / {r.R:.3f} / {r.F1:.3f}"
            row[f"{method} authors' P / R"] = f"{r.authors_P:.3f} / {r.authors_R:.3f}"
            row[f"{method} accept true / wrong"] = f"{r.accept_true:.3f} / {r.accept_wrong:.3f}"
        first = group.iloc[0]
        row["relations (no DKN)"] = f"{first.n_relations} ({first.n_relations_without_dkn})"
        row["claims"] = int(first[["tp", "fp", "fn", "tn"]].sum())
        row["s / claim"] = f"{first.judge_s_per_claim:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _figures(pooled_rows: pd.DataFrame, claims: pd.DataFrame) -> dict:
    bars = pooled_rows.assign(setting=pooled_rows["model"] + " · " + pooled_rows["lang"])
    margins = {f"{model} · {lang}": (group.loc[group["is_true"], "margin"], group.loc[~group["is_true"], "margin"])
               for (model, lang), group in claims.groupby(["model", "lang"], sort=False)}
    return {"f1": plots.grouped_bars(bars, "setting", "method", "F1", "F1 of the class 'correct' (held-out claims)",
                                     "F1"),
            "accept_wrong": plots.grouped_bars(bars, "setting", "method", "accept_wrong",
                                               "Share of wrong claims accepted (lower is better)", "accept rate"),
            "margins": plots.margin_histograms(margins, "DKN score − λ of held-out claims")}


def run(settings: Settings) -> Outcome:
    """Calibrate and evaluate a checker per (model, language, relation); Table 3 pooled over relations."""
    factset = load_dataset(settings.data)
    selection = select_facts(factset, settings, DEFAULT_MAX_FACTS)
    results = []
    for lm in models(settings):
        for lang in settings.langs:
            for relation, facts in progress(selection.items(), f"{lm.name} {lang}", total=len(selection)):
                result = _check_relation(lm, factset, settings, relation, lang, facts)
                if result is not None:
                    results.append(result)
    if not results:
        raise InputError("relations", "no relation could be calibrated on these models and languages")
    relations = pd.DataFrame([r["row"] for r in results])
    claims = pd.concat([r["claims"] for r in results], ignore_index=True)
    pooled_rows = pooled(relations)
    return Outcome(name="factcheck", title=TITLE, headline=table3(pooled_rows),
                   shown={"Published Table 3 (for comparison; P / R as the authors computed them)": PUBLISHED,
                          "Per relation": relations[["model", "lang", "relation", "n_train", "n_claims", "n_dkn",
                                                     "lam", "train_f1", "wo_DKN_F1", "with_DKN_F1",
                                                     "with_DKN_accept_true", "with_DKN_accept_wrong"]]},
                   tables={"table3": pooled_rows, "relations": relations, "claims": claims},
                   figures=_figures(pooled_rows, claims), notes=NOTES, files=tuple(r["path"] for r in results))
