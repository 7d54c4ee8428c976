"""Fact-check claims: seeded wrong twins drawn from the relation, and the seeded 80 / 20 split."""
from __future__ import annotations

import pytest

from kn_core.data import Fact, FactSet, Relation, Template
from kn_core.errors import InputError
from kn_core.method.claims import make_claims, split

CAPITALS = [("Tanzania", "Dodoma"), ("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"),
            ("Peru", "Lima"), ("Argentina", "Buenos Aires"), ("India", "New Delhi")]
CONTINENTS = [("Tanzania", "Africa"), ("Kenya", "Africa"), ("France", "Europe"), ("Japan", "Asia")]


def tiny_factset() -> FactSet:
    """English-only facts whose objects the tiny models' vocabulary knows (two of them multi-token)."""
    relations = {
        "P36": Relation("P36", "capital", "", (Template("P36", "en", "The capital of [X] is [Y].", False),
                                               Template("P36", "en", "The capital city of [X] is [Y].", False))),
        "P30": Relation("P30", "continent", "", (Template("P30", "en", "[X] is in [Y].", False),)),
    }
    facts = [Fact(f"{rid}-{s.lower()}", rid, {"en": (s, o)})
             for rid, rows in (("P36", CAPITALS), ("P30", CONTINENTS)) for s, o in rows]
    return FactSet(relations, facts)


def test_make_claims_seeded_and_from_the_relation():
    factset = tiny_factset()
    claims = make_claims(factset, "P36", "en", seed=3)
    assert claims == make_claims(factset, "P36", "en", seed=3)
    assert len(claims) == 2 * len(CAPITALS)
    objects = {o for _, o in CAPITALS}
    for true, wrong in zip(claims[::2], claims[1::2]):
        assert true.is_true and not wrong.is_true
        assert (true.fact_id, true.subject) == (wrong.fact_id, wrong.subject)
        assert wrong.candidate != true.candidate and wrong.candidate in objects
    seeds = {tuple(c.candidate for c in make_claims(factset, "P36", "en", seed=s)[1::2]) for s in range(8)}
    assert len(seeds) > 1, "different seeds must draw different wrong objects"
    subset = factset.facts_of("P36")[2:4]  # a fact's wrong twin does not depend on the other facts drawn
    assert make_claims(factset, "P36", "en", 3, subset) == claims[4:8]
    for wrong in make_claims(factset, "P30", "en", seed=1)[1::2]:  # repeated objects are never the true one
        assert wrong.candidate != factset.fact(wrong.fact_id).object("en")


def test_split_is_seeded_and_partitions():
    facts = tiny_factset().facts_of("P36")
    train, test = split(facts, seed=5)
    assert (train, test) == split(facts, seed=5)
    assert len(train) == round(0.8 * len(facts)) and len(test) == len(facts) - len(train)
    assert set(train) | set(test) == set(facts) and not set(train) & set(test)
    assert split(facts[:2], seed=0)[1], "with two facts both parts get one"
    with pytest.raises(InputError):
        split(facts, train=1.0)


def test_the_protocol_module_still_exports_them():
    from kn_core.method import factcheck

    assert factcheck.make_claims is make_claims and factcheck.split is split
