"""Views shared by several pages: prompt tables with the completeness check path by path, heatmaps, the
neuron table and detail (tokens shown as text), edit effects and a neuron's activation on a sentence.
Attributions and fact checkers come from the store or the background worker (:mod:`kn_core.app.work`); edit
effects, controls and checks from the model's measurer (:mod:`kn_core.app.measure`), never holding up the page."""
from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np
import pandas as pd
import streamlit as st
import torch

from kn_core.app import figures
from kn_core.app.guard import model_turn, plain, progress_bar
from kn_core.app.measure import measured
from kn_core.app.resources import facts
from kn_core.app.sidebar import thresholds
from kn_core.attribution import Attribution, AttributionConfig, compute
from kn_core.data.prompts import Prompt
from kn_core.errors import InputError
from kn_core.method.baselines import auroc, bootstrap
from kn_core.method.checker import FactChecker
from kn_core.method.checks import SYNTAX, Checks, SyntacticControl, fact_checks, syntactic_control
from kn_core.method.controls import Controls, fact_controls
from kn_core.method.interventions import Verification, verify
from kn_core.method.neurons import Neuron, ScoredNeuron, knowledge_neurons, per_layer_counts
from kn_core.model.fingerprint import model_fingerprint
from kn_core.model.hooks import recorded, run_body
from kn_core.model.loading import LanguageModel
from kn_core.model.vocab import promoted_tokens

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
               others: Sequence[Attribution] = (), relation: str | None = None,
               checks: bool = False, config: AttributionConfig | None = None) -> list[ScoredNeuron]:
    """P(object) per prompt, heatmap, per-layer histogram, the neuron table with detail, edit effects and the
    controls with their specificity verdict (:func:`controls_view`); with ``checks``, the Checks panel too.

    ``others``: attributions of the same fact in other languages, shown in a neuron's detail. ``relation``:
    the fact's relation (None: the one its templates match, if any). ``config``: the attribution settings of
    the syntactic control. Returns the selected knowledge neurons.
    """
    st.subheader("Prompts")
    prompt_table(results)
    tau, p = thresholds(lang, key)
    neurons = knowledge_neurons([r.scores for r in results], tau, p)
    labels = ["mean over prompts"] + [r.prompt.query for r in results]
    shown = st.selectbox("Heatmap of", labels, key=f"{key}_which")
    scores = (np.mean([r.scores for r in results], axis=0) if shown == labels[0]
              else results[labels.index(shown) - 1].scores)
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
    prompts, chosen = [r.prompt for r in results], [n.neuron for n in neurons]
    edit_effect(lm, prompts, chosen, key)
    controls_view(lm, prompts, chosen, lang, relation, key)
    if checks:
        checks_view(lm, prompts, chosen, lang, relation, config or results[0].config, key, results, tau, p)
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
                    query_params={"layer": str(layer), "index": str(index)})


def edit_effect(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[Neuron], key: str) -> None:
    st.subheader("Edit effect")
    mode = st.radio("Intervention", ["suppress", "enhance"], horizontal=True, key=f"{key}_mode",
                    help="suppress sets the neurons to 0, enhance doubles them, at the object positions")
    result = measured(lm, ("edit", mode, *_fact_key(lm, prompts, neurons, "", None)),
                      lambda: verify(lm, prompts, neurons, mode, seed=0), "the edit effect")
    if result is not None:
        cols = st.columns(2)
        cols[0].metric("P(object), knowledge neurons", f"{result.own:+.1%}")
        cols[1].metric("P(object), as many random neurons in the same layers", f"{result.random:+.1%}")


def suppression(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[Neuron]) -> Verification | None:
    """The suppression effect of ``neurons`` on the prompts, against as many random neurons (:func:`measured`:
    None while it is measured)."""
    return measured(lm, ("edit", "suppress", *_fact_key(lm, prompts, neurons, "", None)),
                    lambda: verify(lm, prompts, neurons, "suppress", seed=0), "the suppression effect")


