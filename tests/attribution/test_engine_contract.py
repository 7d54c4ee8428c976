"""The engine contract (issue #28): engine and baseline checked when the config is built, the engines' registry
and the names a config is checked against agree, and the engine that actually ran is recorded in the result
(the fast engine's fallback to the reference one included)."""
from __future__ import annotations

import numpy as np
import pytest

from kn_core.attribution import ENGINE_NAMES, ENGINES, AttributionConfig, attribute, fast, quadrature
from kn_core.attribution.baselines import BASELINES
from kn_core.errors import InputError

TEMPLATE = "The capital of [X] is [Y]."


@pytest.mark.parametrize("field, value", [("engine", "turbo"), ("engine", None), ("engine", ["fast"]),
                                          ("baseline", "gaussian"), ("baseline", 0)])
def test_an_unknown_engine_or_baseline_is_refused_when_the_config_is_built(field, value):
    with pytest.raises(InputError) as caught:
        AttributionConfig(**{field: value})
    assert caught.value.field == field
    options = ENGINE_NAMES if field == "engine" else tuple(BASELINES)
    assert all(option in caught.value.message for option in options), caught.value.message


def test_every_engine_and_baseline_builds_a_config():
    assert tuple(ENGINES) == ENGINE_NAMES
    for engine in ENGINES:
        for base in BASELINES:
            config = AttributionConfig(engine=engine, baseline=base)
            assert (config.engine, config.baseline) == (engine, base)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_the_result_records_the_engine_that_ran(bert, engine):
    prompt = bert.prompt(TEMPLATE, "Tanzania", "Paris")
    result = attribute(bert, prompt, AttributionConfig(engine=engine, baseline="zero", steps=2, layers=(0, 2)))
    assert result.engine_used == engine
    assert result.to_json_dict(with_scores=False)["engine_used"] == engine


def test_a_fallback_of_the_fast_engine_is_recorded(bert, monkeypatch, caplog):
    """A self-check that fails sends the fast engine to the reference one: the result says so (the config keeps
    what was asked for) and equals the reference engine's."""
    prompt = bert.prompt(TEMPLATE, "Tanzania", "Paris")
    config = AttributionConfig(engine="fast", baseline="zero", steps=2, layers=(1,), rule="riemann-right")
    monkeypatch.setattr(fast, "_head_matches", lambda *args: False)  # the pieces' P(object) "differs"
    with caplog.at_level("WARNING", logger=fast.__name__):
        fell_back = attribute(bert, prompt, config)
    assert "using the reference engine" in caplog.text
    assert (fell_back.config.engine, fell_back.engine_used) == ("fast", "reference")
    reference = attribute(bert, prompt, AttributionConfig(engine="reference", baseline="zero", steps=2, layers=(1,),
                                                          rule="riemann-right"))
    np.testing.assert_array_equal(fell_back.scores, reference.scores)


def test_an_adaptive_rule_whose_refinement_fell_back_records_both_engines(bert, monkeypatch):
    """The first pass ran on the fast engine and the refining passes fell back: both are named, in that order."""
    prompt = bert.prompt(TEMPLATE, "Tanzania", "Paris")
    passes = iter([True])  # the first pass's self-check passes, every later one fails
    real_check = fast._head_matches
    monkeypatch.setattr(fast, "_head_matches", lambda *args: next(passes, False) and real_check(*args))
    rounds = []  # every (layer, path) is flagged for refining once, then none
    real_flags = quadrature.needs_refining

    def refine_once(*args, **kwargs):
        rounds.append(None)
        return real_flags(*args, **kwargs).fill_(len(rounds) == 1)

    monkeypatch.setattr(quadrature, "needs_refining", refine_once)
    result = attribute(bert, prompt, AttributionConfig(engine="fast", baseline="zero", steps=2, layers=(1,),
                                                       rule="gauss-legendre-adaptive"))
    assert len(rounds) == 2
    assert (result.config.engine, result.engine_used) == ("fast", "fast+reference")
