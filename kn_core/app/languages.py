"""The Language comparison page's helpers (N languages, docs/method.md §3): the languages in the URL, the
stored-only baselines and ranking on the app's store, and the cross-language suppression matrix and cross-lingual
edit measured off the page's run by the model's measurer."""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from kn_core.app.measure import measured
from kn_core.app.resources import store
from kn_core.app.views import memo
from kn_core.attribution import AttributionConfig
from kn_core.data import Fact, FactSet
from kn_core.errors import InputError
from kn_core.method.language_suppression import SuppressionMatrix, suppression_matrix
from kn_core.method.likn import cross_lingual_edit, edit_view
from kn_core.method.neurons import Neuron
from kn_core.model.fingerprint import model_fingerprint
from kn_core.model.loading import DEMO_MODELS, LanguageModel
from kn_core.runs import languages as queries
from kn_core.runs.languages import StoredBaselines
from kn_core.runs.store import ResultKey

MEMO, MEMO_SIZE = "_language_memo", 8
DEMO_LANGUAGES = ("en", "zh")  # = kn_core.demo.corpus.DEMO_LANGUAGES (a higher room): the demo models' languages


def langs_parser(factset: FactSet):
    """A link's ``langs=en,zh,fr``: languages of the fact set, at least two, each once."""
    def parse(text: str, _: dict) -> list[str]:
        langs = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [lang for lang in langs if lang not in factset.languages]
        if unknown:
            raise InputError("link", f"no {', '.join(unknown)} in the facts; "
                                     f"choose from {', '.join(factset.languages)}")
        if len(langs) < 2 or len(set(langs)) != len(langs):
            raise InputError("link", "give two or more distinct languages, e.g. en,zh")
        return langs
    return parse


def readable(lm: LanguageModel, factset: FactSet, fact: Fact, langs: Sequence[str]) -> list[str]:
    """The languages of ``langs`` in which the model reads the fact without its unknown token: both labels, and
    the words of at least one of the relation's templates (a model without an unknown token reads every one)."""
    relation = factset.relation(fact.relation)
    return [lang for lang in langs if lang in fact.labels and lm.reads(fact.subject(lang))
            and lm.reads(fact.object(lang)) and any(not lm.unknown_words(t.text) for t in relation.templates_for(lang))]


def default_languages(lm: LanguageModel, factset: FactSet, fact: Fact, available: Sequence[str],
                      config: AttributionConfig) -> list[str]:
    """The languages the page compares unless told otherwise: of those of ``available`` that the model reads —
    for the demo models the two they were trained on, for any model only languages it reads without its unknown
    token (:func:`readable`) — the ones whose every prompt of the fact is stored (the atlas counts) when there are
    two or more, so the page opens on results; else every one it reads (queued for the worker); or all of
    ``available`` when fewer than two remain."""
    trained = DEMO_LANGUAGES if lm.name in DEMO_MODELS else None
    known = readable(lm, factset, fact, [lang for lang in available if trained is None or lang in trained])
    if len(known) < 2:
        return list(available)
    stored = [lang for lang in known if _stored(lm, factset, fact, lang, config)]
    return stored if len(stored) >= 2 else known


def _stored(lm: LanguageModel, factset: FactSet, fact: Fact, lang: str, config: AttributionConfig) -> bool:
    templates = [t.text for t in factset.relation(fact.relation).templates_for(lang)]
    prompts = lm.prompts(templates, fact.subject(lang), fact.object(lang)).prompts
    return bool(prompts) and all(store().has(ResultKey.of(lm, p, config, lang)) for p in prompts)


def _prompts_key(prompts: Mapping[str, Sequence]) -> tuple:
    return tuple((lang, tuple((p.template, p.subject, p.object) for p in prompts[lang])) for lang in prompts)


def _sets_key(sets: Mapping[str, Sequence]) -> tuple:
    return tuple((name, tuple(sorted((int(n[0]), int(n[1])) for n in sets[name]))) for name in sets)


def suppression(lm: LanguageModel, prompts: Mapping[str, Sequence], sets: Mapping[str, Sequence[Neuron]]
                ) -> SuppressionMatrix | None:
    """:func:`kn_core.method.language_suppression.suppression_matrix` (30 random draws per language), once per
    model, prompts and neuron sets (:func:`~kn_core.app.measure.measured`: None while it is measured)."""
    key = ("suppression", lm.name, model_fingerprint(lm), _prompts_key(prompts), _sets_key(sets))
    return measured(lm, key, lambda: suppression_matrix(lm, prompts, sets), "the cross-language suppression")


def edit(lm: LanguageModel, prompts: Mapping[str, Sequence], sets: Mapping[str, Sequence[Neuron]], mode: str,
         unrelated: Mapping[str, Sequence]) -> pd.DataFrame | None:
    """:func:`kn_core.method.likn.cross_lingual_edit` as :func:`~kn_core.method.likn.edit_view`'s table, once per
    model, prompts, sets and mode (None while it is measured)."""
    key = ("cross-lingual edit", lm.name, model_fingerprint(lm), mode, _prompts_key(prompts), _sets_key(sets),
           _prompts_key(unrelated))
    return measured(lm, key, lambda: edit_view(cross_lingual_edit(lm, prompts, sets, mode, unrelated)),
                    "the cross-lingual edit effect")


def baselines(lm: LanguageModel, factset: FactSet, fact: Fact, sets: Mapping[str, Sequence[Neuron]],
              config: AttributionConfig, p: float) -> StoredBaselines:
    """:func:`kn_core.runs.languages.stored_baselines` on the app's store (stored facts only; nothing computed),
    looked up once per session, model, fact, languages and thresholds."""
    key = ("baselines", lm.name, model_fingerprint(lm), fact.id, config, p,
           tuple((lang, tuple(sorted((int(n[0]), int(n[1])) for n in sets[lang]))) for lang in sets))
    return memo(key, lambda: queries.stored_baselines(store(), lm, factset, fact, dict(sets), config, p), MEMO,
                MEMO_SIZE)


def ranking(lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str], config: AttributionConfig,
            p: float) -> pd.DataFrame:
    """:func:`kn_core.runs.languages.language_ranking` on the app's store."""
    return queries.language_ranking(store(), lm, factset, relation, langs, config, p)


__all__ = ["DEMO_LANGUAGES", "baselines", "default_languages", "edit", "langs_parser", "ranking", "readable",
           "suppression"]
