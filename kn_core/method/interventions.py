"""Interventions on neurons at the target positions (docs/method.md §2): suppress (×0) and enhance (×2).

:func:`scaled` is a context manager (hooks removed in ``finally``); :func:`object_probs` evaluates several
neuron sets in one batched forward pass, row r with its own set.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import torch

from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.method.neurons import Neuron
from kn_core.model.hooks import edited, gold_probs, run

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

FACTORS = {"suppress": 0.0, "enhance": 2.0}


def _multipliers(lm: LanguageModel, neuron_sets: Sequence[Iterable[Neuron]], factor: float) -> dict[int, torch.Tensor]:
    """Per layer, a [n_sets, d_ff] multiplier that is ``factor`` on each set's neurons and 1 elsewhere."""
    out: dict[int, torch.Tensor] = {}
    for row, neurons in enumerate(neuron_sets):
        for layer, index in neurons:
            mult = out.setdefault(int(layer), torch.ones(len(neuron_sets), lm.d_ff, device=lm.device))
            mult[row, int(index)] = factor
    return out


@contextmanager
def scaled(lm: LanguageModel, neuron_sets: Sequence[Iterable[Neuron]], factor: float,
           positions: Sequence[int]) -> Iterator[None]:
    """Multiply the listed neurons by ``factor`` at ``positions``; batch row r uses ``neuron_sets[r]``."""
    pos = torch.as_tensor(list(positions), device=lm.device)

    def edit(mult: torch.Tensor):
        def fn(act: torch.Tensor) -> torch.Tensor:
            act = act.clone()
            act[:, pos, :] = act[:, pos, :] * mult[:, None, :].to(act.dtype)
            return act
        return fn

    with edited(lm, {layer: edit(mult) for layer, mult in _multipliers(lm, neuron_sets, factor).items()}):
        yield


def object_probs(lm: LanguageModel, prompt: Prompt, neuron_sets: Sequence[Iterable[Neuron]],
                 factor: float) -> np.ndarray:
    """Joint P(object) with each neuron set scaled by ``factor``: float [len(neuron_sets)], one forward pass."""
    sets = [list(s) for s in neuron_sets]
    if not sets:
        return np.zeros(0, dtype=np.float64)
    ids = torch.tensor(prompt.input_ids, device=lm.device)[None].expand(len(sets), -1)
    with torch.inference_mode(), scaled(lm, sets, factor, prompt.target_positions):
        probs = gold_probs(run(lm, ids), prompt.target_positions, prompt.object_ids)
    return probs.prod(dim=-1).double().cpu().numpy()


@dataclass(frozen=True)
class Effect:
    """P(object) before and after an intervention; ``relative`` = (after − before) / before."""

    mode: str
    before: float
    after: float

    @property
    def relative(self) -> float:
        return (self.after - self.before) / self.before if self.before > 0 else 0.0


def effect(lm: LanguageModel, prompt: Prompt, neurons: Iterable[Neuron], mode: str = "suppress") -> Effect:
    """Effect of suppressing or enhancing ``neurons`` on the prompt's own object probability."""
    if mode not in FACTORS:
        raise InputError("mode", f"unknown intervention {mode!r}; choose one of {', '.join(FACTORS)}")
    before, after = object_probs(lm, prompt, [[], list(neurons)], FACTORS[mode])
    return Effect(mode, float(before), float(after))


def random_like(neurons: Sequence[Neuron], d_ff: int, seed: int) -> list[Neuron]:
    """As many random neurons per layer as ``neurons`` has there, avoiding them (the random control)."""
    rng = np.random.default_rng(seed)
    taken = {(int(layer), int(index)) for layer, index in neurons}
    out: list[Neuron] = []
    for layer in sorted({layer for layer, _ in taken}):
        need = sum(1 for lay, _ in taken if lay == layer)
        free = np.setdiff1d(np.arange(d_ff), [index for lay, index in taken if lay == layer])
        out += [Neuron(layer, int(i)) for i in rng.choice(free, size=min(need, free.size), replace=False)]
    return out


@dataclass(frozen=True)
class Verification:
    """Mean relative change of P(object) when the knowledge neurons are edited, with controls.

    own: the fact's own prompts; random: same prompts, as many random neurons in the same layers;
    unrelated: other facts' prompts with the knowledge neurons edited (NaN when none were given).
    """

    mode: str
    own: float
    random: float
    unrelated: float


def verify(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[Neuron], mode: str = "suppress",
           unrelated: Sequence[Prompt] = (), seed: int = 0) -> Verification:
    """Edit ``neurons`` on the fact's prompts and on the controls; report mean relative changes.

    One batched forward pass per prompt: unedited, knowledge neurons edited, random neurons edited."""
    if mode not in FACTORS:
        raise InputError("mode", f"unknown intervention {mode!r}; choose one of {', '.join(FACTORS)}")
    neurons = [Neuron(int(n[0]), int(n[1])) for n in neurons]
    control = random_like(neurons, lm.d_ff, seed)

    def mean_changes(prompts: Sequence[Prompt], sets: Sequence[Sequence[Neuron]]) -> list[float]:
        if not prompts:
            return [float("nan")] * len(sets)
        changes = []
        for prompt in prompts:
            before, *after = object_probs(lm, prompt, [[], *sets], FACTORS[mode])
            changes.append([(a - before) / before if before > 0 else 0.0 for a in after])
        return [float(x) for x in np.mean(changes, axis=0)]

    own, random = mean_changes(prompts, [neurons, control])
    (unrelated_change,) = mean_changes(unrelated, [neurons])
    return Verification(mode, own, random, unrelated_change)
