"""The bundled fact-set format (``assets/facts/``, documented in ``assets/facts/README.md``): TSV files read
by :func:`load_bundled`, which is strict (any problem raises :class:`~kn_core.errors.DataError` naming the file
and line), or leniently by :func:`scan_bundled` (bad rows skipped and listed in ``problems``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from kn_core.data.prompts import validate_label, validate_template
from kn_core.data.records import (
    _LANG_CODE,
    _RELATION_ID,
    Fact,
    FactSet,
    Problem,
    Relation,
    Template,
    UnreadableFile,
    object_slot_is_last,
    read_data_file,
    slugify,
)
from kn_core.errors import DataError, InputError

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "assets" / "facts"
BUNDLED_NAME = "bundled"
RELATIONS_FILE, TEMPLATES_FILE = "relations.tsv", "templates.tsv"
RELATIONS_HEADER = ("id", "name", "description")
TEMPLATES_HEADER = ("relation", "lang", "split", "template")
SPLITS = {"train": False, "heldout": True}  # split column -> Template.heldout
ID_LANG = "en"  # fact ids of the bundled format are made from the English subject
FACT_HEADER_EXAMPLE = "subject_en<TAB>object_en<TAB>subject_zh<TAB>object_zh"


# -- bundled format ---------------------------------------------------------------------------------
def load_bundled(path: str | os.PathLike | None = None) -> FactSet:
    """Read a bundled-format folder (default: the bundled ``assets/facts``). Strict: the first problem
    raises :class:`DataError` with the file's path and line."""
    fact_set = scan_bundled(path)
    if fact_set.problems:
        first, more = fact_set.problems[0], len(fact_set.problems) - 1
        root = BUNDLED_DIR if path is None else Path(path)
        hint = f" ({more} more problem(s); 'python -m kn_core data summary {root}' lists them)" if more else ""
        raise DataError(str(root / first.file), first.line, first.reason + hint)
    return fact_set


def scan_bundled(path: str | os.PathLike | None = None) -> FactSet:
    """Read a bundled-format folder leniently: bad rows are skipped and recorded in ``problems``."""
    root = BUNDLED_DIR if path is None else Path(path)
    if not (root / RELATIONS_FILE).is_file():
        raise DataError(str(root), None, f"no {RELATIONS_FILE}: a bundled-format folder holds {RELATIONS_FILE}, "
                                         f"{TEMPLATES_FILE} and one <relation>.tsv per relation")
    problems: list[Problem] = []
    relation_rows = _read_relations(root, problems)
    templates = _read_templates(root, relation_rows, problems)
    languages = list(dict.fromkeys(t.lang for group in templates.values() for t in group))  # templates.tsv order
    _check_coverage(relation_rows, templates, languages, problems)
    facts = [fact for rid in relation_rows for fact in _read_facts(root, rid, languages, problems)]
    _check_stray_files(root, relation_rows, problems)
    relations = {rid: Relation(rid, name, description, tuple(templates.get(rid, ())))
                 for rid, (name, description) in relation_rows.items()}
    return FactSet(relations, tuple(facts), tuple(problems), BUNDLED_NAME if path is None else str(root))


