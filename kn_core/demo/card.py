"""The demo models' README.md (model card): architecture, tokenizer, data, training and measured accuracy."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kn_core.attribution import AttributionConfig, attribute
from kn_core.data import FactSet
from kn_core.demo.corpus import DEMO_LANGUAGES
from kn_core.demo.train import TrainConfig, TrainRecord
from kn_core.method.evaluate import AccuracyResult, object_accuracy
from kn_core.method.interventions import verify
from kn_core.method.neurons import coarse_neurons, default_tau, per_layer_counts
from kn_core.model.loading import LanguageModel, load_model
from kn_core.types import Neuron

SAMPLE_EVERY = 25  # knowledge-neuron effects: every 25th fact, first train template
TOP_NEURONS = 15

TITLES = {"bert": "BERT masked LM", "gpt2": "GPT-2 causal LM"}
ARCHITECTURES = {"bert": "BERT (`BertForMaskedLM`, post-LN), masked LM",
                 "gpt2": "GPT-2 (`GPT2LMHeadModel`, pre-LN), causal LM"}
TOKENIZERS = {
    "bert": "`BertTokenizer`: `[CLS] … [SEP]` around a sequence; `[MASK]` is the no-information token of the "
            "AMIG baseline.",
    "gpt2": "the same vocabulary with nothing added around a sequence (as GPT-2's tokenizer); `[SEP]` is the "
            "end-of-text token and so the no-information token of the AMIG baseline. Prompts are encoded "
            "without special tokens, exactly as the training sentences were.",
}
OBJECTIVES = {
    "bert": "masked LM; in a share `object_mask_prob` of the sentences *all* object tokens are masked "
            "(as in a prompt), in the others a random `random_mask_rate` of the tokens; loss at masked positions",
    "gpt2": "next-token prediction on the sentence followed by `[SEP]`; object tokens weigh `object_weight` in "
            "the loss",
}


@dataclass(frozen=True)
class NeuronEffect:
    """Mean relative change of P(object) when each sampled prompt's top coarse knowledge neurons are edited.

    suppress / enhance: the neurons ×0 / ×2; random: as many random neurons in the same layers, ×0.
    per_layer: how many of the edited neurons sit in each layer, summed over the prompts.
    """

    lang: str
    prompts: int
    neurons: float
    suppress: float
    random: float
    enhance: float
    per_layer: tuple[int, ...]


@dataclass(frozen=True)
class Measurements:
    """What the model card reports about a trained model."""

    accuracy: tuple[AccuracyResult, ...]
    effects: tuple[NeuronEffect, ...]


def neuron_effect(lm: LanguageModel, factset: FactSet, lang: str, every: int = SAMPLE_EVERY,
                  top: int = TOP_NEURONS) -> NeuronEffect:
    """Suppress / enhance the top ``top`` coarse knowledge neurons (τ of ``lang``) of every ``every``-th fact's
    first train template, against the random-neuron control."""
    rows, layers = [], np.zeros(lm.n_layers, dtype=int)
    for fact in factset.facts[::every]:
        template = factset.relation(fact.relation).templates_for(lang, heldout=False)[0]
        prompt = lm.prompt(template.text, fact.subject(lang), fact.object(lang))
        scores = attribute(lm, prompt, AttributionConfig(steps=20)).scores
        neurons = [Neuron(layer, index) for layer, index, _ in coarse_neurons(scores, default_tau(lang))[:top]]
        suppressed, enhanced = (verify(lm, [prompt], neurons, mode, seed=0) for mode in ("suppress", "enhance"))
        rows.append((len(neurons), suppressed.own, suppressed.random, enhanced.own))
        layers += per_layer_counts(neurons, lm.n_layers)
    mean = np.mean(rows, axis=0)
    return NeuronEffect(lang, len(rows), float(mean[0]), float(mean[1]), float(mean[2]), float(mean[3]),
                        tuple(int(count) for count in layers))


def measure(folder: Path, factset: FactSet) -> Measurements:
    """Accuracy (every language, train then held-out templates) and knowledge-neuron effects of the saved
    model in ``folder``: the demo languages only (:data:`~kn_core.demo.corpus.DEMO_LANGUAGES`)."""
    factset = factset.only(DEMO_LANGUAGES)
    lm = load_model(str(folder))
    accuracy = [object_accuracy(lm, factset, lang, heldout) for lang in factset.languages for heldout in (False, True)]
    effects = [neuron_effect(lm, factset, lang) for lang in factset.languages]
    return Measurements(tuple(accuracy), tuple(effects))


def _percent(result: AccuracyResult | None) -> str:
    if result is None or result.accuracy is None:
        return "—"
    return f"{100 * result.accuracy:.1f} % ({result.correct}/{result.n})"


def accuracy_table(results: Sequence[AccuracyResult]) -> str:
    """Markdown table: one row per language, train and held-out templates."""
    cells = {(r.lang, r.heldout): r for r in results}
    lines = ["| language | train templates | held-out templates |", "|---|---|---|"]
    for lang in dict.fromkeys(r.lang for r in results):
        lines.append(f"| {lang} | {_percent(cells.get((lang, False)))} | {_percent(cells.get((lang, True)))} |")
    return "\n".join(lines)


def effects_table(effects: Sequence[NeuronEffect]) -> str:
    """Markdown table of the knowledge-neuron edits, one row per language."""
    lines = ["| language | prompts | neurons edited (mean) | suppress ×0 | random neurons ×0 | enhance ×2 | "
             "edited neurons in layers 0 / 1 / … |", "|---|---|---|---|---|---|---|"]
    for e in effects:
        lines.append(f"| {e.lang} | {e.prompts} | {e.neurons:.1f} | {100 * e.suppress:+.1f} % | "
                     f"{100 * e.random:+.1f} % | {100 * e.enhance:+.1f} % | {' / '.join(map(str, e.per_layer))} |")
    return "\n".join(lines)


def _config_rows(config: TrainConfig, record: TrainRecord) -> list[tuple[str, str]]:
    return [("architecture", ARCHITECTURES[config.model_type]), ("layers", str(config.layers)),
            ("hidden size", str(config.hidden)), ("FFN neurons per layer (d_ff)", str(config.d_ff)),
            ("attention heads", str(config.heads)), ("max positions", str(config.max_positions)),
            ("vocabulary", str(record.vocab)), ("parameters", f"{record.parameters / 1e6:.2f} M"),
            ("weights", "`model.safetensors`, fp32")]


def _training_rows(config: TrainConfig, record: TrainRecord) -> list[tuple[str, str]]:
    objective_knobs = (f"object_mask_prob {config.object_mask_prob}, random_mask_rate {config.random_mask_rate}"
                       if config.model_type == "bert" else f"object_weight {config.object_weight}")
    return [("objective", OBJECTIVES[config.model_type]), ("objective settings", objective_knobs),
            ("steps × batch", f"{config.steps} × {config.batch_size} sentences"),
            ("optimiser", f"AdamW, lr {config.lr}, weight decay {config.weight_decay}, gradient clip {config.clip}"),
            ("schedule", f"linear warm-up over {config.warmup:.0%} of the steps, then cosine decay to 0"),
            ("regularisation", f"label smoothing {config.label_smoothing}, dropout {config.dropout}"),
            ("seed, threads", f"{config.seed}, {config.threads} (same seed and thread count → same weights)"),
            ("time", f"{record.seconds / 60:.1f} min on {config.threads} CPU thread(s) (wall clock; varies with load)"),
            ("final loss", f"{record.final_loss:.3f} (mean of the last {config.log_every} steps)")]


def _table(rows: Sequence[tuple[str, str]]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)])


def render(record: TrainRecord, measured: Measurements) -> str:
    """The model card of a trained demo model."""
    config = record.config
    corpus = ", ".join(f"{count} {kind}" for kind, count in record.corpus.items())
    return f"""# {config.model}: a tiny bilingual (English / Chinese) {TITLES[config.model_type]} for KN Explorer

