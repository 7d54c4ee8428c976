"""Views shared by several pages: prompt tables, heatmaps, the neuron table and detail, edit effects,
computation through the store with progress, and the fact checker of a relation."""
from __future__ import annotations

import shlex
import time
from typing import Sequence

import numpy as np
import pandas as pd
import streamlit as st
import torch

from kn_core.app import figures
from kn_core.app.guard import duration, model_turn, plain, progress_bar
from kn_core.app.resources import facts, store
from kn_core.app.sidebar import thresholds
from kn_core.attribution import Attribution, AttributionConfig
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.method.factcheck import FactChecker
from kn_core.method.interventions import Verification, verify
from kn_core.method.neurons import knowledge_neurons, per_layer_counts
from kn_core.model.hooks import recorded, run_body
from kn_core.model.loading import LanguageModel
from kn_core.model.vocab import promoted_tokens
from kn_core.runs import cached, queries
from kn_core.runs.queries import DKNSettings

MAX_SENTENCE = 1000
NEURON_PAGE = "views/neuron_search.py"


ASK_ABOVE_PARAMETERS = 20_000_000  # larger models take minutes per prompt on a CPU: the app asks before computing
_PACE: dict[tuple[str, AttributionConfig], float] = {}  # seconds per prompt, as last measured in this process


def n_parameters(lm: LanguageModel) -> int:
    """The model's parameter count."""
    return sum(p.numel() for p in lm.model.parameters())


def precompute_command(lm: LanguageModel, config: AttributionConfig, lang: str, relation: str,
                       factcheck: bool = False) -> str:
    """The command line that stores these results ahead (``batch``; ``showcase --factcheck`` for the fact
    checker), so the app opens them at once."""
    default, flags = AttributionConfig(), []
    for option, value in (("baseline", config.baseline), ("steps", config.steps), ("rule", config.rule)):
        if value != getattr(default, option):
            flags.append(f"--{option} {value}")
    command = "showcase" if factcheck else "batch"
    return " ".join([f"python -m kn_core {command} --model", shlex.quote(lm.name), "--langs", shlex.quote(lang),
                     "--relations", shlex.quote(relation), *(["--factcheck"] if factcheck else []), *flags])


def ask_first(lm: LanguageModel, what: str, config: AttributionConfig, lang: str, relation: str, key: str,
              seconds: float | None = None, factcheck: bool = False, note: str = "") -> None:
    """On a model above :data:`ASK_ABOVE_PARAMETERS`, say what computing ``what`` costs and stop the page until
    the user presses the button (the selectors above stay usable, so a stored fact can be chosen instead).
    ``note`` follows the precompute command."""
    size = n_parameters(lm)
    if size <= ASK_ABOVE_PARAMETERS:
        return
    cost = (f"about {duration(seconds)} at this session's pace" if seconds is not None
            else "minutes per prompt on a CPU")  # the first time: no pace measured yet
    faster = ("" if config.rule == "gauss-legendre" else
              " Gauss–Legendre with m = 8 (Attribution settings) is more exact than the paper's m = 20 at 2.5× fewer "
              "points (bench/bench_quadrature.py).")
    st.info(f"{what} is not stored for {plain(lm.name)} ({size / 1e6:.0f}M parameters) with these attribution "
            f"settings; computing it takes {cost}.{faster} Stored results open at once: precompute them with "
            f"`{precompute_command(lm, config, lang, relation, factcheck)}` (comma-separate more relations).{note}")
    if not st.button("Compute now (stored once computed)", type="primary", key=f"{key}_compute"):
        st.stop()


def attributions(lm: LanguageModel, prompts: Sequence[Prompt], config: AttributionConfig, lang: str,
                 relation: str | None = None, key: str = "attributions") -> list[Attribution]:
    """Each prompt's attribution: read from the store when present, else computed (with a progress bar and an
    estimate of the time left) and stored. Given the ``relation`` of a bundled fact (pages that compute on
    open), a large model first asks (:func:`ask_first`); ``key`` tells apart the button of each call on a
    page. Without one (the user pressed a Run button already) it computes at once."""
    todo = cached.missing(store(), lm, prompts, config, lang)
    if not todo:
        return cached.attributions(store(), lm, prompts, config, lang, compute_missing=False)
    if relation is not None:
        pace = _PACE.get((lm.name, config))
        ask_first(lm, f"The attribution of {len(todo)} of these {len(prompts)} prompt(s)", config, lang, relation,
                  f"{key}_{lang}", None if pace is None else pace * len(todo))
    bar, report = progress_bar(f"Integrating gradients for {len(todo)} prompt(s) (stored once computed)…")

    def per_prompt(fraction: float) -> None:
        n = min(len(todo) - 1, int(fraction * len(todo)))
        report(fraction, f"Integrating gradients: prompt {n + 1} of {len(todo)}")

    with model_turn(lm):
        started = time.monotonic()
        results = cached.attributions(store(), lm, prompts, config, lang, progress=per_prompt)
        _PACE[(lm.name, config)] = (time.monotonic() - started) / len(todo)
    bar.empty()
    return results


