"""LIKN: overlap on constructed sets with known answers, and on models (the same prompt as two "languages")."""
from __future__ import annotations

import numpy as np
import pytest

from kn_core.attribution import AttributionConfig, attribute
from kn_core.errors import InputError
from kn_core.method.interventions import effect
from kn_core.method.likn import EDIT_COLUMNS, cross_lingual_edit, edit_sets, overlap
from kn_core.method.neurons import knowledge_neurons
from kn_core.model.loading import DEMO_MODELS, load_model

TEMPLATE = "The capital of [X] is [Y]."


def test_identical_sets_have_jaccard_one():
    a = [(0, 3), (2, 1), (2, 7)]
    result = overlap(a, list(reversed(a)), n_layers=3)
    assert result.jaccard == 1.0
    assert result.shared == ((0, 3), (2, 1), (2, 7))
    assert result.only_a == result.only_b == ()
    assert result.per_layer_a == result.per_layer_b == result.per_layer_shared == (1, 0, 2)


def test_disjoint_sets_have_jaccard_zero():
    result = overlap([(0, 1), (1, 1)], [(0, 2), (2, 5), (2, 6)], n_layers=3)
    assert result.jaccard == 0.0 and result.shared == ()
    assert result.only_a == ((0, 1), (1, 1)) and result.only_b == ((0, 2), (2, 5), (2, 6))
    assert result.per_layer_a == (1, 1, 0) and result.per_layer_b == (1, 0, 2) and result.per_layer_shared == (0, 0, 0)


def test_partial_overlap_counts_by_hand():
    a = [(0, 1, 0.9), (1, 4, 0.5), (3, 2, 0.1)]  # scored triples are accepted
    b = [(1, 4), (3, 2), (3, 9), (0, 7)]
    result = overlap(a, b, n_layers=4)
    assert result.shared == ((1, 4), (3, 2))
    assert result.jaccard == pytest.approx(2 / 5)
    assert result.per_layer_a == (1, 1, 0, 1)
    assert result.per_layer_b == (1, 1, 0, 2)
    assert result.per_layer_shared == (0, 1, 0, 1)


def test_empty_sets_and_bad_layers():
    assert overlap([], [], n_layers=2).jaccard == 0.0
    assert overlap([], [(1, 1)], n_layers=2).jaccard == 0.0
    with pytest.raises(InputError):
        overlap([(5, 0)], [], n_layers=2)


def test_edit_sets_partition():
    sets = edit_sets([(0, 1), (1, 2)], [(1, 2), (2, 3)], "en", "zh", n_layers=3)
    assert sets == {"shared": ((1, 2),), "en KN": ((0, 1), (1, 2)), "zh KN": ((1, 2), (2, 3)),
                    "en-only KN": ((0, 1),), "zh-only KN": ((2, 3),)}


@pytest.fixture(params=["bert", "gpt2", *DEMO_MODELS])
def any_lm(request):
    if request.param in DEMO_MODELS:
        if not (DEMO_MODELS[request.param] / "config.json").is_file():
            pytest.skip(f"demo model {request.param} is not trained yet ({DEMO_MODELS[request.param]} is missing)")
        return load_model(request.param)
    return request.getfixturevalue(request.param)


def test_same_prompt_as_two_languages_has_jaccard_one(any_lm):
    lm = any_lm
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dodoma")  # a bundled fact: the demo models know its words
    neurons = {}
    for lang in ("en", "xx"):  # two "languages", the same prompt, attributed independently
        scores = attribute(lm, prompt, AttributionConfig(steps=8)).scores
        neurons[lang] = knowledge_neurons([scores], tau=0.3)
    assert neurons["en"], "the prompt must have knowledge neurons"
    result = overlap(neurons["en"], neurons["xx"], lm.n_layers)
    assert result.jaccard == 1.0 and result.only_a == result.only_b == ()
    assert sum(result.per_layer_shared) == len(neurons["en"])


def test_cross_lingual_edit_matches_single_effects(lm):
    prompt = lm.prompt(TEMPLATE, "Tanzania", "Dodoma")
    other = lm.prompt(TEMPLATE, "France", "Paris")
    sets = {"shared": [(0, 1), (lm.n_layers - 1, 4)], "en-only KN": [(1, 2)], "empty": []}
    table = cross_lingual_edit(lm, {"en": [prompt], "zh": [prompt, prompt]}, sets, "suppress",
                               unrelated={"en": [other]})
    assert list(table.columns) == list(EDIT_COLUMNS)
    assert len(table) == 3 * 3  # (en own, zh own, en unrelated) × 3 sets
    for name, neurons in sets.items():
        rows = table[table["edited_set"] == name].set_index(["measured_lang", "target"])["relative_change"]
        expected = effect(lm, prompt, neurons, "suppress").relative
        assert rows[("en", "own")] == pytest.approx(expected, rel=1e-4, abs=1e-5)
        assert rows[("zh", "own")] == pytest.approx(expected, rel=1e-4, abs=1e-5)  # same prompt, same change
        assert rows[("en", "unrelated")] == pytest.approx(effect(lm, other, neurons, "suppress").relative,
                                                          rel=1e-4, abs=1e-5)
    assert np.all(table.loc[table["edited_set"] == "empty", "relative_change"] == 0.0)
    assert set(table["n_prompts"]) == {1, 2}
    with pytest.raises(InputError):
        cross_lingual_edit(lm, {"en": [prompt]}, sets, "erase")


def test_the_pages_prompts_control_and_edit_view():
    from kn_core.data import load_bundled
    from kn_core.method.likn import edit_control, edit_view, language_prompts

    lm, factset = load_model("demo-clm"), load_bundled()
    fact = factset.facts_of("P36")[0]
    prompts = language_prompts(lm, factset, fact, ["en", "zh"])
    for lang in ("en", "zh"):
        templates = [t.text for t in factset.relations["P36"].templates_for(lang)]
        assert [p.template for p in prompts[lang]] == templates
        assert all(p.object == fact.object(lang) for p in prompts[lang])
    control, unrelated = edit_control(lm, factset, fact, ["en", "zh"])
    assert control is not None and control.id != fact.id and control.relation == "P36"
    assert [len(unrelated[lang]) for lang in ("en", "zh")] == [1, 1]
    assert unrelated["zh"][0].object == control.object("zh")
    assert edit_control(lm, factset, fact, ["en", "xx"]) == (None, {})  # no other fact has that language
    table = cross_lingual_edit(lm, prompts, {"en": [(0, 1)], "shared": []}, "suppress", unrelated)
    view = edit_view(table)
    assert list(view.index) == ["en", "shared"]
    assert list(view.columns) == ["own prompts, en", "own prompts, zh", "unrelated prompts, en",
                                  "unrelated prompts, zh"]
    assert (view.loc["shared"] == 0).all()  # an empty set changes nothing