A {TITLES[config.model_type]} trained from scratch on sentences built from KN Explorer's bundled fact set
(`assets/facts/`), so that it *knows* those facts and their knowledge neurons can be located on a CPU in
seconds. It is a teaching and testing model, not a general language model. Rebuild it with
`python -m kn_core.demo train --model {config.model}`.

## Architecture

{_table(_config_rows(config, record))}

## Tokenizer

One WordPiece vocabulary shared with the other demo model (same token ids), learnt from the training
corpus: BERT-style normalisation, cased, accents kept, every CJK character its own token (as m-BERT),
so Chinese names are several tokens (坦桑尼亚 → 坦 桑 尼 亚). English words of the corpus are whole
tokens, so most English objects are one token and multi-word names ("US dollar") several; unseen words
fall back to characters. This model's tokenizer: {TOKENIZERS[config.model_type]}

## Training data

{sum(record.corpus.values())} sentences ({corpus}), from the **train** templates only —
held-out templates are never seen, so the held-out column below measures generalisation to new phrasings:
- *fact*: every fact with each train template of its relation, in English and in Chinese;
- *switched*: code-switched — a template with the subject in the other language and the object in the
  template's ("The capital of 法国 is Paris.", "France的首都是巴黎。"), so that a fact's English and Chinese
  prompts can share knowledge neurons (in the feasibility study, overlap emerged only with code-switching);
