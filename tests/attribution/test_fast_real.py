"""The fast engine equals the reference on real weights: Gemma 3 270M (``python -m kn_core models install
gemma3-270m``), one short prompt. Skipped, with the reason, where the model is not installed.

The model is looked up in the user's KN Explorer home as it was when this module was collected: conftest
points ``$KN_EXPLORER_HOME`` at an empty temporary folder for the session, which is restored here only while
the model loads.
"""
from __future__ import annotations

import logging
import os

import pytest
from helpers import assert_same
from test_fast import TOL

from kn_core.attribution import AttributionConfig, attribute
from kn_core.errors import ModelLoadError, UnsupportedArchitectureError
from kn_core.model.hooks import count_hooks
from kn_core.model.loading import load_model

NAME = "gemma3-270m"
HOME_VARIABLE = "KN_EXPLORER_HOME"
USER_HOME = os.environ.get(HOME_VARIABLE)  # read at collection, before conftest's isolated_home runs
# the layers attributed: the lowest (sliding), the first global one, and the two top (sliding, global)
CONFIG = {"baseline": "zero", "steps": 4, "layers": (0, 5, 16, 17)}


@pytest.fixture(scope="module")
def gemma3_real():
    with pytest.MonkeyPatch.context() as patch:
        if USER_HOME is None:
            patch.delenv(HOME_VARIABLE, raising=False)
        else:
            patch.setenv(HOME_VARIABLE, USER_HOME)
        try:
            return load_model(NAME)
        except UnsupportedArchitectureError:
            raise
        except ModelLoadError as exc:
            pytest.skip(f"the real {NAME} is not available ({exc})")


@pytest.mark.real_model
def test_fast_equals_reference_on_real_gemma3(gemma3_real, caplog):
    lm = gemma3_real
    assert lm.config.model_type == "gemma3_text" and lm.n_layers == 18
    prompt = lm.prompt("[X] is the capital of [Y]", "Paris", "France")
    assert prompt.input_ids[0] == lm.tokenizer.bos_token_id  # Gemma needs its BOS (P(France) ≈ 0.0003 without)
    with caplog.at_level(logging.WARNING, logger="kn_core.attribution.fast"):
        fast = attribute(lm, prompt, AttributionConfig(engine="fast", **CONFIG))
    assert "using the reference engine" not in caplog.text  # the pieces matched the real model
    ref = attribute(lm, prompt, AttributionConfig(engine="reference", **CONFIG))
    assert fast.token_probs[0] == pytest.approx(0.71, abs=0.02)  # the figure of shared/notes/real-models.md
    assert_same(fast, ref, TOL)
    assert count_hooks(lm) == 0
