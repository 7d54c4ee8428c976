"""Top-1 object accuracy of a model on a fact set (what ``python -m kn_core accuracy`` reports).

A prompt counts as right when *every* object token is the model's top-1 prediction at its target position:
the argmax at each mask (masked LM), or the argmax at each position before an object token with the gold
prefix teacher-forced (causal LM) — the same prompts and target positions as the attribution uses.
Prompts are grouped by length and run in batches, so no padding is needed and each row computes exactly
what a single forward pass would.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from kn_core.data import FactSet
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.model.hooks import run

log = logging.getLogger(__name__)

MAX_LOGITS = 2 ** 26  # elements of one batch's logits (256 MiB as fp32): caps the batch for large vocabularies
from kn_core.types import Progress  # noqa: E402

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel


@dataclass(frozen=True)
class AccuracyResult:
    """How many of a language's prompts the model completes right.

    ``n`` counts the prompts asked (every fact × template of the chosen split); ``skipped`` the ones that
    could not be built for this model and are left out of ``n`` (an object the tokenizer cannot spell,
    a prompt longer than the context, [Y] before the end of the template for a causal LM).
    """

    model: str
    lang: str
    heldout: bool
    correct: int
    n: int
    skipped: int = 0

    @property
    def accuracy(self) -> float | None:
        """correct / n, or None when there were no prompts."""
        return self.correct / self.n if self.n else None

    @property
    def split(self) -> str:
        return "held-out" if self.heldout else "train"


def fact_prompts(lm: LanguageModel, factset: FactSet, lang: str, heldout: bool) -> tuple[list[Prompt], int]:
    """The prompts of every fact with a ``lang`` label × its relation's templates of the split, and how
    many could not be built (skipped)."""
    if lang not in factset.languages:
        raise InputError("lang", f"the data set has no {lang!r} templates; it has {', '.join(factset.languages)}")
    prompts: list[Prompt] = []
    skipped = 0
    for fact in factset.facts:
        if lang not in fact.labels:
            continue
        for template in factset.relation(fact.relation).templates_for(lang, heldout=heldout):
            built = lm.prompts([template.text], fact.subject(lang), fact.object(lang))
            prompts.extend(built.prompts)
            skipped += len(built.problems)
    return prompts, skipped


def _groups(prompts: Sequence[Prompt], batch_size: int, vocab: int) -> list[list[int]]:
    """Indices of ``prompts`` in batches of equal length, at most ``batch_size`` and MAX_LOGITS each."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, prompt in enumerate(prompts):
        by_length[len(prompt.input_ids)].append(i)
    batches = []
    for length, members in sorted(by_length.items()):
        size = max(1, min(batch_size, MAX_LOGITS // max(1, length * vocab)))
        batches += [members[start:start + size] for start in range(0, len(members), size)]
    return batches


def correct_flags(lm: LanguageModel, prompts: Sequence[Prompt], batch_size: int = 128,
                  progress: Progress | None = None) -> list[bool]:
    """For each prompt: is every object token the top-1 prediction at its target position?"""
    flags = [False] * len(prompts)
    batches = _groups(prompts, batch_size, int(lm.config.vocab_size))
    for done, members in enumerate(batches, start=1):
        ids = torch.tensor([prompts[i].input_ids for i in members], device=lm.device)
        with lm.lock, torch.inference_mode():
            predicted = run(lm, ids).argmax(dim=-1).cpu()
        for row, i in enumerate(members):
            prompt = prompts[i]
            flags[i] = predicted[row, list(prompt.target_positions)].tolist() == list(prompt.object_ids)
        if progress is not None:
            progress(done / len(batches))
    return flags


def object_accuracy(lm: LanguageModel, factset: FactSet, lang: str, heldout: bool, batch_size: int = 128,
                    progress: Progress | None = None) -> AccuracyResult:
    """Top-1 object accuracy of ``lm`` over all facts × the train (or held-out) templates in ``lang``."""
    prompts, skipped = fact_prompts(lm, factset, lang, heldout)
    if skipped:
        log.warning("%d %s prompt(s) could not be built for %s and are left out", skipped, lang, lm.name)
    correct = sum(correct_flags(lm, prompts, batch_size, progress))
    return AccuracyResult(model=lm.name, lang=lang, heldout=heldout, correct=correct, n=len(prompts),
                          skipped=skipped)