def _read_tsv(root: Path, name: str, problems: list[Problem]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header cells and (line number, cells) of the non-blank data rows; rows whose cell count differs
    from the header's are recorded as problems and left out. An unreadable file gives no header."""
    try:
        lines = read_data_file(root / name).split("\n")
    except UnreadableFile as exc:
        problems.append(Problem(name, None, str(exc)))
        return [], []
    header = [cell.strip() for cell in lines[0].rstrip("\r").split("\t")]
    rows = []
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        cells = [cell.strip() for cell in raw.rstrip("\r").split("\t")]
        if len(cells) != len(header):
            problems.append(Problem(name, number, f"expected {len(header)} tab-separated columns "
                                                  f"({', '.join(header)}), found {len(cells)}"))
            continue
        rows.append((number, cells))
    return header, rows


def _wrong_header(found: list[str], expected: str) -> str:
    return f"wrong header {'<TAB>'.join(found)!r}; expected {expected!r}"


def _read_relations(root: Path, problems: list[Problem]) -> dict[str, tuple[str, str]]:
    """relation id -> (name, description), in file order."""
    header, rows = _read_tsv(root, RELATIONS_FILE, problems)
    if tuple(header) != RELATIONS_HEADER:
        if header:
            problems.append(Problem(RELATIONS_FILE, 1, _wrong_header(header, "<TAB>".join(RELATIONS_HEADER))))
        return {}
    relations: dict[str, tuple[str, str]] = {}
    first_line: dict[str, int] = {}
    for number, (rid, name, description) in rows:
        if not _RELATION_ID.fullmatch(rid):
            reason = f"bad relation id {rid!r}; use letters, digits, '_', '.' or '-' (e.g. P36)"
        elif rid in relations:
            reason = f"duplicate relation id {rid} (first on line {first_line[rid]})"
        elif not name:
            reason = f"relation {rid} has an empty name"
        else:
            relations[rid], first_line[rid] = (name, description), number
            continue
        problems.append(Problem(RELATIONS_FILE, number, reason))
    return relations


def _parse_template(cells: list[str], relations: Mapping[str, object]) -> Template | str:
    """A template row as a :class:`Template`, or the reason it is invalid."""
    rid, lang, split, text = cells
    if rid not in relations:
        return f"unknown relation {rid!r}; {RELATIONS_FILE} lists {', '.join(relations) or 'none'}"
    if not _LANG_CODE.fullmatch(lang):
        return f"bad language code {lang!r}; use a lower-case code such as en or zh"
    if split not in SPLITS:
        return f"bad split {split!r}; use {' or '.join(SPLITS)}"
    try:
        text = validate_template(text)
    except InputError as exc:
        return str(exc)
    if not object_slot_is_last(text):
        return f"template {text!r}: [Y] must be the last slot, followed only by punctuation (causal LMs need it)"
    return Template(rid, lang, text, SPLITS[split])


def _read_templates(root: Path, relations: Mapping[str, object], problems: list[Problem]) -> dict[str, list[Template]]:
    """relation id -> its templates, in file order."""
    header, rows = _read_tsv(root, TEMPLATES_FILE, problems)
    if tuple(header) != TEMPLATES_HEADER:
        if header:
            problems.append(Problem(TEMPLATES_FILE, 1, _wrong_header(header, "<TAB>".join(TEMPLATES_HEADER))))
        return {}
    templates: dict[str, list[Template]] = {}
    first_line: dict[tuple[str, str, str], int] = {}
    for number, cells in rows:
        parsed = _parse_template(cells, relations)
        if isinstance(parsed, str):
            problems.append(Problem(TEMPLATES_FILE, number, parsed))
            continue
        key = (parsed.relation, parsed.lang, parsed.text)
        if key in first_line:
            problems.append(Problem(TEMPLATES_FILE, number, f"duplicate template (first on line {first_line[key]})"))
            continue
        first_line[key] = number
        templates.setdefault(parsed.relation, []).append(parsed)
    return templates


def _check_coverage(relations: Mapping[str, object], templates: Mapping[str, list[Template]],
                    languages: list[str], problems: list[Problem]) -> None:
    """Every relation needs a train template in every language, and English must be among them."""
    if languages and ID_LANG not in languages:
        problems.append(Problem(TEMPLATES_FILE, None, f"no {ID_LANG!r} templates; the bundled format needs "
                                                      f"English, since fact ids are made from subject_{ID_LANG}"))
    for rid in relations:
        for lang in languages:
            if not any(t.lang == lang and not t.heldout for t in templates.get(rid, ())):
                problems.append(Problem(TEMPLATES_FILE, None, f"relation {rid} has no train template in {lang}; "
                                                              "add at least one"))


def _fact_languages(header: list[str]) -> list[str] | str:
    """Languages of a fact file's header (pairs subject_<lang>, object_<lang>), or why it is wrong."""
    wrong = _wrong_header(header, FACT_HEADER_EXAMPLE) + " (a subject_<lang>, object_<lang> pair per language)"
    if not header or len(header) % 2:
        return wrong
    languages: list[str] = []
    for subject_col, object_col in zip(header[::2], header[1::2]):
        lang = subject_col.removeprefix("subject_")
        if (not subject_col.startswith("subject_") or object_col != f"object_{lang}"
                or not _LANG_CODE.fullmatch(lang) or lang in languages):
            return wrong
        languages.append(lang)
    return languages


def _header_problem(header_languages: list[str], languages: list[str]) -> str | None:
    """Why a fact file's languages do not match the languages of the templates, if they do not."""
    missing = [lang for lang in languages if lang not in header_languages]
    if missing:
        return (f"missing language column(s) for {', '.join(missing)}: add subject_<lang> and object_<lang> "
                f"({TEMPLATES_FILE} has templates in {', '.join(languages)})")
    extra = [lang for lang in header_languages if lang not in languages]
    if extra:
        return f"columns for {', '.join(extra)}, but {TEMPLATES_FILE} has no templates in that language"
    return None


def _parse_fact(rid: str, languages: list[str], cells: list[str]) -> Fact | str:
    """A fact row as a :class:`Fact`, or the reason it is invalid. A language whose subject and object are
    both empty is left out of the fact's labels (the fact has no label in that language); English never is."""
    labels: dict[str, tuple[str, str]] = {}
    for i, lang in enumerate(languages):
        subject, obj = cells[2 * i], cells[2 * i + 1]
        if lang != ID_LANG and not subject.strip() and not obj.strip():
            continue
        try:
            labels[lang] = (validate_label(f"subject_{lang}", subject), validate_label(f"object_{lang}", obj))
        except InputError as exc:
            if lang == ID_LANG or (subject.strip() and obj.strip()):
                return str(exc)
            empty = "subject" if not subject.strip() else "object"
            return (f"{empty}_{lang}: is empty; enter some text, or leave subject_{lang} and object_{lang} both "
                    f"empty when the fact has no {lang} label")
    slug = slugify(labels[ID_LANG][0])
    if not slug:
        return f"subject_{ID_LANG} {labels[ID_LANG][0]!r} has no letters or digits to make a fact id from"
    return Fact(f"{rid}-{slug}", rid, labels)


def _read_facts(root: Path, rid: str, languages: list[str], problems: list[Problem]) -> list[Fact]:
    name = f"{rid}.tsv"
    if not (root / name).is_file():
        problems.append(Problem(name, None, f"missing: relation {rid} is in {RELATIONS_FILE} but has no fact file"))
        return []
    header, rows = _read_tsv(root, name, problems)
    if not header:
        return []
    header_languages = _fact_languages(header)
    reason = header_languages if isinstance(header_languages, str) else _header_problem(header_languages, languages)
    if reason or isinstance(header_languages, str):
        problems.append(Problem(name, 1, reason or str(header_languages)))
        return []
    facts: list[Fact] = []
    first_line: dict[str, int] = {}
    for number, cells in rows:
        parsed = _parse_fact(rid, header_languages, cells)
        if isinstance(parsed, Fact) and parsed.id in first_line:
            parsed = (f"duplicate fact: subject_{ID_LANG} {parsed.subject(ID_LANG)!r} already on line "
                      f"{first_line[parsed.id]} (fact ids {parsed.id} must be unique)")
        if isinstance(parsed, str):
            problems.append(Problem(name, number, parsed))
            continue
        first_line[parsed.id] = number
        facts.append(parsed)
    return facts


def _check_stray_files(root: Path, relations: Mapping[str, object], problems: list[Problem]) -> None:
    """A <relation>.tsv whose relation is not in relations.tsv is an error, not silently ignored."""
    for file in sorted(root.glob("*.tsv")):
        if file.name not in (RELATIONS_FILE, TEMPLATES_FILE) and file.stem not in relations:
            problems.append(Problem(file.name, None, f"relation {file.stem} is not listed in {RELATIONS_FILE}"))


