"""Importer for data in mLAMA's layout (Kassner et al., 2021), and data set summaries.

Layout: ``<root>/<lang>/templates.jsonl`` with one ``{"relation", "template"}`` per line, and
``<root>/<lang>/<relation>.jsonl`` with one fact per line (``uuid``, ``sub_label``, ``obj_label``; mLAMA
also has ``lineid``, ``sub_uri``, ``obj_uri``). The same ``uuid`` pairs a fact across languages.

Files are read as UTF-8 (a leading byte-order mark is allowed). The importer is lenient: a bad line (invalid
JSON, JSON nested too deeply or with a number too long to read, a missing field, an empty label, a template without
its slots, a duplicate uuid), a relation file without a template, and a fact missing in some language
are recorded as :class:`~kn_core.data.Problem` and skipped; the rest loads.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, NamedTuple

from kn_core.data.prompts import validate_label, validate_template
from kn_core.data.records import (
    _LANG_CODE,
    Fact,
    FactSet,
    Problem,
    Relation,
    Template,
    UnreadableFile,
    read_data_file,
)
from kn_core.errors import DataError, InputError

TEMPLATES_FILE = "templates.jsonl"
REQUIRED_FIELDS = ("uuid", "sub_label", "obj_label")

# Wikidata labels of the T-REx relations mLAMA uses; others are named by their id.
KNOWN_RELATIONS = {
    "P17": "country",
    "P19": "place of birth",
    "P20": "place of death",
    "P27": "country of citizenship",
    "P30": "continent",
    "P31": "instance of",
    "P36": "capital",
    "P37": "official language",
    "P39": "position held",
    "P47": "shares border with",
    "P101": "field of work",
    "P103": "native language",
    "P106": "occupation",
    "P108": "employer",
    "P127": "owned by",
    "P131": "located in the administrative territorial entity",
    "P136": "genre",
    "P138": "named after",
    "P140": "religion or worldview",
    "P159": "headquarters location",
    "P176": "manufacturer",
    "P178": "developer",
    "P190": "twinned administrative body",
    "P264": "record label",
    "P276": "location",
    "P279": "subclass of",
    "P361": "part of",
    "P364": "original language of film or TV show",
    "P407": "language of work or name",
    "P413": "position played on team / speciality",
    "P449": "original broadcaster",
    "P463": "member of",
    "P495": "country of origin",
    "P527": "has part(s)",
    "P530": "diplomatic relation",
    "P740": "location of formation",
    "P937": "work location",
    "P1001": "applies to jurisdiction",
    "P1303": "instrument",
    "P1376": "capital of",
    "P1412": "languages spoken, written or signed",
}


class _Record(NamedTuple):
    """One valid fact line of one language."""

    uuid: str
    subject: str
    object: str
    file: str
    line: int


def is_mlama_layout(path: str | os.PathLike) -> bool:
    """True when some sub-folder of ``path`` holds a ``templates.jsonl``."""
    root = Path(path)
    return root.is_dir() and any((child / TEMPLATES_FILE).is_file() for child in root.iterdir())


def load_mlama(path: str | os.PathLike, languages: list[str] | None = None) -> FactSet:
    """Import an mLAMA-layout folder. ``languages``: the language folders to read (default: every folder
    with a ``templates.jsonl``). Only facts present in every loaded language are kept; everything skipped
    is in ``problems``. Raises :class:`DataError` only when the folder or a requested language is missing."""
    return import_mlama(Path(path), languages)[0]


# -- reading -------------------------------------------------------------------------------------------
def import_mlama(root: Path, languages: list[str] | None) -> tuple[FactSet, dict[str, int]]:
    """The fact set and the number of valid fact lines per language."""
    problems: list[Problem] = []
    langs = _languages(root, languages, problems)
    templates = {lang: _read_templates(root, lang, problems) for lang in langs}
    records = {lang: _read_relation_files(root, lang, templates[lang], problems) for lang in langs}
    relation_ids = _complete_relations(langs, records, problems)
    facts = [fact for rid in relation_ids for fact in _pair(rid, langs, records, problems)]
    relations = {rid: Relation(rid, KNOWN_RELATIONS.get(rid, rid), f"mLAMA relation {rid}",
                               tuple(t for lang in langs for t in templates[lang][rid]))
                 for rid in relation_ids}
    per_language = {lang: sum(len(by_uuid) for by_uuid in records[lang].values()) for lang in langs}
    return FactSet(relations, tuple(facts), tuple(problems), str(root)), per_language


def _languages(root: Path, requested: list[str] | None, problems: list[Problem]) -> list[str]:
    """The language folders to read. A folder whose name is not a language code (the rule ``--langs`` applies:
    lower-case, e.g. en, zh, pt-br) is a problem and skipped, so that every listed language can be asked for."""
    if not root.is_dir():
        raise DataError(str(root), None, "no such folder")
    folders = sorted(child.name for child in root.iterdir() if (child / TEMPLATES_FILE).is_file())
    found = [name for name in folders if _LANG_CODE.fullmatch(name)]
    for name in folders:
        if name not in found:
            problems.append(Problem(f"{name}/{TEMPLATES_FILE}", None,
                                    f"folder {name!r} is not a language code (lower-case, such as en or zh); "
                                    f"skipped: rename it, e.g. to {name.lower()!r}"))
    if requested is None:
        if not found:
            detail = f" (folders {', '.join(folders)} are not language codes)" if folders else ""
            raise DataError(str(root), None, f"no <lang>/{TEMPLATES_FILE}{detail}: not an mLAMA-layout folder "
                                             "(language folders are lower-case codes such as en or zh)")
        return found
    for lang in requested:
        if lang not in found:
            raise DataError(str(root / lang / TEMPLATES_FILE), None,
                            f"language {lang!r} not found; this folder has {', '.join(found) or 'none'}")
    return list(dict.fromkeys(requested))


def _read_jsonl(root: Path, name: str, problems: list[Problem]) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each line holding a JSON object; other non-blank lines are problems."""
    try:
        lines = read_data_file(root / name).split("\n")
    except UnreadableFile as exc:
        problems.append(Problem(name, None, str(exc)))
        return
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        value, reason = _parse_json(raw)
        if reason is not None:
            problems.append(Problem(name, number, reason))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(name, number, f"expected a JSON object, found {type(value).__name__}"))
            continue
        yield number, value


