"""What the pages use, in one namespace (``from kn_core.app import ui``): pages read like the UI — guard,
form, one kn_core call, render — and reach everything through ``ui.<name>``. Each name lives in the module
that owns it: resources (cached per process), guard (errors, escaping, waiting), sidebar (settings
widgets), views (shared views), and the store queries of :mod:`kn_core.runs.queries`, bound here to the
app's store."""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

from kn_core.app.guard import guard, model_turn, plain, progress_bar
from kn_core.app.resources import facts, model, store
from kn_core.app.sidebar import (
    OTHER,
    DKNSettings,
    Settings,
    current_model,
    dkn_settings,
    offer_model_for,
    settings,
    sidebar,
    thresholds,
)
from kn_core.app.views import (
    attributions,
    check_prompts,
    clicked_neuron,
    edit_effect,
    fact_check_table,
    fact_checker,
    fact_views,
    neuron_detail,
    neuron_frame,
    prompt_table,
    scores_csv,
)
from kn_core.attribution import Attribution, AttributionConfig
from kn_core.data import FactSet
from kn_core.method.neurons import TAU
from kn_core.model.loading import LanguageModel
from kn_core.runs import queries
from kn_core.runs.queries import fact_label


def saved_triples(lm: LanguageModel) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """:func:`kn_core.runs.queries.saved_triples` on the app's store."""
    return queries.saved_triples(store(), lm)


def stored_only(lm: LanguageModel, facts_by_lang: Iterable[tuple[str, Sequence, str, str]],
                config: AttributionConfig) -> list[Attribution]:
    """:func:`kn_core.runs.queries.stored_only` on the app's store."""
    return queries.stored_only(store(), lm, facts_by_lang, config)


def overlap_ranking(lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str],
                    config: AttributionConfig, p: float) -> pd.DataFrame:
    """:func:`kn_core.runs.queries.overlap_ranking` on the app's store."""
    return queries.overlap_ranking(store(), lm, factset, relation, langs, config, p)


__all__ = ["OTHER", "TAU", "DKNSettings", "Settings", "attributions", "check_prompts", "clicked_neuron",
           "current_model", "dkn_settings", "edit_effect", "fact_check_table", "fact_checker", "fact_label",
           "fact_views", "facts", "guard", "model", "model_turn", "neuron_detail", "neuron_frame", "offer_model_for",
           "overlap_ranking",
           "plain", "progress_bar", "prompt_table", "saved_triples", "scores_csv", "settings", "sidebar", "store",
           "stored_only", "thresholds"]
