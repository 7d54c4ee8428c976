"""Bad and hostile input: every case is one of our error types, names its field, and stores nothing.

- Property-based: arbitrary Unicode through the prompt builder and the sentence matcher, arbitrary numbers
  through the number checks, never raise anything but our own error types.
- Enumerated bad inputs go through every path that writes results: the library verb
  ``locate(..., attributor=cached.read_through(store))``, the command line ``python -m kn_core locate --store``,
  and the app (the custom-triple page and the sidebar's model field). After each one the store holds exactly
  what it held before; a valid control case through the same runner shows that the runner does write.
- Bad model ids and folders (pickled weights only, remote code, corrupt or oversized configs, unreachable hub
  ids) are refused with one error, before any weights load; every ``from_pretrained`` the loader makes refuses
  remote code and the weights are read from safetensors only (observed on the calls, not read from the source).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
from helpers import make_bert, shown
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kn_core import cli
from kn_core.attribution import AttributionConfig
from kn_core.attribution.result import MAX_STEPS
from kn_core.data.prompts import MAX_LABEL_CHARS, match_template, validate_template
from kn_core.errors import InputError, KNError, ModelLoadError, TemplateError, UnsupportedArchitectureError
from kn_core.method.locate import MAX_TEMPLATES, locate
from kn_core.method.neurons import check_p, check_tau, default_tau
from kn_core.model.hooks import count_hooks
from kn_core.model.loading import DEMO_MODELS, load_model
from kn_core.runs import cached
from kn_core.runs.store import ResultStore

TEMPLATE = "The capital of [X] is [Y]."
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
slotted = st.builds(lambda a, b, c: f"{a}[X]{b}[Y]{c}", st.text(max_size=30), st.text(max_size=30),
                    st.text(max_size=5))


# -- property-based: arbitrary Unicode never raises anything but our own error types -------------------
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
@given(steps=st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.none(), st.booleans()),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=3),
                       st.booleans()))
def test_fuzz_numbers(steps, value):
    """Every value is either accepted as itself or refused with InputError, exactly by the documented rule."""
    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    cases = [(lambda: AttributionConfig(steps=steps).steps, steps,
              isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= MAX_STEPS),
             (lambda: check_tau(value), value, number(value) and 0 < value <= 1),
             (lambda: check_p(value), value, number(value) and 0 <= value <= 1)]
    for check, given_value, valid in cases:
        if valid:
            assert check() == given_value
        else:
            with pytest.raises(InputError):
                check()


# -- the store ------------------------------------------------------------------------------------------
def contents(store: ResultStore) -> tuple[int, int, int]:
    """(results, failures, documents) held by the store."""
    info = store.info()
    return info["results"], info["failures"], info["documents"]


@pytest.fixture
def store(tmp_path):
    found = ResultStore(tmp_path / "store.sqlite")
    yield found
    found.close()


# -- enumerated bad inputs to locate / the CLI ------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bad input: everything else is a valid request on the tiny ``model``."""

    what: str
    error: type[KNError]
    field: str
    model: str = "bert"
    templates: tuple = (TEMPLATE,)
    subject: object = "Tanzania"
    obj: object = "Paris"
    lang: str = "en"
    steps: object = 2
    tau: object = None
    p: object = 0.7
    config: dict = field(default_factory=dict)  # other AttributionConfig fields
    cli: bool = True  # expressible on the command line

    def call(self, lm, store: ResultStore | None):
        config = AttributionConfig(steps=self.steps, **self.config)  # validation of numbers happens here
        return locate(lm, list(self.templates), self.subject, self.obj, self.lang, config, tau=self.tau, p=self.p,
                      attributor=cached.read_through(store))

    def argv(self, model_dir: Path, store_path: Path) -> list[str]:
        argv = ["locate", "--model", str(model_dir), "--lang", self.lang, "--subject", self.subject,
                "--object", self.obj, "--steps", str(self.steps), "--p", str(self.p), "--store", str(store_path)]
        for template in self.templates:
            argv += ["--template", template]
        if self.tau is not None:
            argv += ["--tau", str(self.tau)]
        return argv


