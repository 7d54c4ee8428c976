"""Controls and the specificity verdict of a neuron set (docs/method.md §6; beyond the paper).

A neuron set S found for a fact f is suppressed (×0 at the target positions, as in §2) and the relative change
(P_after − P_before) / P_before of P(object) is measured on four groups of prompts, each a mean over its
prompts (over facts, then prompts, for the fact groups):

(a) **own**: f's own prompts (the templates S was found on);
(b) **same_relation**: ≥ :data:`~kn_core.defaults.CONTROL_FACTS` other facts of f's relation, with a different
    object, under the same templates as (a) (the user's wording of the relation);
(c) **other_relation**: ≥ :data:`~kn_core.defaults.CONTROL_FACTS` facts of other relations (one per relation in
    turn), each under its relation's first train template in the prompt's language;
(d) **random**: ≥ :data:`~kn_core.defaults.RANDOM_DRAWS` random sets of |S| neurons drawn in S's layers (as many
    per layer as S has there, never S's own), each suppressed on f's own prompts: their mean, sd, and the
    *rank* of (a) among them — the share of draws whose change is as low as (a)'s or lower (0.0: (a) is below
    every draw).

Control facts come from a fact set (the app and ``locate`` use the bundled one; an experiment its own data),
in the prompt's language, drawn with a seeded generator; so are the random draws. Everything is suppression
passes only (no attribution): one batched forward pass per own prompt for S and every random draw, one per
control prompt.

**The verdict** (:func:`verdict`), on drops D = −change (positive when P fell), with the margins of
:mod:`kn_core.defaults`:

1. ``"none"`` — no effect beyond random: unless D_own − mean(D_random) > max(RANDOM_SD · sd(D_random),
   MIN_EFFECT) (3 sd and at least 5 points).
2. ``"fact"`` — D_own *clearly exceeds* both D_same and D_other, where "a clearly exceeds b" means
   a ≥ SPECIFIC_RATIO · max(b, 0) **and** a − b ≥ SPECIFIC_MARGIN (twice as large and at least 10 points more).
3. ``"relation"`` — else, D_same clearly exceeds D_other: the set writes the relation's objects, not f's.
4. ``"generic"`` — else: other relations' objects fall too.

Without a same-relation control (the relation is unknown, or has no other fact the model can take) a set that
passes step 1 gets no verdict (None) and says why; a missing other-relation control is left out of step 2 and
makes step 3 undecidable (None). An empty set changes nothing and is ``"none"``.
"""
from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from kn_core.data import Fact, FactSet
from kn_core.data.prompts import Prompt
from kn_core.defaults import CONTROL_FACTS, MIN_EFFECT, RANDOM_DRAWS, RANDOM_SD, SPECIFIC_MARGIN, SPECIFIC_RATIO
from kn_core.errors import InputError
from kn_core.method.interventions import FACTORS, object_probs
from kn_core.method.neurons import Neuron

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

VERDICTS = ("fact", "relation", "generic", "none")
CHUNK = 32  # neuron sets per batched forward pass (a large vocabulary's logits are [sets, seq, vocab])
RULE = (f"none: the own drop is not beyond random (the random draws' mean drop + max({RANDOM_SD:g} sd, "
        f"{MIN_EFFECT * 100:g} points)); fact: the own drop is at least {SPECIFIC_RATIO:g}x and "
        f"{SPECIFIC_MARGIN * 100:g} points more than both the same relation's and the other relations' drops; "
        f"relation: else the same relation's drop is at least {SPECIFIC_RATIO:g}x and {SPECIFIC_MARGIN * 100:g} "
        "points more than the other relations'; generic: otherwise")


# -- the verdict (pure) ------------------------------------------------------------------------------
def _clearly(a: float, b: float, ratio: float, margin: float) -> bool:
    """Drop ``a`` clearly exceeds drop ``b``: at least ``ratio`` × max(b, 0) and ``margin`` more."""
    return a >= ratio * max(b, 0.0) and a - b >= margin


