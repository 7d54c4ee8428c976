"""Language comparison: one fact in English and Chinese, its shared neurons and the cross-lingual edit effect."""
import numpy as np
import streamlit as st

from kn_core.app import figures, ui
from kn_core.method.likn import cross_lingual_edit, edit_sets, overlap
from kn_core.method.neurons import knowledge_neurons

st.title("Language comparison")
st.caption("Language-independent knowledge neurons: the knowledge neurons a fact's English and Chinese prompts share.")

with ui.guard():
    settings = ui.settings()
    ui.offer_model_for("zh", settings.model_name)
    lm = ui.current_model(settings)
    factset = ui.facts()
    ui.restore("languages", {"relation": ("lang_relation", ui.links.relation(factset)),
                             "fact": ("lang_fact", ui.links.fact(factset)),
                             "p": ("lang_p", ui.links.number(0.0, 1.0))}, settings.model_name)
    relation = st.selectbox("Relation", list(factset.relations), key="lang_relation",
                            format_func=lambda r: f"{r} · {factset.relations[r].name}")
    langs = list(factset.languages)[:2]
    p = st.slider("p (share of prompts a neuron must be coarse in)", 0.0, 1.0, ui.links.initial("lang_p", 0.7), 0.05,
                  key="lang_p")
    with st.expander("Which facts of this relation share neurons? (stored results only)"):
        ranking = ui.overlap_ranking(lm, factset, relation, langs, settings.config, p)
        if ranking.empty:
            st.caption("No fact of this relation is stored in both languages yet: open facts here, or run "
                       "`python -m kn_core batch --model … --langs en,zh` to fill the store.")
        else:
            st.dataframe(ranking, hide_index=True, width="stretch",
                         column_config={"Jaccard": st.column_config.NumberColumn(format="%.3f")})
    fact = st.selectbox("Fact (type to search)", factset.facts_of(relation), key="lang_fact", format_func=ui.fact_label)
    ui.share(settings, relation=relation, fact=fact.id, p=p)
    prompts, results, neurons = {}, {}, {}
    for lang in langs:
        templates = [t.text for t in factset.relations[relation].templates_for(lang)]
        prompts[lang] = [lm.prompt(t, fact.subject(lang), fact.object(lang)) for t in templates]
        results[lang] = ui.attributions(lm, prompts[lang], settings.config, lang, key=f"languages_{lang}",
                                        fact_id=fact.id)
    if any(found is None for found in results.values()):  # queued: the worker computes them meanwhile
        st.stop()
    for lang in langs:
        neurons[lang] = [(l, i) for l, i, _ in knowledge_neurons([r.scores for r in results[lang]], ui.tau_of(lang), p)]
    shared = overlap(neurons[langs[0]], neurons[langs[1]], lm.n_layers)
    cols = st.columns(4)
    cols[0].metric("Jaccard", f"{shared.jaccard:.3f}")
    cols[1].metric(f"{langs[0]} knowledge neurons", len(neurons[langs[0]]))
    cols[2].metric(f"{langs[1]} knowledge neurons", len(neurons[langs[1]]))
    cols[3].metric("shared", len(shared.shared))
    means = {lang: np.mean([r.scores for r in results[lang]], axis=0) for lang in langs}
    zmax = max(float(np.abs(m).max()) for m in means.values())
    for col, lang in zip(st.columns(2), langs):
        col.plotly_chart(figures.neuron_heatmap(means[lang], f"{lang}: {fact.subject(lang)} → {fact.object(lang)}",
                                                zmax=zmax, marked=neurons[lang]), key=f"lang_heat_{lang}")
    left, right = st.columns(2)
    left.plotly_chart(figures.venn((len(shared.only_a), len(shared.shared), len(shared.only_b)), tuple(langs),
                                   "Knowledge neurons"), key="lang_venn")
    right.plotly_chart(figures.layer_histogram({langs[0]: shared.per_layer_a, langs[1]: shared.per_layer_b,
                                                "shared": shared.per_layer_shared}), key="lang_layers")
    st.subheader("Cross-lingual edit effect")
    if not shared.shared:
        st.info("This fact has no language-independent neuron at these thresholds (lower p to loosen them). "
                "The table edits each language's own knowledge neurons and measures both languages.")
    mode = st.radio("Intervention", ["suppress", "enhance"], horizontal=True, key="lang_mode")
    sets = {name: chosen for name, chosen in edit_sets(neurons[langs[0]], neurons[langs[1]], *langs,
                                                      lm.n_layers).items() if chosen}
    control = next(f for f in factset.facts_of(relation) if f.id != fact.id)
    unrelated = {lang: [lm.prompt(factset.relations[relation].templates_for(lang)[0].text, control.subject(lang),
                                  control.object(lang))] for lang in langs}
    with ui.model_turn(lm):
        table = cross_lingual_edit(lm, prompts, sets, mode, unrelated)
    view = table.pivot_table(index="edited_set", columns=["target", "measured_lang"], values="relative_change")
    view.columns = [f"{target} prompts, {lang}" for target, lang in view.columns]
    st.caption(f"Mean relative change of P(object). Control: the unrelated fact {ui.fact_label(control)}.")
    st.dataframe(view.map(lambda v: f"{v:+.1%}"), width="stretch")

    st.subheader("Controls per language: is each language's set specific to this fact?")
    for col, lang in zip(st.columns(len(langs)), langs):
        with col:
            ui.controls_view(lm, prompts[lang], neurons[lang], lang, relation, key=f"lang_{lang}",
                             title=f"{lang}: whose P(object) falls when its {len(neurons[lang])} neuron(s) are "
                                   "suppressed?")
