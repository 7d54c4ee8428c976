"""The Streamlit app through AppTest on the demo models: every page renders without exceptions."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import shown
from hypothesis import given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest
from helpers import until_stored, watching

from kn_core.model.loading import DEMO_MODELS

pytestmark = pytest.mark.skipif(not all((p / "config.json").is_file() for p in DEMO_MODELS.values()),
                                reason="demo models missing: run `python -m kn_core.demo train`")
TIMEOUT = 300


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path))
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return until_stored(at)


def visit(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return until_stored(at)


def charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def test_fact_browser_shows_heatmap(app):
    assert app.title[0].value == "Fact browser"
    assert not app.error, [e.value for e in app.error]
    assert len(charts(app)) >= 2  # heatmap + layer histogram (+ neuron detail)
    assert len(app.get("download_button")) == 2  # the shown scores and the knowledge-neuron table, as CSV


ROOT = Path(__file__).resolve().parents[2]
PAGES = re.findall(r'st\.Page\("(views/[a-z_]+\.py)"', (ROOT / "app.py").read_text(encoding="utf-8"))


def page_title(page: str) -> str:
    """The title a page script gives itself (its first ``st.title``)."""
    return re.search(r'st\.title\("([^"]+)"\)', (ROOT / page).read_text(encoding="utf-8")).group(1)


def test_the_navigation_lists_every_page_script():
    assert sorted(PAGES) == sorted(f"views/{p.name}" for p in (ROOT / "views").glob("*.py")) and len(PAGES) >= 8


@pytest.mark.parametrize("model", list(DEMO_MODELS))
def test_every_page_renders(tmp_path, monkeypatch, model):
    """Every page of the navigation, on each demo model, in the order of the menu: its own title, no exception,
    no error box but the Fact-check page's verdict "wrong", which is red by design (work a page queues is waited
    for, so what it renders afterwards is checked too)."""
    # the choice goes into session state before the first run: AppTest forgets sidebar widget values set
    # with set_value() on the next run of an st.navigation app
    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path))
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["model_choice"] = model
    until_stored(at.run())
    for page in PAGES:
        visit(at, page)
        errors = [shown(e) for e in at.error if not shown(e).startswith("with DKN: **wrong**")]
        assert not errors, (page, errors)
        assert [t.value for t in at.title][:1] == [page_title(page)], (page, [t.value for t in at.title])
    assert any(f"Model card: {model}" in shown(h) for h in at.header), "another model was shown"


def test_custom_triple_bad_template_shows_error(app):
    visit(app, "views/custom_triple.py")
    app.radio(key="custom_how").set_value("My own").run()
    app.text_area(key="custom_text").set_value("The capital of Tanzania is Dodoma.").run()
    assert any("no [X] slot" in shown(e) for e in app.error), [e.value for e in app.error]
    assert app.button(key="custom_run_button").disabled


def test_custom_triple_warns_of_template_words_the_model_cannot_read(app):
    visit(app, "views/custom_triple.py")
    app.radio(key="custom_how").set_value("My own").run()
    app.text_area(key="custom_text").set_value("The ñandú capital of [X] is [Y].\nThe capital of [X] is [Y].").run()
    warnings = [shown(w) for w in app.warning]
    assert any("ñandú" in w and "unknown token" in w for w in warnings), warnings
    assert sum("unknown token" in w for w in warnings) == 1  # the second template is fine


def test_custom_triple_runs_and_is_saved(app):
    visit(app, "views/custom_triple.py")
    until_stored(app.button(key="custom_run_button").click().run())
    assert not app.exception and any("Stored" in s.value for s in app.success)
    visit(app, "views/fact_browser.py")
    app.radio(key="browser_source").set_value("Saved results").run()
    assert not app.exception and len(charts(app)) >= 2


def test_fact_check_gives_a_verdict(app):
    visit(app, "views/fact_check.py")
    app.radio(key="fc_how").set_value("subject + candidate object").run()
    texts = [shown(m) for m in (*app.success, *app.error, *app.warning)]
    assert any("with DKN" in t for t in texts), texts
    assert any("wo_DKN" in t for t in texts), texts
    assert app.sidebar.selectbox(key="model_choice").value == "demo-mlm"  # a fresh home's first model: masked
    assert any("against the whole candidate" in t for t in texts if "wo_DKN" in t), texts  # the authors' rule


def test_batched_facts_open_without_recomputation(tmp_path, monkeypatch):
    """Issue 7: after a batch run, a fact opens in the app from the store (no attribution is computed)."""
    import kn_core.attribution
    import kn_core.runs.store
    from kn_core.app.ui import fact_label
    from kn_core.attribution import AttributionConfig
    from kn_core.data import load_bundled
    from kn_core.runs.batch import run_batch
    from kn_core.runs.store import ResultStore

    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path))
    factset = load_bundled()
    relation = next(iter(factset.relations))
    fact = factset.facts_of(relation)[0]
    store = ResultStore()
    report = run_batch("demo-mlm", factset, ["en", "zh"], AttributionConfig(), store, relations=[relation],
                       max_facts=1, progress=False)
    store.close()
    assert report.done > 0 and not report.failed

    def no_compute(*args, **kwargs):
        raise AssertionError("the app recomputed a result the batch had stored")

    monkeypatch.setattr(kn_core.attribution, "attribute", no_compute)
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.run()
    assert not at.exception and not at.error, ([e.value for e in at.exception], [e.value for e in at.error])
    assert at.selectbox(key="browser_fact").value == fact
    for lang in ("en", "zh"):
        at.radio(key="browser_lang").set_value(lang).run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert len(charts(at)) >= 2
    visit(at, "views/languages.py")  # the stored fact, both languages: ranked by shared neurons, nothing computed
    ranking = at.dataframe[0].value
    assert list(ranking["fact"]) == [fact_label(fact)] and {"shared", "Jaccard"} <= set(ranking.columns)


def test_fact_check_dkn_thresholds_are_validated(app):
    visit(app, "views/fact_check.py")
    app.slider(key="fc_t_low").set_value(0.5).run()
    assert not app.exception
    assert any("T_high" in shown(e) and "T_low" in shown(e) for e in app.error), [e.value for e in app.error]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40))
def test_user_text_in_messages_shows_as_typed(text):
    """ui.plain escapes every Markdown character: what the page shows is exactly what the user typed."""
    from types import SimpleNamespace

    from kn_core.app.ui import plain

    escaped = plain(text)
    assert shown(SimpleNamespace(value=escaped)) == text
    assert not re.search(r"(?<!\\)[*_`$\[\]<>#|~]", escaped.replace("\\\\", ""))


def test_scores_csv_round_trips_the_matrix():
    import io

    import numpy as np
    import pandas as pd

    from kn_core.app.ui import scores_csv

    scores = np.random.default_rng(0).normal(size=(3, 37)).astype(np.float32)
    frame = pd.read_csv(io.BytesIO(scores_csv(scores)))
    back = frame.pivot(index="layer", columns="index", values="score").to_numpy()
    assert back.shape == (3, 37) and np.allclose(back, scores)


def test_clicked_neuron_from_heatmap_cells_and_markers():
    from kn_core.app.ui import clicked_neuron

    shape = (3, 37)
    assert clicked_neuron([{"x": 20, "y": 2, "customdata": [23, 2]}], shape) == (2, 23)  # a binned cell
    assert clicked_neuron([{"x": 5.0, "y": 1.0}], shape) == (1, 5)  # a knowledge-neuron marker
    assert clicked_neuron([{"x": 40, "y": 1}, {"x": 3, "y": 0}], shape) == (0, 3)  # out of range: the next one
    assert clicked_neuron([], shape) is None and clicked_neuron([{"z": 1.0}], shape) is None


def test_opening_a_fact_that_is_not_stored_queues_it(tmp_path, monkeypatch):
    """No "Compute now" gate: an unstored fact is queued for the model's worker; the page run ends at once with
    the watching fragment (progress, Cancel), its widgets stay usable, and a later run shows the fact. The
    fact-check calibration is queued the same way."""
    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path))
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert watching(at), "computed in the page run instead of queueing"
    assert not any(b.label.startswith("Compute now") for b in at.button)
    assert any("in the background" in p.proto.text for p in at.get("progress")), [p.proto for p in at.get("progress")]
    until_stored(at)
    assert not at.error and len(charts(at)) >= 2 and at.get("download_button")
    assert not any("not computed" in shown(i) for i in at.info)

    at.switch_page("views/fact_check.py")
    at.run()
    assert watching(at) and not at.metric, "calibrated in the page run instead of queueing"
    until_stored(at)  # calibrated by the worker, then shown
    assert not any("Failed" in shown(e) or "went wrong" in shown(e) for e in at.error), [e.value for e in at.error]
    assert {m.label for m in at.metric} >= {"DKN neurons", "λ"}
