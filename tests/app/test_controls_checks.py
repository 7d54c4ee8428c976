"""Issues #25, #24, #26 on the app's side, through AppTest on the demo models: the controls chart and the
specificity verdict beside the edit effect, the Checks panel (the syntactic control on a button), the
model's own P(candidate) beside the DKN score, the numerics presets, a sentence of no usable tokens, the
model field's real reasons, and a session whose model was removed."""
from __future__ import annotations

import json
import math
import shutil

import pytest
from streamlit.testing.v1 import AppTest
from helpers import open_app, texts, until_stored

from kn_core.app import figures, resources
from kn_core.app.measure import MEASURING
from kn_core.defaults import PRESETS
from kn_core.model.loading import DEMO_MODELS

pytestmark = pytest.mark.skipif(not all((p / "config.json").is_file() for p in DEMO_MODELS.values()),
                                reason="demo models missing: run `python -m kn_core.demo train`")
TIMEOUT = 300
OTHER = "Other: Hugging Face id or folder…"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KN_EXPLORER_HOME", str(folder))
        yield folder




def control_charts(at: AppTest) -> list[dict]:
    found = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec["layout"].get("yaxis", {}).get("title", {}).get("text") == "relative change of P(object)":
            found.append(spec)
    return found


# -- 1. controls and the verdict -------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(DEMO_MODELS))
def test_fact_browser_shows_the_controls_chart_and_the_verdict(home, model):
    at = open_app(model=model)
    assert not at.error, texts(at.error)
    charts = control_charts(at)
    assert len(charts) == 1, "the controls chart"
    bars = charts[0]["data"][0]
    assert list(bars["x"]) == ["this fact", "same relation", "other relations", "random neurons"]
    assert bars["error_y"]["visible"]  # ±sd of the random draws
    verdicts = [t for t in texts([*at.success, *at.info, *at.warning]) if "verdict" in t.lower()]
    assert len(verdicts) == 1, verdicts
    assert any(f"Specificity verdict: {v} —" in verdicts[0] for v in ("fact", "relation", "generic", "none")) \
        or verdicts[0].startswith("No verdict:"), verdicts
    assert any("Rule: none: the own drop is not beyond random" in t for t in texts(at.caption))
    assert any(e.label.startswith("Control facts (5 of the same relation P36") for e in at.expander), \
        [e.label for e in at.expander]


def test_a_page_never_waits_for_its_measurements(home):
    """Issue #24: with the model in another's turn (the worker computing a prompt holds its lock), a new neuron
    set's page run still ends: the heatmap and the neuron table show, the edit effect, controls and checks show
    their place ("⏳ Measuring …, waiting for the model's turn"); once the turn is free they are measured and the
    page shows them."""
    at = open_app()
    assert any(m.label == "P(object), knowledge neurons" for m in at.metric)
    lm = resources._load("demo-mlm")  # the app's model object (Streamlit's resource cache, this process)
    with lm.lock:
        at.slider(key="browser_tau").set_value(0.5).run(timeout=30)  # a page waiting for the lock would time out
        assert not at.exception, [e.value for e in at.exception]
        places = [t for t in texts(at.caption) if t.startswith(MEASURING)]
        assert len(places) == 3 and any("waiting for the model's turn" in t for t in places), places
        assert [c for c in at.get("plotly_chart") if "Attribution" in json.loads(c.proto.spec)["layout"]["title"]
                ["text"]], "the heatmap"
        assert not any(m.label in ("P(object), knowledge neurons", "top-1 flip rate") for m in at.metric)
        assert not control_charts(at)
    until_stored(at)
    assert any(m.label == "P(object), knowledge neurons" for m in at.metric)
    assert any(m.label == "top-1 flip rate" for m in at.metric) and len(control_charts(at)) == 1
    assert not any(t.startswith(MEASURING) for t in texts(at.caption))


def test_a_saved_triple_without_a_relation_says_the_verdict_needs_one(home):
    at = open_app("views/custom_triple.py")
    at.radio(key="custom_how").set_value("My own").run()
    at.text_area(key="custom_text").set_value("[X] is where the [Y] grows.").run()
    at.text_input(key="custom_subject").set_value("Kenya").run()
    at.text_input(key="custom_object").set_value("tea").run()
    until_stored(at.button(key="custom_run_button").click().run())
    assert not at.exception and not at.error, texts(at.error)
    if not control_charts(at):  # no knowledge neuron at the default thresholds: nothing to control
        assert any("nothing to control" in t for t in texts(at.caption))
        return
    assert any("the verdict needs a relation" in t for t in texts(at.warning)) or any(
        "Specificity verdict: none" in t for t in texts(at.info)), texts([*at.warning, *at.info])


def test_language_comparison_shows_controls_per_language(home):
    at = open_app("views/languages.py")
    assert not at.error, texts(at.error)
    shown_sets = [s for s in texts(at.markdown) if "whose P(object) falls" in s]
    assert len(shown_sets) == 2, texts(at.markdown)
    charts = control_charts(at)
    no_neurons = sum("nothing to control" in t for t in texts(at.caption))
    assert len(charts) + no_neurons == 2


