"""A relation's DKN fact checker and how it judges one claim (docs/method.md §5).

- :meth:`FactChecker.judge`: the with_DKN verdict (mean AMIG attribution toward the candidate over the
  relation's DKN set, computed on the DKN layers only; correct when the score ≥ λ) beside the two wo_DKN
  answers of the model itself.
- **No verdict from an empty DKN set.** A checker whose training part yielded no DKN set *abstains*: its
  verdict has ``correct=None`` (``abstained``) and :data:`NO_VERDICT` as the reason, no score and no λ. It
  never scores 0 and lets λ accept or reject everything (the authors' code skips such relations).
- **wo_DKN** (:data:`WO_DKN_RULES`), both computed for every claim:

  * ``"authors"`` (the authors' code, the default in tables): a masked LM gets the query with ONE [MASK] and
    the claim is correct when the top-1 token there, decoded, equals the whole candidate string (so a
    candidate of several tokens is never accepted, as in the authors' code, which compares the object string).
    A causal LM continues the query greedily and the claim is correct when the
    generated word equals the candidate: as many words are read as the candidate has (a word is a run of
    letters / digits, joined by ``- ' ’ . ·``, so CJK labels are one word ending at punctuation), the
    generation running until that word is complete (EOS, or :data:`MAX_NEW_TOKENS`), and the stripped
    strings are compared.
  * ``"first_token"`` (a masked LM's lenient variant, kept for comparison; earlier tables used it as the
    authors' rule): the top-1 token of the one-[MASK] query is the candidate's *first* token ("New" accepts both
    "New Delhi" and "New York"). A causal LM's is the same as ``"authors"``.
  * ``"token_exact"``: the greedy prediction at each of the candidate's positions is the candidate's token
    (a causal LM: the first k greedily generated tokens; a masked LM: the argmax at each candidate mask of
    the scoring prompt below).

- **Equal masks for every candidate (masked LMs).** One [MASK] per candidate token would make a claim and its
  wrong twin different inputs whose length gives the candidate away (to the DKN score and to the token-exact
  answer alike). The scoring prompt of a masked LM therefore has ``n_masks`` masks for every candidate of the
  relation: the token count of the relation's longest object (the pool wrong objects are drawn from, fixed
  at calibration, so it depends on the relation only, never on the candidate or its twin). A candidate of
  k ≤ n_masks tokens is read at the first k masks; the remaining masks are padding, neither target nor
  context (the AMIG baseline leaves them masked). A candidate longer than every object of the relation (only
  possible for a claim typed by hand) gets its own k masks. Causal LMs read the candidate teacher-forced
  after the same query, so ``n_masks`` is 0 for them.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Sequence, TypedDict, cast

import numpy as np
import torch

from kn_core.attribution import AttributionConfig, attribute
from kn_core.data import FactSet
from kn_core.data.prompts import Prompt, fill_template
from kn_core.defaults import DKN_T, T_HIGH, T_LOW, TOP_K
from kn_core.errors import DataError, InputError, KNError
from kn_core.method.claims import Claim, make_claims
from kn_core.method.controls import random_sets
from kn_core.method.neurons import Neuron, ScoredNeuron
from kn_core.model.hooks import gold_probs, run

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

DEFAULT_T = DKN_T
JSON_KIND, JSON_VERSION = "kn-explorer/fact-checker", 2
NO_VERDICT = "no verdict: this relation has no degenerate neurons with these settings"
WO_DKN_RULES = ("authors", "token_exact", "first_token")
AUTHORS_RULE = {  # the authors' wo_DKN rule in words, per model kind (what :func:`model_answers` "authors" does)
    "masked": "one [MASK]: its top-1 token, decoded, against the whole candidate (a candidate of several tokens is "
              "never accepted)",
    "causal": "its greedy word(s) after the query against the candidate"}
RANDOM_SCORE_DRAWS = 30  # random same-size sets scored beside the DKN set (the random-neuron baseline)
MAX_NEW_TOKENS = 16  # a causal LM's greedy continuation: at most this many tokens (or 2 per candidate token)
_CJK_GAP = re.compile(r"(?<=[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef])\s+"
                      r"(?=[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef])")
_INNER = "-'’.·"
_WORD = re.compile(r"\w+(?:[-'’.·]\w+)*")


# -- prompts -----------------------------------------------------------------------------------------
def _mask_id(lm: LanguageModel) -> int:
    return int(lm.adapter.no_info_token_id(lm.tokenizer))


def with_masks(lm: LanguageModel, prompt: Prompt, n: int) -> Prompt:
    """A masked LM's ``prompt`` with exactly ``n`` ≥ 1 masks at the object (in place of its run of masks,
    padding included): the first min(n, k) masks are targets for the object's first tokens, any further masks
    are padding (neither target nor context)."""
    if lm.kind != "masked":
        raise InputError("model", "only a masked LM's prompt has masks to count")
    if n < 1:
        raise InputError("n_masks", f"need at least one mask (got {n})")
    mask, k, first = _mask_id(lm), prompt.n_object_tokens, prompt.target_positions[0]
    last = first  # the run of masks at the object, padding included
    while last + 1 < len(prompt.input_ids) and prompt.input_ids[last + 1] == mask:
        last += 1
    if n == last - first + 1 and n == k:
        return prompt
    ids = list(prompt.input_ids[:first]) + [mask] * n + list(prompt.input_ids[last + 1:])
    lm.check_length(ids, "template", f"with {n} masks the prompt does not fit; use fewer masks or a shorter "
                                     "template")
    shift = n - (last - first + 1)
    kept = min(n, k)
    return replace(prompt, input_ids=tuple(ids), target_positions=tuple(range(first, first + kept)),
                   object_ids=prompt.object_ids[:kept],
                   context_positions=tuple(j + shift if j > last else j for j in prompt.context_positions))


def claim_prompt(lm: LanguageModel, template: str, subject: str, candidate: str, n_masks: int = 0) -> Prompt:
    """The prompt a claim is scored with: for a masked LM ``max(n_masks, k)`` masks, the candidate's k tokens
    at the first k (so every candidate of the relation meets the same input); otherwise the model's own
    prompt of the candidate. Raises :class:`~kn_core.errors.KNError` when the model cannot take it."""
    prompt = lm.prompt(template, subject, candidate)
    if lm.kind == "masked" and n_masks > prompt.n_object_tokens:
        return with_masks(lm, prompt, n_masks)
    return prompt


def relation_masks(lm: LanguageModel, template: str, objects: Iterable[str]) -> int:
    """A masked LM's mask count for a relation: the token count of its longest object among ``objects`` (those
    the model's vocabulary can spell; the subject plays no part); 0 for a causal LM."""
    if lm.kind != "masked":
        return 0
    counts = []
    for obj in dict.fromkeys(objects):
        try:
            counts.append(len(lm.adapter.encode_object(lm.tokenizer, fill_template(template, "x", obj))))
        except KNError:
            log.info("object %r cannot be put to %s; it sets no mask count", obj, lm.name)
    return max(counts, default=0)


