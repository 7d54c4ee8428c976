"""The bundled set beyond English and Chinese (assets/facts/README.md, "Languages beyond en/zh"): scripts, label
provenance, the build script that regenerates the columns, and facts without a label in some language."""
from __future__ import annotations

import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from kn_core.data import BUNDLED_DIR, FactSet, load_bundled, scan_bundled, summarize
from kn_core.errors import DataError, InputError

NEW = ("fr", "es", "ru", "ja", "ar", "de")
TABLE3 = ("P36", "P37", "P30", "P38", "P17")
SOURCES = {"cldr", "cldr-zone-id", "written"}
BUILD = BUNDLED_DIR / "build_languages.py"


@pytest.fixture(scope="module")
def bundled() -> FactSet:
    return load_bundled()


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n")[1:] if line.strip()]


# -- the bundled set ---------------------------------------------------------------------------------
def test_english_and_chinese_come_first_then_six_more_languages(bundled):
    assert bundled.languages[:2] == ("en", "zh")
    assert set(NEW) <= set(bundled.languages) and len(bundled.languages) >= 6


def test_every_relation_has_four_train_and_one_heldout_template_per_language(bundled):
    for relation in bundled.relations.values():
        for lang in NEW:
            assert len(relation.templates_for(lang, heldout=False)) == 4, (relation.id, lang)
            assert len(relation.templates_for(lang, heldout=True)) == 1, (relation.id, lang)
            texts = [t.text for t in relation.templates_for(lang)]
            assert len(set(texts)) == len(texts)


def script_of(ch: str) -> str:
    name = unicodedata.name(ch, "")
    for script in ("CYRILLIC", "ARABIC", "LATIN", "CJK", "HIRAGANA", "KATAKANA"):
        if name.startswith(script):
            return "JAPANESE" if script in ("CJK", "HIRAGANA", "KATAKANA") else script
    return ""  # spaces, punctuation, digits, marks


EXPECTED_SCRIPT = {"fr": "LATIN", "es": "LATIN", "de": "LATIN", "ru": "CYRILLIC", "ja": "JAPANESE", "ar": "ARABIC"}


def test_table3_labels_are_written_in_their_languages_script(bundled):
    """Countries, capitals, cities, languages, currencies and continents are never left in English: a Latin
    label in ru, ja or ar would mean a CLDR look-up fell through."""
    for rid in TABLE3:
        for fact in bundled.facts_of(rid):
            for lang, script in EXPECTED_SCRIPT.items():
                for label in fact.labels[lang]:
                    scripts = {script_of(ch) for ch in label} - {""}
                    assert scripts == {script}, (fact.id, lang, label)


def test_objects_repeat_in_every_language_as_in_english(bundled):
    """The same English object has the same label in every language, so wrong objects stay other objects."""
    for rid, relation in bundled.relations.items():
        for lang in NEW:
            by_english: dict[str, set[str]] = {}
            for fact in bundled.facts_of(rid):
                by_english.setdefault(fact.object("en"), set()).add(fact.object(lang))
            assert all(len(labels) == 1 for labels in by_english.values()), (rid, lang)
            distinct = {fact.object(lang) for fact in bundled.facts_of(rid)}
            assert len(distinct) == len(by_english), (rid, lang)  # two English objects never share a label
    fact = bundled.fact("P30-kenya")
    assert set(bundled.wrong_objects(fact, "ru")) == {"Азия", "Европа", "Южная Америка", "Северная Америка"}


def test_every_new_label_has_its_source_in_provenance(bundled):
    provenance = {(entity, lang): (label, source)
                  for entity, lang, label, source in read_tsv(BUNDLED_DIR / "labels" / "provenance.tsv")}
    assert {source for _, source in provenance.values()} <= SOURCES
    used = set()
    for fact in bundled.facts:
        for lang in NEW:
            for english, label in zip(fact.labels["en"], fact.labels[lang]):
                assert provenance[(english, lang)][0] == label, (fact.id, lang, english)
                used.add((english, lang))
    assert used == set(provenance)  # and nothing listed that no fact uses
    zone_id = [key for key, (_, source) in provenance.items() if source == "cldr-zone-id"]
    assert zone_id and {lang for _, lang in zone_id} <= {"fr", "es", "de"}  # the zone-id fallback is Latin-only


