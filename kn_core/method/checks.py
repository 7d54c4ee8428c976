"""The critics' checks of a fact's neuron set (Niu et al., ICLR 2024; docs/method.md §6), beyond a probability drop.

:func:`fact_checks` — suppression passes only, cheap enough for the app's Checks panel:

- **top-1 flip**: on each of the fact's own prompts, the model's top-1 token at the object's first position
  before and after suppressing the set (×0): does it change, and to what? ``flip_rate`` = share of prompts
  whose top-1 changes; ``was_top1`` says whether the object's first token was the top-1 before.
- **paraphrase transfer**: the relative change of P(object) on the relation's templates in the language that
  the set was *not* found on (held-out first, then unused train templates), against the change on the
  templates it was found on; ``transfer`` = paraphrase change / own change (1: transfers fully; 0: not at all).
- **reverse probe**, where the relation has one (:data:`REVERSE_TEMPLATES`, capital ↔ capital of): the object
  becomes the subject and the model is asked for the fact's subject ("Paris is the capital of [Y]" → France);
  the relative change of P(subject) there. Knowledge stored as a fact should move both directions.

:func:`syntactic_control` (attribution: costs a ``locate`` per case, once per model and language, not per fact):
the same pipeline (AMIG, τ, suppression against random sets) on grammar instead of facts — subject–verb
agreement ("The keys on the table [are]") in English, classifier agreement in Chinese (:data:`SYNTAX`). If it
finds neurons whose suppression moves the grammatical word as much as a fact's neurons move the fact, the
method localises grammar as readily as knowledge: its neurons are not evidence of *stored facts* as such.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, cast

import numpy as np
import torch

from kn_core.attribution import AttributionConfig, Attributor, compute
from kn_core.data import FactSet
from kn_core.data.prompts import Prompt
from kn_core.defaults import RANDOM_DRAWS
from kn_core.method.controls import ControlPrompts, beyond_random, suppression_changes
from kn_core.method.interventions import FACTORS, scaled
from kn_core.method.neurons import Neuron
from kn_core.model.hooks import run

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

# relation -> language -> the reverse question's template: [X] is the fact's object, [Y] its subject
REVERSE_TEMPLATES: dict[str, dict[str, str]] = {
    "P36": {"en": "[X] is the capital of [Y].", "zh": "以[X]为首都的国家是[Y]。"},
}
# language -> (template, ((subject, object), …)): grammatical agreement put through the fact pipeline
SYNTAX: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "en": ("The [X] on the table [Y].", (("keys", "are"), ("key", "is"), ("books", "are"), ("book", "is"))),
    "zh": ("[X]，我买了一[Y]。", (("书", "本"), ("车", "辆"), ("纸", "张"), ("马", "匹"))),
}


@dataclass(frozen=True)
class Flip:
    """The top-1 token at the object's first position of one prompt, before and after suppression."""

    query: str
    object_token: str
    before: str
    after: str
    was_top1: bool

    @property
    def flipped(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class Checks:
    """The critics' checks of one fact's neuron set (see the module notes). Changes are relative changes of
    P(object) (P(subject) for the reverse probe), means over prompts; NaN where not measured.

    own_change: on the templates the set was found on. paraphrases: (template, change) per other template;
    reverse_template / reverse_change: the reverse probe (None / NaN: the relation has none, or the model
    cannot take it)."""

    flips: tuple[Flip, ...]
    own_change: float
    paraphrases: tuple[tuple[str, float], ...]
    reverse_template: str | None
    reverse_change: float

    @property
    def flip_rate(self) -> float:
        return float(np.mean([f.flipped for f in self.flips])) if self.flips else math.nan

    @property
    def paraphrase_change(self) -> float:
        return float(np.mean([c for _, c in self.paraphrases])) if self.paraphrases else math.nan

    @property
    def transfer(self) -> float:
        """Paraphrase change / own change (NaN when either is missing or the own change is 0)."""
        if math.isnan(self.paraphrase_change) or not self.own_change:
            return math.nan
        return self.paraphrase_change / self.own_change

    def to_json(self) -> dict:
        return {"top1": {"flip_rate": self.flip_rate,
                         "prompts": [{"query": f.query, "object_token": f.object_token, "before": f.before,
                                      "after": f.after, "was_top1": f.was_top1, "flipped": f.flipped}
                                     for f in self.flips]},
                "own_change": self.own_change,
                "paraphrase": {"change": self.paraphrase_change, "transfer": self.transfer,
                               "templates": [{"template": t, "change": c} for t, c in self.paraphrases]},
                "reverse": {"template": self.reverse_template, "change": self.reverse_change}}


def _text(lm: LanguageModel, token: int) -> str:
    return cast(str, lm.tokenizer.decode([int(token)])).strip()  # the stub's str | list[str]: one sequence, one str


def top1_flips(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[Neuron]) -> tuple[Flip, ...]:
    """Top-1 token at each prompt's first object position, unedited and with ``neurons`` suppressed (one batched
    pass of two rows per prompt)."""
    flips = []
    for prompt in prompts:
        position = prompt.target_positions[0]
        ids = torch.tensor(prompt.input_ids, device=lm.device)[None].expand(2, -1)
        with lm.lock, torch.inference_mode(), scaled(lm, [[], list(neurons)], FACTORS["suppress"],
                                                                    prompt.target_positions):
            top = run(lm, ids)[:, position].argmax(-1).tolist()
        flips.append(Flip(prompt.query, _text(lm, prompt.object_ids[0]), _text(lm, top[0]), _text(lm, top[1]),
                          top[0] == prompt.object_ids[0]))
    return tuple(flips)


def _mean_change(lm: LanguageModel, prompts: Sequence[Prompt], neurons) -> float:
    return float(np.mean([suppression_changes(lm, p, [neurons])[0] for p in prompts])) if prompts else math.nan


def paraphrase_templates(factset: FactSet, relation: str | None, lang: str, used: Sequence[str]) -> list[str]:
    """The relation's templates in ``lang`` other than ``used``: held-out ones first, then unused train ones."""
    if relation is None or relation not in factset.relations:
        return []
    taken = {" ".join(t.split()) for t in used}
    templates = factset.relation(relation).templates_for(lang)
    ordered = [t for t in templates if t.heldout] + [t for t in templates if not t.heldout]
    return [t.text for t in ordered if " ".join(t.text.split()) not in taken]


def fact_checks(lm: LanguageModel, factset: FactSet, lang: str, relation: str | None, prompts: Sequence[Prompt],
                neurons: Sequence[Neuron]) -> Checks:
    """Top-1 flips, paraphrase transfer and the reverse probe of ``neurons`` found on ``prompts`` (one fact, one
    language; ``relation`` picks the paraphrases and the reverse template: None gives neither)."""
    neurons = [Neuron(int(n[0]), int(n[1])) for n in neurons]
    subject, obj = prompts[0].subject, prompts[0].object
    paraphrases = []
    for template in paraphrase_templates(factset, relation, lang, [p.template for p in prompts]):
        built = lm.prompts([template], subject, obj).prompts
        if built:
            paraphrases.append((template, _mean_change(lm, built, neurons)))
    reverse = REVERSE_TEMPLATES.get(relation or "", {}).get(lang)
    reverse_prompts = [] if reverse is None else list(lm.prompts([reverse], obj, subject).prompts)
    return Checks(flips=top1_flips(lm, prompts, neurons), own_change=_mean_change(lm, prompts, neurons),
                  paraphrases=tuple(paraphrases), reverse_template=reverse if reverse_prompts else None,
                  reverse_change=_mean_change(lm, reverse_prompts, neurons))


# -- the syntactic control -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntaxCase:
    """One grammatical case put through the fact pipeline: its knowledge neurons' count, their suppression
    effect on the grammatical word (relative change), the random sets' mean and sd, and whether the effect is
    beyond random (the first step of the specificity rule); p_object: P(word) unedited."""

    template: str
    subject: str
    object: str
    p_object: float
    n_neurons: int
    change: float
    random_mean: float
    random_sd: float
    beyond_random: bool


@dataclass(frozen=True)
class SyntacticControl:
    """The syntactic control of one model and language (see the module notes)."""

    lang: str
    cases: tuple[SyntaxCase, ...]

    @property
    def localised_share(self) -> float:
        """Share of grammatical cases with neurons whose suppression is beyond random."""
        return float(np.mean([c.beyond_random for c in self.cases])) if self.cases else math.nan

    @property
    def mean_change(self) -> float:
        return float(np.mean([c.change for c in self.cases])) if self.cases else math.nan

    def to_json(self) -> dict:
        return {"lang": self.lang, "localised_share": self.localised_share, "mean_change": self.mean_change,
                "cases": [vars(c) for c in self.cases]}


def syntactic_control(lm: LanguageModel, lang: str, config: AttributionConfig = AttributionConfig(),
                      tau: float | None = None, attributor: Attributor = compute, draws: int = RANDOM_DRAWS,
                      seed: int = 0, cases: int | None = None) -> SyntacticControl | None:
    """Locate the knowledge neurons of :data:`SYNTAX`'s grammatical cases in ``lang`` (the first ``cases`` of
    them; all by default) and suppress them against ``draws`` random sets; None when ``lang`` has none."""
    from kn_core.method.locate import locate  # locate imports the controls; this keeps the import one-way

    if lang not in SYNTAX:
        return None
    template, pairs = SYNTAX[lang]
    out = []
    for subject, obj in pairs[:cases]:
        built = lm.prompts([template], subject, obj).prompts
        if not built:
            log.info("syntactic case %r / %r cannot be put to %s", subject, obj, lm.name)
            continue
        result = locate(lm, [template], subject, obj, lang, config, tau=tau, seed=seed, attributor=attributor,
                        controls=ControlPrompts(None), draws=draws)
        c = result.controls
        assert c is not None  # control prompts were given, so locate measured them
        out.append(SyntaxCase(template, subject, obj, float(np.mean([a.p_object for a in result.attributions])),
                              len(result.neurons), c.own, c.random.mean, c.random.sd,
                              beyond_random(c.own, c.random.mean, c.random.sd) if result.neurons else False))
    return SyntacticControl(lang, tuple(out))


__all__ = ["REVERSE_TEMPLATES", "SYNTAX", "Checks", "Flip", "SyntacticControl", "SyntaxCase", "fact_checks",
           "paraphrase_templates", "syntactic_control", "top1_flips"]