CASES = [
    # templates
    Case("template without [X]", TemplateError, "template", templates=("The capital is [Y].",)),
    Case("template without [Y]", TemplateError, "template", templates=("The capital of [X] is.",)),
    Case("template with several [Y]", TemplateError, "template", templates=("[X] has [Y] and [Y].",)),
    Case("template with several [X]", TemplateError, "template", templates=("[X] and [X] have [Y].",)),
    Case("template without slots", TemplateError, "template", templates=("The capital of Tanzania is Dodoma.",)),
    Case("[Y] not last for a causal LM", TemplateError, "template", model="gpt2",
         templates=("[Y] is the capital of [X].",)),
    Case("template of only whitespace", InputError, "template", templates=("   \t ",)),
    Case("template with control characters", InputError, "template", templates=("The capital of [X]\x00 is [Y].",)),
    Case("template of 100 kB", InputError, "template", templates=("x" * 100_000 + " [X] [Y]",)),
    Case("one good and one bad template", TemplateError, "template", templates=(TEMPLATE, "no slots at all")),
    Case("no template", InputError, "template", templates=(), cli=False),
    Case("too many templates", InputError, "template", templates=(TEMPLATE,) * (MAX_TEMPLATES + 1), cli=False),
    Case("template is not text", InputError, "template", templates=(42,), cli=False),
    # subjects and objects
    Case("empty subject", InputError, "subject", subject=""),
    Case("whitespace subject", InputError, "subject", subject=" \n\t "),
    Case("empty object", InputError, "object", obj=""),
    Case("whitespace object", InputError, "object", obj=" \n "),
    Case("subject with control characters", InputError, "subject", subject="Tan\x1bzania"),
    Case("object with a lone surrogate", InputError, "object", obj="Par\ud800is", cli=False),
    Case("subject containing a slot marker", InputError, "subject", subject="[Y]"),
    Case("subject of 100 kB", InputError, "subject", subject="a" * 100_000),
    Case("object unknown to the vocabulary", InputError, "object", obj="\u2603\u2603"),
    Case("subject unknown to the vocabulary", InputError, "subject", subject="\u2603\u2603"),
    Case("subject longer than the model's context", InputError, "template", subject="a " * 45),
    Case("object longer than the causal model's context", InputError, "template", model="gpt2", obj="xq " * 60),
    Case("subject is not text", InputError, "subject", subject=None, cli=False),
    # numbers
    Case("steps = 0", InputError, "steps", steps=0),
    Case("steps < 0", InputError, "steps", steps=-3),
    Case("steps huge", InputError, "steps", steps=MAX_STEPS + 1),
    Case("steps = 10**9", InputError, "steps", steps=10**9),
    Case("steps not whole", InputError, "steps", steps=2.5, cli=False),
    Case("steps as text", InputError, "steps", steps="20", cli=False),
    Case("steps as a bool", InputError, "steps", steps=True, cli=False),
    Case("tau = 0", InputError, "tau", tau=0.0),
    Case("tau < 0", InputError, "tau", tau=-0.1),
    Case("tau > 1", InputError, "tau", tau=1.01),
    Case("tau NaN", InputError, "tau", tau=math.nan),
    Case("tau infinite", InputError, "tau", tau=math.inf),
    Case("tau as text", InputError, "tau", tau="0.3", cli=False),
    Case("tau as a bool", InputError, "tau", tau=True, cli=False),
    Case("p < 0", InputError, "p", p=-0.01),
    Case("p > 1", InputError, "p", p=1.5),
    Case("p NaN", InputError, "p", p=math.nan),
    Case("p as a bool", InputError, "p", p=False, cli=False),
    # languages and set-up
    Case("empty language", InputError, "lang", lang=""),
    Case("unknown baseline", InputError, "baseline", config={"baseline": "gaussian"}, cli=False),
    Case("unknown engine", InputError, "engine", config={"engine": "turbo"}, cli=False),
    Case("layer out of range", InputError, "layers", config={"layers": (0, 99)}, cli=False),
    Case("negative layer", InputError, "layers", config={"layers": (-1,)}, cli=False),
]
IDS = [case.what for case in CASES]


@pytest.fixture
def models(bert, gpt2, bert_dir, gpt2_dir):
    return {"bert": (bert, bert_dir), "gpt2": (gpt2, gpt2_dir)}


