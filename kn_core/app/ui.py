"""What the pages use, in one namespace (``from kn_core.app import ui``): pages read like the UI — guard,
form, one kn_core call, render — and reach everything through ``ui.<name>``. Each name lives in the module
that owns it: resources (cached per process), guard (errors, escaping, waiting), sidebar (settings
widgets), views (shared views), work (submitting to the model's background worker and watching it), and the
store queries of :mod:`kn_core.runs.queries`, bound here to the
app's store."""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

from kn_core.app import links
from kn_core.app.guard import guard, model_turn, plain, progress_bar
from kn_core.app.resources import facts, model, store
from kn_core.app.sidebar import (
    OTHER,
    calibration_choices,
    Settings,
    current_model,
    dkn_settings,
    link_model,
    listed_models,
    offer_model_for,
    settings,
    share,
    sidebar,
    thresholds,
)
from kn_core.app.views import (
    auroc_table,
    check_prompts,
    checks_view,
    claim_scores,
    clicked_neuron,
    controls_view,
    edit_effect,
    fact_views,
    known_claims,
    neuron_activation,
    neuron_detail,
    neuron_frame,
    promoted_frame,
    prompt_table,
    scores_csv,
    suppression,
)
from kn_core.app.work import attributions, fact_check_table, fact_checker, relation_batch, watch_batch
from kn_core.attribution import Attribution, AttributionConfig
from kn_core.data import FactSet
from kn_core.method.neurons import TAU
from kn_core.model.loading import LanguageModel
from kn_core.runs import queries
from kn_core.runs.queries import (
    DKNSettings,
    RelationOverview,
    Showcase,
    fact_label,
    relative_depth,
    tau_of,
)


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


def showcase() -> Showcase | None:
    """:func:`kn_core.runs.queries.showcase` on the app's store."""
    return queries.showcase(store())


def restore(page: str, widgets: dict, model_name: str) -> None:
    """:func:`kn_core.app.links.restore` with the showcase's defaults for ``page`` on this model."""
    links.restore(widgets, links.showcase_defaults(showcase(), page, model_name))


def relation_overview(lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str],
                      config: AttributionConfig, p: float) -> RelationOverview:
    """:func:`kn_core.runs.queries.relation_overview` on the app's store."""
    return queries.relation_overview(store(), lm, factset, relation, langs, config, p)


def measure_effects(lm: LanguageModel, overview: RelationOverview, config: AttributionConfig, p: float) -> None:
    """Measure (with progress) and store the suppression effects the overview's stored facts lack."""
    facts_ = [(o, f) for o in overview.langs.values() for f in o.stored]
    bar, report = progress_bar("Suppressing each stored fact's knowledge neurons (once; stored)…")
    with model_turn(lm):
        for n, (o, fact) in enumerate(facts_):
            queries.measure_effects(store(), lm, [fact], config, o.tau, p)
            report((n + 1) / len(facts_))
    bar.empty()


def neuron_occurrences(lm: LanguageModel, factset: FactSet, layer: int, index: int,
                       config: AttributionConfig) -> pd.DataFrame:
    """:func:`kn_core.runs.queries.neuron_occurrences` on the app's store."""
    return queries.neuron_occurrences(store(), lm, factset, layer, index, config)


__all__ = ["OTHER", "TAU", "DKNSettings", "Settings", "attributions", "auroc_table", "calibration_choices",
           "check_prompts", "checks_view", "claim_scores", "clicked_neuron", "controls_view", "known_claims",
           "current_model", "dkn_settings", "edit_effect", "fact_check_table", "fact_checker", "fact_label",
           "fact_views", "facts", "guard", "link_model", "links", "listed_models", "measure_effects", "model",
           "model_turn", "neuron_activation", "neuron_detail", "neuron_frame", "neuron_occurrences",
           "offer_model_for", "overlap_ranking", "plain", "progress_bar", "promoted_frame", "prompt_table",
           "relation_batch", "relation_overview", "relative_depth", "restore", "saved_triples", "scores_csv",
           "settings", "share", "showcase", "sidebar", "store", "stored_only", "suppression", "tau_of", "thresholds",
           "watch_batch"]
