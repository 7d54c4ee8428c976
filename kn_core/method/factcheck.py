"""Fact-checking with degenerate knowledge neurons (METHOD.md §5, the paper's Table 3 protocol).

- :func:`make_claims`: each true fact with one wrong twin whose object is drawn (seeded, per fact) from the
  objects of the relation's other facts.
- :func:`split`: a relation's facts 80 / 20, seeded.
- :func:`calibrate`: on the 80 % part, the relation's DKN set (neurons whose count in degenerate pairs exceeds
  ⌊t · max count⌋) and the threshold λ, chosen on the training claims (true + wrong) to maximise the F1 of
  the class "correct" (default) or the balanced accuracy; returns a :class:`FactChecker`.
- :meth:`FactChecker.judge`: score = mean AMIG attribution toward the candidate over the DKN set, computed on
  the DKN layers only; correct when score ≥ λ. Beside it the "wo_DKN" baseline: the model's own greedy
  answer at the object positions, which agrees when it equals the candidate token for token.
- :func:`evaluate`: confusion counts on held-out claims, with both metric conventions (:class:`Confusion`).

A candidate may have more or fewer tokens than the true object: its prompt is built for the candidate
(one mask per candidate token; for a causal LM the candidate's own tokens teacher-forced), so the score and
the greedy answer are always read at the candidate's positions.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from kn_core.attribution import AttributionConfig, Attributor, attribute, compute
from kn_core.data import Fact, FactSet
from kn_core.data.prompts import Prompt
from kn_core.defaults import DKN_T, T_HIGH, T_LOW, TOP_K, TRAIN_SHARE
from kn_core.errors import DataError, InputError
from kn_core.method.dkn import DKNResult, degenerate, dkn_set, pair_counts
from kn_core.method.neurons import Neuron, ScoredNeuron
from kn_core.model.hooks import run
from kn_core.types import Progress

log = logging.getLogger(__name__)

OBJECTIVES = ("f1", "balanced_accuracy")
DEFAULT_T = DKN_T
_CJK_GAP = re.compile(r"(?<=[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef])\s+"
                      r"(?=[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef])")
JSON_KIND, JSON_VERSION = "kn-explorer/fact-checker", 1


# -- claims and split --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """⟨subject, relation, candidate⟩ in one language; ``is_true`` when the candidate is the fact's own object."""

    fact_id: str
    relation: str
    lang: str
    subject: str
    candidate: str
    is_true: bool


def _fact_rng(seed: int, fact_id: str) -> np.random.Generator:
    """A generator per (seed, fact), so a fact's wrong twin does not depend on which other facts are drawn."""
    return np.random.default_rng([seed, zlib.crc32(fact_id.encode("utf-8"))])


def make_claims(factset: FactSet, relation: str, lang: str, seed: int = 0,
                facts: Iterable[Fact] | None = None) -> tuple[Claim, ...]:
    """True claims and one wrong twin each, in fact order (true, wrong, true, wrong, …).

    facts: the facts to make claims of (default: every fact of ``relation`` with ``lang`` labels); the wrong
    object is drawn from the other facts' objects of the whole relation (``FactSet.wrong_objects``). A fact
    whose relation has no other object gets no claims (logged).
    """
    chosen = factset.facts_of(relation) if facts is None else tuple(facts)
    claims: list[Claim] = []
    for fact in chosen:
        if lang not in fact.labels:
            continue
        wrong = factset.wrong_objects(fact, lang)
        if not wrong:
            log.warning("%s: no other object in relation %s to make a wrong claim from; skipped", fact.id, relation)
            continue
        other = wrong[int(_fact_rng(seed, fact.id).integers(len(wrong)))]
        claims += [Claim(fact.id, relation, lang, fact.subject(lang), fact.object(lang), True),
                   Claim(fact.id, relation, lang, fact.subject(lang), other, False)]
    return tuple(claims)


