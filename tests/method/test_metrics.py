"""Fact-check metrics: confusion counts against hand-computed values (both P / R conventions), no metric
without a claim, and the choice of λ."""
from __future__ import annotations

import math

import pytest

from kn_core.errors import InputError
from kn_core.method.metrics import METRICS, Confusion, choose_threshold


def test_metrics_by_hand():
    c = Confusion(tp=3, fp=1, fn=2, tn=4)
    assert c.n == 10
    assert c.precision == pytest.approx(3 / 4)
    assert c.recall == pytest.approx(3 / 5)
    assert c.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert c.authors_precision == pytest.approx(3 / 5)  # the authors' P is our recall
    assert c.authors_recall == pytest.approx(3 / 4)  # and their R our precision
    assert c.accept_true == pytest.approx(3 / 5)
    assert c.accept_wrong == pytest.approx(1 / 5)
    assert c.balanced_accuracy == pytest.approx((0.6 + 0.8) / 2)
    assert c.metrics()["F1"] == pytest.approx(c.f1) and set(c.metrics()) == set(METRICS)


def test_metrics_of_the_published_wo_dkn_shape():
    # a judge that accepts few claims but is nearly always right when it does: high precision, low recall;
    # in the authors' convention that reads as a low "P" and a high "R", as in their wo_DKN rows
    c = Confusion(tp=22, fp=1, fn=78, tn=99)
    assert (c.precision, c.recall) == pytest.approx((22 / 23, 0.22))
    assert (c.authors_precision, c.authors_recall) == pytest.approx((0.22, 22 / 23))
    assert c.f1 == pytest.approx(2 * (22 / 23) * 0.22 / (22 / 23 + 0.22))


def test_zero_denominators_and_counting():
    none_accepted = Confusion(tp=0, fp=0, fn=5, tn=5)
    assert none_accepted.precision == none_accepted.recall == none_accepted.f1 == 0.0
    assert none_accepted.accept_wrong == 0.0 and none_accepted.balanced_accuracy == 0.5
    all_accepted = Confusion(tp=5, fp=5, fn=0, tn=0)
    assert all_accepted.f1 == pytest.approx(2 / 3) and all_accepted.accept_wrong == 1.0
    assert Confusion.of([True, True, False, False, True], [True, False, True, False, True]) == Confusion(2, 1, 1, 1)
    assert Confusion(1, 2, 3, 4) + Confusion(1, 1, 1, 1) == Confusion(2, 3, 4, 5)


def test_no_claim_has_no_metric():
    """Claims without a verdict are in no cell: a confusion of no claim measures nothing (NaN, not 0)."""
    empty = Confusion(0, 0, 0, 0)
    assert empty.n == 0 and all(math.isnan(v) for v in empty.metrics().values())
    assert Confusion.of([], []) == empty


def test_choose_threshold():
    truth = [True, True, False, False]
    assert choose_threshold([0.9, 0.8, 0.3, 0.1], truth) == pytest.approx(0.55)  # halfway, perfect split
    assert choose_threshold([0.9, 0.8, 0.3, 0.1], truth, "balanced_accuracy") == pytest.approx(0.55)
    assert choose_threshold([0.2, 0.2, 0.2, 0.2], truth) == pytest.approx(0.2)  # uninformative: accept all
    # accept-all and "accept only 0.9" both have F1 2/3; balanced accuracy breaks the tie (0.75 against 0.5)
    assert choose_threshold([0.1, 0.9, 0.5, 0.2], truth) == pytest.approx(0.7)
    with pytest.raises(InputError):
        choose_threshold([], [])
    with pytest.raises(InputError):
        choose_threshold([0.1], [True], "accuracy")
