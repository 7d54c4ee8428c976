"""Experiments end to end on a tiny model and a tiny bilingual fact folder, plus the report helpers."""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from kn_core.cli import main
from kn_core.data import load_dataset
from kn_core.errors import InputError
from kn_core.experiments import NAMES, Settings
from kn_core.experiments.common import select_facts, unrelated_fact
from kn_core.experiments.report import fmt, markdown_table
from kn_core.method.factcheck import FactChecker

RELATIONS = "id\tname\tdescription\nP36\tcapital\tcapital city\nP30\tcontinent\tcontinent\n"
TEMPLATES = ("relation\tlang\tsplit\ttemplate\n"
             "P36\ten\ttrain\tThe capital of [X] is [Y].\nP36\ten\ttrain\tThe capital city of [X] is [Y].\n"
             "P36\tzh\ttrain\t[X]的首都是[Y]。\n"
             "P30\ten\ttrain\t[X] is in [Y].\nP30\tzh\ttrain\t[X]是[Y]。\n")
HEADER = "subject_en\tobject_en\tsubject_zh\tobject_zh\n"
P36 = [("Tanzania", "Dodoma", "坦国", "东京"), ("France", "Paris", "法国", "巴黎"),
       ("Japan", "Tokyo", "日本", "东京"), ("Kenya", "Nairobi", "肯国", "巴黎"),
       ("Peru", "Lima", "秘国", "黎"),
       ("Argentina", "Buenos Aires", "阿国", "东京")]
P30 = [("Tanzania", "Africa", "坦国", "日本"), ("Kenya", "Africa", "肯国", "日本"),
       ("France", "Europe", "法国", "法国"), ("Japan", "Asia", "日本", "东京")]
# (the Chinese objects are nonsense: the tiny vocabulary knows few characters)


