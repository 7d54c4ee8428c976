"""Locate a fact's knowledge neurons: attribute every prompt, select, refine, verify (docs/method.md §1–2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from kn_core.attribution import Attribution, AttributionConfig, Attributor, compute
from kn_core.data.prompts import Prompt
from kn_core.data.records import validate_lang
from kn_core.errors import InputError
from kn_core.defaults import RANDOM_DRAWS
from kn_core.method.controls import ControlPrompts, Controls, measure
from kn_core.method.interventions import Verification, verify
from kn_core.method.neurons import (
    DEFAULT_P,
    ScoredNeuron,
    check_p,
    check_tau,
    coarse_neurons,
    default_tau,
    knowledge_neurons,
)
from kn_core.types import Progress

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

MAX_TEMPLATES = 50


@dataclass(frozen=True)
class LocateResult:
    """Knowledge neurons of one fact in one language.

    attributions: one per prompt (template). coarse: per prompt, neurons above τ·max, best first.
    neurons: the refined knowledge neurons (coarse in more than a fraction p of prompts), scored by mean
    attribution. suppress / enhance: their verification with the random-neuron and unrelated-fact controls.
    controls: the suppression controls and specificity verdict (:mod:`~kn_core.method.controls`); None when
    no control prompts were given.
    """

    lang: str
    tau: float
    p: float
    attributions: tuple[Attribution, ...]
    coarse: tuple[tuple[ScoredNeuron, ...], ...]
    neurons: tuple[ScoredNeuron, ...]
    suppress: Verification
    enhance: Verification
    controls: Controls | None = None

    @property
    def prompts(self) -> tuple[Prompt, ...]:
        return tuple(a.prompt for a in self.attributions)


def build_prompts(lm: LanguageModel, templates: Sequence[str], subject: str, obj: str) -> list[Prompt]:
    """Prompts for every template, validated before any compute."""
    if isinstance(templates, str):
        templates = [templates]
    if not templates:
        raise InputError("template", "give at least one template with [X] and [Y]")
    if len(templates) > MAX_TEMPLATES:
        raise InputError("template", f"{len(templates)} templates given; the limit is {MAX_TEMPLATES}")
    return [lm.prompt(t, subject, obj) for t in templates]


def locate(lm: LanguageModel, templates: Sequence[str], subject: str, obj: str, lang: str,
           config: AttributionConfig = AttributionConfig(), tau: float | None = None, p: float = DEFAULT_P,
           unrelated: Sequence[Prompt] = (), seed: int = 0,
           progress: Progress | None = None, attributor: Attributor = compute,
           controls: ControlPrompts | None = None, draws: int = RANDOM_DRAWS) -> LocateResult:
    """Attribute the fact ⟨subject, ·, obj⟩ under each template and return its knowledge neurons.

    ``attributor`` supplies each prompt's attribution: :func:`~kn_core.attribution.compute` (the default)
    computes it and keeps nothing; ``kn_core.runs.cached.read_through(store)`` reads the store first.
    controls: the fact's control prompts (:func:`~kn_core.method.controls.control_prompts`); with them the result
    carries the four suppression effects and the specificity verdict (``draws`` random sets, ``seed``).
    """
    lang = validate_lang("lang", lang)
    tau = default_tau(lang) if tau is None else check_tau(tau)
    p = check_p(p)
    prompts = build_prompts(lm, templates, subject, obj)
    attributions = []
    for i, prompt in enumerate(prompts):
        report = None if progress is None else (lambda f, i=i: progress((i + f) / len(prompts)))
        attributions.append(attributor(lm, prompt, config, lang, report))
    coarse = tuple(tuple(coarse_neurons(a.scores, tau)) for a in attributions)
    neurons = tuple(knowledge_neurons([a.scores for a in attributions], tau, p))
    chosen = [n.neuron for n in neurons]
    return LocateResult(lang=lang, tau=tau, p=p, attributions=tuple(attributions), coarse=coarse, neurons=neurons,
                        suppress=verify(lm, prompts, chosen, "suppress", unrelated, seed),
                        enhance=verify(lm, prompts, chosen, "enhance", unrelated, seed),
                        controls=None if controls is None else measure(lm, prompts, chosen, controls, draws, seed))