def _parse_json(raw: str) -> tuple[object, str | None]:
    """(the JSON value of one line, None), or (None, why it cannot be read): invalid JSON, nesting too deep for
    the parser, or a number too long to convert (Python refuses integers of more than 4,300 digits)."""
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return None, "invalid JSON: nested too deeply to read"
    except ValueError as exc:
        return None, f"invalid JSON: {str(exc).split(':')[0]}"


def _read_templates(root: Path, lang: str, problems: list[Problem]) -> dict[str, list[Template]]:
    """relation id -> its valid templates in ``lang``."""
    name = f"{lang}/{TEMPLATES_FILE}"
    templates: dict[str, list[Template]] = {}
    for number, value in _read_jsonl(root, name, problems):
        rid = value.get("relation")
        if not isinstance(rid, str) or not rid.strip():
            problems.append(Problem(name, number, "missing field 'relation' (a relation id such as P36)"))
            continue
        try:
            text = validate_template(value.get("template"))
        except InputError as exc:
            problems.append(Problem(name, number, f"relation {rid}: {exc}"))
            continue
        templates.setdefault(rid.strip(), []).append(Template(rid.strip(), lang, text, heldout=False))
    return templates


def _read_relation_files(root: Path, lang: str, templates: dict[str, list[Template]],
                         problems: list[Problem]) -> dict[str, dict[str, _Record]]:
    """relation id -> uuid -> valid record, for every relation file of ``lang`` that has a template."""
    records: dict[str, dict[str, _Record]] = {}
    for file in sorted((root / lang).glob("*.jsonl")):
        if file.name == TEMPLATES_FILE:
            continue
        name = f"{lang}/{file.name}"
        if file.stem not in templates:
            problems.append(Problem(name, None, f"no template for {file.stem} in {lang}/{TEMPLATES_FILE}; "
                                                "file skipped"))
            continue
        records[file.stem] = _read_facts(root, name, problems)
    return records


def _parse_record(value: dict, name: str, number: int) -> _Record | str:
    """A fact line as a :class:`_Record`, or the reason it is invalid."""
    missing = [field for field in REQUIRED_FIELDS if field not in value]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    uuid = value["uuid"]
    if not isinstance(uuid, (str, int)) or not str(uuid).strip():
        return "empty or invalid uuid"
    try:
        subject = validate_label("sub_label", value["sub_label"])
        obj = validate_label("obj_label", value["obj_label"])
    except InputError as exc:
        return str(exc)
    return _Record(str(uuid).strip(), subject, obj, name, number)


def _read_facts(root: Path, name: str, problems: list[Problem]) -> dict[str, _Record]:
    records: dict[str, _Record] = {}
    for number, value in _read_jsonl(root, name, problems):
        record = _parse_record(value, name, number)
        if isinstance(record, _Record) and record.uuid in records:
            record = f"duplicate uuid {record.uuid} (first on line {records[record.uuid].line}); skipped"
        if isinstance(record, str):
            problems.append(Problem(name, number, record))
            continue
        records[record.uuid] = record
    return records


# -- pairing across languages -------------------------------------------------------------------
def _complete_relations(langs: list[str], records: dict[str, dict[str, dict[str, _Record]]],
                        problems: list[Problem]) -> list[str]:
    """Relations with a usable file in every language, sorted; the others are reported and dropped."""
    complete = []
    for rid in sorted(set().union(*(records[lang] for lang in langs))):
        absent = [lang for lang in langs if rid not in records[lang]]
        if not absent:
            complete.append(rid)
            continue
        for lang in langs:
            if lang not in absent:
                reason = (f"relation {rid} has no usable file in {', '.join(absent)}; its facts are skipped "
                          "(facts must exist in every language)")
                problems.append(Problem(f"{lang}/{rid}.jsonl", None, reason))
    return complete


def _pair(rid: str, langs: list[str], records: dict[str, dict[str, dict[str, _Record]]],
          problems: list[Problem]) -> list[Fact]:
    """Facts of ``rid`` whose uuid is present in every language; each unpaired line is a problem."""
    by_lang = {lang: records[lang][rid] for lang in langs}
    facts = []
    for uuid in dict.fromkeys(uuid for lang in langs for uuid in by_lang[lang]):
        missing = [lang for lang in langs if uuid not in by_lang[lang]]
        if missing:
            where = ", ".join(f"{lang}/{rid}.jsonl" for lang in missing)
            problems.extend(Problem(by_lang[lang][uuid].file, by_lang[lang][uuid].line,
                                    f"uuid {uuid} has no valid fact in {where}; skipped (facts pair across "
                                    "languages by uuid)")
                            for lang in langs if lang not in missing)
            continue
        labels = {lang: (by_lang[lang][uuid].subject, by_lang[lang][uuid].object) for lang in langs}
        facts.append(Fact(f"{rid}-{uuid}", rid, labels))
    return facts
