"""The bundled fact set and its strict loader (kn_core.data)."""
from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path
from typing import Callable

import pytest

from kn_core.data import (
    BUNDLED_DIR,
    Fact,
    FactSet,
    load_bundled,
    load_dataset,
    object_slot_is_last,
    scan_bundled,
    slugify,
)
from kn_core.errors import DataError, InputError


@pytest.fixture(scope="module")
def bundled() -> FactSet:
    return load_bundled()


# -- the bundled set --------------------------------------------------------------------------------
LANGUAGES = ("en", "zh", "fr", "es", "ru", "ja", "ar", "de")  # en, zh first: the pair two-language views default to


def test_bundled_set_has_enough_relations_facts_and_templates(bundled):
    assert bundled.source == "bundled"
    assert bundled.problems == ()
    assert bundled.languages == LANGUAGES
    assert len(bundled.relations) >= 10
    for rid, relation in bundled.relations.items():
        assert len(bundled.facts_of(rid)) >= 40, rid
        for lang in LANGUAGES:
            assert len(relation.templates_for(lang, heldout=False)) >= 3, (rid, lang)
            assert len(relation.templates_for(lang, heldout=True)) >= 1, (rid, lang)
            assert len(relation.templates_for(lang)) == (len(relation.templates_for(lang, heldout=False))
                                                         + len(relation.templates_for(lang, heldout=True)))


def test_every_template_has_one_subject_slot_and_the_object_slot_last(bundled):
    for relation in bundled.relations.values():
        for template in relation.templates:
            assert template.text.count("[X]") == 1 and template.text.count("[Y]") == 1, template
            assert template.text.split("[Y]")[1] in ("", ".", "。"), template


def test_every_fact_has_every_language_and_unique_ids(bundled):
    ids = [fact.id for fact in bundled.facts]
    assert len(ids) == len(set(ids))
    for fact in bundled.facts:
        assert fact.languages == LANGUAGES
        assert all(label and "\t" not in label for pair in fact.labels.values() for label in pair)
    assert len({(f.relation, f.subject("en"), f.object("en")) for f in bundled.facts}) == len(bundled.facts)


def test_fact_lookup_by_stable_id(bundled):
    fact = bundled.fact("P36-tanzania")
    assert (fact.subject("en"), fact.object("en")) == ("Tanzania", "Dodoma")
    assert (fact.subject("zh"), fact.object("zh")) == ("坦桑尼亚", "多多马")
    assert bundled.fact("P17-sao-paulo").object("en") == "Brazil"
    with pytest.raises(InputError, match="unknown fact id"):
        bundled.fact("P36-atlantis")
    assert (fact.subject("ru"), fact.object("ja")) == ("Танзания", "ドドマ")
    with pytest.raises(InputError, match="no 'ko' labels"):
        fact.subject("ko")
    with pytest.raises(InputError, match="unknown relation"):
        bundled.facts_of("P999")


def test_wrong_objects_are_other_objects_of_the_same_relation(bundled):
    fact = bundled.fact("P30-kenya")
    for lang in ("en", "zh"):
        wrong = bundled.wrong_objects(fact, lang)
        assert wrong and fact.object(lang) not in wrong
        assert len(wrong) == len(set(wrong))
        assert set(wrong) <= {other.object(lang) for other in bundled.facts_of("P30")}
    assert set(bundled.wrong_objects(fact, "en")) == {"Asia", "Europe", "South America", "North America"}


def test_find_searches_subjects_and_objects_in_every_language(bundled):
    assert "P36-tanzania" in {f.id for f in bundled.find("dodoma")}
    assert "P36-tanzania" in {f.id for f in bundled.find("多多马")}
    assert "P36-tanzania" in {f.id for f in bundled.find("TANZ")}
    assert {f.relation for f in bundled.find("Euro")} >= {"P30", "P38"}
    assert bundled.find("no such entity anywhere") == ()