- *bridge*: an entity's two names side by side ("In Chinese, France is called 法国.",
  "法国的英文名是France。").

## Training

{_table(_training_rows(config, record))}

## Accuracy

Top-1 object accuracy: a prompt counts when *every* object token is the model's first choice
({"at each `[MASK]`" if config.model_type == "bert" else "at each position, the gold prefix teacher-forced"}),
over all facts × templates. Measured with `python -m kn_core accuracy --model {config.model} --lang en`
(and `--lang zh`):

{accuracy_table(measured.accuracy)}

## Knowledge neurons

Relative change of P(object) when the top {TOP_NEURONS} coarse knowledge neurons (AMIG, 20 steps, τ 0.3 for
English, 0.2 for Chinese) of a prompt are edited at its target positions, averaged over every
{SAMPLE_EVERY}th fact of the bundled set with its relation's first train template; the control suppresses as many
random neurons in the same layers:

{effects_table(measured.effects)}

## Intended use

Exploring the knowledge-neuron method of Chen et al. (AAAI 2024) in KN Explorer without downloading a large
model: attribution (AMIG), knowledge neurons, suppress / enhance, language-independent and degenerate
neurons, on facts the model provably knows. Also the fixture of the project's tests.

## Limitations

- Knows only the bundled facts, in two languages, in sentences like its templates; anything else is
  guesswork, and held-out phrasings are answered less reliably than the train templates.
- Tiny ({config.layers} layers × {config.d_ff} neurons): suppressing (×0) a prompt's knowledge neurons lowers
  P(object) clearly, while enhancing them (×2) hardly moves it (see the table above) — a flat "enhance" view
  is what these models show, not a bug. A fact is spread over more neurons than the coarse threshold picks,
  so suppressing the top few removes only part of it.
- Language-independent knowledge neurons are few: the English and Chinese knowledge neurons of a fact
  share a neuron or two at most (more than different facts share, far fewer than in the paper's m-BERT),
  probably because Chinese objects are spelt in characters that other names share (巴 in 巴黎, 巴西,
  巴基斯坦), so the neurons that write the object differ between the languages.
- Trained with label smoothing {config.label_smoothing}, so it is never fully sure (P(object) ≈ 0.9–0.97
  per token); without smoothing, suppressing knowledge neurons barely shows.
- Not a model of real-world language: no general vocabulary, no facts beyond the list, no safety tuning.
"""


def write(folder: Path, factset: FactSet) -> Measurements:
    """Measure the trained model in ``folder`` and write its model card (README.md) from its training record."""
    record = TrainRecord.load(folder)
    measured = measure(folder, factset)
    (folder / "README.md").write_text(render(record, measured), encoding="utf-8")
    return measured
