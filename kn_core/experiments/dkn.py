"""Degenerate knowledge neurons per prompt (docs/method.md §4).

For every sampled fact, language and train template: AMIG over all layers, then the DKN search (top-K
candidates, aggregate at T_low, filter pairs at T_high; larger minimal groups with ``--max-group``). As a
check, all of the prompt's DKN are suppressed together next to as many random neurons in the same layers.
Per relation, the DKN set of the fact checker (pair count > ⌊t · max⌋) is reported too.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kn_core.data import load_dataset
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.experiments import plots
from kn_core.experiments.common import Outcome, Settings, fact_prompts, models, progress, select_facts, templates_of
from kn_core.method.dkn import DKNResult, degenerate, dkn_set, pair_counts
from kn_core.method.interventions import FACTORS, object_probs, random_like
from kn_core.method.neurons import default_tau, per_layer_counts

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

TITLE = "Degenerate knowledge neurons (DKN)"
DEFAULT_MAX_FACTS = 3
NOTES = (
    "**Per prompt**: `kept` candidates lower P(object) by at most T_low when suppressed alone; a `pair` of them "
    "lowers it by more than T_high when suppressed together. `suppress_dkn` suppresses every neuron of the "
    "prompt's degenerate pairs at once, `suppress_random` as many random neurons in the same layers.",
    "**Per relation**: `relation_dkn` is the size of the relation's DKN set as the fact checker builds it "
    "(neurons whose pair count exceeds ⌊t · max count⌋ over the relation's prompts).",
    "`max_single_drop` / `max_pair_drop`: the largest relative drop of P(object) among the candidates "
    "suppressed alone / among the pairs of kept candidates, averaged over prompts. When `max_pair_drop` stays "
    "below T_high the model spreads the fact over more neurons than two, and the paper's thresholds find no "
    "pair: compare thresholds scaled to these drops (`--t-low`, `--t-high`).",
    "`forward_passes` counts the batched forward passes of the search: one for P0 and all single suppressions, "
    "then one per chunk of pairs (and of larger groups).",
)


def _suppress_check(lm: LanguageModel, prompt: Prompt, result: DKNResult, seed: int) -> tuple[float, float]:
    """Relative change of P(object) with all the prompt's DKN suppressed, and with random neurons instead."""
    if not result.neurons or result.p0 <= 0:
        return np.nan, np.nan
    control = random_like(result.neurons, lm.d_ff, seed)
    _, dkn, rand = object_probs(lm, prompt, [[], list(result.neurons), control], FACTORS["suppress"])
    return float((dkn - result.p0) / result.p0), float((rand - result.p0) / result.p0)


def _prompt_row(lm: LanguageModel, lang: str, fact_id: str, relation: str, result: DKNResult, seed: int) -> dict:
    suppress_dkn, suppress_random = _suppress_check(lm, result.prompt, result, seed)
    return {"model": lm.name, "lang": lang, "relation": relation, "fact_id": fact_id,
            "template": result.prompt.template, "p0": result.p0, "n_candidates": len(result.candidates),
            "n_kept": len(result.kept), "n_pairs": len(result.pairs), "n_groups": len(result.groups),
            "n_dkn": len(result.neurons), "forward_passes": result.forward_passes,
            "max_single_drop": max(result.single_drop.values(), default=np.nan),
            "max_pair_drop": max((d for g, d in result.group_drop.items() if len(g) == 2), default=np.nan),
            "suppress_dkn": suppress_dkn,
            "suppress_random": suppress_random}


def _pair_rows(lm: LanguageModel, lang: str, fact_id: str, result: DKNResult) -> list[dict]:
    return [{"model": lm.name, "lang": lang, "fact_id": fact_id, "template": result.prompt.template,
             "size": len(group), "neurons": " ".join(f"{layer}:{index}" for layer, index in group),
             "drop": result.group_drop[group], "max_single_drop": max(result.single_drop[n] for n in group)}
            for group in (*result.pairs, *result.groups)]


def summary(prompts: pd.DataFrame, relations: pd.DataFrame) -> pd.DataFrame:
    """Per model and language: prompts, mean counts, share of prompts with a pair, the suppression check and
    the mean relation DKN set size."""
    grouped = prompts.groupby(["model", "lang"], sort=False)
    out = grouped[["p0", "n_kept", "n_pairs", "n_groups", "n_dkn", "max_single_drop", "max_pair_drop",
                   "suppress_dkn", "suppress_random", "forward_passes"]].mean().reset_index()
    out.insert(2, "prompts", grouped.size().values)
    out.insert(6, "share_with_pair", grouped["n_pairs"].apply(lambda s: float((s > 0).mean())).values)
    sizes = relations.groupby(["model", "lang"], sort=False)["relation_dkn"].mean()
    return out.assign(relation_dkn=[sizes.get((m, lang), np.nan) for m, lang in zip(out["model"], out["lang"])])


def run(settings: Settings) -> Outcome:
    """Search degenerate pairs on every prompt of every sampled fact, language and model."""
    factset = load_dataset(settings.data)
    selection = select_facts(factset, settings, DEFAULT_MAX_FACTS)
    prompt_rows, pair_rows, relation_rows = [], [], []
    layers: dict[str, dict[str, list[int]]] = {}  # model -> language -> neurons in degenerate pairs per layer
    for lm in models(settings):
        for lang in settings.langs:
            counts = np.zeros(lm.n_layers, dtype=int)
            for relation, facts in progress(selection.items(), f"{lm.name} {lang}", total=len(selection)):
                results = []
                for fact in facts:
                    for prompt in fact_prompts(lm, templates_of(factset, relation, lang, settings), fact, lang):
                        scores = settings.attribution(lm, prompt, lang).scores
                        result = degenerate(lm, prompt, scores, settings.top_k, settings.t_low, settings.t_high,
                                            settings.max_group, tau=default_tau(lang))
                        results.append(result)
                        prompt_rows.append(_prompt_row(lm, lang, fact.id, relation, result, settings.seed))
                        pair_rows += _pair_rows(lm, lang, fact.id, result)
                        counts += per_layer_counts(result.neurons, lm.n_layers)
                pairs: Counter = pair_counts(results)
                relation_rows.append({"model": lm.name, "lang": lang, "relation": relation, "prompts": len(results),
                                      "pairs": sum(len(r.pairs) for r in results),
                                      "relation_dkn": len(dkn_set(pairs, settings.t))})
            layers.setdefault(lm.name, {})[lang] = counts.tolist()
    if not prompt_rows:
        raise InputError("data", "no prompt of the selection can be put to these models")
    prompts, relations = pd.DataFrame(prompt_rows), pd.DataFrame(relation_rows)
    pairs = pd.DataFrame(pair_rows, columns=["model", "lang", "fact_id", "template", "size", "neurons", "drop",
                                             "max_single_drop"])
    return Outcome(name="dkn", title=TITLE, headline=summary(prompts, relations),
                   shown={"Per relation": relations},
                   tables={"prompts": prompts, "pairs": pairs, "relations": relations},
                   figures={"dkn_per_layer": plots.layer_panels(layers, "Neurons in degenerate pairs, per layer",
                                                                "neurons")},
                   notes=NOTES)