def test_control_bars_are_a_pure_figure():
    fig = figures.control_bars({"own": -0.5, "same_relation": -0.1, "other_relation": math.nan, "random": -0.01},
                               0.02, title="<b>x</b>")
    bar = fig.data[0]
    assert list(bar.x) == ["this fact", "same relation", "other relations (not measured)", "random neurons"]
    assert bar.y[2] is None and list(bar.error_y.array) == [0.0, 0.0, 0.0, 0.02]
    assert fig.layout.yaxis.title.text == "relative change of P(object)" and "<b>" not in fig.layout.title.text


# -- 2. the checks -----------------------------------------------------------------------------------
def test_checks_panel_and_the_syntactic_control_on_a_button(home):
    at = open_app()
    labels = {m.label: m.value for m in at.metric}
    assert "top-1 flip rate" in labels and "transfer ratio" in labels, labels
    assert any(k.startswith("reverse probe: P(subject)") for k in labels), labels  # P36 has one
    flips = next(d.value for d in at.dataframe if "top-1 before" in d.value.columns)
    assert list(flips.columns[:4]) == ["prompt", "object token", "top-1 before", "top-1 after"] and len(flips) == 5
    assert labels["change, paraphrases"] != "–" and labels["transfer ratio"] != "–", labels  # held-out templates
    assert any("train template" in t and "held-out" in t for t in texts(at.caption)), texts(at.caption)
    assert "grammar cases localised" not in labels  # attributions only when asked
    at.button(key="browser_syntax").click().run()
    assert not at.exception and not at.error, texts(at.error)
    labels = {m.label: m.value for m in at.metric}
    assert "grammar cases localised" in labels and "this fact's own change" in labels, labels
    assert labels["this fact's own change"].endswith("%")


def test_fact_check_shows_p_candidate_beside_the_dkn_score(home):
    at = open_app("views/fact_check.py")
    assert all(t.startswith("with DKN") for t in texts(at.error)), texts(at.error)  # a "wrong" verdict is red
    labels = {m.label: m.value for m in at.metric}
    assert "DKN score" in labels and "P(candidate), the model's own" in labels, labels
    assert 0.0 <= float(labels["P(candidate), the model's own"]) <= 1.0


# -- 4. numerics presets -----------------------------------------------------------------------------
def test_the_numerics_preset_sets_rule_and_steps(home):
    at = open_app("views/about.py")
    assert at.radio(key="numerics").value == "default"
    assert (at.session_state["settings"].config.rule, at.session_state["settings"].config.steps) == PRESETS["default"]
    at.radio(key="numerics").set_value("paper").run()
    config = at.session_state["settings"].config
    assert (config.rule, config.steps) == PRESETS["paper"] == ("riemann-right", 20)
    assert at.slider(key="steps").value == 20 and at.selectbox(key="rule").value == "riemann-right"
    at.slider(key="steps").set_value(12).run()  # the advanced control: custom numerics, no preset shown
    assert at.radio(key="numerics").value is None and at.session_state["settings"].config.steps == 12
    at.radio(key="numerics").set_value("default").run()
    assert (at.session_state["settings"].config.rule, at.session_state["settings"].config.steps) == PRESETS["default"]


# -- 5. #26: F12, F14 --------------------------------------------------------------------------------
@pytest.mark.parametrize("sentence", ["\u200b\u200b", "\U0001F1EB\U0001F1F7\U0001F1EF\U0001F1F5"])
def test_neuron_search_refuses_a_sentence_of_no_usable_tokens(home, sentence):
    at = open_app("views/neuron_search.py")
    at.text_input(key="search_sentence").set_value(sentence).run()
    assert not at.exception
    assert any("holds no token demo-mlm reads" in t for t in texts(at.error)), texts(at.error)


def _broken(tmp_path, name: str, damage) -> str:
    folder = tmp_path / name
    shutil.copytree(DEMO_MODELS["demo-mlm"], folder)
    damage(folder)
    return str(folder)


def _truncate(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _model_type(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "mamba"}))


def _bad_json(folder):
    (folder / "config.json").write_text("{not json")


@pytest.mark.parametrize("damage, cause", [
    (_truncate, "a *.safetensors file is damaged, truncated or empty"),
    (_model_type, "model type 'mamba' is not supported"),
    (_bad_json, "is not a valid JSON file"),
])
def test_the_model_field_shows_the_loaders_reason(home, tmp_path, damage, cause):
    path = _broken(tmp_path, damage.__name__, damage)
    at = open_app(state={"model_other": path}, model=OTHER)
    errors = texts(at.error)
    assert len(errors) == 1 and cause in errors[0] and "cannot use this as a model" in errors[0], errors


def test_a_removed_model_is_named_with_the_install_command(home):
    at = open_app("views/about.py", model="smollm2-135m")  # a registry model that is not installed here
    warnings = texts(at.warning)
    assert any("smollm2-135m" in w and "python -m kn_core models install smollm2-135m" in w for w in warnings), warnings
    assert at.selectbox(key="model_choice").value == "demo-mlm"


