"""Language comparison: one fact in N ≥ 2 languages — each language's knowledge neurons over depth, the overlap
matrix with its baselines, the neurons shared by k of the N languages, the cross-language suppression matrix and
the cross-lingual edit (with two languages: the paper's LIKN view)."""
import numpy as np
import pandas as pd
import streamlit as st

from kn_core.app import figures, ui
from kn_core.app import languages as compare
from kn_core.method.languages import depth_counts, edit_sets_n, overlap_matrix, shared_by
from kn_core.method.likn import edit_control, language_prompts, overlap
from kn_core.method.neurons import knowledge_neurons

st.title("Language comparison")
st.caption("Language-independent knowledge neurons: the knowledge neurons a fact's prompts share across languages.")

with ui.guard():
    settings = ui.settings()
    ui.offer_model_for("zh", settings.model_name)
    lm = ui.current_model(settings)
    factset = ui.facts()
    ui.restore("languages", {"relation": ("lang_relation", ui.links.relation(factset)),
                             "fact": ("lang_fact", ui.links.fact(factset)),
                             "langs": ("lang_langs", compare.langs_parser(factset)),
                             "p": ("lang_p", ui.links.number(0.0, 1.0)),
                             "k": ("lang_k", ui.links.number(1, 99, int))}, settings.model_name)
    relation = st.selectbox("Relation", list(factset.relations), key="lang_relation",
                            format_func=lambda r: f"{r} · {factset.relations[r].name}")
    fact = st.selectbox("Fact (type to search)", factset.facts_of(relation), key="lang_fact", format_func=ui.fact_label)
    available = [lang for lang in factset.relations[relation].languages if lang in fact.labels]
    if "lang_langs" in st.session_state:  # languages this fact lacks (another fact's, or a link's) are dropped
        kept = [lang for lang in st.session_state["lang_langs"] if lang in available]
        if kept != st.session_state["lang_langs"] and len(kept) >= 2:
            st.session_state["lang_langs"] = kept
        elif kept != st.session_state["lang_langs"]:
            del st.session_state["lang_langs"]  # the default below
    default = compare.default_languages(lm, factset, fact, available, settings.config)
    langs = st.multiselect("Languages", available, default=ui.links.initial("lang_langs", default), key="lang_langs",
                           help="Two or more. By default the languages of this fact and its relation that the model "
                                "reads (the demo models: the two they were trained on) and that are stored, when two "
                                "or more are; else every one it reads (computed in the background).")
    shown_langs = ",".join(langs)  # always in the URL: the default depends on what is stored here
    if len(langs) < 2:
        st.error(f"Choose at least two languages to compare (this fact has {', '.join(available) or 'none'}"
                 f"{'' if len(available) >= 2 else '; pick a fact labelled in two or more'}).")
        st.stop()
    p = st.slider("p (share of prompts a neuron must be coarse in)", 0.0, 1.0, ui.links.initial("lang_p", 0.7), 0.05,
                  key="lang_p")
    with st.expander("Which facts of this relation share neurons? (stored results only)"):
        ranking = compare.ranking(lm, factset, relation, langs, settings.config, p)
        if ranking.empty:
            st.caption(f"No fact of this relation is stored in all of {', '.join(langs)} yet: open facts here, or "
                       f"run `python -m kn_core batch --model … --langs {','.join(langs)}` to fill the store.")
        else:
            st.dataframe(ranking, hide_index=True, width="stretch", column_config={
                "shared": st.column_config.NumberColumn(help="knowledge neurons in every chosen language"),
                "Jaccard": st.column_config.NumberColumn(format="%.3f", help="mean over the language pairs")})
    prompts, results, neurons = language_prompts(lm, factset, fact, langs), {}, {}
    unusable = [lang for lang in langs if not prompts[lang]]
    if unusable:
        st.warning(f"The model cannot take any prompt of this fact in {', '.join(unusable)} (labels or templates "
                   "outside its vocabulary); compared without them.")
        langs = [lang for lang in langs if prompts[lang]]
        if len(langs) < 2:
            st.error("Fewer than two of the chosen languages can be put to this model: choose others, or another "
                     "model.")
            st.stop()
    n = len(langs)
    if st.session_state.get("lang_k", n) > n:
        st.session_state["lang_k"] = n
    for lang in langs:
        results[lang] = ui.attributions(lm, prompts[lang], settings.config, lang, key=f"languages_{lang}",
                                        fact_id=fact.id)
    if any(found is None for found in results.values()):  # queued: the worker computes them meanwhile
        ui.share(settings, relation=relation, fact=fact.id, langs=shown_langs, p=p)
        st.stop()
    for lang in langs:
        neurons[lang] = [n.neuron for n in knowledge_neurons([r.scores for r in results[lang]], ui.tau_of(lang), p)]

    st.subheader("Each language's knowledge neurons")
    for col, lang in zip(st.columns(min(n, 6)), langs):
        col.metric(f"{lang} knowledge neurons", len(neurons[lang]))
    means = {lang: np.mean([r.scores for r in results[lang]], axis=0) for lang in langs}
    zmax = max(float(np.abs(m).max()) for m in means.values())
    per_row = 2 if n <= 4 else 3
    for start in range(0, n, per_row):
        for col, lang in zip(st.columns(per_row), langs[start:start + per_row]):
            col.plotly_chart(figures.neuron_heatmap(means[lang], f"{lang}: {fact.subject(lang)} → {fact.object(lang)}",
                                                    zmax=zmax, marked=neurons[lang]), key=f"lang_heat_{lang}")

    st.subheader("Overlap between languages")
    matrix = overlap_matrix(neurons, lm.n_layers)
    base = compare.baselines(lm, factset, fact, neurons, settings.config, p)
    st.plotly_chart(figures.language_matrices(
        {"this fact": matrix.jaccard, "another fact, same relation": base.same_relation,
         "a fact of another relation": base.other_relation}, langs,
        "Jaccard of the fact's knowledge neurons in the row language with those in the column language",
        row_title="this fact in", column_title="compared with"), key="lang_matrix")
    st.caption(f"Baselines (stored facts only, nothing computed): the fact's row-language neurons against the "
               f"column-language neurons of {len(base.same_facts)} other stored fact(s) of {relation} and "
               f"{len(base.other_facts)} stored fact(s) of other relations (blank: none stored in that language). "
               "Neurons shared at the level of the fact show as a cell above both of its baselines.")
    if n == 2:
        shared = overlap(neurons[langs[0]], neurons[langs[1]], lm.n_layers)
        left, right = st.columns(2)
        left.plotly_chart(figures.venn((len(shared.only_a), len(shared.shared), len(shared.only_b)), tuple(langs),
                                       "Knowledge neurons"), key="lang_venn")
        right.plotly_chart(figures.layer_histogram({langs[0]: shared.per_layer_a, langs[1]: shared.per_layer_b,
                                                    "shared": shared.per_layer_shared}), key="lang_layers")

    st.subheader("Neurons shared by k of the languages")
    k = st.slider(f"k (of {n} languages)", 1, n, ui.links.initial("lang_k", n), key="lang_k",
                  help=f"k = {n}: in every language ('language-independent'); k = 1: in any.")
    ui.share(settings, relation=relation, fact=fact.id, langs=shown_langs, p=p, k=None if k == n else k)
    found = shared_by(neurons, k, lm.n_layers)
    cols = st.columns(n)
    for col, (j, count) in zip(cols, enumerate(found.by_k, 1)):
        col.metric(f"in ≥ {j} of {n}", count)
    st.plotly_chart(figures.language_depth({**depth_counts(neurons, lm.n_layers),
                                            f"shared by ≥ {k}": found.per_layer}), key="lang_depth")
    if found.neurons:
        st.dataframe(pd.DataFrame(found.rows()), hide_index=True, width="stretch")
    else:
        st.info(f"No neuron is a knowledge neuron in {k} or more of these languages at these thresholds "
                "(lower p or k to loosen them).")

    st.subheader("Cross-language suppression")
    effects = compare.suppression(lm, prompts, neurons) if any(neurons.values()) else None
    if not any(neurons.values()):
        st.info("No language has knowledge neurons at these thresholds: nothing to suppress.")
    elif effects is not None:
        sd = np.vectorize(lambda m, s, r: f"random {m:+.1%} ± {s:.1%}; {r:.0%} of draws as low or lower")(
            effects.random_mean, effects.random_sd, np.nan_to_num(effects.random_rank, nan=1.0))
        st.plotly_chart(figures.language_matrices(
            {"knowledge neurons": effects.change, f"random sets ({effects.draws} draws, mean)": effects.random_mean},
            langs, "Suppress the row language's knowledge neurons: relative change of P(object) on the column "
                   "language's prompts", percent=True, hover={"knowledge neurons": sd},
            row_title="suppressed", column_title="measured on"), key="lang_suppression")
        st.caption("The diagonal is each language's own effect. Random sets: as many neurons per layer as the row "
                   f"language's set, never its own, {effects.draws} draws; an empty row changes nothing.")

    st.subheader("Cross-lingual edit effect")
    sets = {name: chosen for name, chosen in edit_sets_n(neurons, lm.n_layers).items() if chosen}
    if "shared" not in sets:
        st.info("This fact has no neuron shared by every chosen language at these thresholds (lower p, or choose "
                "fewer languages). The table edits each language's own knowledge neurons and measures all of them.")
    mode = st.radio("Intervention", ["suppress", "enhance"], horizontal=True, key="lang_mode")
    control, unrelated = edit_control(lm, factset, fact, langs)
    view = compare.edit(lm, prompts, sets, mode, unrelated)
    if view is not None:
        st.caption("Mean relative change of P(object)." + ("" if control is None else
                                                          f" Control: the unrelated fact {ui.fact_label(control)}."))
        st.dataframe(view.map(lambda v: f"{v:+.1%}"), width="stretch")

    st.subheader("Controls per language: is each language's set specific to this fact?")
    for start in range(0, n, 3):
        for col, lang in zip(st.columns(min(3, n)), langs[start:start + 3]):
            with col:
                ui.controls_view(lm, prompts[lang], neurons[lang], lang, relation, key=f"lang_{lang}",
                                 title=f"{lang}: whose P(object) falls when its {len(neurons[lang])} neuron(s) are "
                                       "suppressed?")