# -- the model's own answers (wo_DKN) ------------------------------------------------------------------
def greedy_answer(lm: LanguageModel, prompt: Prompt) -> tuple[int, ...]:
    """The model's greedy tokens at the prompt's object positions: the argmax at every target mask (masked LM),
    or a greedy decode of as many tokens as the object has, from the prompt without its object (causal LM)."""
    with lm.lock, torch.inference_mode():
        if lm.kind == "masked":
            logits = run(lm, torch.tensor(prompt.input_ids, device=lm.device)[None])[0]
            return tuple(int(logits[t].argmax()) for t in prompt.target_positions)
        ids = list(prompt.input_ids[:prompt.target_positions[0] + 1])
        for _ in prompt.object_ids:
            ids.append(int(run(lm, torch.tensor(ids, device=lm.device)[None])[0, -1].argmax()))
        return tuple(ids[prompt.target_positions[0] + 1:])


def decode(lm: LanguageModel, tokens: Sequence[int]) -> str:
    """Tokens as text; the spaces a WordPiece decoder puts between CJK characters (南 美 洲) are removed."""
    # decode's stub returns str | list[str]; one sequence of ids decodes to one str
    return _CJK_GAP.sub("", cast(str, lm.tokenizer.decode(list(tokens)))).strip()


def n_words(text: str) -> int:
    """How many words ``text`` has for the causal word rule (at least 1)."""
    return max(1, len(_WORD.findall(text)))


