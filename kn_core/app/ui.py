"""The one module that imports Streamlit: cached resources, the sidebar, the error guard and the views
shared by several pages. Pages stay thin: guard, form, one kn_core call, render through this module."""
from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import streamlit as st
import torch

from kn_core.app import figures
from kn_core.attribution import Attribution, AttributionConfig
from kn_core.attribution.baselines import BASELINES
from kn_core.data import FactSet, load_bundled
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError, KNError
from kn_core.method.dkn import T_HIGH, T_LOW, TOP_K
from kn_core.method.factcheck import DEFAULT_T, OBJECTIVES, FactChecker, calibrate, evaluate
from kn_core.method.interventions import verify
from kn_core.method.likn import overlap
from kn_core.method.neurons import TAU, knowledge_neurons, per_layer_counts
from kn_core.model.fingerprint import model_fingerprint
from kn_core.model.loading import DEMO_MODELS, LanguageModel, default_threads, load_model
from kn_core.model.vocab import promoted_tokens
from kn_core.runs import cached
from kn_core.runs.store import ResultStore

log = logging.getLogger(__name__)
OTHER = "Other: Hugging Face id or folder…"


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose."""

    model_name: str
    config: AttributionConfig


# -- cached resources (one per process) -----------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=2)
def _load(name: str) -> LanguageModel:
    torch.set_num_threads(default_threads())  # the process's torch threads: $KN_EXPLORER_THREADS, else 1
    return load_model(name)


def model(name: str) -> LanguageModel:
    """The model, loaded once per process: Streamlit's resource cache holds a lock per model name while it
    computes, so two sessions asking for the same model load it once, and a session whose model is loaded
    never waits for another one that is loading a different model."""
    with st.spinner(f"Loading {plain(name)}…"):
        return _load(name)


@st.cache_resource(show_spinner=False)
def store() -> ResultStore:
    return ResultStore()


@st.cache_resource(show_spinner=False)
def facts() -> FactSet:
    return load_bundled()


# -- errors and waiting ---------------------------------------------------------------------------
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: object) -> str:
    """``text`` with Markdown's special characters escaped, so that user text inside a message shows as
    typed (``**x**`` stays ``**x**``, ``$x$`` is no formula). Streamlit never renders it as HTML anyway."""
    return _MARKDOWN.sub(r"\\\1", str(text))


@contextmanager
def guard() -> Iterator[None]:
    """Show user errors as ``st.error`` with their remedy; anything else as a short message, never a traceback."""
    try:
        yield
    except KNError as exc:
        st.error(plain(exc))
    except Exception as exc:  # the page must never show a traceback
        log.exception("unexpected error in the app")
        st.error(f"Something went wrong ({type(exc).__name__}). The details are in the server log; "
                 "your stored results are unaffected.")


@contextmanager
def model_turn(lm: LanguageModel) -> Iterator[None]:
    """Hold the model's lock, telling the user when another session has it (work is queued, not refused)."""
    if not lm.lock.acquire(blocking=False):
        note = st.info("Another session is using this model; your request is queued…")
        lm.lock.acquire()
        note.empty()
    try:
        yield
    finally:
        lm.lock.release()


# -- sidebar ---------------------------------------------------------------------------------------
def sidebar() -> Settings:
    with st.sidebar:
        st.header("Model")
        choice = st.selectbox("Model", [*DEMO_MODELS, OTHER], key="model_choice",
                              help="Bundled demo models first; any Hugging Face id or local folder works too.")
        name = st.text_input("Hugging Face id or folder", key="model_other",
                             placeholder="bert-base-multilingual-cased") if choice == OTHER else choice
        with st.expander("Attribution settings"):
            baseline = st.selectbox("IG baseline", list(BASELINES), key="baseline",
                                    help="masked = minimal-information baseline (AMIG); zero = Dai et al.")
            steps = st.slider("Integration steps m", 1, 100, 20, key="steps")
    return Settings(model_name=(name or "").strip(), config=AttributionConfig(baseline=baseline, steps=steps))


def current_model(settings: Settings) -> LanguageModel:
    """The chosen model, or stop the page with a message explaining how to pick one."""
    if not settings.model_name:
        st.info("Enter a Hugging Face id or a local model folder in the sidebar.")
        st.stop()
    return model(settings.model_name)