def error_lines(stderr: str) -> list[str]:
    """The CLI's error lines (progress bars of the model loader may precede them); never a traceback."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def assert_names_field(exc: KNError, case: Case) -> None:
    assert type(exc) is case.error, (type(exc), exc)
    assert exc.field == case.field and str(exc).startswith(f"{case.field}: "), exc
    assert len(str(exc)) < 500, "the message must stay readable (no echo of a huge input)"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_through_locate_stores_nothing(models, store, case):
    lm = models[case.model][0]
    with pytest.raises(KNError) as info:
        case.call(lm, store)
    assert_names_field(info.value, case)
    assert contents(store) == (0, 0, 0)
    assert count_hooks(lm) == 0 and not lm.lock._is_owned()


@pytest.mark.parametrize("case", [c for c in CASES if c.cli], ids=[c.what for c in CASES if c.cli])
def test_bad_input_through_the_cli_stores_nothing(models, tmp_path, capsys, case):
    path = tmp_path / "store.sqlite"
    rc = cli.main(case.argv(models[case.model][1], path))
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith((f"error: {case.field}: ", f"error: argument --{case.field}: ")), err
    assert not path.exists() or contents(ResultStore(path)) == (0, 0, 0)


def test_valid_control_is_stored_once(models, store):
    """The runner above does write when the input is fine: one result per template, read back on a rerun."""
    control = Case("valid", KNError, "", templates=(TEMPLATE, "[X]'s capital is [Y]."))
    first = control.call(models["bert"][0], store)
    assert contents(store) == (2, 0, 0)
    again = control.call(models["bert"][0], store)
    assert contents(store) == (2, 0, 0)
    assert (again.attributions[0].scores == first.attributions[0].scores).all()


def test_valid_control_through_the_cli(models, tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    assert cli.main(Case("valid", KNError, "").argv(models["gpt2"][1], path)) == 0
    assert contents(ResultStore(path)) == (1, 0, 0)


@pytest.mark.parametrize("subject", ["Tanzania 坦桑尼亚", "Танзания", "تنزانيا", "😀"])
def test_mixed_scripts_work_or_fail_clearly(lm, store, subject):
    """A subject in any script works when the vocabulary can spell it (stored once); otherwise it is refused
    with a message naming the subject, and nothing is stored."""
    unk = lm.tokenizer.unk_token_id
    spelled = lm.tokenizer(subject, add_special_tokens=False)["input_ids"]
    if unk is not None and unk in spelled:
        with pytest.raises(InputError) as info:
            locate(lm, ["[X]的首都是[Y]。"], subject, "Paris", "zh", AttributionConfig(steps=2),
                   attributor=cached.read_through(store))
        assert info.value.field == "subject" and "unknown" in str(info.value)
        assert contents(store) == (0, 0, 0)
    else:
        result = locate(lm, ["[X]的首都是[Y]。"], subject, "Paris", "zh", AttributionConfig(steps=2),
                        attributor=cached.read_through(store))
        assert result.prompts[0].n_object_tokens >= 1
        assert contents(store) == (1, 0, 0)


def test_long_label_is_refused_before_tokenising(bert):
    with pytest.raises(InputError, match=str(MAX_LABEL_CHARS)):
        bert.prompt(TEMPLATE, "a" * (MAX_LABEL_CHARS + 1), "Paris")


def test_language_without_threshold_works_with_explicit_tau(bert, store):
    assert default_tau("fr") == default_tau("en")  # one rule: a language without the paper's τ takes English's
    locate(bert, [TEMPLATE], "Tanzania", "Paris", "fr", AttributionConfig(steps=2), tau=0.25,
           attributor=cached.read_through(store))
    assert contents(store) == (1, 0, 0)


@pytest.mark.parametrize("lang", ["", "FR", "../x", "en\n", None])
def test_an_invalid_language_is_refused_even_with_an_explicit_tau(bert, store, lang):
    with pytest.raises(InputError, match="language code"):
        locate(bert, [TEMPLATE], "Tanzania", "Paris", lang, AttributionConfig(steps=2), tau=0.25,
               attributor=cached.read_through(store))
    assert contents(store) == (0, 0, 0)


def test_validate_template_names_the_fix():
    with pytest.raises(TemplateError, match=r"e\.g\."):
        validate_template("nothing here")


# -- model ids and folders ------------------------------------------------------------------------------
def _pickled_only(tmp: Path) -> str:
    folder = make_bert(tmp / "pickled")
    from safetensors.torch import load_file
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")  # pickled weights only
    (folder / "model.safetensors").unlink()
    return str(folder)


def _config_only(tmp: Path, config: dict, name: str = "cfg", extra: dict | None = None) -> str:
    folder = tmp / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    for file, text in (extra or {}).items():
        (folder / file).write_text(text)
    return str(folder)


REMOTE_CODE = ("from pathlib import Path\n"
               "Path(__file__).with_name('RAN').write_text('remote code ran')\n"
               "from transformers import PretrainedConfig\n"
               "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
HUGE_BERT = {"model_type": "bert", "vocab_size": 250_000, "hidden_size": 16_384, "num_hidden_layers": 200,
             "num_attention_heads": 128, "intermediate_size": 65_536}  # about 3 TB of fp32 weights, no weights file

MODEL_CASES: list[tuple[str, Callable[[Path], str], type[KNError], str]] = [
    ("empty id", lambda tmp: "   ", InputError, "model"),
    ("nonexistent path", lambda tmp: str(tmp / "nope"), ModelLoadError, "no model folder"),
    ("nonexistent relative path", lambda tmp: "./no/such/model", ModelLoadError, "no model folder"),
    ("a file, not a folder", lambda tmp: str((tmp / "f.txt", (tmp / "f.txt").write_text("x"))[0]), ModelLoadError,
     "no model folder"),
    ("folder that is not a model", lambda tmp: str((tmp / "empty", (tmp / "empty").mkdir())[0]), ModelLoadError,
     "config.json"),
    ("corrupt config.json", lambda tmp: _config_only(tmp, {}, extra={"config.json": "{not json"}), ModelLoadError,
     "cannot read the config"),
    ("unsupported architecture", lambda tmp: _config_only(tmp, {"model_type": "t5"}), UnsupportedArchitectureError,
     "supported families"),
    ("model that needs remote code", lambda tmp: _config_only(
        tmp, {"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}}, extra={"evil.py": REMOTE_CODE}),
     ModelLoadError, "needs remote code"),
    ("weights only as pytorch_model.bin (pickle)", _pickled_only, ModelLoadError, "safetensors"),
    ("too large for the memory available (from the config alone)", lambda tmp: _config_only(tmp, HUGE_BERT),
     ModelLoadError, "GiB"),
    ("hub id neither cached nor reachable (also: gated)", lambda tmp: "kn-explorer-test/no-such-model",
     ModelLoadError, "cannot read the config"),
]


@pytest.fixture
def offline(monkeypatch):
    """No network: a hub id that is not cached fails at once (as a gated or unreachable model would)."""
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def no_unpickling(monkeypatch):
    """Loading must never unpickle: torch.load fails the test if anything calls it."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called: weights must load from safetensors only")
    monkeypatch.setattr(torch, "load", refuse)


