"""Training a demo model (BERT masked LM or GPT-2 causal LM) on the corpus, seeded and deterministic on CPU.

Training sentences go through the same adapter code as prompts at inference
(:meth:`~kn_core.model.adapters.Adapter.build_prompt`), so the two never drift apart:

- masked LM: ``[CLS] … [SEP]``; most sentences have *all* their object tokens masked, as a prompt has
  (``object_mask_prob``), the rest random tokens (``random_mask_rate``); loss only at masked positions;
- causal LM: the sentence encoded without special tokens (as prompts are) followed by the end-of-text token;
  next-token loss everywhere, object tokens weighted by ``object_weight``.

Label smoothing is on by default: without it these small models grow so confident (P ≈ 0.998) that
suppressing their knowledge neurons hardly moves P(object) (shared/notes/demo-models.md).
Same seed and same thread count give identical losses and weights.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, PreTrainedModel

from kn_core.data import FactSet, load_bundled
from kn_core.data.prompts import fill_template
from kn_core.demo.corpus import DEMO_LANGUAGES, Sentence, alphabet, build_corpus, describe
from kn_core.demo.tokenizer import VOCAB_SIZE, causal_tokenizer, masked_tokenizer, train_vocab
from kn_core.errors import DataError, InputError
from kn_core.model.adapters import Adapter, adapter_for

log = logging.getLogger(__name__)

MODEL_TYPES = {"demo-mlm": "bert", "demo-clm": "gpt2"}
DEFAULT_STEPS = {"demo-mlm": 6000, "demo-clm": 3000}
RECORD_FILE = "training.json"
Progress = Callable[[int, float], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a demo model: architecture, data mixing, optimisation, seed, threads.

    model: ``demo-mlm`` (BERT) or ``demo-clm`` (GPT-2); steps × batch_size sentences are seen in all.
    warmup: share of the steps with a linearly rising learning rate (then cosine decay to 0).
    layers, hidden, heads, d_ff, max_positions: the architecture; d_ff is the neurons per layer.
    vocab_size: upper bound of the shared vocabulary (the corpus needs about 1,500).
    object_mask_prob, random_mask_rate: masked LM: share of sentences with all object tokens masked;
        share of tokens masked in the others.
    object_weight: causal LM: loss weight of object tokens (others weigh 1).
    threads: torch CPU threads; results are bit-identical only for the same count.
    log_every: steps between progress reports.
    """

    model: str = "demo-mlm"
    steps: int = DEFAULT_STEPS["demo-mlm"]
    batch_size: int = 64
    lr: float = 2e-3
    warmup: float = 0.05
    weight_decay: float = 0.01
    clip: float = 1.0
    label_smoothing: float = 0.1
    dropout: float = 0.1
    layers: int = 4
    hidden: int = 128
    heads: int = 4
    d_ff: int = 512
    max_positions: int = 128
    vocab_size: int = VOCAB_SIZE
    object_mask_prob: float = 0.8
    random_mask_rate: float = 0.15
    object_weight: float = 2.0
    seed: int = 0
    threads: int = 1
    log_every: int = 250

    def __post_init__(self) -> None:
        if self.model not in MODEL_TYPES:
            raise InputError("model", f"unknown demo model {self.model!r}; choose one of {', '.join(MODEL_TYPES)}")
        if self.steps < 1 or self.batch_size < 1 or self.threads < 1:
            raise InputError("steps", "steps, batch size and threads must be at least 1")

    @classmethod
    def for_model(cls, model: str, **overrides) -> "TrainConfig":
        """The default configuration of ``model`` (its own step count), with ``overrides``."""
        return cls(**{"model": model, "steps": DEFAULT_STEPS.get(model, cls.steps), **overrides})

    @property
    def model_type(self) -> str:
        return MODEL_TYPES[self.model]


@dataclass(frozen=True)
class Encoded:
    """A training sentence as token ids.

    ids: masked LM: ``[CLS] … [SEP]`` with the object in place; causal LM: the sentence and end-of-text.
    targets: masked LM: the object's positions; causal LM: the positions that predict an object token.
    maskable: masked LM: the positions random masking may pick (no special tokens); causal LM: empty.
    """

    ids: tuple[int, ...]
    targets: tuple[int, ...]
    maskable: tuple[int, ...]