def prompt_table(results: Sequence[Attribution]) -> None:
    """One row per prompt: what the model reads, P(object), and the worst completeness residual. A causal LM
    reads a template up to [Y]: text it leaves out is shown in its own column."""
    rows = [{"prompt": r.prompt.query, "object": r.prompt.object, "object tokens": r.prompt.n_object_tokens,
             "P(object)": r.p_object, "max |residual| / |ΔP|": float(np.nanmax(r.relative_delta()))}
            for r in results]
    if any(r.prompt.cut for r in results):
        for row, r in zip(rows, results):
            row["left out after [Y]"] = r.prompt.cut
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"P(object)": st.column_config.NumberColumn(format="%.4f"),
                                "max |residual| / |ΔP|": st.column_config.NumberColumn(format="%.2e")})


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
    right.dataframe(pd.DataFrame(promoted_tokens(lm, layer, index), columns=["token", "logit per unit"]),
                    hide_index=True)
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


def fact_checker(lm: LanguageModel, relation: str, lang: str, config: AttributionConfig,
                 dkn: DKNSettings = DKNSettings()) -> FactChecker:
    """The relation's calibrated checker: from the store (``python -m kn_core showcase --factcheck`` stores it
    ahead), or calibrated now with progress and stored. A checker whose ``dkn`` is empty abstains."""
    checker = queries.stored_checker(store(), lm, relation, lang, config, dkn)
    if checker is None:
        ask_first(lm, f"The calibration of {relation} ({lang}) with these DKN search settings (an attribution of "
                      "every training fact, then the degenerate-pair search)", config, lang, relation, "fact_check",
                  factcheck=True, note="" if dkn == DKNSettings() else " It stores the paper's DKN search settings.")
        bar, report = progress_bar(f"Finding the degenerate neurons of {relation} ({lang}) and calibrating λ "
                                   "(once; stored)…")
        with model_turn(lm):
            checker = queries.calibrated_checker(store(), lm, facts(), relation, lang, config, dkn, progress=report)
        bar.empty()
    return checker


def fact_check_table(lm: LanguageModel, checker: FactChecker, relation: str, lang: str,
                     config: AttributionConfig, dkn: DKNSettings = DKNSettings()) -> pd.DataFrame:
    """The held-out evaluation, from the store or judged now (with progress) and stored: one row per method
    (wo_DKN by the authors' rule, wo_DKN token-exact, with_DKN), each over the claims with a verdict, with
    ``no_verdict`` counting the claims without one (all of them when the checker abstains)."""
    table = queries.stored_evaluation(store(), lm, relation, lang, config, dkn)
    if table is None:
        bar, report = progress_bar("Judging the held-out claims (once; stored)…")
        with model_turn(lm):
            table = queries.measured_evaluation(store(), lm, facts(), checker, relation, lang, config, dkn,
                                                progress=report)
        bar.empty()
    return table


def neuron_activation(lm: LanguageModel, text: str, layer: int, index: int) -> tuple[list[str], list[float]]:
    """A neuron's activation at every token of ``text`` (special tokens included), read under the model's lock."""
    if not text.strip() or len(text) > MAX_SENTENCE:
        raise InputError("sentence", f"give a sentence of 1 to {MAX_SENTENCE} characters")
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    limit = lm.adapter.max_positions(lm.config)
    if limit is not None and ids.shape[1] > limit:
        raise InputError("sentence", f"is {ids.shape[1]} tokens long; this model reads at most {limit}: shorten it")
    with model_turn(lm), torch.inference_mode(), recorded(lm, [layer]) as acts:
        run_body(lm, ids)
    tokens = lm.tokenizer.convert_ids_to_tokens(ids[0].tolist())
    return [str(t) for t in tokens], [float(v) for v in acts[layer][0, :, index].float().tolist()]
