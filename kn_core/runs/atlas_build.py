"""Building the atlas (:mod:`kn_core.runs.atlas`): what it holds per model, computed through the user's store.

``build`` runs, per relation of the model's :class:`AtlasPlan`, the same batch as ``python -m kn_core batch``
(resumable: what the store or the atlas already holds is skipped), measures each fully stored fact's
suppression effect (the relation overview's, stored as documents), calibrates and evaluates the Fact-check
page's checker of each Table-3 relation in each language (:meth:`AtlasPlan.checker`: calibrated on the
relation's first facts, the plan's own, so no further attribution is needed; only the checker and its
evaluation are documents), chooses the model's showcase, and writes the model's atlas folder from the store.
Results already in the atlas keep their files byte for byte (their rows come back decoded and are encoded again
to the same bytes; files are only rewritten when they differ).
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
class AtlasPart:
    """Facts of an atlas: the first ``facts`` facts (file order) of each relation (all bundled relations when
    ``relations`` is None), in each of ``langs``, under every template of the relation."""

    langs: tuple[str, ...]
    facts: int
    relations: tuple[str, ...] | None = None

    def relations_of(self, factset: FactSet) -> list[str]:
        return list(self.relations) if self.relations is not None else list(factset.relations)


@dataclass(frozen=True)
class AtlasPlan:
    """One model's atlas: its parts' facts. The first part is the main one: its Table-3 relations get the
    Fact-check page's checkers, and the showcase is chosen among its facts and languages; further parts add
    facts (e.g. in more languages, for the Language comparison page)."""

    model: str
    parts: tuple[AtlasPart, ...]

    @property
    def main(self) -> AtlasPart:
        return self.parts[0]

    @property
    def checker(self) -> queries.DKNSettings:
        """The Fact-check page's default checker of this model: the paper's search, calibrated on the main
        part's facts (whose attributions the atlas holds)."""
        return queries.DKNSettings(facts=self.main.facts)


PLANS: dict[str, AtlasPlan] = {
    "smollm2-135m": AtlasPlan("smollm2-135m", (AtlasPart(("en",), facts=5),  # and one fact in Chinese, for the
                                               AtlasPart(("zh",), facts=1, relations=("P36",)))),  # language page
    "gemma3-270m": AtlasPlan("gemma3-270m", (AtlasPart(("en", "zh"), facts=3, relations=TABLE3_RELATIONS),
                                             AtlasPart(("fr", "es", "ru", "ja", "ar", "de"), facts=2,
                                                       relations=("P36",)))),
}


def checker_facts(name: str) -> int | None:
    """How many facts the Fact-check page calibrates on by default for model ``name``: its atlas plan's (whose
    checkers the atlas holds), else every fact (None: the paper's protocol)."""
    return PLANS[name].main.facts if name in PLANS else None


def plan_of(name: str) -> AtlasPlan:
    try:
        return PLANS[name]
    except KeyError:
        raise InputError("model", f"no atlas plan for {name!r}; choose one of {', '.join(PLANS)}") from None


def planned_keys(lm: LanguageModel, atlas_plan: AtlasPlan, factset: FactSet,
                 config: AttributionConfig) -> list[ResultKey]:
    """The result keys of every prompt of the plan that the model can take."""
    keys = []
    for part, relation in _relations(atlas_plan, factset):
        for task in plan(factset, part.langs, [relation], part.facts):
            try:
                prompt = lm.prompt(task.template, task.subject, task.object)
            except KNError:
                continue
            keys.append(ResultKey.of(lm, prompt, config, task.lang))
    return keys


def compute(lm: LanguageModel, atlas_plan: AtlasPlan, factset: FactSet, config: AttributionConfig,
            store: ResultStore, progress: bool = True) -> None:
    """Store every planned attribution (the batch of each part's relation; what is stored is skipped)."""
    for part, relation in _relations(atlas_plan, factset):
        run_batch(lm, factset, part.langs, config, store, relations=[relation], max_facts=part.facts,
                  progress=progress)