@pytest.mark.parametrize("what,make,error,match", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_models(tmp_path, capsys, offline, no_unpickling, what, make, error, match):
    source = make(tmp_path)
    with pytest.raises(KNError) as info:
        load_model(source)
    assert type(info.value) is error and match in str(info.value), (type(info.value), info.value)
    assert not (tmp_path / "cfg" / "RAN").exists(), "remote code was executed"
    # the CLI refuses the same model with one line on stderr and never creates the store
    path = tmp_path / "store" / "store.sqlite"
    argv = Case("", KNError, "").argv(Path("unused"), path)
    argv[argv.index("--model") + 1] = source
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and match in err, err
    assert not path.exists()


def test_too_large_model_is_refused_before_loading(bert_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("KN_EXPLORER_MAX_MODEL_BYTES", "1000")
    with pytest.raises(ModelLoadError, match="GiB"):
        load_model(str(bert_dir))
    path = tmp_path / "store.sqlite"
    assert cli.main(Case("", KNError, "").argv(bert_dir, path)) == 2
    assert "GiB" in capsys.readouterr().err and not path.exists()


@pytest.mark.parametrize("value", ["lots", "-5", "1e9", "0x10"])
def test_malformed_size_limit_is_refused(bert_dir, monkeypatch, value):
    monkeypatch.setenv("KN_EXPLORER_MAX_MODEL_BYTES", value)
    with pytest.raises(InputError) as info:
        load_model(str(bert_dir))
    assert info.value.field == "KN_EXPLORER_MAX_MODEL_BYTES"


def test_size_limit_allows_a_model_that_fits(bert_dir, monkeypatch):
    monkeypatch.setenv("KN_EXPLORER_MAX_MODEL_BYTES", str(10**9))
    assert load_model(str(bert_dir)).n_layers == 3


# -- the app: same rules through the pages ----------------------------------------------------------------
demo_present = pytest.mark.skipif(not all((p / "config.json").is_file() for p in DEMO_MODELS.values()),
                                  reason="demo models missing: run `python -m kn_core.demo train`")


def open_app(**state):
    """The app after its first run, with ``state`` in its session beforehand.

    Widget values are set through the session state before the first run: with ``st.navigation``, AppTest
    drops the sidebar's widgets from its tree once one of them is changed, and forgets their values.
    """
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=300)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app_store(tmp_path, monkeypatch):
    """A fresh store in ``tmp_path`` for the app (whose cached store may point to an earlier test's folder)."""
    from kn_core.app import ui
    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path))
    ui.store.clear()
    yield ResultStore(tmp_path / "store.sqlite")
    ui.store.clear()


