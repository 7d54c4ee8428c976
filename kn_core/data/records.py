"""Fact-set records: facts (a subject and an object per language), relations with their templates, the
problems met while reading, and the read-only mapping that keeps the records hashable.

Imports only :mod:`kn_core.errors` and :mod:`kn_core.data.prompts`.
"""
from __future__ import annotations

import re
import stat
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator, Mapping, TypeVar

from kn_core.data.prompts import OBJECT_SLOT
from kn_core.errors import InputError

_RELATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LANG_CODE = re.compile(r"[a-z]{2,3}(?:[-_][A-Za-z0-9]+)*")

K = TypeVar("K")
V = TypeVar("V")


class FrozenMapping(Mapping[K, V]):
    """A read-only dict that is hashable and picklable, so frozen records holding one stay hashable."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()):
        self._data = dict(items)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"

    def __getstate__(self) -> dict[K, V]:
        return self._data

    def __setstate__(self, state: dict[K, V]) -> None:
        self._data = state


# -- records ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """Something wrong in a data file.

    Attributes:
        file: the file, relative to the data set's folder (e.g. ``"P36.tsv"``, ``"zh/P36.jsonl"``).
        line: 1-based line number, or None when the problem concerns the whole file.
        reason: what is wrong and, where possible, how to fix it.
    """

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line is not None else f"{self.file}: {self.reason}"

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "reason": self.reason}


@dataclass(frozen=True)
class Template:
    """A relation's sentence in one language, with one ``[X]`` (subject) and one ``[Y]`` (object) slot.

    ``heldout`` templates are kept out of neuron search and used to test generalisation.
    """

    relation: str
    lang: str
    text: str
    heldout: bool


@dataclass(frozen=True)
class Fact:
    """A ⟨subject, relation, object⟩ triple with a surface form per language.

    Attributes:
        id: stable identifier, ``<relation>-<slug of the English subject>`` (bundled) or
            ``<relation>-<uuid>`` (mLAMA).
        relation: the relation id, e.g. ``"P36"``.
        labels: language code -> (subject, object), e.g. ``{"en": ("Tanzania", "Dodoma"),
            "zh": ("坦桑尼亚", "多多马")}``; read-only.
    """

    id: str
    relation: str
    labels: Mapping[str, tuple[str, str]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", FrozenMapping((lang, tuple(pair)) for lang, pair in self.labels.items()))

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages the fact has labels in, in file order."""
        return tuple(self.labels)

    def subject(self, lang: str) -> str:
        return self._label(lang)[0]

    def object(self, lang: str) -> str:
        return self._label(lang)[1]

    def _label(self, lang: str) -> tuple[str, str]:
        try:
            return self.labels[lang]
        except KeyError:
            raise InputError("lang", f"fact {self.id} has no {lang!r} labels; it has {', '.join(self.labels)}"
                             ) from None