def _relations(atlas_plan: AtlasPlan, factset: FactSet) -> list[tuple[AtlasPart, str]]:
    return [(part, relation) for part in atlas_plan.parts for relation in part.relations_of(factset)]


def derive(lm: LanguageModel, atlas_plan: AtlasPlan, factset: FactSet, config: AttributionConfig,
           store: ResultStore, calibrate: bool = True) -> dict:
    """The suppression effect of every fully stored fact of the plan (forward passes only; stored), the checker
    and held-out evaluation of each Table-3 relation of the plan (with ``calibrate``; stored), and the model's
    showcase among the facts (its document; empty when no fact has knowledge neurons)."""
    for part, relation in _relations(atlas_plan, factset):
        for lang in part.langs:
            tau = queries.tau_of(lang)
            facts = queries.stored_facts(store, lm, factset, relation, lang, config, tau, P_SHARE)
            queries.measure_effects(store, lm, facts, config, tau, P_SHARE)
    for relation, lang in checkers(atlas_plan, factset) if calibrate else ():
        try:
            checker = queries.calibrated_checker(store, lm, factset, relation, lang, config, atlas_plan.checker)
            queries.measured_evaluation(store, lm, factset, checker, relation, lang, config, atlas_plan.checker)
        except InputError as exc:  # e.g. labels outside the model's vocabulary: the page says so when opened
            log.warning("no checker of %s in %s for %s: %s", relation, lang, lm.name, exc)
    try:
        pick = queries.choose_showcase(store, lm, factset, list(atlas_plan.main.langs), config, P_SHARE,
                                       atlas_plan.main.relations_of(factset))
    except InputError as exc:
        log.warning("no showcase for %s: %s", lm.name, exc)
        return {}
    return pick.to_json()


def checkers(atlas_plan: AtlasPlan, factset: FactSet) -> list[tuple[str, str]]:
    """The (relation, language) pairs whose checker the atlas holds: the main part's Table-3 relations."""
    main = atlas_plan.main
    return [(relation, lang) for relation in main.relations_of(factset) if relation in TABLE3_RELATIONS
            for lang in main.langs]


def documents(lm: LanguageModel, atlas_plan: AtlasPlan, factset: FactSet, config: AttributionConfig,
              store: ResultStore, showcase: dict) -> list[tuple[str, str, dict]]:
    """The derived documents of the plan that the store holds: suppression effects, checkers with their
    evaluations, and the showcase."""
    found = []
    for relation, lang in checkers(atlas_plan, factset):
        key = queries.checker_key(lm, relation, lang, config, atlas_plan.checker)
        for kind in (queries.CHECKER_KIND, queries.EVALUATION_KIND):
            payload = store.get_json(kind, key)
            if payload is not None:
                found.append((kind, key, payload))
    for part, relation in _relations(atlas_plan, factset):
        for fact in factset.facts_of(relation)[:part.facts]:
            for lang in part.langs:
                key = queries.effect_key(lm, fact.id, lang, config, queries.tau_of(lang), P_SHARE)
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
    main = atlas_plan.main  # the plan as older atlases wrote it, further parts beside it
    settings = {**asdict(config), "plan": {"model": atlas_plan.model, **asdict(main)}, "tau": dict(TAU),
                "p": P_SHARE,
                **({"more": [asdict(part) for part in atlas_plan.parts[1:]]} if atlas_plan.parts[1:] else {})}
    taus = {lang: queries.tau_of(lang) for part in atlas_plan.parts for lang in part.langs}
    return write_model_atlas(out / lm.name, lm.name, model_fingerprint(lm), settings, rows,
                             documents(lm, atlas_plan, factset, config, store, showcase), taus)


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
    showcase = derive(lm, atlas_plan, factset, config, store, calibrate=compute_missing)
    counts = write(lm, atlas_plan, factset, config, store, out, showcase)
    report(f"{name}: {counts['results']} results ({counts['exact']} kept as float32), "
           f"{counts['bytes'] / 2**20:.1f} MiB in {out / name}")
    return counts
