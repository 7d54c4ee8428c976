"""Two models side by side on one fact: P(object), where the attribution sits over relative depth, and what
suppressing each model's knowledge neurons does (with the controls and their specificity verdict)."""
import numpy as np
import streamlit as st

from kn_core.app import figures, ui
from kn_core.method.neurons import knowledge_neurons, per_layer_counts

st.title("Two models, one fact")
st.caption("Does a deeper model keep the fact at the same relative depth (layer / (layers − 1))? The sidebar's "
           "model against another; attributions come from the store or are computed once (with progress).")

with ui.guard():
    settings = ui.settings()
    lm = ui.current_model(settings)
    factset = ui.facts()
    others = [name for name in ui.listed_models() if name != lm.name]
    ui.restore("compare_models", {"other": ("compare_other", ui.links.choice(others)),
                                  "relation": ("compare_relation", ui.links.relation(factset)),
                                  "fact": ("compare_fact", ui.links.fact(factset)),
                                  "lang": ("compare_lang", ui.links.choice(list(factset.languages))),
                                  "p": ("compare_p", ui.links.number(0.0, 1.0))}, settings.model_name)
    top, mid = st.columns([1, 2])
    other = top.selectbox("Compare with", others, key="compare_other")
    relation = mid.selectbox("Relation", list(factset.relations), key="compare_relation",
                             format_func=lambda r: f"{r} · {factset.relations[r].name}")
    fact = st.selectbox("Fact (type to search)", factset.facts_of(relation), key="compare_fact",
                        format_func=ui.fact_label)
    left, right = st.columns([1, 2])
    lang = left.radio("Language", list(factset.languages), horizontal=True, key="compare_lang")
    p = right.slider("p (share of prompts a neuron must be coarse in)", 0.0, 1.0, ui.links.initial("compare_p", 0.7),
                     0.05, key="compare_p")
    ui.share(settings, other=other, relation=relation, fact=fact.id, lang=lang, p=p)
    templates = [t.text for t in factset.relations[relation].templates_for(lang)]
    profiles, counts, shown = {}, {}, []
    columns = dict(zip((lm.name, other), st.columns(2)))
    charts = st.container()  # below the columns, drawn before the suppression runs: the stored results show first
    for model in (lm, ui.model(other)):
        with columns[model.name]:
            st.subheader(model.name)
            prompts = model.prompts(templates, fact.subject(lang), fact.object(lang)).prompts
            if not prompts:
                st.warning(f"{ui.plain(model.name)} cannot read this fact's prompts in {lang}.")
                continue
            results = ui.attributions(model, prompts, settings.config, lang, key=f"compare_{model.name}",
                                      fact_id=fact.id)
            if results is None:  # queued: this column fills in when its worker has stored them
                continue
            neurons = [n.neuron for n in knowledge_neurons([r.scores for r in results], ui.tau_of(lang), p)]
            cols = st.columns(2)
            cols[0].metric("P(object), mean over prompts", f"{np.mean([r.p_object for r in results]):.4f}")
            cols[1].metric("knowledge neurons", len(neurons), help=f"{model.n_layers} layers × {model.d_ff} neurons")
            profiles[model.name] = figures.layer_profile(np.mean([r.scores for r in results], axis=0))
            counts[model.name] = per_layer_counts(neurons, model.n_layers)
            shown.append((model, prompts, neurons))
    if profiles:
        left, right = charts.columns(2)
        left.plotly_chart(figures.depth_profiles(profiles), key="compare_profile")
        right.plotly_chart(figures.depth_distribution(counts, "Knowledge neurons over depth"), key="compare_depth")
    for model, prompts, neurons in shown:  # then what suppressing each model's neurons does (forward passes)
        with columns[model.name]:
            effect = ui.suppression(model, prompts, neurons)
            if effect is not None:
                cols = st.columns(2)
                cols[0].metric("suppressing them: P(object)", f"{effect.own:+.1%}")
                cols[1].metric("as many random neurons", f"{effect.random:+.1%}")
            ui.controls_view(model, prompts, neurons, lang, relation, key=f"compare_{model.name}",
                             title=f"{model.name}: whose P(object) falls?")
