"""Fact-checking with degenerate knowledge neurons: the paper's Table 3 protocol (docs/method.md §5).

The pieces live in one module each — :mod:`~kn_core.method.claims` (claims and the 80 / 20 split),
:mod:`~kn_core.method.metrics` (confusion counts, λ) and :mod:`~kn_core.method.checker` (the checker, its
verdicts and the model's own answers) — and are re-exported here. This module is the protocol:

- :func:`calibrate`: on the 80 % part, the relation's DKN set (neurons whose count in degenerate pairs exceeds
  ⌊t · max count⌋) and the threshold λ, chosen on the training claims (true + wrong) to maximise the F1 of
  the class "correct" (default) or the balanced accuracy; returns a :class:`FactChecker`. A relation whose
  training part yields no DKN set gets a checker that abstains: no λ is calibrated on an empty set.
- :func:`evaluate`: judge held-out claims; confusion counts of with_DKN over the claims that got a verdict,
  of both wo_DKN rules over the same claims (and of the authors' rule over every claim), and how many claims
  got no verdict.

Scoring prompts give every candidate of a relation the same number of masks (masked LMs; see
:mod:`~kn_core.method.checker`), both when λ is calibrated and when claims are judged.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from kn_core.attribution import AttributionConfig, Attributor, compute
from kn_core.data import Fact, FactSet
from kn_core.data.prompts import Prompt
from kn_core.defaults import T_HIGH, T_LOW, TOP_K, TRAIN_SHARE
from kn_core.errors import InputError, KNError
from kn_core.method.checker import (
    DEFAULT_T,
    JSON_KIND,
    RANDOM_SCORE_DRAWS,
    JSON_VERSION,
    MAX_NEW_TOKENS,
    NO_VERDICT,
    WO_DKN_RULES,
    FactChecker,
    Verdict,
    candidate_probability,
    claim_prompt,
    decode,
    dkn_score,
    dkn_scores,
    greedy_answer,
    model_answers,
    relation_masks,
    with_masks,
)
from kn_core.method.claims import Claim, make_claims, split
from kn_core.method.controls import random_sets
from kn_core.method.dkn import DKNResult, degenerate, dkn_set, pair_counts
from kn_core.method.metrics import (
    OBJECTIVES,
    Confusion,
    check_objective,
    choose_threshold,
)
from kn_core.method.neurons import Neuron, default_tau
from kn_core.types import Progress

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)


def _prompt_or_none(lm: LanguageModel, template: str, subject: str, obj: str) -> Prompt | None:
    """The prompt, or None (logged) when the model cannot take it (e.g. characters outside its vocabulary)."""
    built = lm.prompts([template], subject, obj).prompts
    return built[0] if built else None


def _claim_prompt_or_none(lm: LanguageModel, template: str, claim: Claim, n_masks: int) -> Prompt | None:
    try:
        return claim_prompt(lm, template, claim.subject, claim.candidate, n_masks)
    except KNError as exc:
        log.info("skipped claim %s / %r: %s", claim.fact_id, claim.candidate, exc)
        return None


def _train_dkn(lm: LanguageModel, facts: Sequence[Fact], templates: Sequence[str], lang: str, config: AttributionConfig,
               top_k: int, t_low: float, t_high: float, progress: Progress, attributor: Attributor = compute,
               tau: float | None = None) -> list[DKNResult]:
    """Degenerate-pair search on every (training fact, template) prompt the model can take; candidates above
    ``tau`` · max (default: the τ of ``lang``)."""
    results = []
    prompts = [p for f in facts for tpl in templates
               if (p := _prompt_or_none(lm, tpl, f.subject(lang), f.object(lang))) is not None]
    full = replace(config, layers=None)
    for i, prompt in enumerate(prompts):
        scores = attributor(lm, prompt, full, lang).scores
        results.append(degenerate(lm, prompt, scores, top_k, t_low, t_high,
                                  tau=default_tau(lang) if tau is None else tau))
        progress((i + 1) / len(prompts))
    return results


@dataclass(frozen=True)
class ClaimScores:
    """A training claim's DKN score beside its baselines: the mean attribution over each random same-size set
    in the DKN layers, and the model's own P(candidate) and mean log-probability per token."""

    claim: Claim
    score: float
    random_scores: tuple[float, ...]
    p_candidate: float
    logprob: float


