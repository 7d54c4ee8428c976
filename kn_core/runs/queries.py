"""Questions asked of the store (Streamlit-free, so the CLI and tests ask them too).

Reading only, computing nothing: which triples a model has stored, the stored attributions of given prompts,
the facts of a relation ranked by the knowledge neurons their languages share, a relation's overview, the
stored prompts where a neuron is a knowledge neuron, and the showcase the app opens on.

Derived documents, computed once and stored so that the app and the CLI share them (the functions that
compute say so: ``measure_``, ``calibrated_``, ``choose_``): a fact's suppression effect, a relation's
fact-check checker and its held-out evaluation, the showcase.
"""
from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from kn_core.attribution import Attribution, AttributionConfig
from kn_core.data import Fact, FactSet
from kn_core.defaults import DKN_T, T_HIGH, T_LOW, TOP_K
from kn_core.errors import DataError, InputError
from kn_core.method.factcheck import FactChecker, calibrate, evaluate
from kn_core.method.interventions import verify
from kn_core.method.likn import overlap
from kn_core.method.metrics import Confusion
from kn_core.method.neurons import default_tau, knowledge_neurons, per_layer_counts
from kn_core.model.fingerprint import model_fingerprint
from kn_core.model.loading import LanguageModel
from kn_core.runs import cached
from kn_core.runs.store import KEYLESS_RULE, METHOD_VERSION, ResultStore
from kn_core.types import Neuron, Progress, ScoredNeuron

log = logging.getLogger(__name__)
EFFECT_KIND = "kn-effect-v1"
CHECKER_KIND, EVALUATION_KIND = "factcheck-v2", "factcheck-evaluation-v2"  # v2: abstention, equal masks
SHOWCASE_KIND, SHOWCASE_KEY = "showcase-v1", "app"
SHOWCASE_MIN_P = 0.1  # the showcase prefers a fact the model knows: mean P(object) over its prompts at least this
TOP_NEURONS = 10


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _document(store: ResultStore, kind: str, key: str, usable: Callable[[object], bool]) -> dict | None:
    """The stored document (kind, key), or None when there is none. A damaged one (not JSON, or not the shape this
    version writes, e.g. after a disk error or a foreign writer) is also None, with a warning: documents are derived
    from the stored results, so it is computed again where needed and replaced, never read as it is. Every
    ``usable`` accepts only a dict (every document is a JSON object)."""
    try:
        saved = store.get_json(kind, key)
    except (ValueError, TypeError, RecursionError):  # invalid JSON, a non-text payload, JSON nested too deeply
        saved, ok = None, False
    else:
        try:
            ok = saved is None or bool(usable(saved))
        except (TypeError, KeyError, ValueError, AttributeError, DataError):
            ok = False
    if not ok:
        log.warning("the stored %s document %s… in %s is damaged; it is ignored and computed again where needed "
                    "(replacing it)", kind, key[:48], store.path)
        return None
    return saved


def _effect_ok(saved: object) -> bool:
    return isinstance(saved, dict) and all(_number(saved.get(name)) for name in ("own", "random", "neurons"))


def _rows_ok(saved: object) -> bool:
    return isinstance(saved, dict) and isinstance(saved.get("rows"), list) and all(
        isinstance(row, dict) for row in saved["rows"])


def _showcase_ok(saved: object) -> bool:
    if not isinstance(saved, dict):
        return False
    Showcase(**saved)  # unknown or missing fields: TypeError
    return (all(isinstance(saved[name], str) for name in ("model", "relation", "fact", "lang"))
            and _number(saved["effect"]) and _number(saved["random_effect"]))


tau_of = default_tau  # the one τ rule (kn_core.method.neurons.default_tau), under the name the pages use


def relative_depth(n_layers: int) -> np.ndarray:
    """Each layer's relative depth layer / (n_layers − 1), 0 … 1, so that models of different depth compare
    (a one-layer model's only layer is at 0)."""
    return np.arange(n_layers) / max(n_layers - 1, 1)


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
            chosen.append(knowledge_neurons([r.scores for r in stored], tau_of(lang), p))
        else:
            shared = overlap(chosen[0], chosen[1], lm.n_layers)
            rows.append({"fact": fact_label(fact), f"KN {langs[0]}": len(chosen[0]), f"KN {langs[1]}": len(chosen[1]),
                         "shared": len(shared.shared), "Jaccard": shared.jaccard})
    frame = pd.DataFrame(rows, columns=["fact", f"KN {langs[0]}", f"KN {langs[1]}", "shared", "Jaccard"])
    return frame.sort_values(["shared", "Jaccard"], ascending=False, kind="stable").reset_index(drop=True)


