"""About: what each page shows, the method in brief, and the current model's card."""
import streamlit as st

from kn_core.app import ui

st.title("About KN Explorer")
st.markdown("""
KN Explorer locates **knowledge neurons**, the FFN units that carry a fact, following Chen et al.,
*Journey to the Center of the Knowledge Neurons* (AAAI 2024).

**Pages**
- **Fact browser**: a fact from the bundled bilingual set (or a saved result): P(object) per prompt, the
  layers × neurons attribution heatmap, knowledge neurons per layer, the neuron table (CSV), a neuron's detail
  (its score in every prompt and language, the tokens it promotes), the suppress / enhance effect, the
  **controls** (suppression on this fact, other facts of its relation, other relations and random neurons) with
  the specificity verdict (fact / relation / generic / none), and the **checks**: top-1 flips, paraphrase
  transfer, the reverse probe and, on request, the syntactic control.
- **Relation overview**: from the store, a relation's knowledge neurons over relative depth in English and
  Chinese, the neurons that recur across its facts, the share of facts with shared neurons, the mean
  suppression effect, and a batch (with progress) for the facts not stored yet.
- **Neuron search**: one neuron across the stored prompts (where it is a knowledge neuron), the tokens it
  promotes and its activation on your sentence.
- **Two models**: one fact on two models, on relative depth: P(object), attribution profile, suppression effect
  and each model's controls.
- **Custom triple**: your own subject, object and templates, validated as you type, run with progress and stored.
- **Language comparison**: the same fact in English and Chinese: both heatmaps on one scale, the shared
  (language-independent) neurons, Jaccard, per-layer counts, the cross-lingual edit effect and each
  language's controls.
- **Fact-check**: a relation's degenerate knowledge neurons, the calibrated threshold λ, a live verdict for
  a claim next to the model's own judgement and its P(candidate), and the evaluation table.

Every page keeps its view in the address bar (model, relation, fact, language, thresholds): copy the URL to
share exactly what you see.

**Method in brief**
1. *AMIG*: integrated gradients of P(object) with respect to each FFN post-activation at the object position,
   from minimal-information baselines (the prompt with each token in turn replaced by [MASK] or end-of-text):
   one path per masked prompt, averaged over the paths; multi-token objects average their tokens. The
   sidebar's *Numerics*: `default` (Gauss–Legendre, m = 4, refined where the completeness residual is large;
   chosen by measured error) or `paper` (right Riemann sums, m = 20).
2. *Knowledge neurons*: attribution above τ·max (τ = 0.3 English, 0.2 Chinese) in more than a share p of the
   fact's prompts; verified by suppressing (×0) and enhancing (×2) them against random neurons in the same layers.
3. *Language-independent neurons*: the knowledge neurons shared by the English and Chinese prompts of a fact.
4. *Degenerate neurons*: pairs of neurons each dispensable alone (≤ 20 % drop) but not together (> 25 %);
   the relation's most frequent ones score claims for fact-checking.
""")

with ui.guard():
    lm = ui.current_model(ui.settings())
    info = ui.store().info()
    st.caption(f"Result store: {ui.plain(info['path'])}, {info['results']} stored attribution(s) "
               f"({info['bytes'] / 2**20:.1f} MiB); `python -m kn_core store info|export|prune` manages it.")
    st.header(f"Model card: {ui.plain(lm.name)}")
    st.caption("As written in the model's folder, shown as plain text (no Markdown: nothing in it is fetched or run).")
    st.code(lm.model_card(), language=None, wrap_lines=True)