def beyond_random(own: float, random_mean: float, random_sd: float, k_sd: float = RANDOM_SD,
                  min_effect: float = MIN_EFFECT) -> bool:
    """Whether the own change (negative = P fell) is a larger drop than the random draws', by the rule above."""
    if math.isnan(own):
        return False
    sd = 0.0 if math.isnan(random_sd) else random_sd
    mean = 0.0 if math.isnan(random_mean) else random_mean
    return (-own) - (-mean) > max(k_sd * sd, min_effect)


def verdict(own: float, same_relation: float, other_relation: float, random_mean: float, random_sd: float, *,
            ratio: float = SPECIFIC_RATIO, margin: float = SPECIFIC_MARGIN, k_sd: float = RANDOM_SD,
            min_effect: float = MIN_EFFECT) -> tuple[str | None, str]:
    """The specificity verdict of a neuron set from its four suppression effects (relative changes; NaN = not
    measured) and why, in words. See the module notes for the rule."""
    if not beyond_random(own, random_mean, random_sd, k_sd, min_effect):
        return "none", (f"suppressing the set changes P(object) by {own:+.1%}, not beyond random sets of its size "
                        f"({random_mean:+.1%} ± {random_sd:.1%})")
    d_own, d_same, d_other = -own, -same_relation, -other_relation
    if math.isnan(d_same):
        return None, "no other fact of the relation could be measured, so fact and relation cannot be told apart"
    if _clearly(d_own, d_same, ratio, margin) and (math.isnan(d_other) or _clearly(d_own, d_other, ratio, margin)):
        return "fact", (f"the fact falls by {d_own:.1%}, other facts of its relation by {d_same:.1%}"
                        + ("" if math.isnan(d_other) else f" and other relations by {d_other:.1%}"))
    if math.isnan(d_other):
        return None, "no fact of another relation could be measured, so relation and generic cannot be told apart"
    if _clearly(d_same, d_other, ratio, margin):
        return "relation", (f"other facts of the relation fall as well ({d_same:.1%} against {d_own:.1%} for this "
                            f"fact) while other relations fall by {d_other:.1%}: the set writes the relation's "
                            "objects")
    return "generic", (f"other relations fall too ({d_other:.1%}; same relation {d_same:.1%}, this fact "
                       f"{d_own:.1%})")


# -- records --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomControl:
    """Suppression of random same-size sets in the same layers on the fact's own prompts: mean and sample sd of
    their relative changes, the number of draws, and ``rank``, the share of draws whose change is as low as the
    own change or lower (small: the own effect is beyond the random ones)."""

    mean: float
    sd: float
    draws: int
    rank: float
    changes: tuple[float, ...] = field(default=(), repr=False)

    def to_json(self) -> dict:
        return {"mean": self.mean, "sd": self.sd, "draws": self.draws, "rank": self.rank}


@dataclass(frozen=True)
class ControlPrompts:
    """The control prompts of a fact: its relation (None: unknown) and, per control fact, (fact id, subject,
    object, prompts) for the same relation and for other relations."""

    relation: str | None
    same_relation: tuple[tuple[str, str, str, tuple[Prompt, ...]], ...] = ()
    other_relation: tuple[tuple[str, str, str, tuple[Prompt, ...]], ...] = ()


@dataclass(frozen=True)
class Controls:
    """The four suppression effects of a neuron set (relative changes of P(object), mean over prompts / facts;
    NaN when not measured) and its specificity verdict with the reason in words.

    same_facts / other_facts: (fact id, subject, object, change) of each control fact."""

    own: float
    same_relation: float
    other_relation: float
    random: RandomControl
    specificity: str | None
    reason: str
    relation: str | None = None
    same_facts: tuple[tuple[str, str, str, float], ...] = ()
    other_facts: tuple[tuple[str, str, str, float], ...] = ()
    rule: str = RULE

    def to_json(self) -> dict:
        """The ``"controls"`` object of ``locate --json`` (without the verdict, which sits beside it)."""
        facts = lambda rows: [{"fact_id": i, "subject": s, "object": o, "change": c} for i, s, o, c in rows]  # noqa: E731
        return {"own": self.own, "same_relation": self.same_relation, "other_relation": self.other_relation,
                "random": self.random.to_json(), "relation": self.relation,
                "same_relation_facts": facts(self.same_facts), "other_relation_facts": facts(self.other_facts),
                "rule": self.rule, "reason": self.reason}

    def effects(self) -> dict[str, float]:
        """The four effects by name, in the order a chart shows them (plotly-free data for the app)."""
        return {"own": self.own, "same_relation": self.same_relation, "other_relation": self.other_relation,
                "random": self.random.mean}


