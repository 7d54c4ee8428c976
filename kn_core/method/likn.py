"""Language-independent knowledge neurons (docs/method.md §3): set overlap and cross-lingual editing.

LIKN of a fact = refined KN(lang a) ∩ refined KN(lang b), exact ``(layer, index)`` matches. Editing the shared
neurons should move the fact's probability in *both* languages; editing one language's own neurons is the
comparison. Three or more languages: :mod:`kn_core.method.languages` (overlap matrix, neurons shared by k of N)
and :mod:`kn_core.method.language_suppression` (the cross-language suppression matrix); with two languages they
give the numbers of this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from kn_core.data import Fact, FactSet
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.method.interventions import FACTORS, object_probs
from kn_core.method.neurons import Neuron, per_layer_counts

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

NO_PROMPTS: Mapping[str, Sequence[Prompt]] = MappingProxyType({})
EDIT_COLUMNS = ("edited_set", "n_neurons", "measured_lang", "target", "mode", "n_prompts", "relative_change")


@dataclass(frozen=True)
class Overlap:
    """Overlap of two neuron sets (e.g. a fact's English and Chinese knowledge neurons).

    shared, only_a, only_b: sorted tuples of ``(layer, index)``; ``shared`` is the LIKN set.
    jaccard: |shared| / |a ∪ b| (0.0 when both sets are empty).
    per_layer_a, per_layer_b, per_layer_shared: int tuples of length n_layers — neurons of a, of b and
        shared ones in each layer.
    """

    shared: tuple[Neuron, ...]
    only_a: tuple[Neuron, ...]
    only_b: tuple[Neuron, ...]
    jaccard: float
    per_layer_a: tuple[int, ...]
    per_layer_b: tuple[int, ...]
    per_layer_shared: tuple[int, ...]


def neuron_set(neurons: Iterable[Sequence], n_layers: int) -> set[Neuron]:
    """``(layer, index[, score])`` items as a set of ``(layer, index)``, layers checked against n_layers."""
    out = {Neuron(int(n[0]), int(n[1])) for n in neurons}
    bad = sorted(layer for layer, _ in out if not 0 <= layer < n_layers)
    if bad:
        raise InputError("layers", f"neuron layer {bad[0]} lies outside 0..{n_layers - 1}")
    return out


def overlap(a: Iterable[Sequence], b: Iterable[Sequence], n_layers: int) -> Overlap:
    """Shared and exclusive neurons of ``a`` and ``b`` (items ``(layer, index)`` or ``(layer, index, score)``)."""
    set_a, set_b = neuron_set(a, n_layers), neuron_set(b, n_layers)
    shared, union = set_a & set_b, set_a | set_b
    counts = [tuple(int(c) for c in per_layer_counts(s, n_layers)) for s in (set_a, set_b, shared)]
    return Overlap(shared=tuple(sorted(shared)), only_a=tuple(sorted(set_a - set_b)),
                   only_b=tuple(sorted(set_b - set_a)), jaccard=len(shared) / len(union) if union else 0.0,
                   per_layer_a=counts[0], per_layer_b=counts[1], per_layer_shared=counts[2])


def edit_sets(a: Iterable[Sequence], b: Iterable[Sequence], lang_a: str, lang_b: str,
              n_layers: int) -> dict[str, tuple[Neuron, ...]]:
    """The neuron sets the cross-lingual edit compares: the shared (LIKN) set, each language's whole KN set
    and each language's exclusive part. Keys: ``"shared"``, ``"<a> KN"``, ``"<b> KN"``, ``"<a>-only KN"``,
    ``"<b>-only KN"``."""
    result = overlap(a, b, n_layers)
    return {"shared": result.shared,
            f"{lang_a} KN": tuple(sorted(result.shared + result.only_a)),
            f"{lang_b} KN": tuple(sorted(result.shared + result.only_b)),
            f"{lang_a}-only KN": result.only_a, f"{lang_b}-only KN": result.only_b}


def _relative_changes(lm: LanguageModel, prompt: Prompt, sets: Sequence[Sequence[Neuron]], factor: float) -> np.ndarray:
    """(P_after − P_before) / P_before for each set on one prompt (one batched forward pass); 0 when P_before = 0."""
    probs = object_probs(lm, prompt, [[], *sets], factor)
    before, after = probs[0], probs[1:]
    return (after - before) / before if before > 0 else np.zeros(len(sets))


def cross_lingual_edit(lm: LanguageModel, prompts: Mapping[str, Sequence[Prompt]], neuron_sets: Mapping[str,
                       Sequence[Sequence]],
                       mode: str, unrelated: Mapping[str, Sequence[Prompt]] = NO_PROMPTS) -> pd.DataFrame:
    """Edit each neuron set and measure the relative change of P(object) on every language's prompts.

    prompts: language -> the fact's prompts in that language (target ``"own"``).
    neuron_sets: name -> neurons, e.g. :func:`edit_sets`' output; an empty set changes nothing (0.0).
    mode: ``"suppress"`` (×0) or ``"enhance"`` (×2).
    unrelated: language -> other facts' prompts, the control (target ``"unrelated"``).

    Returns a tidy frame with one row per (edited_set, measured_lang, target): columns
    ``edited_set, n_neurons, measured_lang, target, mode, n_prompts, relative_change`` (the mean over prompts;
    NaN when a language has no prompts). One forward pass per prompt serves every set.
    """
    if mode not in FACTORS:
        raise InputError("mode", f"unknown intervention {mode!r}; choose one of {', '.join(FACTORS)}")
    names = list(neuron_sets)
    sets = [sorted({Neuron(int(n[0]), int(n[1])) for n in neuron_sets[name]}) for name in names]
    rows = []
    for target, groups in (("own", prompts), ("unrelated", unrelated)):
        for lang, lang_prompts in groups.items():
            changes = np.array([_relative_changes(lm, p, sets, FACTORS[mode]) for p in lang_prompts])
            changes = changes.reshape(-1, len(sets))
            means = changes.mean(axis=0) if len(changes) else np.full(len(sets), np.nan)
            rows += [(name, len(chosen), lang, target, mode, len(changes), float(mean))
                     for name, chosen, mean in zip(names, sets, means)]
    return pd.DataFrame(rows, columns=list(EDIT_COLUMNS))


def language_prompts(lm: LanguageModel, factset: FactSet, fact: Fact, langs: Sequence[str]) -> dict[str, list[Prompt]]:
    """The fact's prompts in each of ``langs``, under its relation's templates in that language; a language whose
    labels or templates the model cannot read gets an empty list (the caller says so and leaves it out)."""
    relation = factset.relations[fact.relation]
    return {lang: list(lm.prompts([t.text for t in relation.templates_for(lang)], fact.subject(lang),
                                  fact.object(lang)).prompts) for lang in langs}


def edit_control(lm: LanguageModel, factset: FactSet, fact: Fact,
                 langs: Sequence[str]) -> tuple[Fact | None, dict[str, list[Prompt]]]:
    """The cross-lingual edit's unrelated control (:func:`cross_lingual_edit`'s ``unrelated``): the first other
    fact of the relation labelled in every one of ``langs``, and its prompt under the relation's first template
    in each language; (None, {}) when the relation has no such fact."""
    relation = factset.relations[fact.relation]
    control = next((f for f in factset.facts_of(fact.relation)
                    if f.id != fact.id and all(lang in f.labels for lang in langs)), None)
    if control is None:
        return None, {}
    return control, {lang: list(lm.prompts([relation.templates_for(lang)[0].text], control.subject(lang),
                                           control.object(lang)).prompts) for lang in langs}


def edit_view(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`cross_lingual_edit`'s tidy table as one row per edited set and one column per ``"<target> prompts,
    <language>"`` (the mean relative change of P(object))."""
    view = table.pivot_table(index="edited_set", columns=["target", "measured_lang"], values="relative_change",
                             sort=False)
    view.columns = [f"{target} prompts, {lang}" for target, lang in view.columns]
    return view