def check_prompts(lm: LanguageModel, templates: Sequence[str], subject: str,
                  obj: str) -> tuple[list[Prompt], list[str]]:
    """Build every prompt; return the prompts and one message per template that fails (validate as you type)."""
    built = lm.prompts(templates, subject, obj)
    return list(built.prompts), [f"{template!r}: {reason}" for template, reason in built.problems]


def neuron_activation(lm: LanguageModel, text: str, layer: int, index: int) -> tuple[list[str], list[str], list[float]]:
    """A neuron's activation at every token of ``text`` (special tokens included), read under the model's lock:
    each token's decoded text (:func:`~kn_core.model.vocab.piece_texts`), its raw vocabulary entry (for a
    tooltip) and the activation. A sentence that is empty, too long, or holds no token the model reads (only
    zero-width spaces, say) is refused with the model's :class:`~kn_core.errors.InputError`."""
    ids = lm.sentence_ids(text, MAX_SENTENCE)  # InputError: empty, too long, or no token the model reads
    with model_turn(lm), torch.inference_mode(), recorded(lm, [layer]) as acts:
        run_body(lm, ids)
    return (lm.piece_texts(ids[0].tolist()), lm.token_strings(ids[0].tolist()),
            [float(v) for v in acts[layer][0, :, index].float().tolist()])


# -- controls, checks ----------------------------------------------------------------------------------
MEMO = "kn_measured"  # session state: (what, plain key) -> a measured record (controls, checks, syntax)
MEMO_SIZE = 64
VERDICTS = {"fact": "specific to this fact (other facts, of its relation or not, fall far less)",
            "relation": "specific to the relation, not the fact: it writes the relation's objects",
            "generic": "not specific: facts of other relations fall too",
            "none": "no effect beyond random neurons of the same layers"}


def memo(key: tuple, measure, name: str = MEMO, size: int = MEMO_SIZE):
    """``measure()`` once per session and plain-valued ``key``, kept in session state ``name`` (the oldest of
    ``size`` forgotten)."""
    slot = st.session_state.setdefault(name, {})
    if key not in slot:
        while len(slot) >= size:
            slot.pop(next(iter(slot)))
        slot[key] = measure()
    return slot[key]


def _fact_key(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[tuple[int, int]], lang: str,
              relation: str | None) -> tuple:
    return (lm.name, model_fingerprint(lm), lang, relation, tuple((p.template, p.subject, p.object) for p in prompts),
            tuple(sorted((int(l), int(i)) for l, i in neurons)))


def controls(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[Neuron], lang: str,
             relation: str | None = None) -> Controls | None:
    """:func:`kn_core.method.controls.fact_controls` on the bundled facts (suppression passes only), once per
    model, fact, language and neuron set (:func:`measured`: None while it is measured)."""
    factset = facts()
    return measured(lm, ("controls", *_fact_key(lm, prompts, neurons, lang, relation)),
                    lambda: fact_controls(lm, factset, lang, prompts, neurons, relation=relation), "the controls")


def verdict_text(found: Controls) -> tuple[str, str]:
    """The verdict in words and its kind of box: ("success" | "info" | "warning", text)."""
    if found.specificity is None:
        if found.relation is None:
            return "warning", ("No verdict: the verdict needs a relation. These templates match none of the bundled "
                               "relations' templates, so there are no other facts of the same relation to suppress "
                               "the set on (the other relations and the random sets are still measured).")
        return "warning", f"No verdict: {found.reason}."
    return ("success" if found.specificity == "fact" else "info"), (
        f"Specificity verdict: {found.specificity} — {VERDICTS[found.specificity]}. Measured: {found.reason}.")


