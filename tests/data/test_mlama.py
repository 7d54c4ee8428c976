"""The mLAMA-layout importer, data set summaries and the ``data`` command."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kn_core import cli
from kn_core.data import load_dataset, load_mlama, summarize
from kn_core.errors import DataError

TINY = Path(__file__).resolve().parent / "mlama_tiny"  # in the repository: en, zh, fr; written for these tests
SUMMARY_FIELDS = {"relations", "facts", "paired", "problems"}


# -- the tiny three-language folder (tests/data/mlama_tiny) -------------------------------------------
def test_tiny_folder_pairs_facts_across_three_languages():
    fact_set = load_mlama(TINY)
    assert fact_set.languages == ("en", "fr", "zh")  # the folders, sorted
    assert sorted(fact_set.relations) == ["P36", "P37"]
    assert [len(fact_set.facts_of(rid)) for rid in ("P36", "P37")] == [4, 3]
    japan = fact_set.fact("P37-tiny-p37-q17")
    assert japan.labels == {"en": ("Japan", "Japanese"), "fr": ("Japon", "japonais"), "zh": ("日本", "日语")}
    p36 = fact_set.relations["P36"]
    assert [len(p36.templates_for(lang)) for lang in ("en", "fr", "zh")] == [2, 1, 1]
    assert fact_set.wrong_objects(japan, "fr") == ("français", "allemand")
    # Spain's P37 line is in en and fr but not in zh: skipped, and reported on both of its lines
    assert [(p.file, p.line) for p in fact_set.problems] == [("en/P37.jsonl", 4), ("fr/P37.jsonl", 4)]
    assert all("uuid tiny-p37-q29 has no valid fact in zh/P37.jsonl" in p.reason for p in fact_set.problems)


def test_tiny_folder_languages_can_be_chosen_and_ordered():
    two = load_mlama(TINY, ["fr", "en"])
    assert two.languages == ("fr", "en") and two.problems == ()
    assert len(two.facts_of("P37")) == 4  # Spain is complete in en and fr
    assert two.fact("P37-tiny-p37-q29").labels == {"fr": ("Espagne", "espagnol"), "en": ("Spain", "Spanish")}
    assert load_mlama(TINY, ["zh"]).languages == ("zh",)
    with pytest.raises(DataError, match="language 'ja' not found; this folder has en, fr, zh"):
        load_mlama(TINY, ["en", "ja"])


def test_tiny_folder_summary_and_load_dataset():
    summary = summarize(TINY)
    assert summary["relations"] == ["P36", "P37"]
    assert summary["facts"] == {"en": 8, "fr": 8, "zh": 7} and summary["paired"] == 7
    assert len(summary["problems"]) == 2
    assert load_dataset(str(TINY)) == load_mlama(TINY)


def test_cli_summary_of_the_tiny_folder(tmp_path, capsys):
    out = tmp_path / "summary.json"
    assert cli.main(["data", "summary", str(TINY), "--json", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["paired"] == 7
    assert "paired facts (present in every language): 7" in capsys.readouterr().out


def test_a_fourth_language_folder_is_read_too(tmp_path):
    root = tmp_path / "mlama"
    shutil.copytree(TINY, root)
    write_jsonl(root / "ja" / "templates.jsonl", [{"relation": "P36", "template": "[X]の首都は[Y]。"}])
    write_jsonl(root / "ja" / "P36.jsonl", [fact("tiny-p36-q17", "日本", "東京")])
    fact_set = load_mlama(root)
    assert fact_set.languages == ("en", "fr", "ja", "zh")
    assert [f.id for f in fact_set.facts] == ["P36-tiny-p36-q17"]  # the only fact in all four; P37 has no ja file
    assert fact_set.fact("P36-tiny-p36-q17").object("ja") == "東京"


# -- summaries and choosing languages (on the tiny folder: every clone runs them; the shared mLAMA sample beside
# the repository, where there is one, is read the same way: `python -m kn_core data summary PATH`) ----------
TINY_PROBLEM = "uuid tiny-p37-q29 has no valid fact in zh/P37.jsonl; skipped (facts pair across languages by uuid)"


def test_tiny_summary():
    summary = summarize(TINY)
    assert set(summary) == SUMMARY_FIELDS
    assert summary == {"relations": ["P36", "P37"], "facts": {"en": 8, "fr": 8, "zh": 7}, "paired": 7,
                       "problems": [{"file": "en/P37.jsonl", "line": 4, "reason": TINY_PROBLEM},
                                    {"file": "fr/P37.jsonl", "line": 4, "reason": TINY_PROBLEM}]}


def test_load_dataset_recognises_the_layout_and_languages_can_be_chosen():
    assert len(load_dataset(str(TINY)).facts) == 7
    english = load_mlama(TINY, ["en"])
    assert english.languages == ("en",) and len(english.facts) == 8  # Spain's P37 pairs once zh is left out
    with pytest.raises(DataError, match="language 'ja' not found; this folder has en, fr, zh"):
        load_mlama(TINY, ["en", "ja"])


# -- deliberately broken files ------------------------------------------------------------------------
def write_jsonl(path: Path, lines: list[dict | str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = [line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) for line in lines]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")


def fact(uuid: str, subject: str, obj: str) -> dict:
    return {"uuid": uuid, "lineid": 0, "sub_uri": "Q1", "obj_uri": "Q2", "sub_label": subject, "obj_label": obj}


@pytest.fixture
def broken(tmp_path) -> Path:
    root = tmp_path / "mlama"
    write_jsonl(root / "en" / "templates.jsonl", [
        {"relation": "P36", "template": "The capital of [X] is [Y] ."},
        '{"relation": "P37", "template": ',                                   # line 2: invalid JSON
        {"relation": "P37", "template": "[X] speaks a language ."},          # line 3: no [Y]
        {"relation": "P99", "template": "[X] likes [Y] ."},
    ])
    write_jsonl(root / "zh" / "templates.jsonl", [
        {"relation": "P36", "template": "[X]的首都是[Y]。"},
        {"relation": "P37", "template": "[X]的官方语言是[Y]。"},
        {"relation": "P99", "template": "[X]喜欢[Y]。"},
    ])
    write_jsonl(root / "en" / "P36.jsonl", [
        fact("a", "Denmark", "Copenhagen"),
        "{not json",                                                          # line 2
        {"uuid": "b", "sub_label": "Sweden"},                                 # line 3: missing obj_label
        fact("c", "Norway", "Oslo"),                                          # line 4: unpaired (no zh c)
        fact("d", "Japan", "Tokyo"),
        fact("e", "", "Paris"),                                               # line 6: empty subject
    ])
    write_jsonl(root / "zh" / "P36.jsonl", [
        fact("a", "丹麦", "哥本哈根"),
        fact("d", "日本", "东京"),
        fact("e", "法国", "巴黎"),                                             # line 3: its en twin is invalid
    ])
    write_jsonl(root / "en" / "P37.jsonl", [fact("f", "France", "French")])   # no valid en template
    write_jsonl(root / "zh" / "P37.jsonl", [fact("f", "法国", "法语")])
    write_jsonl(root / "en" / "P99.jsonl", [fact("x", "Ann", "tea")])        # no zh file
    return root


def where(problems) -> set[tuple[str, int | None]]:
    return {(p.file, p.line) for p in problems}


def test_broken_lines_are_recorded_and_valid_lines_still_load(broken):
    fact_set = load_mlama(broken)
    assert [f.id for f in fact_set.facts] == ["P36-a", "P36-d"]
    assert list(fact_set.relations) == ["P36"]
    assert fact_set.fact("P36-d").labels == {"en": ("Japan", "Tokyo"), "zh": ("日本", "东京")}
    reasons = {(p.file, p.line): p.reason for p in fact_set.problems}
    assert where(fact_set.problems) == {
        ("en/templates.jsonl", 2), ("en/templates.jsonl", 3), ("en/P36.jsonl", 2), ("en/P36.jsonl", 3),
        ("en/P36.jsonl", 4), ("en/P36.jsonl", 6), ("zh/P36.jsonl", 3), ("en/P37.jsonl", None),
        ("zh/P37.jsonl", None), ("en/P99.jsonl", None)}
    assert reasons[("en/templates.jsonl", 2)].startswith("invalid JSON")
    assert "no [Y] slot" in reasons[("en/templates.jsonl", 3)]
    assert reasons[("en/P36.jsonl", 2)].startswith("invalid JSON")
    assert reasons[("en/P36.jsonl", 3)] == "missing field(s) obj_label"
    assert "uuid c has no valid fact in zh/P36.jsonl" in reasons[("en/P36.jsonl", 4)]
    assert "sub_label: is empty" in reasons[("en/P36.jsonl", 6)]
    assert "uuid e has no valid fact in en/P36.jsonl" in reasons[("zh/P36.jsonl", 3)]
    assert "no template for P37" in reasons[("en/P37.jsonl", None)]
    assert "no usable file in en" in reasons[("zh/P37.jsonl", None)]
    assert "no usable file in zh" in reasons[("en/P99.jsonl", None)]


def test_duplicate_uuid_is_a_problem(broken):
    write_jsonl(broken / "zh" / "P36.jsonl", [fact("a", "丹麦", "哥本哈根"), fact("a", "丹麦", "哥本哈根")])
    problems = load_mlama(broken).problems
    assert any(p.file == "zh/P36.jsonl" and p.line == 2 and "duplicate uuid a" in p.reason for p in problems)


def test_summary_of_broken_data_counts_valid_facts_per_language(broken):
    summary = summarize(broken)
    assert summary["relations"] == ["P36"]
    assert summary["facts"] == {"en": 4, "zh": 4}  # en: a, c, d and P99's x; zh: a, d, e and P37's f
    assert summary["paired"] == 2
    assert {(p["file"], p["line"]) for p in summary["problems"]} == where(load_mlama(broken).problems)


def test_summary_of_the_bundled_folder():
    summary = summarize("bundled")
    assert set(summary) == SUMMARY_FIELDS and summary["problems"] == []
    assert len(summary["relations"]) >= 10 and summary["relations"] == sorted(summary["relations"])
    assert summary["facts"]["en"] == summary["facts"]["zh"] == summary["paired"] >= 400


# -- the data command --------------------------------------------------------------------------------
def test_cli_summary_writes_the_json_fields(tmp_path, capsys):
    out = tmp_path / "summary.json"
    assert cli.main(["data", "summary", str(TINY), "--json", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert set(written) == SUMMARY_FIELDS and written["paired"] == 7
    assert "paired facts (present in every language): 7" in capsys.readouterr().out


def test_cli_summary_lists_problems(broken, tmp_path, capsys):
    out = tmp_path / "summary.json"
    assert cli.main(["data", "summary", str(broken), "--json", str(out)]) == 0
    assert len(json.loads(out.read_text(encoding="utf-8"))["problems"]) == 10
    assert "en/P36.jsonl:4: uuid c" in capsys.readouterr().out


def test_cli_list_and_errors(capsys, tmp_path):
    assert cli.main(["data", "list"]) == 0
    assert "P36     capital" in capsys.readouterr().out
    assert cli.main(["data", "summary", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
