"""Fact-check: a relation's degenerate knowledge neurons judge claims; the model's own answer beside them."""
import numpy as np
import pandas as pd
import streamlit as st

from kn_core.app import figures, ui
from kn_core.data.prompts import match_template
from kn_core.method.checker import AUTHORS_RULE

st.title("Fact-check")
st.caption("Degenerate knowledge neurons (DKN) of a relation score a claim; it is judged correct when the score "
           "reaches the threshold λ calibrated on the relation's training facts.")

with ui.guard():
    settings = ui.settings()
    lm = ui.current_model(settings)
    factset = ui.facts()
    ui.restore("fact_check", {"relation": ("fc_relation", ui.links.relation(factset)),
                              "lang": ("fc_lang", ui.links.choice(list(factset.languages))),
                              "t_low": ("fc_t_low", ui.links.number(0.0, 0.95)),
                              "t_high": ("fc_t_high", ui.links.number(0.0, 0.99)),
                              "t": ("fc_t", ui.links.number(0.0, 1.0)),
                              "k": ("fc_top_k", ui.links.number(2, 50, int)),
                              "facts": ("fc_facts", ui.links.count(ui.calibration_choices(settings.model_name)))},
               settings.model_name)
    left, right = st.columns([3, 1])
    relation = left.selectbox("Relation", list(factset.relations), key="fc_relation",
                              format_func=lambda r: f"{r} · {factset.relations[r].name}")
    lang = right.radio("Language", list(factset.languages), horizontal=True, key="fc_lang")
    search = ui.dkn_settings("fc", settings.model_name)
    ui.share(settings, relation=relation, lang=lang, t_low=search.t_low, t_high=search.t_high, t=search.t,
             k=search.top_k, facts="all" if search.facts is None else search.facts)
    checker = ui.fact_checker(lm, relation, lang, settings.config, search, key=f"fc_{relation}_{lang}")
    if checker is None:  # queued: the worker calibrates it while the page stays usable
        st.stop()
    if checker.abstains:
        st.warning(f"No verdict: this relation has no degenerate neurons with these settings (no degenerate pair "
                   f"among {checker.n_prompts} training prompts at T_low {search.t_low:.2f} / T_high "
                   f"{search.t_high:.2f}), so the DKN checker abstains on every claim of it. Small models rarely "
                   "have a neuron pair that drops P(object) by more than T_high; lower both thresholds in the DKN "
                   "search settings (e.g. 0.05 / 0.08).")
    elif checker.train_accept_true - checker.train_accept_wrong < 0.1:
        st.warning(f"On the training claims, λ accepts {checker.train_accept_true:.0%} of true and "
                   f"{checker.train_accept_wrong:.0%} of wrong claims: this DKN set hardly separates them. Try "
                   "other DKN search settings, or λ by balanced accuracy.")
    cols = st.columns(4)
    cols[0].metric("DKN neurons", len(checker.dkn))
    if checker.abstains:
        cols[1].metric("λ", "–", help="not calibrated: there is no DKN set to score with")
        cols[2].metric("train accept rate, true claims", "–")
        cols[3].metric("train accept rate, wrong claims", "–")
    else:
        cols[1].metric("λ", f"{checker.lam:.3e}")
        cols[2].metric("train accept rate, true claims", f"{checker.train_accept_true:.0%}")
        cols[3].metric("train accept rate, wrong claims", f"{checker.train_accept_wrong:.0%}")

    st.subheader("Judge a claim")
    templates = [t.text for t in factset.relations[relation].templates_for(lang)]
    example = factset.facts_of(relation)[0]
    how = st.radio("Claim as", ["subject + candidate object", "a sentence"], horizontal=True, key="fc_how")
    if how == "a sentence":
        sentence = st.text_input("Sentence using one of the relation's templates",
                                 templates[0].replace("[X]", example.subject(lang))
                                 .replace("[Y]", example.object(lang)),
                                 key="fc_sentence")
        parsed = match_template(sentence, templates)
        if parsed is None:
            st.error("The sentence matches none of this relation's templates: " + ui.plain("; ".join(templates)))
            st.stop()
        template, subject, candidate = parsed
    else:
        a, b = st.columns(2)
        subject = a.text_input("Subject", example.subject(lang), key="fc_subject")
        candidate = b.text_input("Candidate object", example.object(lang), key="fc_candidate")
        template = st.selectbox("Template", templates, key="fc_template")
    with ui.model_turn(lm):
        verdict = checker.judge(lm, subject, candidate, template)
    left, right = st.columns(2)
    with left:
        if verdict.abstained:
            st.warning(f"with DKN — {verdict.reason}")
        else:
            st.plotly_chart(figures.verdict_gauge(verdict.score, verdict.lam, verdict.correct), key="fc_gauge")
            (st.success if verdict.correct else st.error)(
                f"with DKN: **{'correct' if verdict.correct else 'wrong'}** (score {verdict.score:.3e} "
                f"{'≥' if verdict.correct else '<'} λ {verdict.lam:.3e})")
        rule = AUTHORS_RULE[lm.kind]
        (st.success if verdict.model_agrees else st.warning)(
            f"wo_DKN, the model itself: it answers “{ui.plain(verdict.model_prediction)}”, so the claim is "
            f"**{'correct' if verdict.model_agrees else 'wrong'}** by its own answer ({rule}; token by token it "
            f"predicts “{ui.plain(verdict.exact_prediction)}”: {'correct' if verdict.exact_agrees else 'wrong'})")
    st.markdown("**Simple baselines beside the DKN score** (the same scoring prompt)")
    cols = st.columns(4)
    cols[0].metric("DKN score", "–" if verdict.abstained else f"{verdict.score:.3e}",
                   help="mean attribution toward the candidate over the DKN set")
    cols[1].metric("P(candidate), the model's own", f"{verdict.p_candidate:.4f}",
                   help="joint probability of the candidate's tokens on the scoring prompt: the simplest baseline")
    cols[2].metric("log-prob per token", f"{verdict.logprob:.2f}")
    randoms = [v for v in verdict.random_scores if v == v]
    cols[3].metric("random neurons' score", f"{np.mean(randoms):.3e}" if randoms else "–",
                   help=f"mean over {len(randoms)} random sets of the DKN set's size in its layers" if randoms
                   else "no DKN set, so no random sets of its size")
    with right:
        if verdict.abstained:
            st.markdown("**No neuron voted**: the relation has no DKN set with these settings.")
        else:
            st.markdown("**The neurons that voted** (DKN set, attribution toward the candidate)")
            st.dataframe(pd.DataFrame(verdict.voters, columns=["layer", "index", "attribution"]), hide_index=True,
                         width="stretch")

    st.subheader(f"Evaluation on the held-out facts ({len(checker.test_facts)} of the "
                 f"{len(checker.test_facts) + len(checker.train_facts)} calibrated on)")
    st.caption("Every row but the last counts only the claims with a DKN verdict; `no_verdict` counts those "
               "without one, and `wo_DKN_all_claims` is the model's own answer over every claim. "
               f"wo_DKN: the authors' rule (masked LM: {AUTHORS_RULE['masked']}; causal LM: "
               f"{AUTHORS_RULE['causal']}); wo_DKN_token_exact: each candidate token predicted "
               "greedily (masked LM: as many masks for every candidate of the relation).")
    st.dataframe(ui.fact_check_table(lm, relation, lang, settings.config, search), hide_index=True, width="stretch")

    st.subheader("Against simple baselines: AUROC on the held-out claims")
    st.caption("Threshold-free: the chance that a true claim scores above a wrong one (0.5 = no better than a coin), "
               "with a 95 % bootstrap interval over facts. Does the DKN score beat the model's own P(candidate)? "
               "(`python -m kn_core experiment factcheck` does this over every relation, with a logistic test.)")
    asked = st.button("Judge the held-out claims with every score (one attribution per claim)", key="fc_baselines")
    if asked or ui.known_claims(lm, checker):
        claims = ui.claim_scores(lm, checker)
        st.dataframe(ui.auroc_table(claims), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in ("AUROC", "95 % CI low", "95 % CI high")})
        if checker.abstains:
            st.caption("No DKN set: the DKN and random-neuron scores are missing, so their AUROC is too.")