@dataclass(frozen=True)
class Relation:
    """A relation (Wikidata property) with its templates in every language."""

    id: str
    name: str
    description: str
    templates: tuple[Template, ...]

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages that have templates, in file order."""
        return tuple(dict.fromkeys(t.lang for t in self.templates))

    def templates_for(self, lang: str, heldout: bool | None = None) -> tuple[Template, ...]:
        """Templates in ``lang``; only train ones (``heldout=False``), only held-out ones (True) or all (None)."""
        return tuple(t for t in self.templates if t.lang == lang and (heldout is None or t.heldout == heldout))


@dataclass(frozen=True)
class FactSet:
    """Relations, their facts and the problems met while reading them.

    Attributes:
        relations: relation id -> :class:`Relation`, in file order; read-only.
        facts: every fact, grouped by relation in the order of ``relations``.
        problems: what was skipped while reading (always empty for the strict bundled loader).
        source: ``"bundled"`` or the folder the set was read from.
    """

    relations: Mapping[str, Relation]
    facts: tuple[Fact, ...]
    problems: tuple[Problem, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "relations", FrozenMapping(self.relations))
        object.__setattr__(self, "facts", tuple(self.facts))
        object.__setattr__(self, "problems", tuple(self.problems))

    @property
    def languages(self) -> tuple[str, ...]:
        """Every language with templates in some relation, in order of first appearance (the bundled set: en, zh,
        then the others as in templates.tsv; mLAMA: the language folders in the order read), so that the first
        two stay the bilingual pair that two-language views default to."""
        return tuple(dict.fromkeys(lang for relation in self.relations.values() for lang in relation.languages))

    @cached_property
    def _by_relation(self) -> dict[str, tuple[Fact, ...]]:
        groups: dict[str, list[Fact]] = {rid: [] for rid in self.relations}
        for fact in self.facts:
            groups.setdefault(fact.relation, []).append(fact)
        return {rid: tuple(facts) for rid, facts in groups.items()}

    @cached_property
    def _by_id(self) -> dict[str, Fact]:
        return {fact.id: fact for fact in self.facts}

    def relation(self, relation_id: str) -> Relation:
        try:
            return self.relations[relation_id]
        except KeyError:
            known = ", ".join(self.relations)
            raise InputError("relation", f"unknown relation {relation_id!r}; known: {known}") from None

    def facts_of(self, relation_id: str) -> tuple[Fact, ...]:
        """The facts of one relation, in file order."""
        self.relation(relation_id)
        return self._by_relation.get(relation_id, ())

    def fact(self, fact_id: str) -> Fact:
        try:
            return self._by_id[fact_id]
        except KeyError:
            raise InputError("fact", f"unknown fact id {fact_id!r}; ids look like 'P36-tanzania'") from None

    def wrong_objects(self, fact: Fact, lang: str) -> tuple[str, ...]:
        """Objects of the *other* facts of ``fact``'s relation in ``lang``: distinct, in file order, never
        ``fact``'s own object. The candidates for wrong claims (docs/method.md §5)."""
        own = fact.object(lang)
        others = (other.labels[lang][1] for other in self.facts_of(fact.relation) if lang in other.labels)
        return tuple(obj for obj in dict.fromkeys(others) if obj != own)

    def only(self, languages: Iterable[str]) -> FactSet:
        """The same set in ``languages`` only (e.g. ``("en", "zh")`` for a bilingual model): their templates and
        labels, in that order; a fact with a label in none of them is left out. Raises :class:`InputError`
        naming a language the set does not have."""
        wanted = tuple(dict.fromkeys(languages))
        missing = [lang for lang in wanted if lang not in self.languages]
        if missing or not wanted:
            raise InputError("languages", f"the data set has no {', '.join(missing) or 'language given'}; its "
                                          f"languages are {', '.join(self.languages) or 'none'}")
        relations = {rid: Relation(r.id, r.name, r.description,
                                   tuple(t for lang in wanted for t in r.templates if t.lang == lang))
                     for rid, r in self.relations.items()}
        facts = [Fact(f.id, f.relation, {lang: f.labels[lang] for lang in wanted if lang in f.labels})
                 for f in self.facts if any(lang in f.labels for lang in wanted)]
        return FactSet(relations, tuple(facts), self.problems, self.source)

    def find(self, query: str) -> tuple[Fact, ...]:
        """Facts whose subject or object, in any language, contains ``query`` (case-insensitive); a blank
        query matches every fact."""
        needle = query.strip().casefold()
        return tuple(fact for fact in self.facts
                     if any(needle in label.casefold() for pair in fact.labels.values() for label in pair))


# -- helpers shared by the loaders --------------------------------------------------------------
def validate_lang(field: str, value: object) -> str:
    """A language code such as ``en``, ``zh`` or ``pt-br`` (lower-case letters first), returned unchanged."""
    if not isinstance(value, str) or not _LANG_CODE.fullmatch(value):
        raise InputError(field, f"{ascii(value)[:40]} is not a language code; use a lower-case code such as en or zh")
    return value


MAX_DATA_FILE_BYTES = 256 * 2**20  # mLAMA's largest relation file is under 2 MB; a fact file is never this big


class UnreadableFile(Exception):
    """A data file that is not read: not a regular file, too large, unreadable or not UTF-8 (the reason)."""


def read_data_file(path: Path, limit: int = MAX_DATA_FILE_BYTES) -> str:
    """The UTF-8 text of a data file (a leading byte-order mark dropped). Only a regular file of at most ``limit``
    bytes is opened (links followed): a named pipe would block forever and a device such as /dev/zero never
    ends. Raises :class:`UnreadableFile` with the reason."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile("not a regular file (a pipe, device, socket or folder); skipped: replace it with "
                                 "a file")
        if info.st_size > limit:
            raise UnreadableFile(f"{info.st_size:,} bytes, over the {limit:,} a data file may hold; skipped: split "
                                 "it")
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise UnreadableFile(f"over the {limit:,} bytes a data file may hold; skipped: split it")
        return data.decode("utf-8-sig")
    except OSError as exc:
        raise UnreadableFile(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def slugify(text: str) -> str:
    """Lower-case ASCII-folded words joined by '-': ``"São Paulo"`` -> ``"sao-paulo"``; CJK is kept."""
    folded = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return re.sub(r"[\W_]+", "-", folded.casefold()).strip("-")


def object_slot_is_last(template: str) -> bool:
    """True when only spaces and punctuation follow ``[Y]`` — what causal LMs need."""
    _, _, after = template.partition(OBJECT_SLOT)
    return not any(ch.isalnum() for ch in after)