# -- a relation at the scale of its facts ---------------------------------------------------------
@dataclass(frozen=True)
class StoredFact:
    """A fact whose every prompt in ``lang`` is stored, with its refined knowledge neurons (τ, p)."""

    fact: Fact
    lang: str
    results: tuple[Attribution, ...]
    neurons: tuple[ScoredNeuron, ...]

    @property
    def prompts(self) -> list:
        return [r.prompt for r in self.results]


def stored_facts(store: ResultStore, lm: LanguageModel, factset: FactSet, relation: str, lang: str,
                 config: AttributionConfig, tau: float, p: float) -> list[StoredFact]:
    """The relation's facts whose every prompt (all templates in ``lang`` the model can take) is stored."""
    templates = factset.relation(relation).templates_for(lang)
    found = []
    for fact in factset.facts_of(relation):
        if lang not in fact.labels:
            continue
        entry = [(lang, templates, fact.subject(lang), fact.object(lang))]
        expected = len(lm.prompts([t.text for t in templates], fact.subject(lang), fact.object(lang)).prompts)
        results = stored_only(store, lm, entry, config)
        if results and len(results) == expected:
            neurons = knowledge_neurons([r.scores for r in results], tau, p)
            found.append(StoredFact(fact, lang, tuple(results), tuple(neurons)))
    return found


def setup(config: AttributionConfig) -> str:
    """The part of a stored document's key that names how the attributions integrate: baseline and steps, and
    the quadrature rule when it is not the default (so that the keys written before rules existed still hold)."""
    rule = "" if config.rule == KEYLESS_RULE else f"|{config.rule}"
    return f"{config.baseline}|{config.steps}{rule}"


def effect_key(lm: LanguageModel, fact_id: str, lang: str, config: AttributionConfig, tau: float, p: float) -> str:
    return f"{model_fingerprint(lm)}|{lm.name}|{fact_id}|{lang}|{setup(config)}|{tau:g}|{p:g}|suppress"


def stored_effect(store: ResultStore, lm: LanguageModel, fact: StoredFact, config: AttributionConfig,
                  tau: float, p: float) -> dict | None:
    """The stored suppression effect of a fact's knowledge neurons: {"own", "random", "neurons"}, or None."""
    return _document(store, EFFECT_KIND, effect_key(lm, fact.fact.id, fact.lang, config, tau, p), _effect_ok)


def measure_effects(store: ResultStore, lm: LanguageModel, facts: Sequence[StoredFact], config: AttributionConfig,
                    tau: float, p: float, progress: Progress | None = None) -> list[dict]:
    """Each fact's suppression effect (its knowledge neurons set to 0 on its prompts, and as many random
    neurons in the same layers): from the store, else computed now (forward passes, no attribution) and
    stored. A fact without knowledge neurons has the effect 0."""
    effects = []
    for n, fact in enumerate(facts):
        found = stored_effect(store, lm, fact, config, tau, p)
        if found is None:
            neurons = [Neuron(n_[0], n_[1]) for n_ in fact.neurons]
            result = verify(lm, fact.prompts, neurons, "suppress", seed=0) if neurons else None
            found = {"own": result.own if result else 0.0, "random": result.random if result else 0.0,
                     "neurons": len(neurons)}
            store.put_json(EFFECT_KIND, effect_key(lm, fact.fact.id, fact.lang, config, tau, p), found)
        effects.append(found)
        if progress is not None:
            progress((n + 1) / len(facts))
    return effects


@dataclass(frozen=True)
class LanguageOverview:
    """A relation in one language, over its stored facts."""

    lang: str
    tau: float
    n_facts: int  # facts of the relation with labels in the language
    stored: tuple[StoredFact, ...]  # those whose every prompt is stored
    per_layer: np.ndarray  # knowledge neurons per layer, summed over the stored facts
    top: pd.DataFrame  # the neurons that are knowledge neurons for the most facts: layer, index, facts, share
    effects: tuple[dict, ...]  # the stored suppression effects (only the facts that have one)

    @property
    def mean_effect(self) -> float:
        return float(np.mean([e["own"] for e in self.effects])) if self.effects else math.nan

    @property
    def mean_random_effect(self) -> float:
        return float(np.mean([e["random"] for e in self.effects])) if self.effects else math.nan