# -- choosing control facts -------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(text.split())


def find_relation(factset: FactSet, lang: str, templates: Sequence[str], subject: str, obj: str) -> str | None:
    """The relation of a fact given by templates and labels: the first relation with one of the templates in
    ``lang``, else the relation of a fact with these labels in ``lang``, else None."""
    wanted = {_norm(t) for t in templates}
    for rid, relation in factset.relations.items():
        if any(_norm(t.text) in wanted for t in relation.templates_for(lang)):
            return rid
    for fact in factset.facts:
        if lang in fact.labels and (fact.subject(lang), fact.object(lang)) == (subject, obj):
            return fact.relation
    return None


def _shuffled(facts: Sequence[Fact], seed: int, key: str) -> list[Fact]:
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    return [facts[i] for i in rng.permutation(len(facts))]


def control_prompts(lm: LanguageModel, factset: FactSet, lang: str, templates: Sequence[str], subject: str,
                    obj: str, relation: str | None = None, n_facts: int = CONTROL_FACTS,
                    seed: int = 0) -> ControlPrompts:
    """Control facts for the fact ⟨subject, ·, obj⟩ in ``lang`` (seeded): ``n_facts`` other facts of its relation
    (given, or found with :func:`find_relation`) with objects other than ``obj`` and each other, under
    ``templates``; and ``n_facts`` facts of other relations, one per relation in turn, objects other than ``obj``,
    each under its relation's first train template in ``lang``. Facts the model cannot take are passed over."""
    if isinstance(templates, str):
        templates = [templates]
    if relation is not None:
        factset.relation(relation)  # unknown ids raise, listing the known ones
    else:
        relation = find_relation(factset, lang, templates, subject, obj)
    same: list = []
    if relation is not None:
        seen = {obj}
        for fact in _shuffled([f for f in factset.facts_of(relation) if lang in f.labels], seed, relation):
            if len(same) == n_facts:
                break
            if fact.object(lang) in seen or fact.subject(lang) == subject:
                continue
            built = lm.prompts(templates, fact.subject(lang), fact.object(lang)).prompts
            if built:
                seen.add(fact.object(lang))
                same.append((fact.id, fact.subject(lang), fact.object(lang), built))
    pools = []
    for rid, rel in factset.relations.items():
        firsts = rel.templates_for(lang, heldout=False)
        if rid == relation or not firsts:
            continue
        pools.append((firsts[0].text, _shuffled([f for f in factset.facts_of(rid) if lang in f.labels
                                                  and f.object(lang) != obj], seed, rid)))
    other: list = []
    while len(other) < n_facts and any(pool for _, pool in pools):
        for template, pool in pools:
            while pool and len(other) < n_facts:
                fact = pool.pop(0)
                built = lm.prompts([template], fact.subject(lang), fact.object(lang)).prompts
                if built:
                    other.append((fact.id, fact.subject(lang), fact.object(lang), built))
                    break
    if relation is not None and len(same) < n_facts:
        log.info("only %d other fact(s) of %s in %r can be put to %s", len(same), relation, lang, lm.name)
    return ControlPrompts(relation, tuple(same), tuple(other))


# -- measuring --------------------------------------------------------------------------------------
def random_sets(neurons: Sequence[Neuron], d_ff: int, seed: int, draws: int = RANDOM_DRAWS) -> list[list[Neuron]]:
    """``draws`` random sets with as many neurons per layer as ``neurons`` has there, never one of ``neurons``
    (seeded; the same seed gives the same draws)."""
    rng = np.random.default_rng(seed)
    taken = {(int(layer), int(index)) for layer, index in neurons}
    layers = sorted({layer for layer, _ in taken})
    free = {layer: np.setdiff1d(np.arange(d_ff), [i for lay, i in taken if lay == layer]) for layer in layers}
    need = {layer: sum(1 for lay, _ in taken if lay == layer) for layer in layers}
    return [[Neuron(layer, int(i)) for layer in layers
             for i in rng.choice(free[layer], size=min(need[layer], free[layer].size), replace=False)]
            for _ in range(draws)]