def _score_claims(lm: LanguageModel, claims: Sequence[Claim], template: str, dkn: Sequence[Neuron],
                  config: AttributionConfig, n_masks: int, progress: Progress,
                  random: Sequence[Sequence[Neuron]] = ()) -> list[ClaimScores]:
    """DKN scores (and baselines) of the claims the model can take (others are skipped), on their scoring
    prompts."""
    out = []
    for i, claim in enumerate(claims):
        prompt = _claim_prompt_or_none(lm, template, claim, n_masks)
        if prompt is not None:
            score, _, randoms = dkn_scores(lm, prompt, dkn, config, random)
            out.append(ClaimScores(claim, score, randoms, *candidate_probability(lm, prompt)))
        progress((i + 1) / len(claims))
    return out


def calibrate(lm: LanguageModel, factset: FactSet, relation: str, lang: str, templates: Sequence[str] | None = None,
              config: AttributionConfig = AttributionConfig(), seed: int = 0, top_k: int = TOP_K,
              t: float = DEFAULT_T, t_low: float = T_LOW, t_high: float = T_HIGH, objective: str = "f1",
              train: float = TRAIN_SHARE, facts: Sequence[Fact] | None = None,
              progress: Progress | None = None, attributor: Attributor = compute,
              tau: float | None = None) -> FactChecker:
    """Split ``relation``'s facts, find the DKN set on the training part and calibrate λ on its claims (see
    :func:`calibrate_scored`, which also returns the training claims' scores)."""
    return calibrate_scored(lm, factset, relation, lang, templates, config, seed, top_k, t, t_low, t_high, objective,
                            train, facts, progress, attributor, tau)[0]