@dataclass(frozen=True)
class RelationOverview:
    """A relation across languages: each language's overview and the facts stored in every language."""

    relation: str
    n_layers: int
    langs: dict[str, LanguageOverview]
    n_both: int  # facts stored in every language
    n_shared: int  # ... of which have at least one language-independent knowledge neuron
    missing_facts: int  # facts with a prompt still to compute in some language

    @property
    def shared_share(self) -> float:
        return self.n_shared / self.n_both if self.n_both else math.nan


def recurring_neurons(neuron_sets: Sequence[Iterable[Sequence]], top: int = TOP_NEURONS) -> pd.DataFrame:
    """The neurons in the most sets (one set per fact): layer, index, facts, share of the sets."""
    counts = Counter((int(n[0]), int(n[1])) for neurons in neuron_sets for n in {(n[0], n[1]) for n in neurons})
    rows = [{"layer": l, "index": i, "facts": c, "share": c / len(neuron_sets)}
            for (l, i), c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    return pd.DataFrame(rows, columns=["layer", "index", "facts", "share"])


def relation_overview(store: ResultStore, lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str],
                      config: AttributionConfig, p: float) -> RelationOverview:
    """The relation's stored facts per language (τ of each language, refinement share ``p``); nothing is
    computed: suppression effects are those stored (:func:`measure_effects`)."""
    per_lang = {}
    for lang in langs:
        tau = tau_of(lang)
        stored = stored_facts(store, lm, factset, relation, lang, config, tau, p)
        effects = [e for e in (stored_effect(store, lm, f, config, tau, p) for f in stored) if e is not None]
        per_layer = per_layer_counts([n for f in stored for n in f.neurons], lm.n_layers)
        per_lang[lang] = LanguageOverview(
            lang, tau, sum(lang in f.labels for f in factset.facts_of(relation)), tuple(stored), per_layer,
            recurring_neurons([f.neurons for f in stored]), tuple(effects))
    by_id = {lang: {f.fact.id: f for f in o.stored} for lang, o in per_lang.items()}
    both = set.intersection(*(set(ids) for ids in by_id.values())) if by_id else set()
    n_shared = sum(bool(overlap(by_id[langs[0]][fid].neurons, by_id[langs[1]][fid].neurons, lm.n_layers).shared)
                   for fid in both) if len(langs) >= 2 else 0
    missing = sum(1 for f in factset.facts_of(relation)
                  if any(lang in f.labels and f.id not in by_id[lang] for lang in langs))
    return RelationOverview(relation, lm.n_layers, per_lang, len(both), n_shared, missing)


# -- a neuron across the store --------------------------------------------------------------------
OCCURRENCE_COLUMNS = ["relation", "lang", "subject", "object", "template", "score", "share of max"]


def neuron_occurrences(store: ResultStore, lm: LanguageModel, factset: FactSet, layer: int, index: int,
                       config: AttributionConfig) -> pd.DataFrame:
    """The stored prompts of this model (these weights, ``config``'s baseline, steps and rule) in which neuron
    (layer, index) is a coarse knowledge neuron (score > τ·max, τ of the prompt's language), highest share
    first. ``relation`` is the bundled relation whose template the prompt uses ("custom" otherwise)."""
    relation_of = {(t.lang, t.text): rid for rid, rel in factset.relations.items() for t in rel.templates}
    fingerprint = model_fingerprint(lm)
    columns = ("fingerprint", "lang", "subject", "object", "template", "baseline", "steps", "rule", "method_version",
               "n_layers", "d_ff", "scores")
    wanted = (fingerprint, config.baseline, config.steps, config.rule, METHOD_VERSION, lm.n_layers, lm.d_ff)
    rows = []
    for batch in store.rows(columns, model=lm.name):
        for row in batch:
            if (row["fingerprint"], row["baseline"], row["steps"], row["rule"], row["method_version"], row["n_layers"],
                    row["d_ff"]) != wanted:
                continue
            scores = np.frombuffer(row["scores"], dtype=np.float32).reshape(row["n_layers"], row["d_ff"])
            peak, score = float(scores.max()), float(scores[layer, index])
            if peak > 0 and score > tau_of(row["lang"]) * peak:
                rows.append({"relation": relation_of.get((row["lang"], row["template"]), "custom"),
                             "lang": row["lang"], "subject": row["subject"], "object": row["object"],
                             "template": row["template"], "score": score, "share of max": score / peak})
    frame = pd.DataFrame(rows, columns=OCCURRENCE_COLUMNS)
    return frame.sort_values("share of max", ascending=False, kind="stable").reset_index(drop=True)


