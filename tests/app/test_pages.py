"""The data-set pages (relation overview, neuron search, two models), shareable URLs, the showcase and the model
field, through AppTest on the demo models, over a store holding a small batch."""
from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest
from helpers import open_app, texts, until_stored

from kn_core.attribution import AttributionConfig
from kn_core.data import load_bundled
from kn_core.model.loading import DEMO_MODELS, load_model
from kn_core.runs import queries
from kn_core.runs.batch import run_batch
from kn_core.runs.store import ResultStore

pytestmark = pytest.mark.skipif(not all((p / "config.json").is_file() for p in DEMO_MODELS.values()),
                                reason="demo models missing: run `python -m kn_core.demo train`")
TIMEOUT = 300
RELATION, FACTS = "P36", 2


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A store with the first two facts of P36 on demo-mlm, in both languages, and a showcase chosen from them."""
    folder = tmp_path_factory.mktemp("home")
    before = os.environ.get("KN_EXPLORER_HOME")
    os.environ["KN_EXPLORER_HOME"] = str(folder)
    store = ResultStore()
    run_batch("demo-mlm", load_bundled(), ["en", "zh"], AttributionConfig(), store, relations=[RELATION],
              max_facts=FACTS, progress=False)
    yield folder, store
    store.close()
    if before is None:
        del os.environ["KN_EXPLORER_HOME"]
    else:
        os.environ["KN_EXPLORER_HOME"] = before




def test_relation_overview_from_the_store(home):
    at = open_app("views/relation_overview.py")
    assert not at.error, texts(at.error)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["facts stored, en"] == f"{FACTS} of 50" and metrics["facts stored, zh"] == f"{FACTS} of 50"
    assert len(at.get("plotly_chart")) == 1 and len(at.dataframe) == 2  # depth figure, top neurons per language
    assert at.dataframe[0].value.columns.tolist() == ["layer", "index", "facts", "share"]
    assert at.query_params["relation"] == RELATION and at.query_params["model"] == "demo-mlm"


def test_relation_overview_batch_button_fills_the_store(home):
    _, store = home
    before = len(store.results(model="demo-mlm"))
    at = open_app("views/relation_overview.py")
    at.number_input(key="overview_max_facts").set_value(FACTS + 1).run()
    at.button(key="overview_batch").click().run()
    until_stored(at)
    assert not at.exception and not at.error, texts(at.error)
    assert any("Batch done: 30 of 30 prompt(s) stored, 0 failed" in s for s in texts(at.success)), texts(at.success)
    assert len(store.results(model="demo-mlm")) == before + 10
    assert {m.label: m.value for m in at.metric}["facts stored, en"] == f"{FACTS + 1} of 50"


def test_relation_overview_measures_effects_when_asked(home):
    at = open_app("views/relation_overview.py")
    assert {m.label: m.value for m in at.metric}["mean suppression effect"] == "–"  # computes nothing unasked
    at.button(key="overview_effects").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert "en " in {m.label: m.value for m in at.metric}["mean suppression effect"]


def test_neuron_search_lists_the_prompts_where_a_neuron_is_a_knowledge_neuron(home):
    _, store = home
    lm, factset = load_model("demo-mlm"), load_bundled()
    top = queries.relation_overview(store, lm, factset, RELATION, ["en"], AttributionConfig(), 0.7).langs["en"].top
    layer, index = int(top["layer"][0]), int(top["index"][0])
    at = open_app("views/neuron_search.py", {"layer": str(layer), "index": str(index)})
    assert not at.error, texts(at.error)
    assert at.number_input(key="search_layer").value == layer and at.number_input(key="search_index").value == index
    found = at.dataframe[0].value
    assert len(found) >= int(top["facts"][0]) and set(found["relation"]) == {RELATION}
    assert (found["share of max"] > 0.3).all()
    assert len(at.get("plotly_chart")) == 1  # the activation on the sentence


def test_two_models_side_by_side(home):
    at = open_app("views/compare_models.py", {"relation": RELATION, "fact": "P36-nigeria", "lang": "en"})
    assert not at.error, texts(at.error)
    assert [h.value for h in at.subheader][:2] == ["demo-mlm", "demo-clm"]
    labels = [m.label for m in at.metric]
    assert labels.count("P(object), mean over prompts") == 2 and labels.count("suppressing them: P(object)") == 2
    keys = [chart.key for chart in at.get("plotly_chart")]
    assert keys == ["compare_demo-mlm_controls", "compare_demo-clm_controls", "compare_profile", "compare_depth"]


def test_a_link_restores_the_fact_browser_view(home):
    params = {"relation": RELATION, "fact": "P36-nigeria", "lang": "zh", "tau": "0.25", "p": "0.5"}
    at = open_app(None, {"model": "demo-mlm", **params})
    assert not at.error and not at.warning, (texts(at.error), texts(at.warning))
    assert at.selectbox(key="browser_fact").value.id == "P36-nigeria" and at.radio(key="browser_lang").value == "zh"
    assert at.slider(key="browser_tau").value == 0.25 and at.slider(key="browser_p").value == 0.5
    assert {k: at.query_params[k] for k in params} == params  # the URL keeps the view
    at.radio(key="browser_lang").set_value("en").run()  # the user's change wins over the link, and is written
    assert at.radio(key="browser_lang").value == "en" and at.query_params["lang"] == "en"


@pytest.mark.parametrize("page, params, named", [
    (None, {"relation": "P999", "fact": "P36-nigeria"}, "relation='P999'"),
    (None, {"relation": RELATION, "fact": "P17-osaka"}, "fact='P17-osaka'"),
    (None, {"relation": RELATION, "tau": "7"}, "tau='7'"),
    (None, {"relation": RELATION, "lang": "pt"}, "lang='pt'"),
    ("views/neuron_search.py", {"layer": "99", "index": "x"}, "layer='99'"),
    ("views/languages.py", {"relation": RELATION, "p": "nan"}, "p='nan'"),
])
def test_invalid_link_values_give_a_clear_message(home, page, params, named):
    at = open_app(page, params)
    assert not at.error, texts(at.error)
    warnings = texts(at.warning)
    assert any("This link" in w and named in w for w in warnings), warnings


def test_a_links_warning_stays_until_the_view_changes(home):
    """The page runs again when its measurements are done (and the user's view has not changed): the warning
    stays; a changed widget drops it."""
    at = open_app(None, {"relation": RELATION, "tau": "7"})
    until_stored(at.run())
    assert any("This link" in w and "tau='7'" in w for w in texts(at.warning)), texts(at.warning)
    until_stored(at.slider(key="browser_tau").set_value(0.4).run())
    assert not any("This link" in w for w in texts(at.warning)), texts(at.warning)


def test_a_link_to_a_model_that_is_not_listed_is_refused(home, tmp_path):
    at = open_app(None, {"model": str(tmp_path)})
    assert any("not available here" in w for w in texts(at.warning)), texts(at.warning)
    assert at.query_params["model"] == "demo-mlm"


def test_the_app_opens_on_the_showcase(home):
    """The showcase command picks from the store; the app opens on its model and facts, not on hard-coded ones."""
    from kn_core.cli import main

    _, store = home
    assert main(["showcase", "--model", "demo-mlm", "--relations", RELATION, "--threads", "1"]) == 0
    pick = queries.showcase(store)
    assert pick.model == "demo-mlm" and pick.effect < pick.random_effect
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.selectbox(key="model_choice").value == "demo-mlm"
    assert at.selectbox(key="browser_fact").value.id == pick.fact and at.radio(key="browser_lang").value == pick.lang
    if pick.language_fact:
        at.switch_page("views/languages.py")
        at.run()
        assert at.selectbox(key="lang_fact").value.id == pick.language_fact


def test_model_card_is_plain_text(home):
    at = open_app("views/about.py")
    card = load_model("demo-mlm").model_card()
    assert at.code and at.code[0].value == card.strip() and at.code[0].language in (None, "", "plaintext")
    assert not any(card[:200] in m.value for m in at.markdown)


def test_model_field_gives_the_loaders_reason_for_any_unusable_path(home, tmp_path):
    """#26 F14: the loader's own reason, as plain text, with what the field takes (it was one message for all)."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    reasons = {tmp_path / "missing": "no model folder at", tmp_path / "empty": "holds no config.json",
               tmp_path / "bad": "not a valid JSON file", "no-such/hub-model": "cannot read the config of"}
    for path, reason in reasons.items():
        at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
        at.session_state["model_choice"] = "Other: Hugging Face id or folder…"
        at.session_state["model_other"] = str(path)
        at.run()
        assert not at.exception
        errors = texts(at.error)
        assert len(errors) == 1 and "cannot use" in errors[0] and reason in errors[0], (path, errors)
        assert "The field takes a bundled demo name" in errors[0]
