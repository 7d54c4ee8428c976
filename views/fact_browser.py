"""Fact browser: a bundled (or saved) fact, its prompts, heatmap, knowledge neurons, edit effects, the controls
with their specificity verdict, and the critics' checks."""
import streamlit as st

from kn_core.app import ui

st.title("Fact browser")
st.caption("Where does the model keep a fact? AMIG attributions over every FFN neuron, per prompt.")

with ui.guard():
    settings = ui.settings()
    lm = ui.current_model(settings)
    source = st.radio("Facts", ["Bundled fact set", "Saved results"], horizontal=True, key="browser_source")
    if source == "Bundled fact set":
        factset = ui.facts()
        ui.restore("fact_browser", {"relation": ("browser_relation", ui.links.relation(factset)),
                                    "fact": ("browser_fact", ui.links.fact(factset)),
                                    "lang": ("browser_lang", ui.links.choice(list(factset.languages))),
                                    "tau": ("browser_tau", ui.links.number(0.05, 1.0)),
                                    "p": ("browser_p", ui.links.number(0.0, 1.0))}, settings.model_name)
        relation = st.selectbox("Relation", list(factset.relations), key="browser_relation",
                                format_func=lambda r: f"{r} · {factset.relations[r].name}")
        fact = st.selectbox("Fact (type to search)", factset.facts_of(relation), key="browser_fact",
                            format_func=ui.fact_label)
        lang = st.radio("Language", list(factset.languages), horizontal=True, key="browser_lang")
        templates = [t.text for t in factset.relations[relation].templates_for(lang)]
        subject, obj = fact.subject(lang), fact.object(lang)
        other_langs = [(l, factset.relations[relation].templates_for(l), fact.subject(l), fact.object(l))
                       for l in factset.languages if l != lang]
    else:
        saved = ui.saved_triples(lm)
        if not saved:
            st.info("Nothing saved for this model yet: run one on the Custom triple page.")
            st.stop()
        subject, obj, lang, templates = st.selectbox("Saved triple", saved, key="browser_saved",
                                                     format_func=lambda s: f"[{s[2]}] {s[0]} → {s[1]}")
        other_langs, relation = [], None  # the controls find the relation its templates match, if any
    if source == "Bundled fact set":
        ui.share(settings, relation=relation, fact=fact.id, lang=lang, tau=st.session_state.get("browser_tau"),
                 p=st.session_state.get("browser_p"))
    prompts = [lm.prompt(t, subject, obj) for t in templates]
    results = ui.attributions(lm, prompts, settings.config, lang, key=f"browser_{lang}",
                              fact_id=fact.id if source == "Bundled fact set" else "")
    if results is None:  # queued: the worker computes them while the page stays usable
        st.stop()
    others = ui.stored_only(lm, other_langs, settings.config)
    ui.fact_views(lm, results, lang, key="browser", others=others, relation=relation, checks=True,
                  config=settings.config)
