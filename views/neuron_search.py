"""Neuron search: one neuron across the store, what it writes, and how it fires on a sentence."""
import streamlit as st

from kn_core.app import figures, ui

st.title("Neuron search")
st.caption("Enter a neuron (or follow a neuron's link from another page): the stored prompts in which it is a "
           "knowledge neuron (score > τ·max of the prompt), the tokens it promotes, its activation on your sentence.")

with ui.guard():
    settings = ui.settings()
    lm = ui.current_model(settings)
    factset = ui.facts()
    ui.restore("neuron_search", {"layer": ("search_layer", ui.links.number(0, lm.n_layers - 1, int)),
                                 "index": ("search_index", ui.links.number(0, lm.d_ff - 1, int))}, settings.model_name)
    for key, top in (("search_layer", lm.n_layers - 1), ("search_index", lm.d_ff - 1)):
        if st.session_state.get(key, 0) > top:  # kept from a larger model
            st.session_state[key] = top
    a, b = st.columns(2)
    layer = a.number_input(f"Layer (0–{lm.n_layers - 1})", 0, lm.n_layers - 1,
                           ui.links.initial("search_layer", lm.n_layers - 1), key="search_layer")
    index = b.number_input(f"Index (0–{lm.d_ff - 1})", 0, lm.d_ff - 1, ui.links.initial("search_index", 0),
                           key="search_index")
    ui.share(settings, layer=layer, index=index)
    found = ui.neuron_occurrences(lm, factset, layer, index, settings.config)
    st.subheader(f"Neuron {layer}:{index}: a knowledge neuron in {len(found)} stored prompt(s)")
    if found.empty:
        st.info("No stored prompt of this model (with these attribution settings) has it above τ·max. The store "
                "holds what was opened or batched: `python -m kn_core batch --model … --relations …` adds more.")
    else:
        cols = st.columns(3)
        cols[0].metric("facts", found[["subject", "object", "lang"]].drop_duplicates().shape[0])
        cols[1].metric("languages", ", ".join(sorted(found["lang"].unique())))
        cols[2].metric("relations", ", ".join(sorted(found["relation"].unique())))
        st.dataframe(found, hide_index=True, width="stretch",
                     column_config={"score": st.column_config.NumberColumn(format="%.3e"),
                                    "share of max": st.column_config.NumberColumn(format="percent")})
    left, right = st.columns([1, 2])
    left.markdown("**Tokens its output weights promote most**")
    left.dataframe(ui.promoted_frame(lm, layer, index), hide_index=True)
    example = factset.facts[0]
    template = factset.relations[example.relation].templates[0]
    sentence = right.text_input("Its activation on a sentence", template.text.replace(
        "[X]", example.subject(template.lang)).replace("[Y]", example.object(template.lang)), key="search_sentence",
        max_chars=1000)
    texts, tokens, values = ui.neuron_activation(lm, sentence, layer, index)
    right.plotly_chart(figures.token_activations(texts, values, f"Neuron {layer}:{index} on each token", raw=tokens),
                       key="search_activation")