def first_words(text: str, count: int) -> tuple[str, bool]:
    """The text up to the end of its ``count``-th word (stripped), and whether that word is complete (something
    that cannot continue it follows)."""
    text = text.lstrip()
    found = list(_WORD.finditer(text))
    if len(found) < count:
        return text.strip(), False
    end = found[count - 1].end()
    rest = text[end:]
    # a byte-level BPE decodes half a character as U+FFFD: the word may still go on
    complete = bool(rest) and rest[0] != "\ufffd" and (rest[0] not in _INNER or (len(rest) > 1 and
                                                                                  not rest[1].isalnum()))
    return text[:end].strip(), complete


def _continue(lm: LanguageModel, prompt: Prompt) -> tuple[tuple[int, ...], str]:
    """A causal LM's greedy continuation of the query: its first k tokens (k = the candidate's tokens) and the
    generated words, as many as the candidate has, read until the last one is complete."""
    start = prompt.target_positions[0] + 1
    ids = list(prompt.input_ids[:start])
    new: list[int] = []
    k, count = prompt.n_object_tokens, n_words(prompt.object)
    eos, ended = lm.tokenizer.eos_token_id, None  # ended: tokens generated before the first EOS
    cap = max(MAX_NEW_TOKENS, 2 * k)
    with lm.lock, torch.inference_mode():
        while len(new) < k or (ended is None and len(new) < cap and not first_words(decode(lm, new), count)[1]):
            token = int(run(lm, torch.tensor(ids, device=lm.device)[None])[0, -1].argmax())
            if token == eos and ended is None:
                ended = len(new)
            new.append(token)
            ids.append(token)
    return tuple(new[:k]), first_words(decode(lm, new[:ended]), count)[0]


def model_answers(lm: LanguageModel, prompt: Prompt) -> dict[str, tuple[str, bool]]:
    """Both wo_DKN answers for the claim of ``prompt`` (its scoring prompt, :func:`claim_prompt`):
    rule -> (the model's answer as text, whether it equals the candidate). See the module notes."""
    if lm.kind == "masked":
        one = with_masks(lm, prompt, 1)
        with lm.lock, torch.inference_mode():
            top = int(run(lm, torch.tensor(one.input_ids, device=lm.device)[None])[0, one.target_positions[0]].argmax())
        exact = greedy_answer(lm, prompt)
        word = decode(lm, [top])
        return {"authors": (word, word == decode(lm, prompt.object_ids)),
                "token_exact": (decode(lm, exact), exact == prompt.object_ids),
                "first_token": (word, top == prompt.object_ids[0])}
    exact, words = _continue(lm, prompt)
    authors = (words, words == prompt.object.strip())
    return {"authors": authors, "token_exact": (decode(lm, exact), exact == prompt.object_ids),
            "first_token": authors}


def candidate_probability(lm: LanguageModel, prompt: Prompt) -> tuple[float, float]:
    """The model's own P(candidate) on the claim's scoring prompt (the joint probability of its tokens, the gold
    ones teacher-forced) and its length-normalised log-probability (the mean log-probability per token): the
    simplest baselines of the DKN score."""
    with lm.lock, torch.inference_mode():
        probs = gold_probs(run(lm, torch.tensor(prompt.input_ids, device=lm.device)[None]), prompt.target_positions,
                           prompt.object_ids)[0].double().cpu().numpy()
    logs = np.log(np.maximum(probs, 1e-300))
    return float(np.prod(probs)), float(logs.mean())


# -- the DKN score -------------------------------------------------------------------------------------
def dkn_score(lm: LanguageModel, prompt: Prompt, dkn: Sequence[Neuron],
              config: AttributionConfig) -> tuple[float, tuple[ScoredNeuron, ...]]:
    """Mean attribution toward the prompt's object over ``dkn`` and each neuron's attribution; only the layers
    holding DKN are integrated. An empty ``dkn`` has no score: (NaN, ())."""
    return dkn_scores(lm, prompt, dkn, config)[:2]