@dataclass(frozen=True)
class TrainRecord:
    """What a finished run was, for its model card; saved as ``training.json`` next to the weights.

    loss_curve: the mean loss of each ``log_every`` steps; corpus: sentences per kind.
    """

    config: TrainConfig
    seconds: float
    parameters: int
    vocab: int
    corpus: dict[str, int]
    loss_curve: tuple[float, ...]

    @property
    def final_loss(self) -> float:
        return self.loss_curve[-1]

    def save(self, folder: Path) -> Path:
        path = folder / RECORD_FILE
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: Path) -> "TrainRecord":
        """Read ``training.json`` from ``folder``; :class:`DataError` when it is missing or foreign."""
        path = folder / RECORD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(TrainConfig(**data.pop("config")), **{**data, "loss_curve": tuple(data["loss_curve"])})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise DataError(str(path), None, f"no readable training record ({exc}); retrain with "
                                             "`python -m kn_core.demo train`") from None


@dataclass(frozen=True)
class TrainResult:
    """A finished run: where it saved the model, every step's loss, and its record."""

    folder: Path
    losses: tuple[float, ...]
    record: TrainRecord


# -- data --------------------------------------------------------------------------------------------
def encode(adapter: Adapter, tokenizer, sentence: Sentence) -> Encoded:
    """Encode a sentence through the adapter's prompt builder, then put the object back."""
    prompt = adapter.build_prompt(tokenizer, sentence.template, sentence.subject, sentence.object)
    if adapter.kind == "masked":
        ids = list(prompt.input_ids)
        for position, token in zip(prompt.target_positions, prompt.object_ids):
            ids[position] = token
        maskable = tuple(sorted(prompt.context_positions + prompt.target_positions))
        return Encoded(tuple(ids), prompt.target_positions, maskable)
    right = fill_template(sentence.template, sentence.subject, sentence.object).right
    sentence_ids = (*prompt.input_ids, prompt.object_ids[-1], *adapter.encode(tokenizer, right), tokenizer.eos_token_id)
    return Encoded(sentence_ids, prompt.target_positions, ())


def epochs(n: int, generator: torch.Generator) -> Iterator[int]:
    """Indices 0..n-1 in a fresh random order each epoch, forever."""
    while True:
        yield from torch.randperm(n, generator=generator).tolist()


def pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Right-pad integer rows to one [len(rows), longest] tensor."""
    out = torch.full((len(rows), max(len(row) for row in rows)), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def mask_positions(item: Encoded, config: TrainConfig, generator: torch.Generator) -> list[int]:
    """Positions to mask: all object tokens (with probability ``object_mask_prob``), otherwise a random
    ``random_mask_rate`` of the sentence's tokens (at least one)."""
    if torch.rand(1, generator=generator).item() < config.object_mask_prob:
        return list(item.targets)
    picked = torch.rand(len(item.maskable), generator=generator) < config.random_mask_rate
    if not picked.any():
        picked[torch.randint(len(item.maskable), (1,), generator=generator)] = True
    return [position for position, keep in zip(item.maskable, picked.tolist()) if keep]


def masked_batch(items: Sequence[Encoded], tokenizer, config: TrainConfig,
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Inputs with masks, and labels (-100 where nothing is predicted)."""
    ids = pad([item.ids for item in items], tokenizer.pad_token_id)
    labels = torch.full_like(ids, -100)
    for row, item in enumerate(items):
        positions = torch.as_tensor(mask_positions(item, config, generator))
        labels[row, positions] = ids[row, positions]
        ids[row, positions] = tokenizer.mask_token_id
    return {"input_ids": ids, "attention_mask": (ids != tokenizer.pad_token_id).long(), "labels": labels}


def causal_batch(items: Sequence[Encoded], tokenizer, config: TrainConfig) -> dict[str, torch.Tensor]:
    """Inputs, next-token labels (-100 past the end) and per-token loss weights (objects upweighted)."""
    ids = pad([item.ids for item in items], tokenizer.pad_token_id)
    attention = pad([[1] * len(item.ids) for item in items], 0)
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = torch.where(attention[:, 1:].bool(), ids[:, 1:], -100)
    weights = attention.float()
    for row, item in enumerate(items):
        weights[row, list(item.targets)] = config.object_weight
    return {"input_ids": ids, "attention_mask": attention, "labels": labels, "weights": weights}


# -- model and loss ----------------------------------------------------------------------------------
def build_model(config: TrainConfig, tokenizer) -> PreTrainedModel:
    """A freshly initialised model of ``config``'s architecture (uses the global torch RNG)."""
    vocab = len(tokenizer)
    if config.model_type == "bert":
        return BertForMaskedLM(BertConfig(
            vocab_size=vocab, hidden_size=config.hidden, num_hidden_layers=config.layers,
            num_attention_heads=config.heads, intermediate_size=config.d_ff,
            max_position_embeddings=config.max_positions, hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout, pad_token_id=tokenizer.pad_token_id))
    eos = tokenizer.eos_token_id
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab, n_positions=config.max_positions, n_embd=config.hidden, n_layer=config.layers,
        n_head=config.heads, n_inner=config.d_ff, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
        attn_pdrop=config.dropout, bos_token_id=eos, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id))