def controls_view(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[Neuron], lang: str,
                  relation: str | None, key: str, title: str = "Controls: whose P(object) falls?") -> Controls | None:
    """The four suppression controls of a neuron set (chart), its specificity verdict in words, the rule in
    small print and the control facts with their change."""
    st.markdown(f"**{plain(title)}**")
    if not neurons:
        st.caption("No knowledge neuron at these thresholds: nothing to control.")
        return None
    found = controls(lm, prompts, neurons, lang, relation)
    if found is None:
        return None
    st.plotly_chart(figures.control_bars(found.effects(), found.random.sd), key=f"{key}_controls")
    kind, text = verdict_text(found)
    getattr(st, kind)(plain(text))
    st.caption(plain(f"Rule: {found.rule}. Changes are means over prompts (and facts); the random bar is the mean "
                     f"of {found.random.draws} random sets of the same size in the same layers (±sd), "
                     f"{found.random.rank:.0%} of which lower P(object) as much as this set or more."))
    rows = [("same relation", *fact) for fact in found.same_facts] + [("other relation", *f) for f in found.other_facts]
    with st.expander(f"Control facts ({len(found.same_facts)} of the same relation"
                     f"{' ' + found.relation if found.relation else ''}, {len(found.other_facts)} of others)"):
        if rows:
            st.dataframe(pd.DataFrame(rows, columns=["group", "fact", "subject", "object", "change of P(object)"]),
                         hide_index=True, width="stretch",
                         column_config={"change of P(object)": st.column_config.NumberColumn(format="percent")})
        else:
            st.caption("No control fact could be put to this model.")
    return found


def checks(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[Neuron], lang: str,
           relation: str | None) -> Checks | None:
    """:func:`kn_core.method.checks.fact_checks` (suppression passes only), once per model, fact, language and
    neuron set (:func:`measured`: None while it is measured)."""
    factset = facts()
    return measured(lm, ("checks", *_fact_key(lm, prompts, neurons, lang, relation)),
                    lambda: fact_checks(lm, factset, lang, relation, prompts, neurons), "the checks")


def _pct(value: float) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:+.1%}"


def train_only(results: Sequence[Attribution], lang: str, relation: str | None) -> list[Attribution]:
    """The results on the relation's train templates when the others are on its held-out ones (both present),
    else []: a set found on them alone can be measured on the held-out templates it never saw."""
    if relation is None or relation not in facts().relations:
        return []
    held = {" ".join(t.text.split()) for t in facts().relation(relation).templates_for(lang, heldout=True)}
    train = [r for r in results if " ".join(r.prompt.template.split()) not in held]
    return train if 0 < len(train) < len(results) else []


