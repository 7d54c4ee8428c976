"""Views shared by several pages: prompt tables with the completeness check path by path, heatmaps, the
neuron table and detail (tokens shown as text), edit effects and a neuron's activation on a sentence.
Attributions and fact checkers come from the store or the background worker (:mod:`kn_core.app.work`)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import streamlit as st
import torch

from kn_core.app import figures
from kn_core.app.guard import model_turn
from kn_core.app.sidebar import thresholds
from kn_core.attribution import Attribution
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.method.interventions import Verification, verify
from kn_core.method.neurons import knowledge_neurons, per_layer_counts
from kn_core.model.hooks import recorded, run_body
from kn_core.model.loading import LanguageModel
from kn_core.model.vocab import piece_texts, promoted_tokens

MAX_SENTENCE = 1000
NEURON_PAGE = "views/neuron_search.py"
GAP_FLOOR = 1e-3  # a path whose |P(a) − P(b_j)| is below this gets its residual shown absolute, not relative


def path_residuals(result: Attribution, floor: float = GAP_FLOOR) -> tuple[float, float]:
    """The completeness check of a result, path by path (each path b_j → a integrates its own gap
    P(a) − P(b_j), so its residual is measured against that gap, never against the mean gap, where gaps of
    opposite sign cancel): (the largest |residual_j| / |P(a) − P(b_j)| over the paths and computed layers whose
    gap is at least ``floor``, the largest absolute |residual_j| over those whose gap is below it); NaN where
    there is none. A result stored without per-path arrays counts as one path (the combined one)."""
    rows = list(result.layers)
    if result.path_deltas is None or result.path_baseline_probs is None:
        deltas, starts = result.convergence_delta[None, rows], result.baseline_probs[None, rows]
    else:
        deltas, starts = result.path_deltas[:, rows], result.path_baseline_probs[:, rows]
    deltas = np.abs(np.asarray(deltas, dtype=np.float64))
    gaps = np.abs(float(np.mean(result.token_probs)) - np.asarray(starts, dtype=np.float64))
    wide = gaps >= floor
    relative = float(np.max(deltas[wide] / gaps[wide])) if wide.any() else float("nan")
    absolute = float(np.max(deltas[~wide])) if (~wide).any() else float("nan")
    return relative, absolute


RELATIVE, ABSOLUTE = "worst path |residual| / its |ΔP|", f"worst |residual| where |ΔP| < {GAP_FLOOR:g}"


def prompt_table(results: Sequence[Attribution]) -> None:
    """One row per prompt: what the model reads, P(object), and the completeness residual of its worst path
    (:func:`path_residuals`). A causal LM reads a template up to [Y]: text it leaves out is shown in its own
    column."""
    rows = []
    for r in results:
        relative, absolute = path_residuals(r)
        rows.append({"prompt": r.prompt.query, "object": r.prompt.object, "object tokens": r.prompt.n_object_tokens,
                     "P(object)": r.p_object, "paths": r.n_paths, RELATIVE: relative, ABSOLUTE: absolute})
    if any(r.prompt.cut for r in results):
        for row, r in zip(rows, results):
            row["left out after [Y]"] = r.prompt.cut
    help_ = ("Completeness: the attributions of each baseline path b_j → a sum to P(a) − P(b_j) up to a residual; "
             "each path's residual is measured against its own gap")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"P(object)": st.column_config.NumberColumn(format="%.4f"),
                                RELATIVE: st.column_config.NumberColumn(format="%.2e", help=help_),
                                ABSOLUTE: st.column_config.NumberColumn(
                                    format="%.2e", help="for paths whose baseline barely moves P(object), where a "
                                                        "ratio would be noise")})


def scores_csv(scores: np.ndarray) -> bytes:
    """A [n_layers, d_ff] score matrix as CSV rows ``layer,index,score``."""
    layers, indices = np.indices(scores.shape)
    frame = pd.DataFrame({"layer": layers.ravel(), "index": indices.ravel(), "score": scores.ravel()})
    return frame.to_csv(index=False).encode()


def neuron_frame(neurons: Sequence[tuple[int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(neurons, columns=["layer", "index", "score"])


def fact_views(lm: LanguageModel, results: Sequence[Attribution], lang: str, key: str,
               others: Sequence[Attribution] = ()) -> list[tuple[int, int, float]]:
    """P(object) per prompt, heatmap, per-layer histogram, the neuron table with detail, and edit effects.

    ``others``: attributions of the same fact in other languages, shown in a neuron's detail.
    Returns the selected knowledge neurons.
    """
    st.subheader("Prompts")
    prompt_table(results)
    tau, p = thresholds(lang, key)
    neurons = knowledge_neurons([r.scores for r in results], tau, p)
    labels = ["mean over prompts"] + [r.prompt.query for r in results]
    shown = st.selectbox("Heatmap of", labels, key=f"{key}_which")
    scores = np.mean([r.scores for r in results], axis=0) if shown == labels[0] else results[labels.index(shown) - 1].scores
    marked = [(l, i) for l, i, _ in neurons]
    st.plotly_chart(figures.neuron_heatmap(scores, f"Attribution, {shown}", marked=marked), key=f"{key}_heat",
                    on_select=lambda: _pick_from_heatmap(key, scores.shape), selection_mode="points")
    st.download_button("Download these scores (CSV: layer, index, score)", lambda: scores_csv(scores),
                       "attribution_scores.csv", "text/csv", key=f"{key}_scores_csv")
    st.plotly_chart(figures.layer_histogram({"knowledge neurons": per_layer_counts(neurons, lm.n_layers)}),
                    key=f"{key}_hist")
    st.subheader(f"Knowledge neurons ({len(neurons)})")
    if not neurons:
        st.info("No neuron passes these thresholds; lower τ or p.")
        return neurons
    frame = neuron_frame(neurons)
    st.dataframe(frame, hide_index=True, on_select=lambda: _pick_from_table(key, neurons),
                 selection_mode="single-row", key=f"{key}_table", width="stretch")
    st.download_button("Download CSV", frame.to_csv(index=False).encode(), "knowledge_neurons.csv", "text/csv",
                       key=f"{key}_csv")
    picked = st.session_state.get(f"{key}_picked")
    if not picked or not (0 <= picked[0] < lm.n_layers and 0 <= picked[1] < lm.d_ff):  # e.g. another model
        picked = tuple(neurons[0][:2])
    neuron_detail(lm, picked, [*results, *others])
    edit_effect(lm, [r.prompt for r in results], [(l, i) for l, i, _ in neurons], key)
    return neurons


def clicked_neuron(points: Sequence[dict], shape: tuple[int, int]) -> tuple[int, int] | None:
    """The (layer, index) of the first clicked point of a neuron heatmap: a heatmap cell carries
    ``customdata`` [index, layer]; a knowledge-neuron marker its x = index, y = layer. None if out of range."""
    for point in points:
        custom = point.get("customdata")
        if custom is not None and len(custom) == 2:
            layer, index = int(custom[1]), int(custom[0])
        elif point.get("x") is not None and point.get("y") is not None:
            layer, index = int(round(float(point["y"]))), int(round(float(point["x"])))
        else:
            continue
        if 0 <= layer < shape[0] and 0 <= index < shape[1]:
            return layer, index
    return None


def _pick_from_heatmap(key: str, shape: tuple[int, int]) -> None:
    state = st.session_state.get(f"{key}_heat")
    points = state.selection.points if state is not None else []
    picked = clicked_neuron(points, shape)
    if picked is not None:
        st.session_state[f"{key}_picked"] = picked


def _pick_from_table(key: str, neurons: Sequence[tuple[int, int, float]]) -> None:
    state = st.session_state.get(f"{key}_table")
    rows = state.selection.rows if state is not None else []
    if rows and rows[0] < len(neurons):
        st.session_state[f"{key}_picked"] = tuple(int(v) for v in neurons[rows[0]][:2])


def promoted_frame(lm: LanguageModel, layer: int, index: int) -> pd.DataFrame:
    """The tokens a neuron promotes most, as text (decoded by the tokenizer), with the logit per unit."""
    return pd.DataFrame([(t.text, t.logit) for t in promoted_tokens(lm, layer, index)],
                        columns=["token", "logit per unit"])


def neuron_detail(lm: LanguageModel, neuron: tuple[int, int], results: Sequence[Attribution]) -> None:
    layer, index = neuron
    st.subheader(f"Neuron {layer}:{index}")
    st.caption("Click a neuron in the heatmap, or select a row of the table, to inspect another one. The fact's "
               "prompts in other languages "
               "are shown once they are stored (open the fact in that language, or run `python -m kn_core batch`).")
    left, right = st.columns(2)
    labels = [f"[{r.lang or '?'}] {r.prompt.query}" for r in results]
    left.plotly_chart(figures.prompt_scores(labels, [float(r.scores[layer, index]) for r in results],
                                            "Its score in each prompt and language"), key=f"detail_{layer}_{index}")
    right.markdown("**Tokens its output weights promote most**")
    right.dataframe(promoted_frame(lm, layer, index), hide_index=True)
    right.page_link(NEURON_PAGE, label=f"Where else is {layer}:{index} a knowledge neuron?", icon="🧭",
                    query_params={"layer": layer, "index": index})


def edit_effect(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[tuple[int, int]], key: str) -> None:
    st.subheader("Edit effect")
    mode = st.radio("Intervention", ["suppress", "enhance"], horizontal=True, key=f"{key}_mode",
                    help="suppress sets the neurons to 0, enhance doubles them, at the object positions")
    with model_turn(lm):
        result = verify(lm, prompts, neurons, mode, seed=0)
    cols = st.columns(2)
    cols[0].metric("P(object), knowledge neurons", f"{result.own:+.1%}")
    cols[1].metric("P(object), as many random neurons in the same layers", f"{result.random:+.1%}")


def suppression(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[tuple[int, int]]) -> Verification:
    """The suppression effect of ``neurons`` on the prompts, against as many random neurons (model's turn)."""
    with model_turn(lm):
        return verify(lm, prompts, neurons, "suppress", seed=0)


def check_prompts(lm: LanguageModel, templates: Sequence[str], subject: str, obj: str) -> tuple[list[Prompt], list[str]]:
    """Build every prompt; return the prompts and one message per template that fails (validate as you type)."""
    built = lm.prompts(templates, subject, obj)
    return list(built.prompts), [f"{template!r}: {reason}" for template, reason in built.problems]


def neuron_activation(lm: LanguageModel, text: str, layer: int, index: int) -> tuple[list[str], list[str], list[float]]:
    """A neuron's activation at every token of ``text`` (special tokens included), read under the model's lock:
    each token's decoded text (:func:`~kn_core.model.vocab.piece_texts`), its raw vocabulary entry (for a
    tooltip) and the activation."""
    if not text.strip() or len(text) > MAX_SENTENCE:
        raise InputError("sentence", f"give a sentence of 1 to {MAX_SENTENCE} characters")
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    limit = lm.adapter.max_positions(lm.config)
    if limit is not None and ids.shape[1] > limit:
        raise InputError("sentence", f"is {ids.shape[1]} tokens long; this model reads at most {limit}: shorten it")
    with model_turn(lm), torch.inference_mode(), recorded(lm, [layer]) as acts:
        run_body(lm, ids)
    tokens = [str(t) for t in lm.tokenizer.convert_ids_to_tokens(ids[0].tolist())]
    return piece_texts(lm.tokenizer, ids[0].tolist()), tokens, [float(v) for v in acts[layer][0, :, index].float().tolist()]