def test_a_link_carries_the_numerics(home):
    at = open_app("views/neuron_search.py")
    assert "numerics" not in at.query_params  # the default preset is not written
    at.radio(key="numerics").set_value("paper").run()
    assert at.query_params["numerics"] == "paper"
    linked = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    linked.query_params.update({"model": "demo-mlm", "numerics": "paper"})
    linked.switch_page("views/neuron_search.py")
    linked.run()
    config = linked.session_state["settings"].config
    assert (config.rule, config.steps) == PRESETS["paper"] and linked.radio(key="numerics").value == "paper"
    custom = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    custom.query_params.update({"model": "demo-mlm", "rule": "gauss-legendre", "steps": "7"})
    custom.switch_page("views/neuron_search.py")
    custom.run()
    config = custom.session_state["settings"].config
    assert (config.rule, config.steps) == ("gauss-legendre", 7) and custom.radio(key="numerics").value is None
    assert custom.query_params["rule"] == "gauss-legendre" and custom.query_params["steps"] == "7"
    bad = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    bad.query_params.update({"model": "demo-mlm", "numerics": "fast"})
    bad.switch_page("views/neuron_search.py")
    bad.run()
    assert any("numerics='fast'" in w for w in texts(bad.warning)), texts(bad.warning)
    assert bad.radio(key="numerics").value == "default"


def test_two_models_show_controls_per_model(home):
    at = open_app("views/compare_models.py")
    assert not at.error, texts(at.error)
    titles = [t for t in texts(at.markdown) if "whose P(object) falls" in t]
    assert len(titles) == 2, texts(at.markdown)


def test_fact_check_gives_auroc_with_intervals_per_score_on_a_button(home):
    at = open_app("views/fact_check.py")
    assert not [d for d in at.dataframe if "AUROC" in d.value.columns]  # judged only when asked
    at.button(key="fc_baselines").click().run()
    assert not at.exception and all(t.startswith("with DKN") for t in texts(at.error)), texts(at.error)
    table = next(d.value for d in at.dataframe if "AUROC" in d.value.columns)
    assert list(table["score"]) == ["DKN score", "P(candidate), the model's own", "log-prob per token",
                                    "random neurons (same size, DKN layers)", "wo_DKN (the model's own answer, 0/1)"]
    assert (table["claims"] > 0).all()
    known = table.dropna(subset=["AUROC"])
    assert len(known) >= 3 and ((known["AUROC"] >= 0) & (known["AUROC"] <= 1)).all()
    assert (known["95 % CI low"] <= known["AUROC"] + 1e-9).all()
    assert (known["AUROC"] <= known["95 % CI high"] + 1e-9).all()
    at.run()  # the table stays for this session without judging again
    assert any("AUROC" in d.value.columns for d in at.dataframe)


def test_auroc_table_is_exact_on_a_known_ranking():
    from kn_core.app.views import SCORES, auroc_table
    import pandas as pd
    rows = [{"fact": f"f{i}", "true": t, **{c: (1.0 if t else 0.0) + i * 1e-3 for c in SCORES.values()}}
            for i in range(6) for t in (True, False)]
    table = auroc_table(pd.DataFrame(rows))
    assert (table["AUROC"] == 1.0).all() and (table["95 % CI low"] == 1.0).all() and (table["claims"] == 12).all()


def test_relation_overview_shows_a_stored_facts_controls_when_asked(home):
    open_app()  # the Fact browser stores its fact's prompts (the relation's first fact, in English)
    at = open_app("views/relation_overview.py")
    assert not control_charts(at)  # nothing computed unasked
    at.toggle(key="overview_controls").set_value(True).run()
    assert not at.exception and not at.error, texts(at.error)
    assert len(control_charts(at)) + sum("nothing to control" in t for t in texts(at.caption)) == 1
    assert any("whose P(object) falls" in t for t in texts(at.markdown))


def test_fact_check_calibrates_on_the_atlas_facts_or_every_fact_and_the_first_facts_are_a_choice(home):
    from kn_core.runs.atlas_build import checker_facts

    assert checker_facts("gemma3-270m") == 3 and checker_facts("smollm2-135m") == 5  # the atlas plans' facts
    at = open_app("views/fact_check.py")
    choice = at.selectbox(key="fc_facts")
    assert checker_facts("demo-mlm") is None and choice.value is None  # no atlas: the paper's, every fact
    assert [o.split(" (")[0] for o in choice.options][:3] == ["every fact of the relation", *(
        f"the relation's first {n} facts" for n in (5, 10))]
    held_out = [s for s in texts(at.subheader) if s.startswith("Evaluation on the held-out facts")]
    assert len(held_out) == 1 and held_out[0].endswith(" calibrated on)"), held_out
    choice.set_value(5).run()
    until_stored(at)
    held_out = [s for s in texts(at.subheader) if s.startswith("Evaluation on the held-out facts")]
    assert held_out == ["Evaluation on the held-out facts (1 of the 5 calibrated on)"], held_out