@pytest.fixture(scope="module")
def facts_dir(tmp_path_factory):
    """A bundled-format folder whose objects the tiny models' vocabulary knows."""
    folder = tmp_path_factory.mktemp("tiny-facts")
    (folder / "relations.tsv").write_text(RELATIONS, encoding="utf-8")
    (folder / "templates.tsv").write_text(TEMPLATES, encoding="utf-8")
    for name, rows in (("P36", P36), ("P30", P30)):
        (folder / f"{name}.tsv").write_text(HEADER + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def test_factcheck_end_to_end(bert_dir, facts_dir, tmp_path, capsys):
    start = time.perf_counter()
    code = main(["experiment", "factcheck", "--model", str(bert_dir), "--data", str(facts_dir), "--langs", "en",
                 "--relations", "P36,P30", "--max-facts", "5", "--steps", "8", "--out", str(tmp_path)])
    assert code == 0
    assert time.perf_counter() - start < 30
    printed = capsys.readouterr().out
    for column in ("wo_DKN P / R / F1", "wo_DKN token-exact P / R / F1", "with_DKN authors' P / R",
                   "with_DKN accept true / wrong", "relations (no verdict)", "claims (no verdict)", "English",
                   "WHOLE object string"):
        assert column in printed
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    for method in ("dkn", "model_probability", "logprob", "random_neurons", "wo_dkn", "wo_dkn_token_exact"):
        assert method in report["auroc"] and method in report["auroc_ci95"]
    for method in ("dkn", "random_neurons"):
        assert {"fixed", "fitted"} <= set(report["threshold"][method])
        assert report["threshold"][method]["fixed"]["lam"] == 1e-6
    assert {"fitted"} <= set(report["threshold"]["model_probability"]) and "training split" in report["lambda"]
    assert {"auroc_p_only", "auroc_both", "delta", "delta_ci95"} <= set(report["logistic"])
    assert report["runs"][0]["model"] and report["runs"][0]["lang"] == "en"
    baselines = pd.read_csv(tmp_path / "baselines.csv")
    assert set(baselines["score"]) >= {"dkn", "model_probability", "random_neurons", "wo_dkn"}
    scores = pd.read_csv(tmp_path / "claim_scores.csv")
    assert "test" in set(scores["split"]) and {"dkn", "model_probability", "logprob"} <= set(scores.columns)
    table3 = pd.read_csv(tmp_path / "table3.csv")
    assert list(table3["method"]) == ["wo_DKN", "wo_DKN_token_exact", "with_DKN", "wo_DKN_all_claims"]
    claims = pd.read_csv(tmp_path / "claims.csv")
    with_dkn = table3.set_index("method").loc["with_DKN"]
    assert int(with_dkn[["tp", "fp", "fn", "tn"]].sum()) == claims["verdict"].sum()  # verdicts only
    assert with_dkn["n_claims"] == len(claims) and with_dkn["n_claims_no_verdict"] == (~claims["verdict"]).sum()
    assert int(table3.set_index("method").loc["wo_DKN_all_claims", ["tp", "fp", "fn", "tn"]].sum()) == len(claims)
    assert claims["is_true"].sum() == (~claims["is_true"]).sum()
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Headline" in report and "![f1](f1.png)" in report and (tmp_path / "f1.png").stat().st_size > 0
    assert "no verdict" in report
    stored = sorted((tmp_path / "checkers").glob("*.json"))
    assert len(stored) == 2 and FactChecker.from_json(stored[0].read_text(encoding="utf-8")).lang == "en"


def _relation(relation: str, verdict: bool, counts: dict[str, tuple[int, int, int, int]], seed: int = 0) -> dict:
    n = sum(counts["wo_DKN_all_claims"])
    row = {"seed": seed, "model": "m", "lang": "en", "relation": relation, "verdict": verdict, "n_claims": n,
           "n_no_verdict": 0 if verdict else n, "multi_token_claims": 0, "judge_s_per_claim": 0.1,
           "lam": 0.5 if verdict else float("nan"), "n_dkn": 3 if verdict else 0}
    for method in ("wo_DKN", "wo_DKN_token_exact", "with_DKN", "wo_DKN_all_claims"):
        row.update(zip((f"{method}_{k}" for k in ("tp", "fp", "fn", "tn")), counts.get(method, (0, 0, 0, 0))))
    return row


def test_no_verdict_counts_in_the_tables():
    """A relation without DKN adds to the no-verdict counts and to no P / R / F1 (not as an accept-all 0)."""
    from kn_core.experiments.factcheck import pooled, summary, table3

    judged = _relation("P36", True, {"with_DKN": (3, 1, 1, 3), "wo_DKN": (2, 0, 2, 4),
                                     "wo_DKN_token_exact": (2, 0, 2, 4), "wo_DKN_all_claims": (2, 0, 2, 4)})
    skipped = _relation("P30", False, {"wo_DKN_all_claims": (3, 0, 0, 3)})
    rows = pooled(pd.DataFrame([judged, skipped])).set_index("method")
    assert rows.loc["with_DKN", ["tp", "fp", "fn", "tn"]].tolist() == [3, 1, 1, 3]
    assert rows.loc["with_DKN", "F1"] == pytest.approx(0.75)  # P36 alone: P30 is not an accept-all
    assert rows.loc["with_DKN", "n_relations_no_verdict"] == 1 and rows.loc["with_DKN", "n_claims_no_verdict"] == 6
    assert rows.loc["wo_DKN_all_claims", "tp"] == 5
    table = table3(summary(pooled(pd.DataFrame([judged, skipped]))))
    assert table.loc[0, "relations (no verdict)"] == "2 (1)" and table.loc[0, "claims (no verdict)"] == "14 (6)"
    assert table.loc[0, "with_DKN P / R / F1"] == "0.750 / 0.750 / 0.750"
    nothing = table3(summary(pooled(pd.DataFrame([skipped]))))  # no verdict at all: no metric
    assert nothing.loc[0, "with_DKN P / R / F1"] == "– / – / –"
    assert nothing.loc[0, "relations (no verdict)"] == "1 (1)"
    seeds = table3(summary(pooled(pd.DataFrame([judged, skipped, {**judged, "seed": 1}, {**skipped, "seed": 1,
                                                                                        "verdict": True}]))))
    assert "±" in seeds.loc[0, "relations (no verdict)"] and seeds.loc[0, "seeds (with verdict)"] == "2 (2)"


def test_factcheck_without_dkn_reports_no_verdict(bert_dir, facts_dir, tmp_path, capsys, monkeypatch):
    import kn_core.method.factcheck as protocol

    monkeypatch.setattr(protocol, "dkn_set", lambda counts, t=0.7: ())  # no relation has a DKN set
    code = main(["experiment", "factcheck", "--model", str(bert_dir), "--data", str(facts_dir), "--langs", "en",
                 "--relations", "P36,P30", "--max-facts", "5", "--steps", "4", "--no-cache", "--out", str(tmp_path)])
    assert code == 0
    headline = pd.read_csv(tmp_path / "headline.csv")
    claims = pd.read_csv(tmp_path / "claims.csv")
    assert not claims["verdict"].any() and claims["with_DKN"].isna().all()
    assert headline.loc[0, "relations (no verdict)"] == "2 (2)"
    assert headline.loc[0, "claims (no verdict)"] == f"{len(claims)} ({len(claims)})"
    assert headline.loc[0, "with_DKN P / R / F1"] == "– / – / –"
    assert headline.loc[0, "wo_DKN F1, all claims"] != "–"
    assert "2 (2)" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["factcheck", "likn"])
