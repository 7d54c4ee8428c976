"""Claims of the fact-checking protocol (docs/method.md §5): each true fact with one wrong twin, and the 80 / 20 split.

- :func:`make_claims`: each true fact with one wrong twin whose object is drawn (seeded, per fact) from the
  objects of the relation's other facts.
- :func:`split`: a relation's facts 80 / 20, seeded.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from kn_core.data import Fact, FactSet
from kn_core.defaults import TRAIN_SHARE
from kn_core.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """⟨subject, relation, candidate⟩ in one language; ``is_true`` when the candidate is the fact's own object."""

    fact_id: str
    relation: str
    lang: str
    subject: str
    candidate: str
    is_true: bool


def _fact_rng(seed: int, fact_id: str) -> np.random.Generator:
    """A generator per (seed, fact), so a fact's wrong twin does not depend on which other facts are drawn."""
    return np.random.default_rng([seed, zlib.crc32(fact_id.encode("utf-8"))])


def make_claims(factset: FactSet, relation: str, lang: str, seed: int = 0,
                facts: Iterable[Fact] | None = None) -> tuple[Claim, ...]:
    """True claims and one wrong twin each, in fact order (true, wrong, true, wrong, …).

    facts: the facts to make claims of (default: every fact of ``relation`` with ``lang`` labels); the wrong
    object is drawn from the other facts' objects of the whole relation (``FactSet.wrong_objects``). A fact
    whose relation has no other object gets no claims (logged).
    """
    chosen = factset.facts_of(relation) if facts is None else tuple(facts)
    claims: list[Claim] = []
    for fact in chosen:
        if lang not in fact.labels:
            continue
        wrong = factset.wrong_objects(fact, lang)
        if not wrong:
            log.warning("%s: no other object in relation %s to make a wrong claim from; skipped", fact.id, relation)
            continue
        other = wrong[int(_fact_rng(seed, fact.id).integers(len(wrong)))]
        claims += [Claim(fact.id, relation, lang, fact.subject(lang), fact.object(lang), True),
                   Claim(fact.id, relation, lang, fact.subject(lang), other, False)]
    return tuple(claims)


def split(facts: Sequence[Fact], seed: int = 0,
          train: float = TRAIN_SHARE) -> tuple[tuple[Fact, ...], tuple[Fact, ...]]:
    """Seeded (train, test) split, each part in the input order. With two or more facts both parts get at
    least one."""
    if not 0 < train < 1:
        raise InputError("train", f"the training share must lie strictly between 0 and 1 (got {train!r})")
    n = len(facts)
    n_train = min(max(round(train * n), 1), n - 1) if n >= 2 else n
    picked = set(np.random.default_rng(seed).permutation(n)[:n_train].tolist())
    return (tuple(f for i, f in enumerate(facts) if i in picked),
            tuple(f for i, f in enumerate(facts) if i not in picked))


__all__ = ["Claim", "make_claims", "split"]