# -- compute through the store, with progress ------------------------------------------------------
def attributions(lm: LanguageModel, prompts: Sequence[Prompt], config: AttributionConfig,
                 lang: str) -> list[Attribution]:
    """Each prompt's attribution: read from the store when present, else computed (with a progress bar) and stored."""
    todo = cached.missing(store(), lm, prompts, config, lang)
    if not todo:
        return cached.attributions(store(), lm, prompts, config, lang, compute_missing=False)
    bar = st.progress(0.0, text="Integrating gradients…")

    def report(fraction: float) -> None:
        n = min(len(todo) - 1, int(fraction * len(todo)))
        bar.progress(min(1.0, fraction), text=f"Integrating gradients: prompt {n + 1} of {len(todo)}")

    with model_turn(lm):
        results = cached.attributions(store(), lm, prompts, config, lang, progress=report)
    bar.empty()
    return results


# -- shared views ------------------------------------------------------------------------------------
def prompt_table(results: Sequence[Attribution]) -> None:
    rows = [{"prompt": r.prompt.query, "object": r.prompt.object, "object tokens": r.prompt.n_object_tokens,
             "P(object)": r.p_object, "max |residual| / |ΔP|": float(np.nanmax(r.relative_delta()))}
            for r in results]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"P(object)": st.column_config.NumberColumn(format="%.4f"),
                                "max |residual| / |ΔP|": st.column_config.NumberColumn(format="%.2e")})


def thresholds(lang: str, key: str) -> tuple[float, float]:
    """τ and p sliders; re-selection from stored scores is instant."""
    left, right = st.columns(2)
    default = TAU.get(lang, 0.3)
    if lang not in TAU:
        left.caption(f"No paper threshold for {plain(repr(lang))}; starting from τ = {default}.")
    tau = left.slider("τ (share of the maximum attribution)", 0.05, 1.0, default, 0.05, key=f"{key}_tau")
    p = right.slider("p (share of prompts a neuron must be coarse in)", 0.0, 1.0, 0.7, 0.05, key=f"{key}_p")
    return tau, p


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


def edit_effect(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[tuple[int, int]], key: str) -> None:
    st.subheader("Edit effect")
    mode = st.radio("Intervention", ["suppress", "enhance"], horizontal=True, key=f"{key}_mode",
                    help="suppress sets the neurons to 0, enhance doubles them, at the object positions")
    with model_turn(lm):
        result = verify(lm, prompts, neurons, mode, seed=0)
    cols = st.columns(2)
    cols[0].metric("P(object), knowledge neurons", f"{result.own:+.1%}")
    cols[1].metric("P(object), as many random neurons in the same layers", f"{result.random:+.1%}")


def settings() -> Settings:
    """The sidebar's choices for this run (set by app.py before the page runs)."""
    return st.session_state["settings"]


def fact_label(fact, lang: str | None = None) -> str:
    langs = [lang] if lang else list(fact.languages)
    return " / ".join(f"{fact.subject(l)} → {fact.object(l)}" for l in langs)


def saved_triples(lm: LanguageModel) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Stored results of this model grouped as (subject, object, lang, templates)."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for row in store().results(model=lm.name):
        groups.setdefault((row.subject, row.object, row.lang), []).append(row.template)
    return [(*k, tuple(dict.fromkeys(v))) for k, v in sorted(groups.items())]


def stored_only(lm: LanguageModel, facts_by_lang, config: AttributionConfig) -> list[Attribution]:
    """Attributions already in the store for (lang, templates, subject, object) entries; nothing is computed."""
    found = []
    for lang, templates, subject, obj in facts_by_lang:
        for template in templates:
            try:
                prompt = lm.prompt(getattr(template, "text", template), subject, obj)
            except KNError:
                continue
            result = cached.attribution(store(), lm, prompt, config, lang, compute_missing=False)
            if result is not None:
                found.append(result)
    return found


def overlap_ranking(lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str],
                    config: AttributionConfig, p: float) -> pd.DataFrame:
    """The relation's facts whose prompts are stored in both ``langs``, ranked by shared knowledge neurons
    (τ per language, refinement share ``p``); nothing is computed."""
    rows = []
    for fact in factset.facts_of(relation):
        if not all(lang in fact.labels for lang in langs):
            continue
        chosen = []
        for lang in langs:
            templates = factset.relations[relation].templates_for(lang)
            stored = stored_only(lm, [(lang, templates, fact.subject(lang), fact.object(lang))], config)
            if len(stored) < len(templates):
                break
            chosen.append(knowledge_neurons([r.scores for r in stored], TAU.get(lang, 0.3), p))
        else:
            shared = overlap(chosen[0], chosen[1], lm.n_layers)
            rows.append({"fact": fact_label(fact), f"KN {langs[0]}": len(chosen[0]), f"KN {langs[1]}": len(chosen[1]),
                         "shared": len(shared.shared), "Jaccard": shared.jaccard})
    frame = pd.DataFrame(rows, columns=["fact", f"KN {langs[0]}", f"KN {langs[1]}", "shared", "Jaccard"])
    return frame.sort_values(["shared", "Jaccard"], ascending=False, kind="stable").reset_index(drop=True)


