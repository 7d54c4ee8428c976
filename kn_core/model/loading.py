"""Loading a checkpoint (bundled demo name, local folder or Hugging Face id) into a :class:`LanguageModel`.

Safety: weights load from safetensors only (``use_safetensors=True``) and never with remote code.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import numbers
import os
import re
import threading
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence, overload

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from kn_core.data.prompts import OBJECT_SLOT, SUBJECT_SLOT, Prompt
from kn_core.errors import InputError, KNError, ModelLoadError
from kn_core.model.adapters import Adapter, adapter_for
from kn_core.model.install import installed_path, model_folder, repair_hint
from kn_core.model.registry import REGISTRY
from kn_core.model.turns import Turns

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[2] / "assets" / "models"
DEMO_MODELS: dict[str, Path] = {"demo-mlm": MODELS_DIR / "demo-mlm", "demo-clm": MODELS_DIR / "demo-clm"}
MAX_BYTES_VARIABLE = "KN_EXPLORER_MAX_MODEL_BYTES"  # cap on a model's estimated fp32 weight bytes
AUTO_CLASSES = {"masked": AutoModelForMaskedLM, "causal": AutoModelForCausalLM}


@dataclass(frozen=True)
class PromptSet:
    """What :meth:`LanguageModel.prompts` built: the prompts, and (template, reason) for each one left out."""

    prompts: tuple[Prompt, ...]
    problems: tuple[tuple[str, str], ...]


@dataclass(eq=False)
class LanguageModel:
    """A loaded model with its tokenizer and adapter.

    ``lock`` serialises everything that installs hooks, since hooks mutate the shared module; ``turns`` counts who
    waits for it (:mod:`kn_core.model.turns`).
    """

    name: str
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    adapter: Adapter
    source: Path | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    turns: Turns = field(default_factory=Turns, repr=False)
    _checked_templates: set[str] = field(default_factory=set, repr=False)
    _reader: str | None = field(default=None, repr=False)
    _n_parameters: int | None = field(default=None, repr=False)

    @property
    def reader(self) -> str:
        """Who reads this model's prompts: its architecture's prompt format and its tokenizer (class, special
        tokens and the digest of its vocabulary). Every prompt :meth:`prompt` builds carries it, so that a prompt
        built for one model is refused by another (:meth:`check_prompt`)."""
        if self._reader is None:
            vocab = sorted(self.tokenizer.get_vocab().items(), key=lambda item: item[1])
            specials = getattr(self.tokenizer, "special_tokens_map", {})
            text = json.dumps([self.adapter.family, self.kind, type(self.tokenizer).__name__, vocab, specials],
                              ensure_ascii=False, sort_keys=True, default=str)
            self._reader = f"{self.adapter.family}/{self.kind}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"
        return self._reader

    def check_prompt(self, prompt: Prompt) -> None:
        """Refuse a prompt that another model's tokenizer or prompt format built (its token ids would mean other
        words here). Prompts that name no reader (built by hand) are taken as they are."""
        if prompt.reader and prompt.reader != self.reader:
            raise InputError("prompt", f"was built for another model ({prompt.reader.split(':')[0]}, another "
                                       f"tokenizer or prompt format) than {self.name!r}; build it with this model's "
                                       "prompt(template, subject, object)")

    @property
    def config(self):
        return self.model.config

    @property
    def kind(self) -> str:
        return self.adapter.kind

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers(self.model)

    @property
    def d_ff(self) -> int:
        return self.adapter.d_ff(self.model)

    @property
    def max_positions(self) -> int | None:
        """The most tokens one input may hold (the adapter's reading of the config: the context, or Gemma 3's
        sliding window), None where the config names no limit."""
        return self.adapter.max_positions(self.config)

    @property
    def n_parameters(self) -> int:
        """The number of weights of the loaded model (every parameter tensor's elements; counted once)."""
        if self._n_parameters is None:
            self._n_parameters = sum(p.numel() for p in self.model.parameters())
        return self._n_parameters

    def check_length(self, ids_or_count: int | Sequence[int] | torch.Tensor, field_name: str,
                     remedy: str = "shorten it") -> None:
        """Refuse an input longer than :attr:`max_positions` with an :class:`InputError` on ``field_name`` that
        ends with ``remedy``. ``ids_or_count``: a token count, a sequence of token ids, or a tensor of ids ([T] or
        [batch, T]: its last dimension is the length). The one length check of every input a model reads."""
        if isinstance(ids_or_count, torch.Tensor):
            length = int(ids_or_count.shape[-1]) if ids_or_count.dim() else int(ids_or_count)
        elif isinstance(ids_or_count, (int, numbers.Integral)):  # int is an Integral: named for the type checker
            length = int(ids_or_count)
        else:
            length = len(ids_or_count)
        limit = self.max_positions
        if limit is not None and length > limit:
            raise InputError(field_name, f"the input is {length} tokens long; {self.name} reads at most {limit}: "
                                         f"{remedy}")

    def neuron_site(self, layer: int) -> nn.Module:
        return self.adapter.neuron_site(self.model, layer)

    def prompt(self, template: str, subject: str, obj: str) -> Prompt:
        """Build a prompt, checking it fits the model's context. Invisible marks the tokenizer drops (e.g. a
        zero-width space in BERT's) are dropped from the labels too, so the stored labels are what the model
        read; template words the model reads as its unknown token are logged as a warning (once per template)."""
        subject, obj = (self.drop_unread_marks(label) for label in (subject, obj))
        prompt = self.adapter.build_prompt(self.tokenizer, template, subject, obj)
        self._warn_unknown_words(prompt.template)
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is not None and unk in self.tokenizer(subject, add_special_tokens=False)["input_ids"]:
            raise InputError("subject", f"{subject!r} contains characters unknown to this model's vocabulary (the "
                                        "model would read them as its unknown token); spell it with characters "
                                        "the model knows")
        self.check_length(prompt.input_ids, "template", "shorten the template, subject or object")
        return replace(prompt, reader=self.reader)

    def sentence_ids(self, text: object, max_chars: int = 1000) -> torch.Tensor:
        """The token ids ([1, T]) of a free sentence (special tokens included), refused with an
        :class:`InputError` (field ``sentence``) when it is empty, too long, or holds no token the model reads
        (only invisible marks such as zero-width spaces, or characters the tokenizer drops)."""
        if not isinstance(text, str) or not text.strip() or len(text) > max_chars:
            raise InputError("sentence", f"give a sentence of 1 to {max_chars} characters")
        ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
        special = set(getattr(self.tokenizer, "all_special_ids", ()))
        if ids.shape[1] == 0 or all(int(i) in special for i in ids[0]):
            raise InputError("sentence", f"{text[:40]!r} holds no token {self.name} reads (only invisible marks, or "
                                         "characters its tokenizer drops or does not know); enter a sentence "
                                         "with words")
        self.check_length(ids, "sentence")
        return ids

    @overload
    def drop_unread_marks(self, label: str) -> str: ...

    @overload
    def drop_unread_marks(self, label: object) -> object: ...

    def drop_unread_marks(self, label: object) -> object:
        """``label`` without the invisible format characters (Unicode Cf) that the tokenizer drops."""
        if not isinstance(label, str):
            return label
        marks = {ch for ch in label if unicodedata.category(ch) == "Cf"}
        dropped = {ch for ch in marks if not self.tokenizer(ch, add_special_tokens=False)["input_ids"]}
        return "".join(ch for ch in label if ch not in dropped) if dropped else label

    def reads(self, text: str) -> bool:
        """Whether the model reads ``text`` without its unknown token (a model without one reads everything)."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        return unk is None or unk not in self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """The raw vocabulary entries of ``ids`` (``ĠParis``; for tooltips, next to their decoded text)."""
        return [str(t) for t in self.tokenizer.convert_ids_to_tokens(list(ids))]

    def piece_texts(self, ids: Sequence[int]) -> list[str]:
        """What each token of ``ids`` adds to the decoded text (:func:`kn_core.model.vocab.piece_texts`)."""
        from kn_core.model.vocab import piece_texts

        return piece_texts(self.tokenizer, ids)

    def unknown_words(self, template: str) -> tuple[str, ...]:
        """The template's words (outside the slots) that the model reads as its unknown token."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is None:
            return ()
        words = dict.fromkeys(template.replace(SUBJECT_SLOT, " ").replace(OBJECT_SLOT, " ").split())
        return tuple(word for word in words if unk in self.tokenizer(word, add_special_tokens=False)["input_ids"])

    def _warn_unknown_words(self, template: str) -> None:
        if template in self._checked_templates:
            return
        self._checked_templates.add(template)
        unknown = self.unknown_words(template)
        if unknown:
            log.warning("template %r: %s read by %s as its unknown token, which changes the prediction; rephrase "
                        "with words the model knows", template, ", ".join(map(repr, unknown)), self.name)

    def prompts(self, templates: Sequence[str], subject: str, obj: str) -> PromptSet:
        """Every prompt the model can take: one per template; a template, subject or object it cannot take
        (e.g. characters outside its vocabulary, a prompt too long) is left out and its reason kept in
        ``problems``. The one place where "skip what does not fit" is decided."""
        built, problems = [], []
        for template in templates:
            try:
                built.append(self.prompt(template, subject, obj))
            except KNError as exc:
                log.info("skipped %r with %r / %r: %s", template, subject, obj, exc)
                problems.append((template, str(exc)))
        return PromptSet(tuple(built), tuple(problems))

    def model_card(self) -> str:
        """The checkpoint's README.md (model card) when there is one, else a summary of its config."""
        if self.source is not None and (self.source / "README.md").is_file():
            return (self.source / "README.md").read_text(encoding="utf-8")
        return (f"# {self.name}\n\n{self.adapter.family} {self.kind} LM, {self.n_layers} layers, "
                f"{self.d_ff} FFN neurons per layer.")


def resolve(name_or_path: str | os.PathLike) -> tuple[str, Path | None]:
    """Map a demo name, an installable model's name (its folder under ``$KN_EXPLORER_HOME/models``) or a folder
    to a local path; anything else is taken as a hub id. A folder may be given as a ``pathlib.Path`` (any
    ``os.PathLike``)."""
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if isinstance(name_or_path, bytes):
        raise InputError("model", "give the folder as text (str or pathlib.Path), not bytes")
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise InputError("model", "is empty; pick a demo model or enter a Hugging Face id or a folder")
    name = name_or_path.strip()
    if name in DEMO_MODELS:
        path = DEMO_MODELS[name]
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"demo model {name!r} is missing from {path}; train it with "
                                 "`python -m kn_core.demo train`")
        return name, path
    if name in REGISTRY:
        installed = installed_path(name)
        if installed is None:
            damaged = repair_hint(name)
            if damaged:
                raise ModelLoadError(f"model {name!r} is damaged: {damaged}")
            raise ModelLoadError(f"model {name!r} is not installed (no {model_folder(name)}); install it with "
                                 f"`python -m kn_core models install {name}`")
        return name, installed
    path = Path(name).expanduser()
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as exc:  # a name too long for the file system, a loop of links, ...
        raise ModelLoadError(_path_problem(name, exc)) from None
    if is_dir:
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"folder {name!r} holds no config.json, so it is not a saved model")
        return name, path
    if exists or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"no model folder at {name!r}; valid choices: {', '.join(DEMO_MODELS)}, "
                             "a local model folder, or a Hugging Face id such as 'bert-base-multilingual-cased'")
    return name, None