def checks_view(lm: LanguageModel, prompts: Sequence[Prompt], neurons: Sequence[Neuron], lang: str,
                relation: str | None, config: AttributionConfig, key: str, results: Sequence[Attribution] = (),
                tau: float | None = None, p: float | None = None) -> Checks | None:
    """The critics' checks of the fact's set: top-1 flips (before → after per prompt), paraphrase transfer, the
    reverse probe, and the syntactic control on request. When the set was found on every template of the
    relation (none is left to paraphrase with) and ``results``, τ and p are given, the transfer is measured
    for the set found on the train templates alone, on the held-out ones."""
    st.subheader("Checks")
    if not neurons:
        st.caption("No knowledge neuron at these thresholds: nothing to check.")
        return None
    found = checks(lm, prompts, neurons, lang, relation)
    if found is None:
        return None
    transfer, note = found, "the relation's templates the set was not found on (held-out ones first)"
    if (not found.paraphrases and tau is not None and p is not None
            and (train := train_only(results, lang, relation))):
        train_set = [n.neuron for n in knowledge_neurons([r.scores for r in train], tau, p)]
        if train_set:
            on_train = checks(lm, [r.prompt for r in train], train_set, lang, relation)
            if on_train is None:
                return None
            transfer, note = on_train, (
                "the shown set was found on every template, so none is left to paraphrase with: here the set "
                f"found on the {len(train)} train template(s) alone ({len(train_set)} neuron(s), same τ and p) "
                "is suppressed on the held-out template(s) it never saw")
    cols = st.columns(4)
    cols[0].metric("top-1 flip rate", "–" if np.isnan(found.flip_rate) else f"{found.flip_rate:.0%}",
                   help="share of the fact's prompts whose top-1 token at the object's first position changes "
                        "when the set is suppressed")
    cols[1].metric("change, own templates", _pct(transfer.own_change),
                   help="the templates the set was found on" + (" (the train templates)" if transfer is not found
                                                                 else ""))
    cols[2].metric("change, paraphrases", _pct(transfer.paraphrase_change), help=note)
    cols[3].metric("transfer ratio", "–" if np.isnan(transfer.transfer) else f"{transfer.transfer:.2f}",
                   help="paraphrase change / own change: 1 transfers fully, 0 not at all")
    st.markdown("**What the answers become** (top-1 token before → after suppressing the set)")
    flips = [(f.query, f.object_token, f.before, f.after, f.flipped, f.was_top1) for f in found.flips]
    st.dataframe(pd.DataFrame(flips, columns=["prompt", "object token", "top-1 before", "top-1 after", "flipped",
                                              "object was top-1"]), hide_index=True, width="stretch")
    if transfer.paraphrases:
        if transfer is not found:
            st.caption(plain(f"Paraphrase transfer: {note}."))
        with st.expander(f"Paraphrase transfer ({len(transfer.paraphrases)} template(s) the set was not found on)"):
            st.dataframe(pd.DataFrame(transfer.paraphrases, columns=["template", "change of P(object)"]),
                         hide_index=True, width="stretch",
                         column_config={"change of P(object)": st.column_config.NumberColumn(format="percent")})
    else:
        st.caption("Paraphrase transfer: no template of the relation is left that the set was not found on"
                   + ("" if relation else " (no relation known for these templates)") + ".")
    if found.reverse_template is not None:
        st.metric(f"reverse probe: P(subject) on “{found.reverse_template}”", _pct(found.reverse_change),
                  help="the object asked for the subject; knowledge stored as a fact should move both directions")
    else:
        st.caption("Reverse probe: this relation has none (only relations with a reverse question, e.g. P36 capital "
                   "↔ capital of, have one), or the model cannot take it.")
    syntax_view(lm, lang, config, found.own_change, key)
    return found


def syntactic(lm: LanguageModel, lang: str, config: AttributionConfig) -> SyntacticControl | None:
    """The syntactic control of ``lm`` in ``lang`` with progress, case by case, each case in the model's turn
    (attributions: a ``locate`` per grammatical case); once per session, model, language and settings."""
    key = ("syntax", lm.name, model_fingerprint(lm), lang, config)
    measured = st.session_state.setdefault(MEMO, {})
    if key in measured:
        return measured[key]
    cases = len(SYNTAX[lang][1]) if lang in SYNTAX else 0
    seen: dict = {}

    def attributor(lm_, prompt, config_, lang_, progress=None):  # each case attributed once across the steps
        found = (prompt.template, prompt.subject, prompt.object)
        if found not in seen:
            seen[found] = compute(lm_, prompt, config_, lang_, progress)
        return seen[found]

    bar, report = progress_bar(f"Syntactic control: locating the neurons of {cases} grammatical case(s)…")
    result = None
    for n in range(1, cases + 1):
        with model_turn(lm):
            result = syntactic_control(lm, lang, config, attributor=attributor, cases=n)
        report(n / cases, f"Syntactic control: {n} of {cases} grammatical case(s) done")
    bar.empty()
    return memo(key, lambda: result)