def split(facts: Sequence[Fact], seed: int = 0,
          train: float = TRAIN_SHARE) -> tuple[tuple[Fact, ...], tuple[Fact, ...]]:
    """Seeded (train, test) split, each part in the input order. With two or more facts both parts get at
    least one."""
    if not 0 < train < 1:
        raise InputError("train", f"the training share must lie strictly between 0 and 1 (got {train!r})")
    n = len(facts)
    n_train = min(max(round(train * n), 1), n - 1) if n >= 2 else n
    picked = set(np.random.default_rng(seed).permutation(n)[:n_train].tolist())
    return (tuple(f for i, f in enumerate(facts) if i in picked),
            tuple(f for i, f in enumerate(facts) if i not in picked))


# -- metrics -----------------------------------------------------------------------------------------
def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


@dataclass(frozen=True)
class Confusion:
    """Confusion counts of the class "correct": tp = true claims accepted, fp = wrong claims accepted,
    fn = true claims rejected, tn = wrong claims rejected. Ratios with a zero denominator are 0.0."""

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, truth: Iterable[bool], accepted: Iterable[bool]) -> "Confusion":
        pairs = list(zip(truth, accepted, strict=True))
        return cls(tp=sum(t and a for t, a in pairs), fp=sum(not t and a for t, a in pairs),
                   fn=sum(t and not a for t, a in pairs), tn=sum(not t and not a for t, a in pairs))

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        """Conventional precision of "correct": tp / (tp + fp)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """Conventional recall of "correct": tp / (tp + fn) — the accept rate of true claims."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def accept_true(self) -> float:
        return self.recall

    @property
    def accept_wrong(self) -> float:
        """Share of wrong claims accepted: fp / (fp + tn)."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def balanced_accuracy(self) -> float:
        return (self.recall + 1 - self.accept_wrong) / 2

    @property
    def authors_precision(self) -> float:
        """The authors' "P" (METHOD.md §5): roles swapped, so it is our recall."""
        return self.recall

    @property
    def authors_recall(self) -> float:
        """The authors' "R": our precision."""
        return self.precision

    def metrics(self) -> dict[str, float]:
        """Every ratio by name (P/R/F1 conventional, the authors' P/R, accept rates, balanced accuracy)."""
        return {"P": self.precision, "R": self.recall, "F1": self.f1, "authors_P": self.authors_precision,
                "authors_R": self.authors_recall, "accept_true": self.accept_true, "accept_wrong": self.accept_wrong,
                "balanced_accuracy": self.balanced_accuracy}

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


