"""Bad and hostile input: every case is one of our error types, named field, nothing stored."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kn_core.attribution import AttributionConfig
from kn_core.errors import InputError, KNError, ModelLoadError, TemplateError, UnsupportedArchitectureError
from kn_core.loading import load_model
from kn_core.neurons import check_p, check_tau, default_tau
from kn_core.prompts import match_template, validate_template
from tiny import make_bert

TEMPLATE = "The capital of [X] is [Y]."
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
slotted = st.builds(lambda a, b, c: f"{a}[X]{b}[Y]{c}", st.text(max_size=30), st.text(max_size=30),
                    st.text(max_size=5))


@FUZZ
@given(template=st.one_of(st.text(max_size=60), slotted), subject=st.text(max_size=30), obj=st.text(max_size=20))
def test_fuzz_prompt_builder_raises_only_our_errors(lm, template, subject, obj):
    try:
        prompt = lm.prompt(template, subject, obj)
    except KNError:
        return
    assert prompt.target_positions and len(prompt.object_ids) == len(prompt.target_positions)
    assert max(prompt.target_positions) < len(prompt.input_ids)


@settings(max_examples=500, deadline=None)
@given(sentence=st.text(max_size=80), templates=st.lists(st.one_of(st.text(max_size=30), slotted), max_size=3))
def test_fuzz_sentence_matching_never_raises(sentence, templates):
    found = match_template(sentence, templates)
    assert found is None or found[0] in templates


@settings(max_examples=500, deadline=None)
@given(steps=st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.none()),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=3)))
def test_fuzz_numbers(steps, value):
    for check in (lambda: AttributionConfig(steps=steps), lambda: check_tau(value), lambda: check_p(value)):
        try:
            check()
        except InputError:
            pass


# -- enumerated cases: (what, error type, field in the message) --------------------------------------
TEMPLATES = [
    ("no [X]", "The capital is [Y].", TemplateError),
    ("no [Y]", "The capital of [X] is.", TemplateError),
    ("several [Y]", "[X] has [Y] and [Y].", TemplateError),
    ("only whitespace", "   \t ", InputError),
    ("control characters", "The capital of [X]\x00 is [Y].", InputError),
    ("100 kB", "x" * 100_000 + " [X] [Y]", InputError),
]
LABELS = [
    ("empty subject", "", "Dodoma", "subject"),
    ("whitespace object", "Tanzania", " \n ", "object"),
    ("object unknown to the vocabulary", "Tanzania", "\u2603\u2603", "object"),
    ("subject longer than the context", "a " * 45, "Dodoma", "template"),
]


@pytest.mark.parametrize("what,template,error", TEMPLATES, ids=[c[0] for c in TEMPLATES])
def test_bad_templates(lm, what, template, error):
    with pytest.raises(error) as info:
        lm.prompt(template, "Tanzania", "Paris")
    assert info.value.field == "template"


@pytest.mark.parametrize("what,subject,obj,field", LABELS, ids=[c[0] for c in LABELS])
def test_bad_labels(bert, what, subject, obj, field):
    with pytest.raises(InputError) as info:
        bert.prompt(TEMPLATE, subject, obj)
    assert info.value.field == field


def test_mixed_scripts_work_or_fail_clearly(lm):
    prompt = lm.prompt("[X]的首都是[Y]。", "Tanzania 坦桑尼亚", "Paris")
    assert prompt.n_object_tokens >= 1


def test_object_slot_not_last_for_causal(gpt2):
    with pytest.raises(TemplateError, match="last"):
        gpt2.prompt("[Y] is the capital of [X].", "Tanzania", "Paris")


@pytest.mark.parametrize("value", [0, -1, 10**6, 2.5, "20", None, True])
def test_bad_steps(value):
    with pytest.raises(InputError, match="steps"):
        AttributionConfig(steps=value)


@pytest.mark.parametrize("value", [0, -0.1, 1.01, float("nan"), "x"])
def test_bad_tau(value):
    with pytest.raises(InputError, match="tau"):
        check_tau(value)


@pytest.mark.parametrize("value", [-0.01, 1.5, float("nan")])
def test_bad_p(value):
    with pytest.raises(InputError, match="p"):
        check_p(value)


def test_language_without_threshold():
    with pytest.raises(InputError, match="lang"):
        default_tau("fr")


def test_bad_models(tmp_path):
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="model"):
        load_model("   ")
    (tmp_path / "notmodel").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path / "notmodel"))
    arch = tmp_path / "arch"
    arch.mkdir()
    (arch / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(UnsupportedArchitectureError, match="supported families"):
        load_model(str(arch))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError):
        load_model(str(corrupt))


def test_model_without_safetensors_is_refused(tmp_path):
    folder = make_bert(tmp_path / "m")
    from safetensors.torch import load_file
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")  # pickled weights only
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(str(folder))


def test_too_large_model_is_refused_before_loading(tmp_path, monkeypatch):
    folder = make_bert(tmp_path / "m")
    monkeypatch.setenv("KN_EXPLORER_MAX_MODEL_BYTES", "1000")
    with pytest.raises(ModelLoadError, match="GiB"):
        load_model(str(folder))


def test_validate_template_names_the_fix():
    with pytest.raises(TemplateError, match=r"e\.g\."):
        validate_template("nothing here")