def calibrate_scored(lm: LanguageModel, factset: FactSet, relation: str, lang: str,
                     templates: Sequence[str] | None = None, config: AttributionConfig = AttributionConfig(),
                     seed: int = 0, top_k: int = TOP_K,
                     t: float = DEFAULT_T, t_low: float = T_LOW, t_high: float = T_HIGH, objective: str = "f1",
                     train: float = TRAIN_SHARE, facts: Sequence[Fact] | None = None,
                     progress: Progress | None = None, attributor: Attributor = compute, tau: float | None = None,
                     random_draws: int = RANDOM_SCORE_DRAWS) -> tuple[FactChecker, tuple[ClaimScores, ...]]:
    """Split ``relation``'s facts, find the DKN set on the training part and calibrate λ on its claims; return
    the checker and the training claims' scores with their baselines (``random_draws`` random same-size sets in
    the DKN layers, the checker's :meth:`~FactChecker.random_sets`; P(candidate)), for fitting the baselines'
    thresholds on the same training claims — never on the held-out claims they are scored on.

    templates: the prompts searched for degenerate pairs (default: the relation's train templates in
    ``lang``); the first one is the template claims are judged with.
    facts: the facts to split (default: every fact of the relation with ``lang`` labels); wrong objects are
    still drawn from the whole relation, and a masked LM's mask count covers the whole relation's objects.
    progress: called with the fraction done (0–1).
    tau: the DKN candidates are the top-K knowledge neurons above τ · max (default: the τ of ``lang``).
    attributor: where the training prompts' attributions come from (``kn_core.runs.cached.read_through(store)``
    reads them from the store, e.g. after a batch run, and stores what it computes); claims are always
    computed, never stored (wrong ones are not facts).

    With no degenerate pair in the training prompts the DKN set is empty and the checker abstains: λ and the
    training accept rates are None, and no claim is scored.
    """
    check_objective(objective)
    if not templates:
        templates = [tp.text for tp in factset.relation(relation).templates_for(lang, heldout=False)]
    templates = list(templates)
    if not templates:
        raise InputError("lang", f"relation {relation} has no {lang!r} templates")
    facts = [f for f in (factset.facts_of(relation) if facts is None else facts) if lang in f.labels]
    train_facts, test_facts = split(facts, seed, train)
    report = progress or (lambda _f: None)
    tau = default_tau(lang) if tau is None else tau
    results = _train_dkn(lm, train_facts, templates, lang, config, top_k, t_low, t_high, lambda f: report(0.7 * f),
                         attributor, tau)
    if not results:
        raise InputError("relation", f"no training prompt of {relation} in {lang!r} can be put to {lm.name} "
                                     "(its labels fall outside the model's vocabulary)")
    counts = pair_counts(results)
    dkn = dkn_set(counts, t)
    n_masks = relation_masks(lm, templates[0], [f.object(lang) for f in factset.facts_of(relation) if lang in f.labels])
    n_pairs = sum(len(r.pairs) for r in results)
    fitted: dict[str, float | None] = dict.fromkeys(("lam", "train_accept_true", "train_accept_wrong", "train_f1"))
    scored: list[ClaimScores] = []
    if not dkn:
        log.warning("%s/%s: no degenerate pair in %d training prompts; the checker gives no verdict", relation, lang,
                    len(results))
        report(1.0)
    else:
        randoms = random_sets(dkn, lm.d_ff, seed, random_draws) if random_draws else []
        scored = _score_claims(lm, make_claims(factset, relation, lang, seed, train_facts), templates[0], dkn,
                               config, n_masks, lambda f: report(0.7 + 0.3 * f), randoms)
        claims, scores = [c.claim for c in scored], [c.score for c in scored]
        if not claims:
            raise InputError("relation", f"no training claim of {relation} in {lang!r} can be put to {lm.name} "
                                         "(its labels fall outside the model's vocabulary)")
        truth = [c.is_true for c in claims]
        lam = choose_threshold(scores, truth, objective)
        fit = Confusion.of(truth, (s >= lam for s in scores))
        fitted = {"lam": lam, "train_accept_true": fit.accept_true, "train_accept_wrong": fit.accept_wrong,
                  "train_f1": fit.f1}
        log.info("%s/%s: %d DKN from %d pairs; λ = %.3e (train F1 %.3f)", relation, lang, len(dkn), n_pairs, lam,
                 fit.f1)
    return FactChecker(model=lm.name, n_layers=lm.n_layers, d_ff=lm.d_ff, relation=relation, lang=lang,
                       template=templates[0], dkn=dkn,
                       counts=tuple((n[0], n[1], c) for n, c in sorted(counts.items(), key=lambda x: (-x[1], x[0]))),
                       objective=objective, train_facts=tuple(f.id for f in train_facts),
                       test_facts=tuple(f.id for f in test_facts), n_prompts=len(results), n_pairs=n_pairs,
                       config=replace(config, layers=None), seed=seed, top_k=top_k, t=t, t_low=t_low, t_high=t_high,
                       n_masks=n_masks, tau=tau, **fitted), tuple(scored)


