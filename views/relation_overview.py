"""Relation overview: where a model keeps a relation's facts, in each language, from the stored results."""
import streamlit as st

from kn_core.app import figures, ui

st.title("Relation overview")
st.caption("From the store, nothing computed unless you ask: the knowledge neurons of every stored fact of a "
           "relation, over relative depth (layer / (layers − 1), so models of different depth compare).")

with ui.guard():
    settings = ui.settings()
    lm = ui.current_model(settings)
    factset = ui.facts()
    ui.restore("relation_overview", {"relation": ("overview_relation", ui.links.relation(factset)),
                                     "p": ("overview_p", ui.links.number(0.0, 1.0))}, settings.model_name)
    left, right = st.columns([3, 1])
    relation = left.selectbox("Relation", list(factset.relations), key="overview_relation",
                              format_func=lambda r: f"{r} · {factset.relations[r].name}")
    p = right.slider("p (share of prompts a neuron must be coarse in)", 0.0, 1.0, ui.links.initial("overview_p", 0.7),
                     0.05, key="overview_p")
    ui.share(settings, relation=relation, p=p)
    langs = list(factset.languages)[:2]
    overview = ui.relation_overview(lm, factset, relation, langs, settings.config, p)

    cols = st.columns(2 + len(langs))
    for col, (lang, view) in zip(cols, overview.langs.items()):
        col.metric(f"facts stored, {lang}", f"{len(view.stored)} of {view.n_facts}")
    cols[len(langs)].metric("facts with shared (language-independent) neurons",
                            "–" if not overview.n_both else f"{overview.shared_share:.0%}",
                            help=f"of the {overview.n_both} fact(s) stored in {' and '.join(langs)}")
    effects = [view for view in overview.langs.values() if view.effects]
    cols[-1].metric("mean suppression effect", " / ".join(f"{v.lang} {v.mean_effect:+.1%}" for v in effects) or "–",
                    help="P(object) when a fact's knowledge neurons are set to 0, mean over the facts with a "
                         "measured effect; as many random neurons: " +
                         " / ".join(f"{v.lang} {v.mean_random_effect:+.1%}" for v in effects))
    if not any(view.stored for view in overview.langs.values()):
        st.info(f"No fact of {relation} is stored for {ui.plain(lm.name)} with these settings yet: compute them "
                "below, or from the command line (see *Fill the store*).")
    else:
        st.plotly_chart(figures.depth_distribution(
            {f"{lang} ({int(v.per_layer.sum())} neurons, {len(v.stored)} facts)": v.per_layer
             for lang, v in overview.langs.items()}), key="overview_depth")
        st.subheader("Neurons that are knowledge neurons for the most facts")
        st.caption("Candidates for degenerate neurons. Select a row to search the store for that neuron.")
        for col, (lang, view) in zip(st.columns(len(langs)), overview.langs.items()):
            col.markdown(f"**{lang}**")
            picked = col.dataframe(view.top, hide_index=True, on_select="rerun", selection_mode="single-row",
                                   key=f"overview_top_{lang}", width="stretch",
                                   column_config={"share": st.column_config.NumberColumn(format="percent")})
            if picked.selection.rows:
                row = view.top.iloc[picked.selection.rows[0]]
                st.switch_page("views/neuron_search.py",
                               query_params={"layer": int(row["layer"]), "index": int(row["index"])})
        st.subheader("One stored fact: is its neuron set specific?")
        stored = [fact for view in overview.langs.values() for fact in view.stored]
        if st.toggle("Measure the controls of a stored fact (suppression passes only)", key="overview_controls"):
            chosen = st.selectbox("Stored fact", stored, key="overview_controls_fact",
                                  format_func=lambda f: f"[{f.lang}] {ui.fact_label(f.fact)} "
                                                        f"({len(f.neurons)} neuron(s))")
            ui.controls_view(lm, chosen.prompts, [n.neuron for n in chosen.neurons], chosen.lang, relation,
                             key="overview_fact", title=f"{chosen.lang}: whose P(object) falls when this fact's "
                                                        f"{len(chosen.neurons)} neuron(s) are suppressed?")
        missing = sum(len(v.stored) - len(v.effects) for v in overview.langs.values())
        if missing and st.button(f"Measure the suppression effect of {missing} stored fact(s) (forward passes only)",
                                 key="overview_effects"):
            ui.measure_effects(lm, overview, settings.config, p)
            st.rerun()

    st.subheader("Fill the store")
    n_facts = len(factset.facts_of(relation))
    st.caption(f"{overview.missing_facts} of {n_facts} fact(s) have prompts still to compute. The same batch from "
               "the command line (it resumes, and skips what is stored):")
    st.code(f"python -m kn_core batch --model {lm.name} --relations {relation} --langs {','.join(langs)} "
            f"--baseline {settings.config.baseline} --steps {settings.config.steps} --rule {settings.config.rule}",
            language="bash")
    max_facts = st.number_input("Facts (the relation's first N, in file order)", 1, n_facts, n_facts,
                                key="overview_max_facts")
    if st.button("Compute the missing prompts", key="overview_batch", disabled=not overview.missing_facts,
                 help="queued behind the facts that pages open; the model's background worker computes them"):
        ui.relation_batch(lm, factset, relation, langs, settings.config, max_facts)
    ui.watch_batch(lm, factset, relation, langs, settings.config, max_facts, key="overview_watch")