def syntax_view(lm: LanguageModel, lang: str, config: AttributionConfig, own_change: float, key: str) -> None:
    """The syntactic control on a button (it runs attributions), beside the fact's own effect."""
    st.markdown("**Syntactic control**: does the same pipeline find neurons for grammar (agreement) as readily?")
    if lang not in SYNTAX:
        st.caption(f"No grammatical cases for {plain(lang)} (only {', '.join(SYNTAX)}).")
        return
    known = st.session_state.get(MEMO, {}).get(("syntax", lm.name, model_fingerprint(lm), lang, config))
    if known is None and not st.button(f"Run the syntactic control ({len(SYNTAX[lang][1])} attributions with the "
                                       "sidebar's settings)", key=f"{key}_syntax"):
        return
    found = known or syntactic(lm, lang, config)
    if found is None or not found.cases:
        st.info("The model can take none of the grammatical cases.")
        return
    cols = st.columns(3)
    cols[0].metric("grammar cases localised", f"{found.localised_share:.0%}",
                   help="share of the cases whose neurons' suppression is beyond random")
    cols[1].metric("mean change of the grammatical word", _pct(found.mean_change))
    cols[2].metric("this fact's own change", _pct(own_change))
    st.dataframe(pd.DataFrame([(c.subject, c.object, c.p_object, c.n_neurons, c.change, c.random_mean,
                                c.beyond_random) for c in found.cases],
                              columns=["subject", "word", "P(word)", "neurons", "change", "random mean",
                                       "beyond random"]), hide_index=True, width="stretch")


# -- the fact-check against simple baselines -----------------------------------------------------------
SCORES = {"DKN score": "dkn", "P(candidate), the model's own": "p_candidate", "log-prob per token": "logprob",
          "random neurons (same size, DKN layers)": "random", "wo_DKN (the model's own answer, 0/1)": "wo_dkn"}


def claim_scores(lm: LanguageModel, checker: FactChecker) -> pd.DataFrame:
    """Every held-out claim of the checker's relation judged (with progress, each claim in the model's turn):
    one row per claim with its fact, truth and each score of :data:`SCORES`; once per session and checker."""
    def measure() -> pd.DataFrame:
        claims = checker.held_out_claims(facts())
        bar, report = progress_bar(f"Judging the {len(claims)} held-out claim(s) with every score…")
        rows = []
        for n, claim in enumerate(claims):
            try:
                with model_turn(lm):
                    v = checker.judge(lm, claim.subject, claim.candidate)
            except InputError:  # a claim the model cannot take is left out, as the evaluation does
                continue
            finally:
                report((n + 1) / len(claims))
            randoms = [x for x in v.random_scores if not np.isnan(x)]
            rows.append({"fact": claim.fact_id, "true": claim.is_true, "dkn": v.score, "p_candidate": v.p_candidate,
                         "logprob": v.logprob, "random": float(np.mean(randoms)) if randoms else float("nan"),
                         "wo_dkn": float(v.model_agrees)})
        bar.empty()
        return pd.DataFrame(rows, columns=["fact", "true", *SCORES.values()])

    return memo(_claims_key(lm, checker), measure)


def _claims_key(lm: LanguageModel, checker: FactChecker) -> tuple:
    return "claims", lm.name, model_fingerprint(lm), checker.to_json()


def known_claims(lm: LanguageModel, checker: FactChecker) -> bool:
    """Whether this session has judged the checker's held-out claims (:func:`claim_scores`)."""
    return _claims_key(lm, checker) in st.session_state.get(MEMO, {})


def _auroc_at(values: np.ndarray, truth: np.ndarray, idx: np.ndarray) -> float:
    """The AUROC of the claims at ``idx`` (a bootstrap resample)."""
    return auroc(values[idx], truth[idx])


def auroc_table(claims: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """AUROC of each score of :data:`SCORES` for "the claim is true", with a 95 % bootstrap interval over facts
    (a true claim and its wrong twin resampled together); NaN where a score is missing (no DKN set)."""
    truth, groups = claims["true"].to_numpy(dtype=bool), claims["fact"].to_numpy()
    rows = []
    for label, column in SCORES.items():
        values = claims[column].to_numpy(dtype=np.float64)
        low, high = bootstrap(partial(_auroc_at, values, truth), groups, np.zeros(len(groups)),
                              seed=seed) if len(claims) else (float("nan"), float("nan"))
        rows.append({"score": label, "AUROC": auroc(values, truth) if len(claims) else float("nan"),
                     "95 % CI low": low, "95 % CI high": high, "claims": len(claims)})
    return pd.DataFrame(rows)
