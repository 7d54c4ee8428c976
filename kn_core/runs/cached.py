"""The one read-through attribution: a prompt's result from the store when it is there, else computed
(with progress) and stored. Every caller that keeps results (locate, batch, experiments, the app) goes
through here; the store itself only stores.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence, overload

from kn_core.attribution import Attribution, AttributionConfig, Attributor, compute
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.runs.store import ResultKey, ResultStore
from kn_core.types import Progress

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel


@overload
def attribution(store: ResultStore | None, lm: LanguageModel, prompt: Prompt, config: AttributionConfig, lang: str,
                progress: Progress | None = None, compute_missing: Literal[True] = True) -> Attribution: ...


@overload
def attribution(store: ResultStore | None, lm: LanguageModel, prompt: Prompt, config: AttributionConfig, lang: str,
                progress: Progress | None = None, compute_missing: bool = True) -> Attribution | None: ...


def attribution(store: ResultStore | None, lm: LanguageModel, prompt: Prompt, config: AttributionConfig, lang: str,
                progress: Progress | None = None, compute_missing: bool = True) -> Attribution | None:
    """The stored attribution of ``prompt``; when absent, compute and store it (``compute_missing=False``:
    None). Without a store, always computed and not kept."""
    if store is None:
        return compute(lm, prompt, config, lang, progress) if compute_missing else None
    key = ResultKey.of(lm, prompt, config, lang)
    found = store.get(key)
    if found is not None or not compute_missing:
        return found
    result = compute(lm, prompt, config, lang, progress)
    store.put(key, result)
    return result


def attributions(store: ResultStore | None, lm: LanguageModel, prompts: Sequence[Prompt],
                 config: AttributionConfig, lang: str,
                 progress: Progress | None = None, compute_missing: bool = True) -> list[Attribution | None]:
    """:func:`attribution` of each prompt; ``progress`` runs over the prompts that are computed."""
    results = [attribution(store, lm, p, config, lang, compute_missing=False) for p in prompts]
    missing = [i for i, r in enumerate(results) if r is None]
    if not compute_missing:
        return results
    for n, i in enumerate(missing):
        report = None if progress is None else (lambda f, n=n: progress((n + f) / len(missing)))
        results[i] = attribution(store, lm, prompts[i], config, lang, report)
    return results


def missing(store: ResultStore | None, lm: LanguageModel, prompts: Sequence[Prompt], config: AttributionConfig,
            lang: str) -> list[int]:
    """Indices of the prompts whose attribution is not stored (all of them without a store)."""
    if store is None:
        return list(range(len(prompts)))
    return [i for i, p in enumerate(prompts) if not store.has(ResultKey.of(lm, p, config, lang))]


def read_through(store: ResultStore | None) -> Attributor:
    """An :class:`~kn_core.attribution.Attributor` over ``store`` (plain :func:`compute` without one)."""
    if store is None:
        return compute

    def attributor(lm: LanguageModel, prompt: Prompt, config: AttributionConfig, lang: str | None,
                   progress: Progress | None = None) -> Attribution:
        if lang is None:  # an Attributor may be called without a language; the store keys every result by one
            raise InputError("lang", "a stored attribution needs the prompt's language")
        return attribution(store, lm, prompt, config, lang, progress)

    return attributor