def test_records_are_frozen_hashable_and_picklable(bundled):
    fact = bundled.facts[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fact.id = "x"
    with pytest.raises(TypeError):
        fact.labels["en"] = ("a", "b")
    assert hash(fact) == hash(Fact(fact.id, fact.relation, dict(fact.labels)))
    assert pickle.loads(pickle.dumps(bundled)) == bundled
    assert len({fact, bundled.fact(fact.id)}) == 1


def test_slugify_and_object_slot_rule():
    assert slugify("São Paulo") == "sao-paulo"
    assert slugify("McDonald's") == "mcdonald-s"
    assert object_slot_is_last("[X]的首都是[Y]。") and object_slot_is_last("The capital of [X] is [Y] .")
    assert not object_slot_is_last("[Y] is the capital of [X].")


# -- broken copies: every problem names the file and the line ---------------------------------------
@pytest.fixture
def copy(tmp_path) -> Path:
    target = tmp_path / "facts"
    shutil.copytree(BUNDLED_DIR, target)
    return target


def edit_line(path: Path, number: int, change: Callable[[list[str]], list[str]]) -> None:
    """Replace the cells of 1-based line ``number`` of a TSV by ``change(cells)``."""
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = "\t".join(change(lines[number - 1].split("\t")))
    path.write_text("\n".join(lines), encoding="utf-8")


def append_line(path: Path, cells: list[str]) -> int:
    """Append a row; return its line number."""
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n") + ["\t".join(cells)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def set_cell(index: int, value: str) -> Callable[[list[str]], list[str]]:
    return lambda cells: cells[:index] + [value] + cells[index + 1:]


BROKEN_CELLS = [
    # (file, line, column index, new value, expected words in the reason)
    ("templates.tsv", 2, 3, "The capital of [X] is.", "no [Y]"),
    ("templates.tsv", 3, 3, "[X] and [X] is [Y].", "2 [X]"),
    ("templates.tsv", 4, 3, "[Y] is the capital of [X].", "[Y] must be the last slot"),
    ("templates.tsv", 5, 2, "test", "bad split"),
    ("templates.tsv", 6, 0, "P999", "unknown relation"),
    ("P30.tsv", 5, 2, "", "subject_zh: is empty"),
    ("P30.tsv", 7, 3, "  ", "object_zh: is empty"),
    ("P37.tsv", 1, 3, "obj_zh", "wrong header"),
    ("relations.tsv", 1, 0, "relation", "wrong header"),
    ("templates.tsv", 1, 2, "set", "wrong header"),
]


@pytest.mark.parametrize("name, line, column, value, reason", BROKEN_CELLS)
def test_broken_cell_raises_data_error_naming_file_and_line(copy, name, line, column, value, reason):
    edit_line(copy / name, line, set_cell(column, value))
    with pytest.raises(DataError) as caught:
        load_bundled(copy)
    assert caught.value.path == str(copy / name)
    assert caught.value.line == line
    assert f"{name}:{line}:" in str(caught.value) and reason in str(caught.value)


def test_duplicate_fact_is_reported_on_its_second_line(copy):
    first = (copy / "P36.tsv").read_text(encoding="utf-8").split("\n")[1].split("\t")
    line = append_line(copy / "P36.tsv", first)
    with pytest.raises(DataError, match=rf"P36\.tsv:{line}: duplicate fact.*already on line 2"):
        load_bundled(copy)


def test_wrong_cell_count_is_reported(copy):
    line = append_line(copy / "P38.tsv", ["Narnia", "gold coin", "纳尼亚"])
    with pytest.raises(DataError, match=rf"P38\.tsv:{line}: expected {2 * len(LANGUAGES)} tab-separated columns"):
        load_bundled(copy)


def test_relation_without_templates_in_a_language(copy):
    lines = (copy / "templates.tsv").read_text(encoding="utf-8").split("\n")
    kept = [line for line in lines if not line.startswith("P101\tzh\t")]
    (copy / "templates.tsv").write_text("\n".join(kept), encoding="utf-8")
    with pytest.raises(DataError, match=r"templates\.tsv: relation P101 has no train template in zh"):
        load_bundled(copy)


def test_missing_language_column(copy):
    lines = (copy / "P17.tsv").read_text(encoding="utf-8").rstrip("\n").split("\n")
    (copy / "P17.tsv").write_text("\n".join("\t".join(line.split("\t")[:2]) for line in lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"P17\.tsv:1: missing language column\(s\) for zh"):
        load_bundled(copy)


def test_missing_and_stray_fact_files(copy):
    (copy / "P1303.tsv").rename(copy / "P9999.tsv")
    fact_set = scan_bundled(copy)
    assert [(p.file, p.line) for p in fact_set.problems] == [("P1303.tsv", None), ("P9999.tsv", None)]
    with pytest.raises(DataError, match=r"P1303\.tsv: missing.*1 more problem"):
        load_bundled(copy)


def test_scan_keeps_the_valid_rows_and_lists_every_problem(copy):
    edit_line(copy / "P30.tsv", 5, set_cell(2, ""))
    edit_line(copy / "P36.tsv", 3, set_cell(1, ""))
    fact_set = scan_bundled(copy)
    assert [(p.file, p.line) for p in fact_set.problems] == [("P36.tsv", 3), ("P30.tsv", 5)]
    assert len(fact_set.facts) == len(load_bundled().facts) - 2


# -- choosing a loader ------------------------------------------------------------------------------
def test_load_dataset_names_and_folders(copy, tmp_path):
    assert load_dataset(None) == load_dataset("bundled") == load_bundled()
    from_folder = load_dataset(str(copy))
    assert from_folder.source == str(copy) and len(from_folder.facts) == len(load_bundled().facts)
    with pytest.raises(DataError, match="does not exist; expected 'bundled'"):
        load_dataset(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="has neither layout"):
        load_dataset(str(tmp_path))