def suppression_changes(lm: LanguageModel, prompt: Prompt, sets: Sequence[Sequence[Neuron]],
                        chunk: int = CHUNK) -> np.ndarray:
    """Relative change of the prompt's P(object) with each set suppressed: float [len(sets)] (0.0 where P = 0)."""
    rows = [[], *[list(s) for s in sets]]
    probs = np.concatenate([object_probs(lm, prompt, rows[i:i + chunk], FACTORS["suppress"])
                            for i in range(0, len(rows), chunk)])
    before = probs[0]
    return (probs[1:] - before) / before if before > 0 else np.zeros(len(sets))


def _fact_changes(lm: LanguageModel, rows, neurons) -> tuple[tuple[str, str, str, float], ...]:
    return tuple((fid, s, o, float(np.mean([suppression_changes(lm, p, [neurons])[0] for p in prompts])))
                 for fid, s, o, prompts in rows)


def measure(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[Neuron], controls: ControlPrompts,
            draws: int = RANDOM_DRAWS, seed: int = 0) -> Controls:
    """Suppress ``neurons`` on the fact's ``prompts`` and on the control prompts, draw ``draws`` random sets
    (``seed``), and give the verdict."""
    if not prompts:
        raise InputError("template", "no prompt of the fact to measure the controls on")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 2:
        raise InputError("draws", f"need at least 2 random draws for a mean and sd (got {draws!r}); "
                                  f"the default is {RANDOM_DRAWS}")
    neurons = [Neuron(int(n[0]), int(n[1])) for n in neurons]
    randoms = random_sets(neurons, lm.d_ff, seed, draws)
    per_prompt = np.array([suppression_changes(lm, p, [neurons, *randoms]) for p in prompts])  # [prompts, 1 + draws]
    own, rand = float(per_prompt[:, 0].mean()), per_prompt[:, 1:].mean(axis=0)
    same = _fact_changes(lm, controls.same_relation, neurons)
    other = _fact_changes(lm, controls.other_relation, neurons)
    mean_of = lambda rows: float(np.mean([r[3] for r in rows])) if rows else math.nan  # noqa: E731
    random = RandomControl(mean=float(rand.mean()), sd=float(rand.std(ddof=1)), draws=draws,
                           rank=float(np.mean(rand <= own)), changes=tuple(float(x) for x in rand))
    same_change, other_change = mean_of(same), mean_of(other)
    label, reason = verdict(own, same_change, other_change, random.mean, random.sd)
    return Controls(own=own, same_relation=same_change, other_relation=other_change, random=random,
                    specificity=label, reason=reason, relation=controls.relation, same_facts=same, other_facts=other)


def fact_controls(lm: LanguageModel, factset: FactSet, lang: str, prompts: Sequence[Prompt],
                  neurons: Sequence[Neuron], relation: str | None = None, n_facts: int = CONTROL_FACTS,
                  draws: int = RANDOM_DRAWS, seed: int = 0) -> Controls:
    """Controls and verdict of any neuron set shown for a fact (Fact browser, Language comparison, relation
    overview): the control facts from ``factset`` (see :func:`control_prompts`), then :func:`measure`."""
    if not prompts:
        raise InputError("template", "no prompt of the fact to measure the controls on")
    first = prompts[0]
    chosen = control_prompts(lm, factset, lang, [p.template for p in prompts], first.subject, first.object, relation,
                             n_facts, seed)
    return measure(lm, prompts, neurons, chosen, draws, seed)


__all__ = ["CHUNK", "RULE", "VERDICTS", "ControlPrompts", "Controls", "RandomControl", "beyond_random",
           "control_prompts", "fact_controls", "find_relation", "measure", "random_sets", "suppression_changes",
           "verdict"]
