"""The demo models' training corpus, built from a fact set's **train** templates only.

Three kinds of sentences, each a (template, subject, object) triple so that the adapters turn them into
model input exactly as they turn prompts at inference:

- ``fact``: a fact in one language with one of its relation's train templates;
- ``switched``: code-switched — a train template with the subject in the *other* language and the object
  in the template's language ("The capital of 法国 is [Y]."). Without these the same fact's English and
  Chinese knowledge neurons overlap no more than those of different facts (shared/notes/demo-models.md);
- ``bridge``: an entity's names in two languages in one sentence ("In Chinese, France is called 法国.").

Held-out templates never appear, so accuracy on them measures generalisation to unseen phrasings.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

from kn_core.data import FactSet


@dataclass(frozen=True)
class Sentence:
    """One training sentence: ``template`` filled with ``subject`` and ``object``.

    ``lang`` is the template's language (the object is always in it); ``kind`` is ``fact``,
    ``switched`` or ``bridge``.
    """

    template: str
    subject: str
    object: str
    lang: str
    kind: str

    @property
    def text(self) -> str:
        return self.template.replace("[X]", self.subject).replace("[Y]", self.object)


@dataclass(frozen=True)
class BridgeTemplate:
    """A sentence naming an entity in ``subject_lang`` ([X]) and ``object_lang`` ([Y]); [Y] comes last, so
    causal models can learn it too."""

    text: str
    lang: str
    subject_lang: str
    object_lang: str


DEMO_LANGUAGES = ("en", "zh")  # the demo models are bilingual: trained and measured on the bundled set's en and zh only

BRIDGE_TEMPLATES: tuple[BridgeTemplate, ...] = (
    BridgeTemplate("In Chinese, [X] is called [Y].", "en", "en", "zh"),
    BridgeTemplate("The English name of [X] is [Y].", "en", "zh", "en"),
    BridgeTemplate("[X]的中文名是[Y]。", "zh", "en", "zh"),
    BridgeTemplate("[X]的英文名是[Y]。", "zh", "zh", "en"),
)


def fact_sentences(factset: FactSet, switched: bool) -> Iterator[Sentence]:
    """Every fact with every train template of its relation in each of its languages; with ``switched``,
    the subject is taken from each *other* language instead (code-switching)."""
    for fact in factset.facts:
        relation = factset.relation(fact.relation)
        for lang in fact.languages:
            subject_langs = [other for other in fact.languages if other != lang] if switched else [lang]
            for template in relation.templates_for(lang, heldout=False):
                for subject_lang in subject_langs:
                    yield Sentence(template.text, fact.subject(subject_lang), fact.object(lang), lang,
                                   "switched" if switched else "fact")


def entity_names(factset: FactSet) -> list[dict[str, str]]:
    """Distinct entities (subjects and objects) as {language: name}, in order of first appearance."""
    seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for fact in factset.facts:
        for role in (0, 1):
            names = {lang: pair[role] for lang, pair in fact.labels.items()}
            seen.setdefault(tuple(sorted(names.items())), names)
    return list(seen.values())


def bridge_sentences(factset: FactSet, templates: Iterable[BridgeTemplate] = BRIDGE_TEMPLATES) -> Iterator[Sentence]:
    """Each entity's names side by side, once per bridge template whose two languages it has."""
    templates = tuple(templates)
    for names in entity_names(factset):
        for bridge in templates:
            if bridge.subject_lang in names and bridge.object_lang in names:
                yield Sentence(bridge.text, names[bridge.subject_lang], names[bridge.object_lang], bridge.lang,
                               "bridge")


def build_corpus(factset: FactSet) -> tuple[Sentence, ...]:
    """The whole training corpus, in a fixed order: fact, code-switched and bridge sentences."""
    return (*fact_sentences(factset, switched=False), *fact_sentences(factset, switched=True),
            *bridge_sentences(factset))


def describe(corpus: Iterable[Sentence]) -> dict[str, int]:
    """Sentence counts per kind, for logs and model cards."""
    return dict(Counter(sentence.kind for sentence in corpus))


def alphabet(factset: FactSet) -> set[str]:
    """Every character of the fact set's labels and templates (held-out ones included), so that the
    tokenizer knows each character even where it never saw the word."""
    chars: set[str] = set()
    for relation in factset.relations.values():
        for template in relation.templates:
            chars.update(template.text)
    for fact in factset.facts:
        for subject, obj in fact.labels.values():
            chars.update(subject + obj)
    for bridge in BRIDGE_TEMPLATES:
        chars.update(bridge.text)
    return {ch for ch in chars if not ch.isspace()}