def choose_threshold(scores: Sequence[float], truth: Sequence[bool], objective: str = "f1") -> float:
    """λ maximising ``objective`` ("f1" of class "correct", or "balanced_accuracy") for the rule score ≥ λ.

    Ties go to the other metric, then to the larger λ. λ sits halfway between the chosen score and the next
    lower one, so the training decisions are unchanged but unseen scores are not judged on a knife edge;
    when every claim is accepted, λ is the lowest score.
    """
    if objective not in OBJECTIVES:
        raise InputError("objective", f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if not len(scores) or len(scores) != len(truth):
        raise InputError("scores", "need one score per claim and at least one claim to calibrate λ on")
    values = np.unique(np.asarray(scores, dtype=np.float64))
    other = OBJECTIVES[1 - OBJECTIVES.index(objective)]

    def key(i: int) -> tuple[float, float, float]:
        confusion = Confusion.of(truth, (s >= values[i] for s in scores))
        return getattr(confusion, objective), getattr(confusion, other), values[i]

    best = max(range(len(values)), key=key)
    return float(values[best] if best == 0 else (values[best] + values[best - 1]) / 2)


# -- judging -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """How a claim was judged.

    correct: score ≥ lam (with_DKN). score: mean attribution toward the candidate over the DKN set (0.0 when
    the set is empty). voters: ``(layer, index, attribution)`` for each DKN neuron. model_prediction: the
    model's greedy answer at the candidate's object positions (decoded text); model_agrees: that answer is
    the candidate token for token (wo_DKN). prompt: the prompt built for the candidate.
    """

    correct: bool
    score: float
    lam: float
    voters: tuple[ScoredNeuron, ...]
    model_prediction: str
    model_agrees: bool
    prompt: Prompt


def greedy_answer(lm, prompt: Prompt) -> tuple[int, ...]:
    """The model's greedy tokens at the prompt's object positions: the argmax at every mask (masked LM), or a
    greedy decode of as many tokens as the object has, from the prompt without its object (causal LM)."""
    with lm.lock, torch.inference_mode():
        if lm.kind == "masked":
            logits = run(lm, torch.tensor(prompt.input_ids)[None])[0]
            return tuple(int(logits[t].argmax()) for t in prompt.target_positions)
        ids = list(prompt.input_ids[:prompt.target_positions[0] + 1])
        for _ in prompt.object_ids:
            ids.append(int(run(lm, torch.tensor(ids)[None])[0, -1].argmax()))
        return tuple(ids[prompt.target_positions[0] + 1:])


def decode(lm, tokens: Sequence[int]) -> str:
    """Tokens as text; the spaces a WordPiece decoder puts between CJK characters (南 美 洲) are removed."""
    return _CJK_GAP.sub("", lm.tokenizer.decode(list(tokens))).strip()


def dkn_score(lm, prompt: Prompt, dkn: Sequence[Neuron],
              config: AttributionConfig) -> tuple[float, tuple[ScoredNeuron, ...]]:
    """Mean attribution toward the prompt's object over ``dkn`` and each neuron's attribution; only the layers
    holding DKN are integrated."""
    if not dkn:
        return 0.0, ()
    layers = tuple(sorted({layer for layer, _ in dkn}))
    scores = attribute(lm, prompt, replace(config, layers=layers)).scores
    voters = tuple((layer, index, float(scores[layer, index])) for layer, index in dkn)
    return float(np.mean([v[2] for v in voters])), voters


@dataclass(frozen=True)
class FactChecker:
    """A relation's calibrated DKN fact checker (one model, one language).

    model, n_layers, d_ff: the model it was calibrated on. template: the default template of judged claims.
    dkn: the DKN set ``(layer, index)``, most frequent first; counts: ``(layer, index, count)`` of every
    neuron seen in a degenerate pair. lam: the threshold λ; objective: what λ maximised on the training
    claims; train_accept_true / train_accept_wrong: accept rates there (train_f1 its F1). train_facts /
    test_facts: fact ids of the split. n_prompts / n_pairs: training prompts searched and degenerate pairs
    found. config: the AMIG set-up (``layers`` unset; judging restricts it to the DKN layers).
    """

    model: str
    n_layers: int
    d_ff: int
    relation: str
    lang: str
    template: str
    dkn: tuple[Neuron, ...]
    counts: tuple[tuple[int, int, int], ...]
    lam: float
    objective: str
    train_accept_true: float
    train_accept_wrong: float
    train_f1: float
    train_facts: tuple[str, ...]
    test_facts: tuple[str, ...]
    n_prompts: int
    n_pairs: int
    config: AttributionConfig = field(default_factory=AttributionConfig)
    seed: int = 0
    top_k: int = TOP_K
    t: float = DEFAULT_T
    t_low: float = T_LOW
    t_high: float = T_HIGH

    def _check_model(self, lm) -> None:
        if (lm.n_layers, lm.d_ff) != (self.n_layers, self.d_ff):
            raise InputError("model", f"this checker was calibrated on {self.model} ({self.n_layers} layers × "
                                      f"{self.d_ff} neurons); {lm.name} has {lm.n_layers} × {lm.d_ff}: "
                                      "calibrate again")
        if lm.name != self.model:
            log.warning("judging with %s a checker calibrated on %s", lm.name, self.model)

    def judge(self, lm, subject: str, candidate: str, template: str | None = None) -> Verdict:
        """Judge ⟨subject, relation, candidate⟩ with the DKN score and with the model's own greedy answer."""
        self._check_model(lm)
        prompt = lm.prompt(template or self.template, subject, candidate)
        score, voters = dkn_score(lm, prompt, self.dkn, self.config)
        answer = greedy_answer(lm, prompt)
        return Verdict(correct=score >= self.lam, score=score, lam=self.lam, voters=voters,
                       model_prediction=decode(lm, answer),
                       model_agrees=answer == prompt.object_ids, prompt=prompt)

    def held_out_claims(self, factset: FactSet) -> tuple[Claim, ...]:
        """True and wrong claims of the held-out (test) facts, with the checker's seed."""
        return make_claims(factset, self.relation, self.lang, self.seed, [factset.fact(i) for i in self.test_facts])

    def to_json(self) -> str:
        """The checker as JSON text (read back with :meth:`from_json`)."""
        return json.dumps({"kind": JSON_KIND, "version": JSON_VERSION, **asdict(self)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | dict) -> "FactChecker":
        data = json.loads(text) if isinstance(text, str) else dict(text)
        if data.pop("kind", None) != JSON_KIND or data.pop("version", None) != JSON_VERSION:
            raise DataError("fact checker", None, f"not a {JSON_KIND} version {JSON_VERSION} record")
        try:
            config = AttributionConfig(**{k: _tuples(v) for k, v in data.pop("config").items()})
            return cls(**{k: _tuples(v) for k, v in data.items()}, config=config)
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError("fact checker", None, f"malformed record: {exc}") from None


def _tuples(value):
    """JSON lists back to (nested) tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _prompt_or_none(lm, template: str, subject: str, obj: str) -> Prompt | None:
    """The prompt, or None (logged) when the model cannot take it (e.g. characters outside its vocabulary)."""
    built = lm.prompts([template], subject, obj).prompts
    return built[0] if built else None


def _train_dkn(lm, facts: Sequence[Fact], templates: Sequence[str], lang: str, config: AttributionConfig,
               top_k: int, t_low: float, t_high: float, progress: Progress, attributor: Attributor = compute) -> list[DKNResult]:
    """Degenerate-pair search on every (training fact, template) prompt the model can take."""
    results = []
    prompts = [p for f in facts for tpl in templates
               if (p := _prompt_or_none(lm, tpl, f.subject(lang), f.object(lang))) is not None]
    full = replace(config, layers=None)
    for i, prompt in enumerate(prompts):
        scores = attributor(lm, prompt, full, lang).scores
        results.append(degenerate(lm, prompt, scores, top_k, t_low, t_high))
        progress((i + 1) / len(prompts))
    return results


def _score_claims(lm, claims: Sequence[Claim], template: str, dkn: Sequence[Neuron], config: AttributionConfig,
                  progress: Progress) -> tuple[list[Claim], list[float]]:
    """DKN scores of the claims the model can take (others are skipped)."""
    kept, scores = [], []
    for i, claim in enumerate(claims):
        prompt = _prompt_or_none(lm, template, claim.subject, claim.candidate)
        if prompt is not None:
            kept.append(claim)
            scores.append(dkn_score(lm, prompt, dkn, config)[0])
        progress((i + 1) / len(claims))
    return kept, scores


def calibrate(lm, factset: FactSet, relation: str, lang: str, templates: Sequence[str] | None = None,
              config: AttributionConfig = AttributionConfig(), seed: int = 0, top_k: int = TOP_K,
              t: float = DEFAULT_T, t_low: float = T_LOW, t_high: float = T_HIGH, objective: str = "f1",
              train: float = TRAIN_SHARE, facts: Sequence[Fact] | None = None,
              progress: Progress | None = None, attributor: Attributor = compute) -> FactChecker:
    """Split ``relation``'s facts, find the DKN set on the training part and calibrate λ on its claims.

    templates: the prompts searched for degenerate pairs (default: the relation's train templates in
    ``lang``); the first one is the template claims are judged with.
    facts: the facts to split (default: every fact of the relation with ``lang`` labels); wrong objects are
    still drawn from the whole relation.
    progress: called with the fraction done (0–1).
    attributor: where the training prompts' attributions come from (``kn_core.runs.cached.read_through(store)``
    reads them from the store, e.g. after a batch run, and stores what it computes); claims are always
    computed, never stored (wrong ones are not facts).
    """
    if objective not in OBJECTIVES:
        raise InputError("objective", f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if not templates:
        templates = [tp.text for tp in factset.relation(relation).templates_for(lang, heldout=False)]
    templates = list(templates)
    if not templates:
        raise InputError("lang", f"relation {relation} has no {lang!r} templates")
    facts = [f for f in (factset.facts_of(relation) if facts is None else facts) if lang in f.labels]
    train_facts, test_facts = split(facts, seed, train)
    report = progress or (lambda _f: None)
    results = _train_dkn(lm, train_facts, templates, lang, config, top_k, t_low, t_high, lambda f: report(0.7 * f),
                         attributor)
    if not results:
        raise InputError("relation", f"no training prompt of {relation} in {lang!r} can be put to {lm.name} "
                                     "(its labels fall outside the model's vocabulary)")
    counts = pair_counts(results)
    dkn = dkn_set(counts, t)
    if not dkn:
        log.warning("%s/%s: no degenerate pair in %d training prompts; every score is 0", relation, lang, len(results))
    claims, scores = _score_claims(lm, make_claims(factset, relation, lang, seed, train_facts), templates[0], dkn,
                                   config, lambda f: report(0.7 + 0.3 * f))
    if not claims:
        raise InputError("relation", f"no training claim of {relation} in {lang!r} can be put to {lm.name} "
                                     "(its labels fall outside the model's vocabulary)")
    truth = [c.is_true for c in claims]
    lam = choose_threshold(scores, truth, objective)
    fit = Confusion.of(truth, (s >= lam for s in scores))
    log.info("%s/%s: %d DKN from %d pairs; λ = %.3e (train F1 %.3f)", relation, lang, len(dkn),
             sum(len(r.pairs) for r in results), lam, fit.f1)
    return FactChecker(model=lm.name, n_layers=lm.n_layers, d_ff=lm.d_ff, relation=relation, lang=lang,
                       template=templates[0], dkn=dkn,
                       counts=tuple((n[0], n[1], c) for n, c in sorted(counts.items(), key=lambda x: (-x[1], x[0]))),
                       lam=lam, objective=objective, train_accept_true=fit.accept_true,
                       train_accept_wrong=fit.accept_wrong, train_f1=fit.f1,
                       train_facts=tuple(f.id for f in train_facts), test_facts=tuple(f.id for f in test_facts),
                       n_prompts=len(results), n_pairs=sum(len(r.pairs) for r in results),
                       config=replace(config, layers=None), seed=seed, top_k=top_k, t=t, t_low=t_low, t_high=t_high)


# -- evaluation --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """Held-out judgement of a checker.

    with_dkn: the DKN rule's confusion counts; wo_dkn: the model's own greedy answer's. verdicts: each
    judged claim with its verdict; skipped: claims the model could not take (not counted).
    seconds_per_claim: mean wall time of one :meth:`FactChecker.judge` call.
    """

    with_dkn: Confusion
    wo_dkn: Confusion
    verdicts: tuple[tuple[Claim, Verdict], ...]
    skipped: tuple[Claim, ...]
    seconds_per_claim: float

    def table(self) -> pd.DataFrame:
        """One row per method (with_DKN, wo_DKN): counts and every metric."""
        return pd.DataFrame([{"method": name, **asdict(c), **c.metrics()}
                             for name, c in (("wo_DKN", self.wo_dkn), ("with_DKN", self.with_dkn))])

    def claims_frame(self) -> pd.DataFrame:
        """One row per judged claim: the claim, its score and both decisions."""
        return pd.DataFrame([{**asdict(c), "score": v.score, "lam": v.lam, "with_DKN": v.correct,
                              "model_prediction": v.model_prediction, "wo_DKN": v.model_agrees}
                             for c, v in self.verdicts])


def evaluate(lm, checker: FactChecker, test_claims: Sequence[Claim], progress: Progress | None = None) -> Evaluation:
    """Judge every claim with ``checker`` (its default template) and count both methods' decisions."""
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
    truth = [c.is_true for c, _ in verdicts]
    return Evaluation(with_dkn=Confusion.of(truth, [v.correct for _, v in verdicts]),
                      wo_dkn=Confusion.of(truth, [v.model_agrees for _, v in verdicts]),
                      verdicts=tuple(verdicts), skipped=tuple(skipped),
                      seconds_per_claim=seconds / len(verdicts) if verdicts else math.nan)
