"""Custom triple: your own subject, object and templates; validated as you type; stored when run."""
import streamlit as st

from kn_core.app import ui
from kn_core.method.neurons import TAU

st.title("Custom triple")
st.caption("Enter a fact and the sentences that express it. Results are stored and reappear in the Fact browser "
           "under *Saved results*.")

with ui.guard():
    settings = ui.settings()
    lm = ui.current_model(settings)
    factset = ui.facts()
    left, mid, right = st.columns([2, 2, 1])
    subject = left.text_input("Subject [X]", "Tanzania", key="custom_subject")
    obj = mid.text_input("Object [Y]", "Dodoma", key="custom_object")
    lang = right.selectbox("Language", [*TAU, "other"], key="custom_lang")
    if lang == "other":
        lang = right.text_input("Language code", "fr", key="custom_lang_code").strip() or "other"
    how = st.radio("Templates", ["From a relation", "My own"], horizontal=True, key="custom_how")
    if how == "From a relation":
        relation = st.selectbox("Relation", list(factset.relations), key="custom_relation",
                                format_func=lambda r: f"{r} · {factset.relations[r].name}")
        offered = [t.text for t in factset.relations[relation].templates_for(lang)] if lang in factset.languages else []
        templates = st.multiselect("Templates", offered, default=offered[:3], key="custom_templates")
    else:
        text = st.text_area("One template per line, with [X] for the subject and [Y] for the object",
                            "The capital of [X] is [Y].\n[X]'s capital city is [Y].", key="custom_text")
        templates = [line for line in text.splitlines() if line.strip()]
    prompts, problems = ui.check_prompts(lm, templates, subject, obj)
    for problem in problems:
        st.error(ui.plain(problem))
    for template in templates:
        if unknown := lm.unknown_words(template):
            st.warning(f"{ui.plain(template)}: {ui.plain(', '.join(unknown))} would be read by this model as its "
                       "unknown token, which changes the prediction; rephrase with words the model knows.")
    if not templates:
        st.warning("Add at least one template.")
    elif not problems:
        st.caption(" · ".join(f"{ui.plain(repr(p.query))}: {p.n_object_tokens} object token(s)" for p in prompts))
    if st.button("Run AMIG", type="primary", disabled=bool(problems) or not templates, key="custom_run_button"):
        st.session_state["custom_run"] = (subject, obj, lang, tuple(templates))
    run = st.session_state.get("custom_run")
    if run is not None:
        subject, obj, lang, templates = run
        prompts, problems = ui.check_prompts(lm, templates, subject, obj)
        results = ui.attributions(lm, prompts, settings.config, lang, key="custom", fact_id=f"{subject} → {obj}")
        if results is None:  # queued: the worker computes them while the page stays usable
            st.stop()
        st.success(f"Stored: ⟨{ui.plain(subject)}, {ui.plain(obj)}⟩ in {ui.plain(lang)}, {len(results)} prompt(s).")
        ui.fact_views(lm, results, lang, key="custom")
