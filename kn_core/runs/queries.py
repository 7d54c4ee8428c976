"""Questions asked of the store that compute nothing (Streamlit-free, so the CLI and tests can ask them too):
which triples a model has stored, the stored attributions of given prompts, and the facts of a relation
ranked by the knowledge neurons their languages share."""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

from kn_core.attribution import Attribution, AttributionConfig
from kn_core.data import Fact, FactSet
from kn_core.method.likn import overlap
from kn_core.method.neurons import TAU, knowledge_neurons
from kn_core.model.loading import LanguageModel
from kn_core.runs import cached
from kn_core.runs.store import ResultStore

FALLBACK_TAU = 0.3  # for a language without the paper's τ


def fact_label(fact: Fact, lang: str | None = None) -> str:
    """``subject → object`` in ``lang`` (or every language of the fact, joined by " / ")."""
    langs = [lang] if lang else list(fact.languages)
    return " / ".join(f"{fact.subject(l)} → {fact.object(l)}" for l in langs)


def saved_triples(store: ResultStore, lm: LanguageModel) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Stored results of this model grouped as (subject, object, lang, templates)."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for row in store.results(model=lm.name):
        groups.setdefault((row.subject, row.object, row.lang), []).append(row.template)
    return [(*k, tuple(dict.fromkeys(v))) for k, v in sorted(groups.items())]


def stored_only(store: ResultStore, lm: LanguageModel, facts_by_lang: Iterable[tuple[str, Sequence, str, str]],
                config: AttributionConfig) -> list[Attribution]:
    """Attributions already in the store for (lang, templates, subject, object) entries; nothing is computed.
    Templates the model cannot take are skipped."""
    found = []
    for lang, templates, subject, obj in facts_by_lang:
        for prompt in lm.prompts([getattr(t, "text", t) for t in templates], subject, obj).prompts:
            result = cached.attribution(store, lm, prompt, config, lang, compute_missing=False)
            if result is not None:
                found.append(result)
    return found


def overlap_ranking(store: ResultStore, lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str],
                    config: AttributionConfig, p: float) -> pd.DataFrame:
    """The relation's facts whose prompts are stored in both ``langs``, ranked by shared knowledge neurons
    (τ per language, refinement share ``p``); nothing is computed."""
    rows = []
    for fact in factset.facts_of(relation):
        if not all(lang in fact.labels for lang in langs):
            continue
        chosen = []
        for lang in langs:
            templates = factset.relations[relation].templates_for(lang)
            stored = stored_only(store, lm, [(lang, templates, fact.subject(lang), fact.object(lang))], config)
            if len(stored) < len(templates):
                break
            chosen.append(knowledge_neurons([r.scores for r in stored], TAU.get(lang, FALLBACK_TAU), p))
        else:
            shared = overlap(chosen[0], chosen[1], lm.n_layers)
            rows.append({"fact": fact_label(fact), f"KN {langs[0]}": len(chosen[0]), f"KN {langs[1]}": len(chosen[1]),
                         "shared": len(shared.shared), "Jaccard": shared.jaccard})
    frame = pd.DataFrame(rows, columns=["fact", f"KN {langs[0]}", f"KN {langs[1]}", "shared", "Jaccard"])
    return frame.sort_values(["shared", "Jaccard"], ascending=False, kind="stable").reset_index(drop=True)