def test_the_build_script_reproduces_the_committed_columns():
    babel = pytest.importorskip("babel", reason="Babel (requirements-dev.txt) regenerates the label columns")
    pinned = next(line for line in BUILD.read_text(encoding="utf-8").splitlines() if line.startswith("BABEL_VERSION"))
    if babel.__version__ not in pinned:
        pytest.skip(f"Babel {babel.__version__} installed; the labels were built with {pinned}")
    done = subprocess.run([sys.executable, str(BUILD), "--check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


def test_the_build_script_fills_a_copy_and_leaves_unknown_entities_without_labels(tmp_path):
    pytest.importorskip("babel", reason="Babel (requirements-dev.txt) regenerates the label columns")
    copy = tmp_path / "facts"
    shutil.copytree(BUNDLED_DIR, copy)
    facts = copy / "P36.tsv"
    lines = facts.read_text(encoding="utf-8").split("\n")
    lines.insert(2, "\t".join(["Atlantis", "Poseidonia", "亚特兰蒂斯", "波塞冬尼亚"] + [""] * 2 * len(NEW)))
    facts.write_text("\n".join(lines), encoding="utf-8")
    done = subprocess.run([sys.executable, str(BUILD), "--root", str(copy), "--check"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr  # nobody names Atlantis: its row is already what would be written
    (copy / "labels" / "written.tsv").write_text(
        (copy / "labels" / "written.tsv").read_text(encoding="utf-8") + "Poseidonia\t\t\tПосейдония\t\t\t\t\n",
        encoding="utf-8")
    (copy / "labels" / "entities.tsv").write_text(
        (copy / "labels" / "entities.tsv").read_text(encoding="utf-8") + "Atlantis\tterritory\tAQ\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(BUILD), "--root", str(copy)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    atlantis = load_bundled(copy).fact("P36-atlantis")
    assert atlantis.languages == ("en", "zh", "ru")  # only ru has both a subject (CLDR: Antarctica) and an object
    assert atlantis.object("ru") == "Посейдония"
    provenance = (copy / "labels" / "provenance.tsv").read_text(encoding="utf-8")
    assert "Poseidonia\tru\tПосейдония\twritten" in provenance and "Atlantis\tru\tАнтарктида\tcldr" in provenance


# -- a fact without a label in some language -----------------------------------------------------------
@pytest.fixture
def copy(tmp_path) -> Path:
    target = tmp_path / "facts"
    shutil.copytree(BUNDLED_DIR, target)
    return target


def blank(path: Path, line: int, columns: list[int]) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    cells = lines[line - 1].split("\t")
    for column in columns:
        cells[column] = ""
    lines[line - 1] = "\t".join(cells)
    path.write_text("\n".join(lines), encoding="utf-8")


def column(path: Path, name: str) -> int:
    return path.read_text(encoding="utf-8").split("\n")[0].split("\t").index(name)


def test_an_empty_subject_and_object_pair_means_no_label_in_that_language(copy):
    facts = copy / "P36.tsv"
    blank(facts, 2, [column(facts, "subject_ja"), column(facts, "object_ja")])
    fact_set = load_bundled(copy)
    tanzania = fact_set.fact("P36-tanzania")
    assert "ja" not in tanzania.languages and tanzania.object("fr") == "Dodoma"
    assert fact_set.languages == load_bundled().languages  # the language stays: it has templates
    other = fact_set.fact("P36-australia")
    assert "ドドマ" not in fact_set.wrong_objects(other, "ja")  # a fact without ja labels offers no ja object
    summary = summarize(str(copy))
    assert summary["facts"]["ja"] == summary["facts"]["en"] - 1
    assert summary["paired"] == summary["facts"]["en"] - 1 and summary["problems"] == []


@pytest.mark.parametrize("which", ["subject", "object"])
def test_half_an_empty_pair_is_an_error_naming_file_line_and_fix(copy, which):
    facts = copy / "P37.tsv"
    blank(facts, 4, [column(facts, f"{which}_ru")])
    with pytest.raises(DataError) as caught:
        load_bundled(copy)
    assert caught.value.path == str(facts) and caught.value.line == 4
    assert (f"P37.tsv:4: {which}_ru: is empty; enter some text, or leave subject_ru and object_ru both empty "
            "when the fact has no ru label") in str(caught.value)


def test_english_labels_may_never_be_empty(copy):
    facts = copy / "P30.tsv"
    blank(facts, 3, [0, 1])
    with pytest.raises(DataError, match=r"P30\.tsv:3: subject_en: is empty"):
        load_bundled(copy)
    assert [(p.file, p.line) for p in scan_bundled(copy).problems] == [("P30.tsv", 3)]


def test_a_blank_label_of_spaces_counts_as_empty(copy):
    facts = copy / "P38.tsv"
    blank(facts, 5, [column(facts, "subject_ar")])
    lines = facts.read_text(encoding="utf-8").split("\n")
    cells = lines[4].split("\t")
    cells[column(facts, "object_ar")] = "   "
    lines[4] = "\t".join(cells)
    facts.write_text("\n".join(lines), encoding="utf-8")
    fact_set = load_bundled(copy)
    assert sum("ar" not in fact.labels for fact in fact_set.facts) == 1


# -- a subset of the languages ------------------------------------------------------------------------
def test_only_keeps_the_chosen_languages_in_their_order(bundled):
    pair = bundled.only(["en", "zh"])
    assert pair.languages == ("en", "zh") and len(pair.facts) == len(bundled.facts)
    assert all(fact.languages == ("en", "zh") for fact in pair.facts)
    bilingual = tuple(t for t in bundled.relation("P36").templates if t.lang in ("en", "zh"))
    assert pair.relation("P36").templates == bilingual
    three = bundled.only(("ja", "en", "ja", "ru"))
    assert three.languages == ("ja", "en", "ru") and three.fact("P36-japan").labels["ja"] == ("日本", "東京")
    assert bundled.only(bundled.languages) == bundled
    with pytest.raises(InputError, match="the data set has no ko; its languages are en, zh, fr"):
        bundled.only(["en", "ko"])


def test_only_drops_facts_without_a_label_in_any_chosen_language(copy):
    facts = copy / "P36.tsv"
    blank(facts, 2, [column(facts, "subject_ja"), column(facts, "object_ja")])
    fact_set = load_bundled(copy)
    assert "P36-tanzania" not in {f.id for f in fact_set.only(["ja"]).facts}
    assert fact_set.only(["ja", "fr"]).fact("P36-tanzania").languages == ("fr",)