# -- fact-check documents -------------------------------------------------------------------------
@dataclass(frozen=True)
class DKNSettings:
    """How a relation's checker is calibrated (docs/method.md §4–5): the degenerate-neuron search and λ's objective
    (the defaults are the paper's) and ``facts``, the relation's first that many facts with labels in the
    language (file order) split into training and held-out parts (None: every fact, as the paper)."""

    t_low: float = T_LOW
    t_high: float = T_HIGH
    t: float = DKN_T
    top_k: int = TOP_K
    objective: str = "f1"
    facts: int | None = None

    def chosen(self, factset: FactSet, relation: str, lang: str) -> list[Fact]:
        """The facts the checker is calibrated and evaluated on."""
        facts = [f for f in factset.facts_of(relation) if lang in f.labels]
        return facts if self.facts is None else facts[:self.facts]


def checker_key(lm: LanguageModel, relation: str, lang: str, config: AttributionConfig, dkn: DKNSettings) -> str:
    key = (f"{model_fingerprint(lm)}|{lm.name}|{relation}|{lang}|{setup(config)}|"
           f"{dkn.t_low}|{dkn.t_high}|{dkn.t}|{dkn.top_k}|{dkn.objective}")
    return key if dkn.facts is None else f"{key}|facts={dkn.facts}"  # every fact: the key older stores hold


def stored_checker(store: ResultStore, lm: LanguageModel, relation: str, lang: str, config: AttributionConfig,
                   dkn: DKNSettings) -> FactChecker | None:
    """The relation's calibrated checker if stored (None for none, or for an older record)."""
    key = checker_key(lm, relation, lang, config, dkn)
    saved = _document(store, CHECKER_KIND, key, lambda saved: isinstance(saved, dict))
    try:
        return None if saved is None else FactChecker.from_json(saved)
    except DataError:  # an older record
        return None
    except (TypeError, KeyError, ValueError, AttributeError):  # a damaged one
        log.warning("the stored %s document %s… in %s is damaged; it is ignored and calibrated again (replacing "
                    "it)", CHECKER_KIND, key[:48], store.path)
        return None


def calibrated_checker(store: ResultStore, lm: LanguageModel, factset: FactSet, relation: str, lang: str,
                       config: AttributionConfig, dkn: DKNSettings, progress: Progress | None = None) -> FactChecker:
    """The stored checker, else calibrated now (attributions read through the store) and stored."""
    checker = stored_checker(store, lm, relation, lang, config, dkn)
    if checker is None:
        checker = calibrate(lm, factset, relation, lang, config=config, top_k=dkn.top_k, t=dkn.t, t_low=dkn.t_low,
                            t_high=dkn.t_high, objective=dkn.objective, progress=progress,
                            attributor=cached.read_through(store), facts=dkn.chosen(factset, relation, lang))
        store.put_json(CHECKER_KIND, checker_key(lm, relation, lang, config, dkn), json.loads(checker.to_json()))
    return checker


def stored_evaluation(store: ResultStore, lm: LanguageModel, relation: str, lang: str, config: AttributionConfig,
                      dkn: DKNSettings) -> pd.DataFrame | None:
    saved = _document(store, EVALUATION_KIND, checker_key(lm, relation, lang, config, dkn), _rows_ok)
    if saved is None:
        return None
    frame = pd.DataFrame(saved["rows"])  # the atlas writes documents with sorted keys: the table's order again
    return frame[[c for c in EVALUATION_COLUMNS if c in frame] + [c for c in frame if c not in EVALUATION_COLUMNS]]