# -- evaluation --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """Held-out judgement of a checker.

    with_dkn: the DKN rule's confusion counts over the claims that got a verdict; wo_dkn / wo_dkn_exact: the
    model's own answer by the authors' / the token-exact rule over the same claims; wo_dkn_all: the authors'
    rule over every judged claim, with a verdict or not. verdicts: each judged claim with its verdict;
    n_no_verdict: how many of them got no with_DKN verdict (their relation has no DKN set); skipped: claims
    the model could not take (not counted anywhere). seconds_per_claim: mean wall time of one
    :meth:`FactChecker.judge` call.
    """

    with_dkn: Confusion
    wo_dkn: Confusion
    wo_dkn_exact: Confusion
    wo_dkn_all: Confusion
    verdicts: tuple[tuple[Claim, Verdict], ...]
    skipped: tuple[Claim, ...]
    seconds_per_claim: float

    @property
    def n_no_verdict(self) -> int:
        return sum(v.abstained for _, v in self.verdicts)

    @property
    def n_verdict(self) -> int:
        return len(self.verdicts) - self.n_no_verdict

    def methods(self) -> dict[str, Confusion]:
        """Method name -> confusion counts over the claims with a verdict (the Table 3 rows)."""
        return {"wo_DKN": self.wo_dkn, "wo_DKN_token_exact": self.wo_dkn_exact, "with_DKN": self.with_dkn}

    def table(self) -> pd.DataFrame:
        """One row per method (wo_DKN by the authors' rule, wo_DKN token-exact, with_DKN), all over the claims
        with a verdict: counts, every metric (NaN with no such claim) and the claims without a verdict; then
        ``wo_DKN_all_claims``, the authors' rule over every judged claim."""
        rows = [*self.methods().items(), ("wo_DKN_all_claims", self.wo_dkn_all)]
        return pd.DataFrame([{"method": name, "claims": c.n, "no_verdict": self.n_no_verdict, **asdict(c),
                              **c.metrics()} for name, c in rows])

    def claims_frame(self) -> pd.DataFrame:
        """One row per judged claim: the claim, its score and every decision (with_DKN is None without a
        verdict), the candidate's token count and the scoring prompt's length."""
        return pd.DataFrame([{**asdict(c), "verdict": not v.abstained, "score": v.score,
                              "lam": math.nan if v.lam is None else v.lam, "with_DKN": v.correct,
                              "model_prediction": v.model_prediction, "wo_DKN": v.model_agrees,
                              "exact_prediction": v.exact_prediction, "wo_DKN_token_exact": v.exact_agrees,
                              "wo_DKN_first_token": v.first_token_agrees, "p_candidate": v.p_candidate,
                              "logprob": v.logprob,
                              "random_score_mean": float(np.mean(v.random_scores)) if v.random_scores else math.nan,
                              "n_tokens": v.prompt.n_object_tokens, "input_len": len(v.prompt.input_ids)}
                             for c, v in self.verdicts],
                            columns=["fact_id", "relation", "lang", "subject", "candidate", "is_true", "verdict",
                                     "score", "lam", "with_DKN", "model_prediction", "wo_DKN", "exact_prediction",
                                     "wo_DKN_token_exact", "wo_DKN_first_token", "p_candidate", "logprob",
                                     "random_score_mean", "n_tokens", "input_len"])


def evaluate(lm: LanguageModel, checker: FactChecker, test_claims: Sequence[Claim],
             progress: Progress | None = None) -> Evaluation:
    """Judge every claim with ``checker`` (its default template) and count each method's decisions; with_DKN
    and both wo_DKN rules are counted over the claims that got a verdict only."""
    verdicts, skipped, seconds = [], [], 0.0
    for i, claim in enumerate(test_claims):
        start = time.perf_counter()
        try:
            verdict = checker.judge(lm, claim.subject, claim.candidate)
        except InputError as exc:
            log.info("skipped claim %s / %r: %s", claim.fact_id, claim.candidate, exc)
            skipped.append(claim)
        else:
            seconds += time.perf_counter() - start
            verdicts.append((claim, verdict))
        if progress is not None:
            progress((i + 1) / len(test_claims))
    judged = [(c, v) for c, v in verdicts if not v.abstained]
    truth = [c.is_true for c, _ in judged]
    return Evaluation(with_dkn=Confusion.of(truth, [bool(v.correct) for _, v in judged]),
                      wo_dkn=Confusion.of(truth, [v.model_agrees for _, v in judged]),
                      wo_dkn_exact=Confusion.of(truth, [v.exact_agrees for _, v in judged]),
                      wo_dkn_all=Confusion.of([c.is_true for c, _ in verdicts], [v.model_agrees for _, v in verdicts]),
                      verdicts=tuple(verdicts), skipped=tuple(skipped),
                      seconds_per_claim=seconds / len(verdicts) if verdicts else math.nan)


__all__ = ["RANDOM_SCORE_DRAWS", "ClaimScores", "calibrate_scored", "candidate_probability", "dkn_scores",
           "DEFAULT_T", "JSON_KIND", "JSON_VERSION", "MAX_NEW_TOKENS", "NO_VERDICT", "OBJECTIVES",
           "WO_DKN_RULES", "Claim", "Confusion", "Evaluation", "FactChecker", "Verdict", "calibrate",
           "choose_threshold", "claim_prompt", "decode", "dkn_score", "evaluate", "greedy_answer", "make_claims",
           "model_answers", "relation_masks", "split", "with_masks"]