def dkn_scores(lm: LanguageModel, prompt: Prompt, dkn: Sequence[Neuron], config: AttributionConfig,
               random: Sequence[Sequence[Neuron]] = ()) -> tuple[float, tuple[ScoredNeuron, ...], tuple[float, ...]]:
    """:func:`dkn_score` and, from the same attribution, the mean attribution over each set of ``random`` (random
    same-size sets in the DKN layers: the random-neuron baseline costs no further integral)."""
    if not dkn:
        return math.nan, (), tuple(math.nan for _ in random)
    layers = tuple(sorted({layer for layer, _ in dkn}))
    scores = attribute(lm, prompt, replace(config, layers=layers)).scores
    voters = tuple(ScoredNeuron(layer, index, float(scores[layer, index])) for layer, index in dkn)
    controls = tuple(float(np.mean([scores[layer, index] for layer, index in s])) for s in random)
    return float(np.mean([v[2] for v in voters])), voters, controls


# -- verdicts and the checker --------------------------------------------------------------------------
class _OwnAnswers(TypedDict):
    """The fields of a :class:`Verdict` that do not depend on the DKN set: the model's own answers and P."""

    model_prediction: str
    model_agrees: bool
    exact_prediction: str
    exact_agrees: bool
    first_token_agrees: bool
    p_candidate: float
    logprob: float
    prompt: Prompt


@dataclass(frozen=True)
class Verdict:
    """How a claim was judged.

    correct: score ≥ lam (with_DKN); None when the checker abstains (no DKN set; ``reason`` says why).
    score: mean attribution toward the candidate over the DKN set (NaN when abstaining). voters:
    ``(layer, index, attribution)`` for each DKN neuron. model_prediction / model_agrees: the model's own
    answer and whether it is the candidate by the authors' rule (wo_DKN); exact_prediction / exact_agrees: the
    same by the token-exact rule; first_token_agrees: by the masked LM's first-token rule. prompt: the scoring
    prompt built for the candidate (:func:`claim_prompt`). Baselines: p_candidate / logprob, the model's own
    P(candidate) and mean log-probability per token on that prompt; random_scores, the mean attribution over
    each of the checker's random same-size sets in the DKN layers (:meth:`FactChecker.random_sets`).
    """

    correct: bool | None
    score: float
    lam: float | None
    voters: tuple[ScoredNeuron, ...]
    model_prediction: str
    model_agrees: bool
    prompt: Prompt
    exact_prediction: str = ""
    exact_agrees: bool = False
    reason: str = ""
    first_token_agrees: bool = False
    p_candidate: float = math.nan
    logprob: float = math.nan
    random_scores: tuple[float, ...] = ()

    @property
    def abstained(self) -> bool:
        """No with_DKN verdict (the relation has no DKN set)."""
        return self.correct is None

    def wo_dkn(self, rule: str = "authors") -> bool:
        """The model's own judgement by ``rule`` (one of :data:`WO_DKN_RULES`)."""
        if rule not in WO_DKN_RULES:
            raise InputError("rule", f"unknown wo_DKN rule {rule!r}; choose one of {', '.join(WO_DKN_RULES)}")
        return {"authors": self.model_agrees, "token_exact": self.exact_agrees,
                "first_token": self.first_token_agrees}[rule]