def _path_problem(name: str, exc: OSError) -> str:
    shown = name if len(name) <= 80 else name[:80] + "…"
    if exc.errno == errno.ENAMETOOLONG:
        return (f"no model folder at {shown!r}: a part of that path is longer than the file system allows (255 "
                f"bytes); give a shorter path; {_valid_choices()}")
    return f"cannot look at the model folder {shown!r}: {exc.strerror or exc}; {_valid_choices()}"


REQUIRED_SIZES = ("vocab_size", "hidden_size", "num_hidden_layers")
OPTIONAL_SIZES = ("intermediate_size", "n_inner", "num_attention_heads", "max_position_embeddings", "type_vocab_size")
ROTARY_FIELDS = ("rope_parameters", "rope_theta", "rope_scaling")  # rotary positions: no position embedding
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
HUB_TIMEOUT_S = 10.0  # one look-up of an id that is not cached; no retries


def _text_config(config):
    """The language model's part of a (possibly multimodal) config."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def config_sizes(name: str, config) -> dict[str, int]:
    """The config's sizes, each a whole number (at least 1; ``type_vocab_size`` at least 0); optional ones that
    are absent are left out. Raises :class:`ModelLoadError` naming the field, before anything is built."""
    text = _text_config(config)
    sizes = {}
    for field_name in REQUIRED_SIZES + OPTIONAL_SIZES:
        value = getattr(text, field_name, None)
        if value is None and field_name in OPTIONAL_SIZES:
            continue
        smallest = 0 if field_name == "type_vocab_size" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            raise ModelLoadError(f"{name!r} has {field_name} = {ascii(value)[:40]} in its config.json; sizes must "
                                 f"be whole numbers of at least {smallest}: fix the config or re-save the model")
        sizes[field_name] = value
    return sizes


def estimate_parameters(config, sizes: dict[str, int]) -> int:
    """Parameter count estimated from the config alone: the token, learned position and token-type embeddings,
    an untied output head, attention and three FFN matrices per layer (gated MLP), so it overestimates
    two-matrix FFNs and grouped keys / values."""
    text = _text_config(config)
    hidden, layers, vocab = sizes["hidden_size"], sizes["num_hidden_layers"], sizes["vocab_size"]
    d_ff = sizes.get("intermediate_size") or sizes.get("n_inner") or 4 * hidden
    rotary = any(getattr(text, field_name, None) is not None for field_name in ROTARY_FIELDS)
    positions = 0 if rotary else sizes.get("max_position_embeddings", 0)
    head = 0 if getattr(text, "tie_word_embeddings", False) else vocab
    embeddings = (vocab + head + positions + sizes.get("type_vocab_size", 0)) * hidden
    return embeddings + layers * (4 * hidden * hidden + 3 * hidden * d_ff)


def available_memory() -> int | None:
    """Bytes of memory available to load a model (Linux /proc/meminfo), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(name: str, config) -> None:
    """Refuse, before loading, a model whose config gives a size that is not a positive whole number, or whose
    fp32 weights would not fit in the memory available."""
    need = estimate_parameters(config, config_sizes(name, config)) * 4
    have = available_memory()
    limit = os.environ.get(MAX_BYTES_VARIABLE, "").strip()
    if limit and not (limit.isascii() and limit.isdigit()):
        raise InputError(MAX_BYTES_VARIABLE, f"must be a whole number of bytes (got {limit[:40]!r}), "
                                             "e.g. 8000000000 for 8 GB; unset it to use 80 % of the free memory")
    cap = int(limit) if limit else (int(have * 0.8) if have else None)
    if cap is not None and need > cap:
        raise ModelLoadError(f"{name!r} needs about {need / 2**30:.1f} GiB for its weights but only "
                             f"{cap / 2**30:.1f} GiB are available; pick a smaller model or free memory")


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, shortened: third-party messages can run over many lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def _valid_choices() -> str:
    return f"valid choices: {', '.join(DEMO_MODELS)}, a local model folder, or a Hugging Face id"