def masked_loss(model: nn.Module, batch: dict[str, torch.Tensor], config: TrainConfig) -> torch.Tensor:
    """Cross-entropy at the masked positions only (the LM head runs on those rows alone)."""
    bert, cls = cast(nn.Module, model.bert), cast(nn.Module, model.cls)  # nn.Module types them Tensor | Module
    hidden = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    picked = batch["labels"] != -100
    logits = cls(hidden[picked])
    return F.cross_entropy(logits, batch["labels"][picked], label_smoothing=config.label_smoothing)


def causal_loss(model: nn.Module, batch: dict[str, torch.Tensor], config: TrainConfig) -> torch.Tensor:
    """Weighted next-token cross-entropy."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    per_token = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100,
                                label_smoothing=config.label_smoothing, reduction="none")
    weights = batch["weights"].flatten() * (batch["labels"].flatten() != -100)
    return (per_token * weights).sum() / weights.sum()


def schedule(config: TrainConfig) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup`` of the steps, then cosine decay to zero."""
    warm = max(1, int(config.warmup * config.steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, config.steps - warm)))
    return factor


# -- the loop ----------------------------------------------------------------------------------------
def train(config: TrainConfig, folder: str | Path, factset: FactSet | None = None,
          progress: Progress | None = None) -> TrainResult:
    """Train ``config.model`` on the fact set's corpus and save model and tokenizer into ``folder``.

    Seeds and the thread count are set here (and the thread count restored on return); ``progress`` is
    called every ``log_every`` steps with the step and the mean loss since the last call.
    """
    folder = Path(folder)
    factset = (factset or load_bundled()).only(DEMO_LANGUAGES)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, folder, factset, progress)
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Prepared:
    """The tokenizer and the encoded corpus of one model."""

    adapter: Adapter
    tokenizer: object
    items: tuple[Encoded, ...]
    corpus: dict[str, int]
    vocab: int


def prepare(config: TrainConfig, factset: FactSet) -> Prepared:
    """Build the corpus, learn the shared vocabulary and encode every sentence for ``config.model``."""
    corpus = build_corpus(factset)
    vocab = train_vocab((sentence.text for sentence in corpus), alphabet(factset), config.vocab_size)
    adapter = adapter_for(config.model_type)
    tokenizer = masked_tokenizer(vocab) if adapter.kind == "masked" else causal_tokenizer(vocab)
    items = tuple(encode(adapter, tokenizer, sentence) for sentence in corpus)
    log.info("%s: %d sentences %s, vocabulary %d", config.model, len(items), describe(corpus), len(vocab))
    return Prepared(adapter, tokenizer, items, describe(corpus), len(vocab))


def batch_loss(model: nn.Module, data: Prepared, items: Sequence[Encoded], config: TrainConfig,
               generator: torch.Generator) -> torch.Tensor:
    """The loss of one batch of sentences (masks drawn from ``generator`` for the masked LM)."""
    if data.adapter.kind == "masked":
        return masked_loss(model, masked_batch(items, data.tokenizer, config, generator), config)
    return causal_loss(model, causal_batch(items, data.tokenizer, config), config)


def _train(config: TrainConfig, folder: Path, factset: FactSet, progress: Progress | None) -> TrainResult:
    data = prepare(config, factset)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config, data.tokenizer).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(config))
    order = epochs(len(data.items), generator)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        loss = batch_loss(model, data, [data.items[next(order)] for _ in range(config.batch_size)], config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if step % config.log_every == 0 or step == config.steps:
            _report(config, step, losses, time.perf_counter() - start, progress)
    seconds = time.perf_counter() - start
    save(model.eval(), data.tokenizer, folder)
    curve = tuple(sum(chunk) / len(chunk) for chunk in
                  (losses[i:i + config.log_every] for i in range(0, len(losses), config.log_every)))
    record = TrainRecord(config, seconds, sum(p.numel() for p in model.parameters()), data.vocab, data.corpus, curve)
    record.save(folder)
    return TrainResult(folder, tuple(losses), record)


def _report(config: TrainConfig, step: int, losses: list[float], seconds: float, progress: Progress | None) -> None:
    recent = losses[-config.log_every:]
    mean = sum(recent) / len(recent)
    log.info("%s step %d/%d loss %.4f (%.0f s)", config.model, step, config.steps, mean, seconds)
    if progress is not None:
        progress(step, mean)


def save(model: PreTrainedModel, tokenizer, folder: Path) -> None:
    """Write the model (safetensors) and the tokenizer into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if not (folder / "model.safetensors").is_file():
        raise RuntimeError(f"no model.safetensors written to {folder}")
