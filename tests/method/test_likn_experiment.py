"""``experiment likn`` with three languages on a tiny model: the matrices, the k-of-N table, the pair ranking and
report.json are written, and the two-language numbers of the same run agree with the two-language functions."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kn_core.cli import main
from kn_core.data import load_dataset
from kn_core.experiments import Settings
from kn_core.experiments.likn import fact_neurons
from kn_core.method.likn import overlap
from kn_core.model.loading import load_model

RELATIONS = "id\tname\tdescription\nP36\tcapital\tcapital city\nP30\tcontinent\tcontinent\n"
TEMPLATES = ("relation\tlang\tsplit\ttemplate\n"
             "P36\ten\ttrain\tThe capital of [X] is [Y].\nP36\ten\ttrain\tThe capital city of [X] is [Y].\n"
             "P36\tzh\ttrain\t[X]的首都是[Y]。\n"
             "P36\txx\ttrain\t[X] capital city is [Y].\nP36\txx\ttrain\tThe city of [X] is [Y].\n"
             "P30\ten\ttrain\t[X] is in [Y].\nP30\tzh\ttrain\t[X]是[Y]。\nP30\txx\ttrain\t[X] in the continent [Y].\n")
HEADER = "subject_en\tobject_en\tsubject_zh\tobject_zh\tsubject_xx\tobject_xx\n"
# a third language "xx" whose labels and templates reuse words the tiny vocabulary knows
P36 = [("Tanzania", "Dodoma", "坦国", "东京", "Tanzania", "Dodoma"),
       ("France", "Paris", "法国", "巴黎", "France", "Paris"),
       ("Japan", "Tokyo", "日本", "东京", "Japan", "Tokyo"),
       ("Kenya", "Nairobi", "肯国", "巴黎", "Kenya", "Nairobi")]
P30 = [("Tanzania", "Africa", "坦国", "日本", "Tanzania", "Africa"),
       ("Kenya", "Africa", "肯国", "日本", "Kenya", "Africa"),
       ("France", "Europe", "法国", "法国", "France", "Europe")]
LANGS = ("en", "zh", "xx")


@pytest.fixture(scope="module")
def three_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("three-languages")
    (folder / "relations.tsv").write_text(RELATIONS, encoding="utf-8")
    (folder / "templates.tsv").write_text(TEMPLATES, encoding="utf-8")
    for name, rows in (("P36", P36), ("P30", P30)):
        (folder / f"{name}.tsv").write_text(HEADER + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def three_run(gpt2_dir, three_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("likn-three")
    code = main(["experiment", "likn", "--model", str(gpt2_dir), "--data", str(three_dir), "--langs", ",".join(LANGS),
                 "--max-facts", "3", "--steps", "4", "--no-cache", "--out", str(out)])
    assert code == 0
    return out


def test_three_languages_write_the_matrices(three_run):
    out = three_run
    matrix = pd.read_csv(out / "overlap_matrix.csv")
    assert len(matrix) == 9 and set(matrix["lang_a"]) == set(LANGS)
    assert {"jaccard", "jaccard_same_relation", "jaccard_other_relation", "facts"} <= set(matrix.columns)
    cells = matrix.set_index(["lang_a", "lang_b"])["jaccard"]
    for a in LANGS:
        for b in LANGS:
            assert cells[(a, b)] == pytest.approx(cells[(b, a)])  # symmetric
    suppression = pd.read_csv(out / "suppression_matrix.csv")
    assert {"suppressed", "measured", "change", "random_mean", "random_sd", "random_rank"} <= set(suppression.columns)
    per_fact = pd.read_csv(out / "suppression.csv")
    assert len(per_fact) == 9 * per_fact["fact_id"].nunique()
    by_k = pd.read_csv(out / "shared_by_k.csv")
    assert list(by_k["k"]) == [1, 2, 3] and list(by_k["mean_neurons"]) == sorted(by_k["mean_neurons"], reverse=True)
    ranking = pd.read_csv(out / "pair_ranking.csv")
    assert set(ranking["relation"]) <= {"P36", "P30"} and (ranking["rank"] >= 1).all()
    assert set(zip(ranking["lang_a"], ranking["lang_b"])) <= {("en", "zh"), ("en", "xx"), ("zh", "xx")}
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["kind"] == "kn-explorer/likn-report" and report["langs"] == list(LANGS)
    (model,) = report["models"].values()
    assert np.array(model["overlap"]["jaccard"], dtype=float).shape == (3, 3)
    assert np.array(model["suppression"]["change"], dtype=float).shape == (3, 3)
    assert [row["k"] for row in model["shared_by_k"]] == [1, 2, 3] and model["pair_ranking"]
    text = (out / "report.md").read_text(encoding="utf-8")
    for title in ("Overlap matrix", "Suppression matrix", "shared by at least k", "pairs sharing most"):
        assert title in text
    assert "![overlap_matrix](overlap_matrix.png)" in text and (out / "suppression_matrix.png").stat().st_size > 0
    headline = pd.read_csv(out / "headline.csv")
    assert {"n_en", "n_zh", "n_xx", "n_shared", "facts_with_shared", "jaccard"} <= set(headline.columns)
    edits = pd.read_csv(out / "edits.csv")
    assert {"shared", "en KN", "xx KN", "xx-only KN", "random"} <= set(edits["edited_set"])
    assert set(edits["measured_lang"]) == set(LANGS)


def test_per_fact_numbers_against_the_two_language_functions(three_run, gpt2_dir, three_dir, tmp_path):
    """A pair's cell of the N-language run is what the two-language overlap gives for that pair."""
    pairs = pd.read_csv(three_run / "overlap_pairs.csv")
    factset = load_dataset(str(three_dir))
    lm = load_model(str(gpt2_dir))
    settings = Settings(models=(str(gpt2_dir),), out=tmp_path, data=str(three_dir), langs=LANGS, steps=4)
    for row in pairs.head(4).itertuples():
        fact = factset.fact(row.fact_id)
        a = fact_neurons(lm, factset, fact, row.lang_a, settings).neurons
        b = fact_neurons(lm, factset, fact, row.lang_b, settings).neurons
        expected = overlap(a, b, lm.n_layers)
        assert row.jaccard == pytest.approx(expected.jaccard) and row.n_shared == len(expected.shared)
        assert (row.n_a, row.n_b) == (len(a), len(b))


def test_one_language_is_refused(gpt2_dir, three_dir, tmp_path, capsys):
    code = main(["experiment", "likn", "--model", str(gpt2_dir), "--data", str(three_dir), "--langs", "en",
                 "--out", str(tmp_path)])
    assert code == 2 and "two or more distinct languages" in capsys.readouterr().err