def test_seeds_give_mean_and_sd(name, gpt2_dir, facts_dir, tmp_path, capsys):
    code = main(["experiment", name, "--model", str(gpt2_dir), "--data", str(facts_dir), "--langs", "en,zh",
                 "--relations", "P36", "--max-facts", "4", "--steps", "4", "--seeds", "2", "--no-cache",
                 "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "±" in printed
    headline = pd.read_csv(tmp_path / "headline.csv")
    metric = "with_DKN P / R / F1" if name == "factcheck" else "jaccard"
    assert headline[metric].astype(str).str.contains("±").any()
    if name == "factcheck":
        table3 = pd.read_csv(tmp_path / "table3.csv")
        assert {"F1", "F1_sd", "n_seeds"} <= set(table3.columns) and (table3["n_seeds"] == 2).all()
        assert set(pd.read_csv(tmp_path / "relations.csv")["seed"]) == {0, 1}
        assert len(list((tmp_path / "checkers").glob("*-seed1.json"))) >= 1
    else:
        per_seed = pd.read_csv(tmp_path / "summary_per_seed.csv")
        assert set(per_seed["seed"]) == {0, 1}
        assert (tmp_path / "edits_summary.csv").is_file()
    with pytest.raises(InputError):
        Settings(models=("x",), out=tmp_path, seeds=0)


@pytest.mark.parametrize("name", ["localize", "likn", "dkn"])
def test_other_experiments_run(name, gpt2_dir, facts_dir, tmp_path, capsys):
    code = main(["experiment", name, "--model", str(gpt2_dir), "--data", str(facts_dir), "--langs", "en,zh",
                 "--max-facts", "2", "--steps", "4", "--out", str(tmp_path)])
    assert code == 0
    assert "report:" in capsys.readouterr().out
    headline = pd.read_csv(tmp_path / "headline.csv")
    assert len(headline) >= 1 and (tmp_path / "report.md").is_file()
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())


def test_localize_reports_controls_and_critics_checks(gpt2_dir, facts_dir, tmp_path, capsys):
    code = main(["experiment", "localize", "--model", str(gpt2_dir), "--data", str(facts_dir), "--langs", "en",
                 "--relations", "P36", "--max-facts", "3", "--max-templates", "1", "--steps", "4",
                 "--out", str(tmp_path)])
    assert code == 0
    facts = pd.read_csv(tmp_path / "facts.csv")
    for column in ("ctrl_own", "ctrl_same_relation", "ctrl_other_relation", "ctrl_random_mean", "ctrl_random_sd",
                   "ctrl_random_rank", "specificity", "top1_flip_rate", "top1_before", "top1_after",
                   "paraphrase_change", "transfer", "reverse_change"):
        assert column in facts, column
    assert set(facts["specificity"]) <= {"fact", "relation", "generic", "none", "no verdict", "no neurons"}
    assert (facts["n_same_relation"] == 5).all()  # every other fact of P36 in the data, not only the 3 sampled
    assert (facts["n_other_relation"] > 0).all()  # from P30, though only P36 was selected
    assert facts["paraphrase_change"].notna().all()  # P36's second template, not searched with --max-templates
    headline = pd.read_csv(tmp_path / "headline.csv")
    assert {"ctrl_same_relation", "top1_flip_rate", "share_relation"} <= set(headline.columns)
    assert headline["transfer"][0] == pytest.approx(facts["transfer"].median(), nan_ok=True)  # a ratio: the median
    syntax = pd.read_csv(tmp_path / "syntax.csv")
    assert list(syntax.columns[:4]) == ["model", "lang", "template", "subject"]
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Syntactic control" in report and "Verdict rule: none:" in report


def test_likn_needs_two_languages(gpt2_dir, facts_dir, tmp_path, capsys):
    code = main(["experiment", "likn", "--model", str(gpt2_dir), "--data", str(facts_dir), "--langs", "en",
                 "--out", str(tmp_path)])
    assert code == 2 and "two or more distinct languages" in capsys.readouterr().err


def test_a_language_the_data_lacks_is_named(gpt2_dir, facts_dir, tmp_path, capsys):
    code = main(["experiment", "localize", "--model", str(gpt2_dir), "--data", str(facts_dir), "--langs", "en,fr",
                 "--out", str(tmp_path)])
    assert code == 2 and "langs: the data has no fr; its languages are en, zh" in capsys.readouterr().err


def test_fact_selection_is_seeded_and_capped(facts_dir, tmp_path):
    factset = load_dataset(str(facts_dir))
    settings = Settings(models=("x",), out=tmp_path, data=str(facts_dir), max_facts=3, seed=1)
    picked = select_facts(factset, settings, default_cap=10)
    assert picked == select_facts(factset, settings, default_cap=10)
    assert {rid: len(f) for rid, f in picked.items()} == {"P36": 3, "P30": 3}
    everything = select_facts(factset, Settings(models=("x",), out=tmp_path, max_facts=0), default_cap=2)
    assert len(everything["P36"]) == len(P36)
    fact = picked["P36"][0]
    assert unrelated_fact(picked, fact).relation == "P30"
    with pytest.raises(InputError):
        Settings(models=(), out=tmp_path)


def test_first_facts_takes_each_relations_first_facts_whatever_the_seed(facts_dir, tmp_path):
    factset = load_dataset(str(facts_dir))
    for seed in (0, 1, 7):
        settings = Settings(models=("x",), out=tmp_path, data=str(facts_dir), max_facts=3, seed=seed, first_facts=True)
        picked = select_facts(factset, settings, default_cap=10)
        assert {rid: [f.id for f in facts] for rid, facts in picked.items()} == \
               {rid: [f.id for f in factset.facts_of(rid)[:3]] for rid in ("P36", "P30")}
    sampled = select_facts(factset, Settings(models=("x",), out=tmp_path, data=str(facts_dir), max_facts=3, seed=1),
                           default_cap=10)
    assert any(list(sampled[rid]) != list(factset.facts_of(rid)[:3]) for rid in sampled)  # the sample is not the head


def test_report_helpers():
    assert fmt(0.12345) == "0.123" and fmt(1.5e-6) == "1.500e-06" and fmt(float("nan")) == "–" and fmt(3) == "3"
    table = markdown_table(pd.DataFrame({"a": [1, 2], "b|c": ["x|y", float("nan")]}))
    assert table.splitlines() == ["| a | b\\|c |", "|---|---|", "| 1 | x\\|y |", "| 2 | – |"]
    assert set(NAMES) == {"localize", "likn", "dkn", "factcheck"}


@pytest.mark.parametrize("name", ["likn", "factcheck"])
def test_experiments_read_true_facts_from_the_store(name, gpt2_dir, facts_dir, tmp_path, monkeypatch, capsys):
    """Issue 7: what one run (or a batch) stored is not computed again; --no-cache leaves the store alone."""
    import kn_core.attribution
    from kn_core.runs.store import ResultStore

    db = tmp_path / "store.sqlite"
    args = ["experiment", name, "--model", str(gpt2_dir), "--data", str(facts_dir), "--langs", "en,zh",
            "--relations", "P36", "--max-facts", "5", "--steps", "4"]
    assert main(args + ["--no-cache", "--store", str(db), "--out", str(tmp_path / "a")]) == 0
    assert not db.exists() or ResultStore(db).info()["results"] == 0
    assert main(args + ["--store", str(db), "--out", str(tmp_path / "b")]) == 0
    stored = ResultStore(db).info()["results"]
    assert stored > 0

    def no_compute(*args, **kwargs):
        raise AssertionError("a stored attribution was computed again")

    monkeypatch.setattr(kn_core.attribution, "attribute", no_compute)
    assert main(args + ["--store", str(db), "--out", str(tmp_path / "c")]) == 0
    assert ResultStore(db).info()["results"] == stored
    first, again = (pd.read_csv(tmp_path / run / "headline.csv") for run in ("b", "c"))
    pd.testing.assert_frame_equal(first.drop(columns=[c for c in first if "s / claim" in c]),
                                  again.drop(columns=[c for c in again if "s / claim" in c]))