EVALUATION_COLUMNS = ("method", "claims", "no_verdict", *(f.name for f in fields(Confusion)),
                      *Confusion(0, 0, 0, 0).metrics())  # the order of EvaluationResult.table()


def measured_evaluation(store: ResultStore, lm: LanguageModel, factset: FactSet, checker: FactChecker, relation: str,
                        lang: str, config: AttributionConfig, dkn: DKNSettings,
                        progress: Progress | None = None) -> pd.DataFrame:
    """The held-out evaluation table, from the store or judged now and stored (one row per method)."""
    found = stored_evaluation(store, lm, relation, lang, config, dkn)
    if found is None:
        result = evaluate(lm, checker, checker.held_out_claims(factset), progress=progress)
        rows = result.table().to_dict(orient="records")
        store.put_json(EVALUATION_KIND, checker_key(lm, relation, lang, config, dkn), {"rows": rows})
        found = pd.DataFrame(rows)
    return found


# -- the showcase: what the app opens on ---------------------------------------------------------
@dataclass(frozen=True)
class Showcase:
    """The app's first look, chosen from stored results: the model, a fact whose knowledge neurons clearly
    lower it when suppressed (the Fact browser's), and a fact with shared neurons (the language page's)."""

    model: str
    relation: str
    fact: str
    lang: str
    effect: float
    random_effect: float
    language_relation: str | None = None
    language_fact: str | None = None
    shared: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def showcase(store: ResultStore) -> Showcase | None:
    """The stored showcase (None when none was chosen, or it is unreadable)."""
    saved = _document(store, SHOWCASE_KIND, SHOWCASE_KEY, _showcase_ok)
    return None if saved is None else Showcase(**saved)


def choose_showcase(store: ResultStore, lm: LanguageModel, factset: FactSet, langs: Sequence[str],
                    config: AttributionConfig, p: float, relations: Sequence[str] | None = None,
                    progress: Progress | None = None) -> Showcase:
    """Pick the showcase among the stored facts of ``relations`` (all by default) and store it.

    Fact browser: among the facts the model knows (mean P(object) ≥ :data:`SHOWCASE_MIN_P`; all facts when it
    knows none), the fact (in any of ``langs``) whose knowledge neurons lower P(object) the most beyond as
    many random neurons (suppression effects are measured, and stored, where missing). Language page: the
    fact with the most knowledge neurons shared by the first two languages (then the higher Jaccard).
    Raises InputError when no fact of them is stored."""
    chosen = list(relations) if relations else list(factset.relations)
    best, best_rank, shared_best = None, (False, -math.inf), None
    for n, relation in enumerate(chosen):
        per_lang = {lang: stored_facts(store, lm, factset, relation, lang, config, tau_of(lang), p) for lang in langs}
        for lang, facts in per_lang.items():
            for fact, effect in zip(facts, measure_effects(store, lm, facts, config, tau_of(lang), p)):
                known = float(np.mean([r.p_object for r in fact.results])) >= SHOWCASE_MIN_P
                rank = (known, effect["random"] - effect["own"])
                if fact.neurons and rank > best_rank:
                    best, best_rank = (fact, effect), rank
        if len(langs) >= 2:
            second = {f.fact.id: f for f in per_lang[langs[1]]}
            for fact in per_lang[langs[0]]:
                if fact.fact.id in second:
                    both = overlap(fact.neurons, second[fact.fact.id].neurons, lm.n_layers)
                    shared_rank = (len(both.shared), both.jaccard)
                    if both.shared and (shared_best is None or shared_rank > shared_best[0]):
                        shared_best = (shared_rank, fact.fact)
        if progress is not None:
            progress((n + 1) / len(chosen))
    if best is None:
        raise InputError("model", f"no fact of {', '.join(chosen)} is stored for {lm.name} with knowledge neurons; "
                                  f"run `python -m kn_core batch --model {lm.name} --relations …` first")
    (fact, effect) = best
    pick = Showcase(lm.name, fact.fact.relation, fact.fact.id, fact.lang, effect["own"], effect["random"],
                    *((shared_best[1].relation, shared_best[1].id, shared_best[0][0]) if shared_best else ()))
    store.put_json(SHOWCASE_KIND, SHOWCASE_KEY, pick.to_json())
    return pick
