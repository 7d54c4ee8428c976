"""LIKN for N languages: the matrices on constructed sets with known answers, N = 2 against the two-language
functions, and the suppression matrix on tiny models with three languages."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kn_core.errors import InputError
from kn_core.method.controls import suppression_changes
from kn_core.method.interventions import effect
from kn_core.method.language_suppression import suppression_matrix
from kn_core.method.languages import (
    baseline_matrix,
    check_langs,
    depth_counts,
    edit_sets_n,
    jaccard,
    overlap_matrix,
    pair_ranking,
    shared_by,
)
from kn_core.method.likn import cross_lingual_edit, edit_sets, overlap

THREE = {"en": [(0, 1), (1, 4), (2, 2)], "zh": [(1, 4), (2, 2), (2, 9)], "fr": [(1, 4), (0, 5)]}


def random_sets(rng: np.random.Generator, n_langs: int, n_layers: int = 3, d_ff: int = 6) -> dict:
    return {f"l{i}": [(int(a), int(j)) for a, j in zip(rng.integers(0, n_layers, 5), rng.integers(0, d_ff, 5))]
            for i in range(n_langs)}


def test_three_languages_by_hand():
    matrix = overlap_matrix(THREE, n_layers=3)
    assert matrix.langs == ("en", "zh", "fr")
    assert list(matrix.sizes) == [3, 3, 2]
    assert matrix.jaccard[0, 1] == pytest.approx(2 / 4) and matrix.jaccard[0, 2] == pytest.approx(1 / 4)
    assert matrix.jaccard[1, 2] == pytest.approx(1 / 4) and matrix.shared[0, 1] == 2
    assert matrix.pairs() == [("en", "zh", 0.5), ("en", "fr", 0.25), ("zh", "fr", 0.25)]
    assert matrix.mean_pairwise() == pytest.approx(1 / 3)
    everyone = shared_by(THREE, 3, n_layers=3)
    assert everyone.neurons == ((1, 4),) and everyone.languages == (("en", "zh", "fr"),)
    two = shared_by(THREE, 2, n_layers=3)
    assert two.neurons == ((1, 4), (2, 2)) and two.languages[1] == ("en", "zh") and two.per_layer == (0, 1, 1)
    assert two.by_k == (5, 2, 1)
    assert two.rows()[1] == {"layer": 2, "neuron": 2, "languages": 2, "in": "en, zh"}
    assert depth_counts(THREE, 3) == {"en": (1, 1, 1), "zh": (0, 1, 2), "fr": (1, 1, 0)}
    sets = edit_sets_n(THREE, 3)
    assert sets["shared"] == ((1, 4),) and sets["en-only KN"] == ((0, 1),) and sets["zh-only KN"] == ((2, 9),)
    assert sets["fr-only KN"] == ((0, 5),) and sets["fr KN"] == ((0, 5), (1, 4))


@pytest.mark.parametrize("seed", range(20))
def test_overlap_matrix_is_symmetric_with_ones_on_the_diagonal(seed):
    rng = np.random.default_rng(seed)
    sets = random_sets(rng, int(rng.integers(2, 7)))
    sets["empty"] = []
    matrix = overlap_matrix(sets, n_layers=3)
    np.testing.assert_array_equal(matrix.jaccard, matrix.jaccard.T)
    diagonal = np.diag(matrix.jaccard)
    assert all(d == 1.0 for d, lang in zip(diagonal, matrix.langs) if lang != "empty")
    assert diagonal[-1] == 0.0 and (matrix.jaccard[-1] == 0.0).all()
    assert ((0 <= matrix.jaccard) & (matrix.jaccard <= 1)).all()
    with pytest.raises(ValueError):
        matrix.jaccard[0, 0] = 0.5  # read-only


@pytest.mark.parametrize("seed", range(20))
def test_shared_by_k_is_monotone_in_k(seed):
    rng = np.random.default_rng(100 + seed)
    sets = random_sets(rng, int(rng.integers(2, 7)))
    n = len(sets)
    found = [shared_by(sets, k, n_layers=3) for k in range(1, n + 1)]
    for smaller, larger in zip(found, found[1:]):
        assert set(larger.neurons) <= set(smaller.neurons)
    assert [len(f.neurons) for f in found] == list(found[0].by_k)
    assert set(found[0].neurons) == {(a, i) for s in sets.values() for a, i in s}  # k = 1: the union
    assert set(found[-1].neurons) == set.intersection(*({tuple(x) for x in s} for s in sets.values()))
    assert all(len(which) >= f.k for f in found for which in f.languages)
    assert sum(found[-1].per_layer) == len(found[-1].neurons)


@pytest.mark.parametrize("seed", range(10))
def test_two_languages_give_the_two_language_numbers(seed):
    rng = np.random.default_rng(200 + seed)
    sets = random_sets(rng, 2)
    a, b = sets.values()
    old = overlap(a, b, n_layers=3)
    matrix = overlap_matrix(sets, n_layers=3)
    assert matrix.jaccard[0, 1] == old.jaccard and matrix.mean_pairwise() == old.jaccard
    assert matrix.shared[0, 1] == len(old.shared)
    shared = shared_by(sets, 2, n_layers=3)
    assert shared.neurons == old.shared and shared.per_layer == old.per_layer_shared
    assert depth_counts(sets, 3) == {"l0": old.per_layer_a, "l1": old.per_layer_b}
    assert edit_sets_n(sets, 3) == edit_sets(a, b, "l0", "l1", 3)
    assert list(edit_sets_n(sets, 3)) == list(edit_sets(a, b, "l0", "l1", 3))  # the same order too
    peer = random_sets(rng, 2)
    base = baseline_matrix(sets, [peer], n_layers=3)
    assert base[0, 1] == overlap(a, peer["l1"], 3).jaccard  # the experiment's jaccard_same_relation


def test_baseline_matrix_averages_other_facts_that_have_the_language():
    others = [{"en": [(0, 1)], "zh": [(2, 9)]}, {"en": [(0, 1), (1, 4)]}]
    base = baseline_matrix(THREE, others, n_layers=3)
    assert base[0, 0] == pytest.approx(np.mean([jaccard(THREE["en"], o["en"]) for o in others]))
    assert base[1, 0] == pytest.approx(np.mean([jaccard(THREE["zh"], o["en"]) for o in others]))
    assert base[0, 1] == pytest.approx(jaccard(THREE["en"], [(2, 9)]))  # one other fact has zh
    assert np.isnan(base[:, 2]).all()  # no other fact has fr
    assert np.isnan(baseline_matrix(THREE, [], n_layers=3)).all()


def test_bad_inputs_name_the_valid_ones():
    with pytest.raises(InputError, match="from 1 to 3"):
        shared_by(THREE, 4, n_layers=3)
    with pytest.raises(InputError, match="from 1 to 3"):
        shared_by(THREE, 0, n_layers=3)
    with pytest.raises(InputError, match="outside 0..1"):
        overlap_matrix(THREE, n_layers=2)
    with pytest.raises(InputError, match="at least 2"):
        check_langs(["en"])
    with pytest.raises(InputError, match="each language once"):
        check_langs(["en", "en"])


def test_pair_ranking_per_relation():
    pairs = pd.DataFrame([("P36", "en", "zh", 0.5), ("P36", "en", "zh", 0.3), ("P36", "en", "fr", 0.6),
                          ("P36", "zh", "fr", float("nan")), ("P30", "en", "zh", 0.1), ("P30", "en", "fr", 0.1)],
                         columns=["relation", "lang_a", "lang_b", "jaccard"])
    table = pair_ranking(pairs)
    assert list(table.columns) == ["relation", "lang_a", "lang_b", "jaccard", "facts", "rank"]
    p36 = table[table["relation"] == "P36"]
    assert list(zip(p36["lang_a"], p36["lang_b"])) == [("en", "fr"), ("en", "zh")]
    assert list(p36["facts"]) == [1, 2] and p36["jaccard"].iloc[1] == pytest.approx(0.4)
    assert list(table[table["relation"] == "P30"]["rank"]) == [1, 1]  # a tie
    assert table["relation"].iloc[0] == "P36"  # relations in first-seen order
    assert pair_ranking(pairs.iloc[3:4]).empty


# -- on tiny models, three "languages" -----------------------------------------------------------------
def three_languages(lm) -> dict:
    """The same fact in English, Chinese and a third language whose prompts reuse words the tiny vocabulary has."""
    return {"en": [lm.prompt("The capital of [X] is [Y].", "France", "Paris")],
            "zh": [lm.prompt("[X]的首都是[Y]。", "法国", "巴黎")],
            "xx": [lm.prompt("The capital city of [X] is [Y].", "France", "Paris"),
                   lm.prompt("[X] capital city is [Y].", "France", "Paris")]}


def test_suppression_matrix_diagonal_is_the_own_effect(lm):
    prompts = three_languages(lm)
    last = lm.n_layers - 1
    sets = {"en": [(0, 1), (last, 4)], "zh": [(last, 4), (1, 2)], "xx": [(0, 3)]}
    matrix = suppression_matrix(lm, prompts, sets, draws=5, seed=3)
    assert matrix.change.shape == (3, 3) and matrix.draws == 5 and list(matrix.n_prompts) == [1, 1, 2]
    for i, lang in enumerate(matrix.langs):
        own = np.mean([effect(lm, p, sets[lang], "suppress").relative for p in prompts[lang]])
        assert matrix.own()[lang] == pytest.approx(own, rel=1e-4, abs=1e-6)
        for j, measured in enumerate(matrix.langs):  # every cell is a single-set effect
            expected = np.mean([suppression_changes(lm, p, [sets[lang]])[0] for p in prompts[measured]])
            assert matrix.change[i, j] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert np.isfinite(matrix.random_mean).all() and (matrix.random_sd >= 0).all()
    assert ((0 <= matrix.random_rank) & (matrix.random_rank <= 1)).all()
    assert len(matrix.rows()) == 9 and matrix.rows()[1]["suppressed"] == "en" and matrix.rows()[1]["measured"] == "zh"
    again = suppression_matrix(lm, prompts, sets, draws=5, seed=3)
    np.testing.assert_array_equal(again.random_mean, matrix.random_mean)  # seeded


def test_suppression_matrix_of_two_languages_is_the_cross_lingual_edit(lm):
    prompts = {lang: ps for lang, ps in three_languages(lm).items() if lang != "xx"}
    sets = {"en": [(0, 1), (1, 5)], "zh": [(1, 5), (2, 2)]}
    matrix = suppression_matrix(lm, prompts, sets, draws=2)
    table = cross_lingual_edit(lm, prompts, {f"{lang} KN": s for lang, s in sets.items()}, "suppress")
    for i, a in enumerate(matrix.langs):
        for j, b in enumerate(matrix.langs):
            row = table[(table["edited_set"] == f"{a} KN") & (table["measured_lang"] == b)]
            assert matrix.change[i, j] == pytest.approx(float(row["relative_change"].iloc[0]), rel=1e-4, abs=1e-6)


def test_suppression_matrix_empty_set_and_errors(gpt2):
    prompts = three_languages(gpt2)
    matrix = suppression_matrix(gpt2, prompts, {"en": [], "zh": [(0, 1)], "xx": [(1, 1)]}, draws=2)
    assert (matrix.change[0] == 0.0).all() and np.isnan(matrix.random_rank[0]).all() and matrix.sizes[0] == 0
    with pytest.raises(InputError, match="no prompts given for fr"):
        suppression_matrix(gpt2, prompts, {"en": [], "fr": []})
    with pytest.raises(InputError, match="at least 2 random draws"):
        suppression_matrix(gpt2, prompts, {"en": [(0, 1)]}, draws=1)
