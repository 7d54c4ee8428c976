"""Building the atlas (:mod:`kn_core.runs.atlas`): what it holds per model, computed through the user's store.

``build`` runs, per relation of the model's :class:`AtlasPlan`, the same batch as ``python -m kn_core batch``
(resumable: what the store or the atlas already holds is skipped), measures each fully stored fact's
suppression effect (the relation overview's, stored as documents), chooses the model's showcase, and writes
the model's atlas folder from the store. Results already in the atlas keep their files byte for byte (their
rows come back decoded and are encoded again to the same bytes; files are only rewritten when they differ).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from kn_core.attribution import AttributionConfig
from kn_core.data import FactSet
from kn_core.defaults import P_SHARE, TAU
from kn_core.errors import InputError, KNError
from kn_core.model.fingerprint import model_fingerprint
from kn_core.model.loading import LanguageModel, load_model
from kn_core.runs import queries
from kn_core.runs.atlas import write_model_atlas
from kn_core.runs.batch import plan, run_batch
from kn_core.runs.store import ResultKey, ResultStore

log = logging.getLogger(__name__)

TABLE3_RELATIONS = ("P36", "P37", "P30", "P38", "P17")  # capital, official language, continent, currency, country


@dataclass(frozen=True)
class AtlasPlan:
    """The facts of one model's atlas: the first ``facts`` facts (file order) of each relation (all bundled
    relations when ``relations`` is None), in each of ``langs``, under every template of the relation."""

    model: str
    langs: tuple[str, ...]
    facts: int
    relations: tuple[str, ...] | None = None

    def relations_of(self, factset: FactSet) -> list[str]:
        return list(self.relations) if self.relations is not None else list(factset.relations)


PLANS: dict[str, AtlasPlan] = {
    "smollm2-135m": AtlasPlan("smollm2-135m", ("en",), facts=5),
    "gemma3-270m": AtlasPlan("gemma3-270m", ("en", "zh"), facts=3, relations=TABLE3_RELATIONS),
}


def plan_of(name: str) -> AtlasPlan:
    try:
        return PLANS[name]
    except KeyError:
        raise InputError("model", f"no atlas plan for {name!r}; choose one of {', '.join(PLANS)}") from None


def planned_keys(lm: LanguageModel, atlas_plan: AtlasPlan, factset: FactSet, config: AttributionConfig) -> list[ResultKey]:
    """The result keys of every prompt of the plan that the model can take."""
    keys = []
    for relation in atlas_plan.relations_of(factset):
        for task in plan(factset, atlas_plan.langs, [relation], atlas_plan.facts):
            try:
                prompt = lm.prompt(task.template, task.subject, task.object)
            except KNError:
                continue
            keys.append(ResultKey.of(lm, prompt, config, task.lang))
    return keys


def compute(lm: LanguageModel, atlas_plan: AtlasPlan, factset: FactSet, config: AttributionConfig,
            store: ResultStore, progress: bool = True) -> None:
    """Store every planned attribution (the batch of each relation; what is stored is skipped)."""
    for relation in atlas_plan.relations_of(factset):
        run_batch(lm, factset, atlas_plan.langs, config, store, relations=[relation], max_facts=atlas_plan.facts,
                  progress=progress)


def derive(lm: LanguageModel, atlas_plan: AtlasPlan, factset: FactSet, config: AttributionConfig,
           store: ResultStore) -> dict:
    """The suppression effect of every fully stored fact of the plan (forward passes only; stored) and the
    model's showcase among them (its document; empty when no fact has knowledge neurons)."""
    relations = atlas_plan.relations_of(factset)
    for relation in relations:
        for lang in atlas_plan.langs:
            tau = TAU.get(lang, queries.FALLBACK_TAU)
            facts = queries.stored_facts(store, lm, factset, relation, lang, config, tau, P_SHARE)
            queries.measure_effects(store, lm, facts, config, tau, P_SHARE)
    try:
        pick = queries.choose_showcase(store, lm, factset, list(atlas_plan.langs), config, P_SHARE, relations)
    except InputError as exc:
        log.warning("no showcase for %s: %s", lm.name, exc)
        return {}
    return pick.to_json()


def documents(lm: LanguageModel, atlas_plan: AtlasPlan, factset: FactSet, config: AttributionConfig,
              store: ResultStore, showcase: dict) -> list[tuple[str, str, dict]]:
    """The derived documents of the plan's facts that the store holds: suppression effects and the showcase."""
    found = []
    for relation in atlas_plan.relations_of(factset):
        for fact in factset.facts_of(relation)[:atlas_plan.facts]:
            for lang in atlas_plan.langs:
                key = queries.effect_key(lm, fact.id, lang, config, TAU.get(lang, queries.FALLBACK_TAU), P_SHARE)
                payload = store.get_json(queries.EFFECT_KIND, key)
                if payload is not None:
                    found.append((queries.EFFECT_KIND, key, payload))
    if showcase:
        found.append((queries.SHOWCASE_KIND, queries.SHOWCASE_KEY, showcase))
    return found


def write(lm: LanguageModel, atlas_plan: AtlasPlan, factset: FactSet, config: AttributionConfig, store: ResultStore,
          out: Path, showcase: dict) -> dict:
    """Write the model's atlas folder ``out / model`` from what the store (and the atlas) holds of the plan."""
    wanted = {key.digest for key in planned_keys(lm, atlas_plan, factset, config)}
    rows = [dict(row) for batch in store.rows(_COLUMNS, model=lm.name) for row in batch if row["key"] in wanted]
    rows = list({row["key"]: row for row in rows}.values())  # the file's row wins over the atlas's
    if len(rows) < len(wanted):
        log.warning("%s: %d of %d planned results are stored; the atlas gets those", lm.name, len(rows), len(wanted))
    settings = {**asdict(config), "plan": asdict(atlas_plan), "tau": dict(TAU), "p": P_SHARE}
    return write_model_atlas(out / lm.name, lm.name, model_fingerprint(lm), settings, rows,
                             documents(lm, atlas_plan, factset, config, store, showcase), dict(TAU))


_COLUMNS = ("key", "model", "fingerprint", "lang", "template", "subject", "object", "baseline", "steps", "rule",
            "layers", "method_version", "engine", "p_object", "n_layers", "d_ff", "record", "created", "scores",
            "convergence_delta", "baseline_probs")


def build(name: str, factset: FactSet, config: AttributionConfig, store: ResultStore, out: Path,
          compute_missing: bool = True, progress: bool = True,
          report: Callable[[str], None] = log.info) -> dict:
    """Compute the attributions the plan of model ``name`` lacks (unless ``compute_missing`` is False), then the
    derived documents, and write its atlas."""
    atlas_plan = plan_of(name)
    lm = load_model(name)
    if compute_missing:
        compute(lm, atlas_plan, factset, config, store, progress)
    showcase = derive(lm, atlas_plan, factset, config, store)
    counts = write(lm, atlas_plan, factset, config, store, out, showcase)
    report(f"{name}: {counts['results']} results ({counts['exact']} kept as float32), {counts['bytes'] / 2**20:.1f} MiB "
           f"in {out / name}")
    return counts