def _hub_options(name: str) -> dict:
    """``from_pretrained`` options for the hub id ``name``: from the local cache alone when it is there (no
    network), else after one look-up on the Hub (a few seconds at most), so that an id that is neither cached
    nor reachable fails at once instead of after the download's retries."""
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    try:
        cached = huggingface_hub.try_to_load_from_cache(name, "config.json")
    except hub_errors.HFValidationError as exc:
        raise ModelLoadError(f"cannot read the config of {name!r}: not a model folder, nor a valid Hugging Face id "
                             f"({_first_line(exc, 120)}); {_valid_choices()}") from None
    if isinstance(cached, str):
        return {"local_files_only": True}
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise ModelLoadError(f"cannot read the config of {name!r}: it is not in the local Hugging Face cache and "
                             f"HF_HUB_OFFLINE is set; download it where the Hub is reachable, or give its folder; "
                             f"{_valid_choices()}")
    try:
        huggingface_hub.model_info(name, timeout=HUB_TIMEOUT_S)
    except hub_errors.GatedRepoError:
        raise ModelLoadError(f"cannot read the config of {name!r}: it is a gated model; accept its licence on the "
                             "Hub and log in (`hf auth login`), or download it and give its folder") from None
    except hub_errors.RepositoryNotFoundError:
        raise ModelLoadError(f"cannot read the config of {name!r}: no such model on the Hugging Face Hub (or it is "
                             f"private); {_valid_choices()}") from None
    except Exception as exc:  # any network failure of the look-up (its library's types vary by version)
        raise ModelLoadError(f"cannot read the config of {name!r}: it is not in the local Hugging Face cache and "
                             f"the Hub is unreachable ({_first_line(exc, 120)}); download it where the Hub is "
                             f"reachable, or give its folder; {_valid_choices()}") from None
    return {}