APP_INPUTS = [
    ("custom_text", "The capital of Tanzania is Dodoma.", "no [X] slot"),
    ("custom_text", "[Y] [X] [Y]", "[Y] slots"),
    ("custom_text", "The capital of [X]\x07 is [Y].", "control"),
    ("custom_subject", "", "subject: is empty"),
    ("custom_subject", "x" * 5000, "subject: is 5000 characters"),
    ("custom_object", "\u2603", "vocabulary"),
]


@demo_present
def test_app_refuses_bad_input_and_stores_nothing(app_store):
    at = open_app(browser_source="Saved results")  # nothing saved yet: the first page computes nothing
    at.switch_page("views/custom_triple.py").run()
    at.radio(key="custom_how").set_value("My own").run()
    assert contents(app_store) == (0, 0, 0)
    for key, value, message in APP_INPUTS:
        widget = at.text_area(key=key) if key == "custom_text" else at.text_input(key=key)
        good = widget.value
        widget.set_value(value).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(message in shown(e) for e in at.error), (key, value[:40], [e.value for e in at.error])
        assert at.button(key="custom_run_button").disabled  # AppTest, like a browser, cannot click it
        assert contents(app_store) == (0, 0, 0)
        (at.text_area(key=key) if key == "custom_text" else at.text_input(key=key)).set_value(good).run()
    assert not at.error, [e.value for e in at.error]
    assert not at.button(key="custom_run_button").disabled


@demo_present
@pytest.mark.parametrize("source", ["{tmp}/nope", "{tmp}", "acme/../../etc", "<img src=x onerror=alert(1)>"])
def test_app_refuses_bad_model_without_traceback(app_store, offline, tmp_path, source):
    """One message for any unusable path (the page does not tell a missing folder from one without a model)."""
    from kn_core.app import ui
    at = open_app(model_choice=ui.OTHER, model_other=source.format(tmp=tmp_path))
    assert any("cannot use this as a model" in shown(e) for e in at.error), [e.value for e in at.error]
    assert contents(app_store) == (0, 0, 0)


def test_no_unsafe_html_in_the_app():
    """User text reaches Streamlit only through escaping calls: no page renders raw HTML."""
    root = Path(__file__).resolve().parents[2]
    sources = [root / "app.py", *sorted((root / "kn_core" / "app").glob("*.py")),
               *sorted((root / "views").glob("*.py"))]
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for forbidden in ("unsafe_allow_html=True", "st.html(", "components.html(", "components.v1"):
            assert forbidden not in text, f"{source.name} uses {forbidden}"


def test_loader_never_trusts_remote_code_nor_pickles(bert_dir, monkeypatch, no_unpickling):
    """Every ``from_pretrained`` that the loader itself makes (config, tokenizer, weights) passes
    ``trust_remote_code=False``, the weights call passes ``use_safetensors=True``, and nothing is unpickled."""
    import transformers

    from kn_core.model import loading

    calls: list[tuple[str, dict]] = []

    def spy(owner, what: str) -> None:
        real = owner.from_pretrained

        def recorded(*args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__") == loading.__name__:  # the loader's own calls only
                calls.append((what, kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, "from_pretrained", recorded)

    spy(transformers.AutoConfig, "config")
    spy(transformers.AutoTokenizer, "tokenizer")
    for auto_class in set(loading.AUTO_CLASSES.values()):
        spy(auto_class, "weights")
    load_model(str(bert_dir))
    assert sorted({what for what, _ in calls}) == ["config", "tokenizer", "weights"], calls
    for what, kwargs in calls:
        assert kwargs.get("trust_remote_code") is False, (what, kwargs)
        if what == "weights":
            assert kwargs.get("use_safetensors") is True, kwargs


@pytest.mark.parametrize("layers", [["x"], 5, [1.5], [True], [], "01"], ids=repr)
def test_layers_must_be_whole_layer_numbers(layers):
    with pytest.raises(InputError) as info:
        AttributionConfig(layers=layers)
    assert info.value.field == "layers"