def check_prompts(lm: LanguageModel, templates: Sequence[str], subject: str, obj: str) -> tuple[list[Prompt], list[str]]:
    """Build every prompt; return the prompts and one message per template that fails (validate as you type)."""
    prompts, problems = [], []
    for template in templates:
        try:
            prompts.append(lm.prompt(template, subject, obj))
        except KNError as exc:
            problems.append(f"{template!r}: {exc}")
    return prompts, problems


def _progress_bar(text: str):
    bar = st.progress(0.0, text=text)
    return bar, (lambda fraction: bar.progress(min(1.0, max(0.0, fraction)), text=text))


@dataclass(frozen=True)
class DKNSettings:
    """How the fact-check page searches degenerate neurons (METHOD.md §4–5); defaults are the paper's."""

    t_low: float = T_LOW
    t_high: float = T_HIGH
    t: float = DEFAULT_T
    top_k: int = TOP_K
    objective: str = "f1"


def dkn_settings(key: str) -> DKNSettings:
    """Sliders for T_low, T_high, t and K (the paper's values first)."""
    paper = DKNSettings()
    with st.expander(f"DKN search settings (paper: T_low {paper.t_low}, T_high {paper.t_high}, t {paper.t}, "
                     f"K {paper.top_k})"):
        a, b, c, d, e = st.columns(5)
        t_low = a.slider("T_low: largest drop of one neuron alone", 0.0, 0.95, paper.t_low, 0.01, key=f"{key}_t_low")
        t_high = b.slider("T_high: smallest drop of the pair", 0.0, 0.99, paper.t_high, 0.01, key=f"{key}_t_high")
        t = c.slider("t: DKN set = count > ⌊t·max⌋", 0.0, 1.0, paper.t, 0.05, key=f"{key}_t")
        top_k = d.slider("K candidates per prompt", 2, 50, paper.top_k, 1, key=f"{key}_top_k")
        objective = e.selectbox("λ maximises", list(OBJECTIVES), key=f"{key}_objective",
                                help="on the training claims: F1 of 'correct', or balanced accuracy")
    if t_high < t_low:
        raise InputError("T_high", f"T_high ({t_high:.2f}) must be at least T_low ({t_low:.2f}): raise T_high "
                                   "or lower T_low")
    return DKNSettings(t_low=t_low, t_high=t_high, t=t, top_k=top_k, objective=objective)


def _checker_key(lm: LanguageModel, relation: str, lang: str, config: AttributionConfig, dkn: DKNSettings) -> str:
    return (f"{model_fingerprint(lm)}|{lm.name}|{relation}|{lang}|{config.baseline}|{config.steps}|"
            f"{dkn.t_low}|{dkn.t_high}|{dkn.t}|{dkn.top_k}|{dkn.objective}")


def fact_checker(lm: LanguageModel, relation: str, lang: str, config: AttributionConfig,
                 dkn: DKNSettings = DKNSettings()) -> FactChecker:
    """The relation's calibrated checker: from the store, or calibrated now (with progress) and stored."""
    key = _checker_key(lm, relation, lang, config, dkn)
    saved = store().get_json("factcheck", key)
    if saved is not None:
        return FactChecker.from_json(saved)
    bar, report = _progress_bar(f"Finding the degenerate neurons of {relation} ({lang}) and calibrating λ…")
    with model_turn(lm):
        checker = calibrate(lm, facts(), relation, lang, config=config, top_k=dkn.top_k, t=dkn.t,
                            t_low=dkn.t_low, t_high=dkn.t_high, objective=dkn.objective,
                            progress=report, attributor=cached.read_through(store()))
    bar.empty()
    store().put_json("factcheck", key, json.loads(checker.to_json()))
    return checker


def fact_check_table(lm: LanguageModel, checker: FactChecker, relation: str, lang: str,
                     config: AttributionConfig, dkn: DKNSettings = DKNSettings()) -> pd.DataFrame:
    """The held-out evaluation (with and without DKN), from the store or computed now and stored."""
    key = _checker_key(lm, relation, lang, config, dkn)
    saved = store().get_json("factcheck-evaluation", key)
    if saved is None:
        bar, report = _progress_bar("Judging the held-out claims…")
        with model_turn(lm):
            result = evaluate(lm, checker, checker.held_out_claims(facts()), progress=report)
        bar.empty()
        saved = {"rows": result.table().to_dict(orient="records")}
        store().put_json("factcheck-evaluation", key, saved)
    return pd.DataFrame(saved["rows"])
