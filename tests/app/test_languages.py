"""The Language comparison page with three languages (AppTest, demo-mlm): the bundled facts gain a third language
"xx" whose labels and templates are English words the demo model knows (a subset of the English templates, so its
knowledge neurons differ from English's)."""
from __future__ import annotations

import json

import pytest
from helpers import open_app, texts, until_stored

from kn_core.app import resources
from kn_core.data import Fact, FactSet, Relation, Template, load_bundled
from kn_core.model.loading import DEMO_MODELS

pytestmark = pytest.mark.skipif(not all((p / "config.json").is_file() for p in DEMO_MODELS.values()),
                                reason="demo models missing: run `python -m kn_core.demo train`")


def with_third_language(factset: FactSet, lang: str = "xx") -> FactSet:
    """Every relation and fact of ``factset`` in English and Chinese (the demo models' languages), with a copy of
    its English in ``lang`` (two of the English train templates, the held-out one kept held out)."""
    relations = {}
    for rid, relation in factset.relations.items():
        train = relation.templates_for("en", heldout=False)[1:3]
        held = relation.templates_for("en", heldout=True)[:1]
        copies = tuple(Template(rid, lang, t.text, t.heldout) for t in (*train, *held))
        kept = tuple(t for t in relation.templates if t.lang in ("en", "zh"))
        relations[rid] = Relation(rid, relation.name, relation.description, kept + copies)
    facts = [Fact(f.id, f.relation, {"en": f.labels["en"], "zh": f.labels["zh"], lang: f.labels["en"]})
             for f in factset.facts if "en" in f.labels and "zh" in f.labels]
    return FactSet(relations, facts, source="bundled")


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """The app's home in a temporary folder and the bundled facts with a third language."""
    folder = tmp_path_factory.mktemp("home")
    factset = with_third_language(load_bundled())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KN_EXPLORER_HOME", str(folder))
        mp.setattr(resources, "load_bundled", lambda: factset)
        resources.facts.clear()
        yield factset
    resources.facts.clear()


def plotly_titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]


def test_the_demo_model_compares_its_own_languages_by_default(three):
    from kn_core.app.languages import DEMO_LANGUAGES
    from kn_core.demo.corpus import DEMO_LANGUAGES as TRAINED

    assert DEMO_LANGUAGES == TRAINED
    at = open_app("views/languages.py")
    assert not at.error and not at.exception, texts(at.error)
    chosen = at.multiselect(key="lang_langs")
    assert chosen.value == ["en", "zh"] and "xx" in chosen.options
    assert "en,zh" in str(at.query_params.get("langs"))  # always in the link: the default depends on the store


def test_three_languages_render(three):
    at = open_app("views/languages.py", {"model": "demo-mlm", "langs": "en,zh,xx"})
    assert not at.error, texts(at.error)
    assert at.multiselect(key="lang_langs").value == ["en", "zh", "xx"]
    labels = [m.label for m in at.metric]
    assert {"en knowledge neurons", "zh knowledge neurons", "xx knowledge neurons"} <= set(labels)
    assert {"in ≥ 1 of 3", "in ≥ 2 of 3", "in ≥ 3 of 3"} <= set(labels)
    titles = plotly_titles(at)
    assert sum(t.startswith(("en:", "zh:", "xx:")) for t in titles) == 3  # one heatmap per language
    assert any(t.startswith("Jaccard of the fact") for t in titles)
    assert any(t.startswith("Knowledge neurons over depth") for t in titles)
    neurons = {m.label.split()[0]: int(m.value) for m in at.metric if m.label.endswith("knowledge neurons")}
    if any(neurons.values()):
        assert any(t.startswith("Suppress the row language") for t in titles)
    markdown = texts(at.markdown)
    assert sum("whose P(object) falls" in s for s in markdown) == 3  # the controls, per language
    assert at.slider(key="lang_k").value == 3 and at.slider(key="lang_k").max == 3
    assert "Knowledge neurons" not in titles  # the Venn diagram is for two languages
    counts = {m.label: int(m.value) for m in at.metric if m.label.startswith("in ≥")}
    assert counts["in ≥ 1 of 3"] >= counts["in ≥ 2 of 3"] >= counts["in ≥ 3 of 3"]  # monotone in k

    at.slider(key="lang_k").set_value(1).run()
    until_stored(at)
    assert not at.error and not at.exception, texts(at.error)
    tables = [d.value for d in at.dataframe if "languages" in d.value.columns]
    if counts["in ≥ 1 of 3"]:
        (table,) = tables
        assert len(table) == counts["in ≥ 1 of 3"] and set(table["languages"]) <= {1, 2, 3}
    assert at.query_params["k"] == "1"

    at.multiselect(key="lang_langs").set_value(["en", "zh"]).run()  # two languages: the paper's view
    until_stored(at)
    assert not at.error, texts(at.error)
    assert at.slider(key="lang_k").value == 1 and at.query_params["langs"] == "en,zh"  # k = 1 fits
    assert sum("whose P(object) falls" in s for s in texts(at.markdown)) == 2
    at.slider(key="lang_k").set_value(2).run()
    until_stored(at)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (venn,) = [s for s in specs if s["layout"].get("title", {}).get("text") == "Knowledge neurons"]
    shared = {m.label: int(m.value) for m in at.metric}["in ≥ 2 of 2"]
    assert int(venn["data"][0]["text"][1]) == shared  # k = 2 of 2 is the two-language LIKN set
    assert "k" not in at.query_params  # k = N is the default

    at.multiselect(key="lang_langs").set_value(["xx"]).run()  # one language: a clear red box, nothing else
    assert any("at least two languages" in e for e in texts(at.error)), texts(at.error)
    assert not at.exception


def test_a_link_names_the_languages(three):
    at = open_app("views/languages.py", {"model": "demo-mlm", "relation": "P36", "fact": "P36-nigeria",
                                         "langs": "xx,en", "k": "2"})
    assert not at.error and not at.warning, (texts(at.error), texts(at.warning))
    assert at.multiselect(key="lang_langs").value == ["xx", "en"] and at.slider(key="lang_k").value == 2
    bad = open_app("views/languages.py", {"model": "demo-mlm", "relation": "P36", "langs": "en,fr"})
    assert any("langs='en,fr'" in w and "no fr" in w for w in texts(bad.warning)), texts(bad.warning)