@dataclass(frozen=True)
class FactChecker:
    """A relation's calibrated DKN fact checker (one model, one language).

    model, n_layers, d_ff: the model it was calibrated on. template: the default template of judged claims.
    dkn: the DKN set ``(layer, index)``, most frequent first; empty means the checker abstains (no verdict);
    counts: ``(layer, index, count)`` of every neuron seen in a degenerate pair. lam: the threshold λ (None
    when abstaining: nothing is calibrated on an empty set); objective: what λ maximised on the training
    claims; train_accept_true / train_accept_wrong: accept rates there (train_f1 its F1; None when
    abstaining). train_facts / test_facts: fact ids of the split. n_prompts / n_pairs: training prompts
    searched and degenerate pairs found. config: the AMIG set-up (``layers`` unset; judging restricts it to
    the DKN layers). n_masks: a masked LM's mask count for every candidate (0: causal LM; see the module notes).
    tau: the knowledge-neuron threshold the DKN candidates were taken above (τ · max; None: not recorded).
    """

    model: str
    n_layers: int
    d_ff: int
    relation: str
    lang: str
    template: str
    dkn: tuple[Neuron, ...]
    counts: tuple[tuple[int, int, int], ...]
    lam: float | None
    objective: str
    train_accept_true: float | None
    train_accept_wrong: float | None
    train_f1: float | None
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
    n_masks: int = 0
    tau: float | None = None

    @property
    def abstains(self) -> bool:
        """True when the relation has no DKN set: every verdict is "no verdict"."""
        return not self.dkn

    def _check_model(self, lm: LanguageModel) -> None:
        if (lm.n_layers, lm.d_ff) != (self.n_layers, self.d_ff):
            raise InputError("model", f"this checker was calibrated on {self.model} ({self.n_layers} layers × "
                                      f"{self.d_ff} neurons); {lm.name} has {lm.n_layers} × {lm.d_ff}: "
                                      "calibrate again")
        if lm.name != self.model:
            log.warning("judging with %s a checker calibrated on %s", lm.name, self.model)

    def prompt(self, lm: LanguageModel, subject: str, candidate: str, template: str | None = None) -> Prompt:
        """The scoring prompt of a claim (the same number of masks for every candidate of the relation)."""
        return claim_prompt(lm, template or self.template, subject, candidate, self.n_masks)

    def judge(self, lm: LanguageModel, subject: str, candidate: str, template: str | None = None,
              random_draws: int = RANDOM_SCORE_DRAWS) -> Verdict:
        """Judge ⟨subject, relation, candidate⟩ with the DKN score (or abstain, with no DKN set), with the
        model's own answers and P(candidate), and with ``random_draws`` random same-size sets (0: none)."""
        self._check_model(lm)
        prompt = self.prompt(lm, subject, candidate, template)
        answers = model_answers(lm, prompt)
        p_candidate, logprob = candidate_probability(lm, prompt)
        own: _OwnAnswers = {"model_prediction": answers["authors"][0], "model_agrees": answers["authors"][1],
                            "exact_prediction": answers["token_exact"][0], "exact_agrees": answers["token_exact"][1],
                            "first_token_agrees": answers["first_token"][1], "p_candidate": p_candidate,
                            "logprob": logprob, "prompt": prompt}
        if self.abstains:
            return Verdict(correct=None, score=math.nan, lam=None, voters=(), reason=NO_VERDICT, **own)
        assert self.lam is not None, "a checker with a DKN set has a calibrated λ"  # calibrate sets both
        score, voters, randoms = dkn_scores(lm, prompt, self.dkn, self.config, self.random_sets(random_draws))
        return Verdict(correct=bool(score >= self.lam), score=score, lam=self.lam, voters=voters,
                       random_scores=randoms, **own)

    def random_sets(self, draws: int = RANDOM_SCORE_DRAWS) -> list[list[Neuron]]:
        """``draws`` random sets of the DKN set's size in its layers (seeded by the checker's seed): the
        random-neuron baseline of the DKN score."""
        return random_sets(self.dkn, self.d_ff, self.seed, draws) if self.dkn else []

    def held_out_claims(self, factset: FactSet) -> tuple[Claim, ...]:
        """True and wrong claims of the held-out (test) facts, with the checker's seed."""
        return make_claims(factset, self.relation, self.lang, self.seed, [factset.fact(i) for i in self.test_facts])

    def to_json(self) -> str:
        """The checker as JSON text (read back with :meth:`from_json`)."""
        return json.dumps({"kind": JSON_KIND, "version": JSON_VERSION, **asdict(self)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | dict) -> "FactChecker":
        data = json.loads(text) if isinstance(text, str) else dict(text)
        kind, version = data.pop("kind", None), data.pop("version", None)
        if kind != JSON_KIND:
            raise DataError("fact checker", None, f"not a {JSON_KIND} record")
        if version != JSON_VERSION:
            raise DataError("fact checker", None, f"a version {version} record (this is version {JSON_VERSION}, "
                                                  "which abstains without DKN and scores every candidate with the "
                                                  "same masks): calibrate again")
        try:
            config = AttributionConfig(**{k: _tuples(v) for k, v in data.pop("config").items()})
            return cls(**{k: _tuples(v) for k, v in data.items()}, config=config)
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError("fact checker", None, f"malformed record: {exc}") from None


def _tuples(value):
    """JSON lists back to (nested) tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


__all__ = ["DEFAULT_T", "MAX_NEW_TOKENS", "NO_VERDICT", "WO_DKN_RULES", "FactChecker", "Verdict",
           "RANDOM_SCORE_DRAWS", "candidate_probability", "claim_prompt", "decode", "dkn_score", "dkn_scores",
           "first_words", "greedy_answer", "model_answers", "n_words", "relation_masks", "with_masks"]