def _read_config(name: str, where: str, options: dict):
    try:
        return AutoConfig.from_pretrained(where, **options)
    except Exception as exc:  # third-party parsing of an untrusted file: any failure is the model's problem
        if "trust_remote_code" in str(exc):
            raise ModelLoadError(f"{name!r} needs remote code (Python files shipped with the model), which KN "
                                 "Explorer never runs; pick a model of a supported architecture") from None
        raise ModelLoadError(f"cannot read the config of {name!r}: {_first_line(exc)}; {_valid_choices()}") from None


def _check_tokenizer_files(name: str, folder: Path) -> None:
    if not any((folder / file).is_file() for file in TOKENIZER_FILES):
        raise ModelLoadError(f"folder {name!r} holds no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); "
                             "save the model's tokenizer into it (tokenizer.save_pretrained)")


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Keep transformers' load report (a table of tensors) and its "Loading weights" progress bar off stderr:
    its problems become our one message; both settings are restored afterwards."""
    level = transformers_logging.get_verbosity()
    bar = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)
        if bar:
            transformers_logging.enable_progress_bar()


def _weights_problem(name: str, exc: Exception) -> str:
    if isinstance(exc, SafetensorError):
        return (f"cannot load the weights of {name!r}: a *.safetensors file is damaged, truncated or empty "
                f"({_first_line(exc, 120)}); download or save the model again")
    if "mismatch" in str(exc):
        return (f"cannot load the weights of {name!r}: their shapes do not match the sizes in config.json; "
                "use the config saved with these weights")
    return f"cannot load the weights of {name!r}: {_first_line(exc)}. KN Explorer loads safetensors weights only"


def _read_tokenizer(name: str, where: str, options: dict) -> PreTrainedTokenizerBase:
    """The tokenizer; a damaged tokenizer file is one :class:`ModelLoadError` that blames the tokenizer."""
    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(where, **options)
    except Exception as exc:  # third-party parsing of untrusted files: any failure is the model's problem
        raise ModelLoadError(f"cannot load the tokenizer of {name!r}: {_first_line(exc, 200)}; a tokenizer file "
                             "(tokenizer.json, vocab.txt, ...) is damaged or truncated: save the model's tokenizer "
                             "again (tokenizer.save_pretrained) or download the model again") from None


_LAYER_INDEX = re.compile(r"\.\d+\.")


def _unused_weights(model: nn.Module, unexpected: Sequence[str]) -> list[str]:
    """The unexpected tensors that are the model's own kind of weights, e.g. the layers beyond the config's
    ``num_hidden_layers``: a config that leaves them out silently loads a truncated model. Tensors of other
    heads (a BERT checkpoint's next-sentence head, a pooler) are not the model's and stay ignored."""
    own = {_LAYER_INDEX.sub(".#.", name) for name, _ in model.named_parameters()}
    own |= {_LAYER_INDEX.sub(".#.", name) for name, _ in model.named_buffers()}
    return sorted(key for key in unexpected if _LAYER_INDEX.search(key) and _LAYER_INDEX.sub(".#.", key) in own)


def _check_finite(name: str, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse weights holding NaN or infinity, and a model whose first forward pass is not finite (one short
    prompt): its probabilities would be NaN and every result silently meaningless."""
    chunk = 1 << 22
    for param_name, param in model.named_parameters():
        flat = param.detach().reshape(-1)
        if not all(bool(torch.isfinite(flat[i:i + chunk]).all()) for i in range(0, flat.numel(), chunk)):
            raise ModelLoadError(f"cannot use the weights of {name!r}: the tensor {param_name} holds NaN or infinite "
                                 "values (a damaged *.safetensors file); download or save the model again")
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"][:, :16]
    if ids.shape[1] == 0:
        ids = torch.zeros((1, 1), dtype=torch.long)
    with torch.inference_mode():
        logits = model(input_ids=ids.to(next(model.parameters()).device)).logits
    if not bool(torch.isfinite(logits).all()):
        raise ModelLoadError(f"cannot use {name!r}: its first forward pass gives NaN or infinite values, so every "
                             "probability would be meaningless; its weights are damaged or do not fit its "
                             "config.json: download or save the model again")


def _read_model(name: str, where: str, adapter: Adapter, options: dict) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The tokenizer and the weights (safetensors only), checked: every tensor the config asks for is there,
    none of the model's own kind is left unused, and the outputs are finite. Every failure is one
    :class:`ModelLoadError`."""
    tokenizer = _read_tokenizer(name, where, options)
    try:
        with _quiet_transformers():
            model, info = AUTO_CLASSES[adapter.kind].from_pretrained(where, use_safetensors=True,
                                                                     output_loading_info=True, **options)
    except Exception as exc:  # third-party reading of untrusted files: any failure is the model's problem
        raise ModelLoadError(_weights_problem(name, exc)) from None
    missing = sorted(info["missing_keys"])
    if missing:
        raise ModelLoadError(f"cannot load the weights of {name!r}: {len(missing)} tensor(s) the config asks for "
                             f"are missing from them (e.g. {missing[0]}); use the config saved with these weights")
    unused = _unused_weights(model, info.get("unexpected_keys", ()))
    if unused:
        raise ModelLoadError(f"cannot load the weights of {name!r}: {len(unused)} tensor(s) in them are not used by "
                             f"its config.json ({', '.join(unused[:3])}{', …' if len(unused) > 3 else ''}), so the "
                             "model would run truncated (check num_hidden_layers / n_layer); use the config saved "
                             "with these weights")
    model.eval().requires_grad_(False)
    _check_finite(name, model, tokenizer)
    return model, tokenizer


def load_model(name_or_path: str | os.PathLike, device: str | torch.device | None = None) -> LanguageModel:
    """Load a demo model name, a local folder or a Hugging Face id (from the local cache when it is there)."""
    name, path = resolve(name_or_path)
    where = str(path) if path is not None else name
    options = {"trust_remote_code": False, **(_hub_options(name) if path is None else {})}
    config = _read_config(name, where, options)
    adapter = adapter_for(config.model_type)
    check_fits(name, config)
    if path is not None:
        _check_tokenizer_files(name, path)
    model, tokenizer = _read_model(name, where, adapter, options)
    if device is not None:
        model.to(device)
    log.info("loaded %s (%s, %d layers)", name, adapter.family, adapter.n_layers(model))
    return LanguageModel(name=name, model=model, tokenizer=tokenizer, adapter=adapter, source=path)


THREADS_VARIABLE = "KN_EXPLORER_THREADS"  # torch CPU threads of the CLI and the app


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the system reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_threads(field_name: str, threads: int) -> int:
    """A thread count from 1 to the usable CPUs: more threads than CPUs only slow torch down."""
    cpus = usable_cpus()
    if not 1 <= threads <= cpus:
        raise InputError(field_name, f"must be a whole number from 1 to {cpus} (the CPUs this process may use); "
                                     f"got {threads}")
    return threads


def default_threads() -> int:
    """``$KN_EXPLORER_THREADS`` when set, else 1."""
    value = os.environ.get(THREADS_VARIABLE, "1")
    try:
        threads = int(value)
    except ValueError:
        raise InputError(THREADS_VARIABLE, f"must be a whole number of threads (got {value!r})") from None
    return check_threads(THREADS_VARIABLE, threads)
