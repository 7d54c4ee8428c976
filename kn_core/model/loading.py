"""Loading a checkpoint (bundled demo name, local folder or Hugging Face id) into a :class:`LanguageModel`.

Safety: weights load from safetensors only (``use_safetensors=True``) and never with remote code.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from kn_core.data.prompts import Prompt
from kn_core.errors import InputError, KNError, ModelLoadError
from kn_core.model.adapters import Adapter, adapter_for
from kn_core.model.install import installed_path, model_folder
from kn_core.model.registry import REGISTRY

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

    ``lock`` serialises everything that installs hooks, since hooks mutate the shared module.
    """

    name: str
    model: nn.Module
    tokenizer: object
    adapter: Adapter
    source: Path | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

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

    def neuron_site(self, layer: int) -> nn.Module:
        return self.adapter.neuron_site(self.model, layer)

    def prompt(self, template: str, subject: str, obj: str) -> Prompt:
        """Build a prompt, checking it fits the model's context."""
        prompt = self.adapter.build_prompt(self.tokenizer, template, subject, obj)
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is not None and unk in self.tokenizer(subject, add_special_tokens=False)["input_ids"]:
            raise InputError("subject", f"{subject!r} contains characters unknown to this model's vocabulary (the "
                                        "model would read them as its unknown token); spell it with characters "
                                        "the model knows")
        limit = self.adapter.max_positions(self.config)
        if limit is not None and len(prompt.input_ids) > limit:
            raise InputError("template", f"the prompt is {len(prompt.input_ids)} tokens; this model reads at most "
                                         f"{limit}: shorten the template, subject or object")
        return prompt

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


def resolve(name_or_path: str) -> tuple[str, Path | None]:
    """Map a demo name, an installable model's name (its folder under ``$KN_EXPLORER_HOME/models``) or a folder
    to a local path; anything else is taken as a hub id."""
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
        path = installed_path(name)
        if path is None:
            raise ModelLoadError(f"model {name!r} is not installed (no {model_folder(name)}); install it with "
                                 f"`python -m kn_core models install {name}`")
        return name, path
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"folder {name!r} holds no config.json, so it is not a saved model")
        return name, path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"no model folder at {name!r}; valid choices: {', '.join(DEMO_MODELS)}, "
                             "a local model folder, or a Hugging Face id such as 'bert-base-multilingual-cased'")
    return name, None


def estimate_parameters(config) -> int:
    """Parameter count estimated from the config alone: embeddings + attention + FFN per layer, counting
    three FFN matrices (gated MLP), so an upper bound for two-matrix FFNs."""
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    d_ff = int(getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    return vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * d_ff)


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
    """Refuse, before loading, a model whose fp32 weights would not fit in the memory available."""
    need = estimate_parameters(config) * 4
    have = available_memory()
    limit = os.environ.get(MAX_BYTES_VARIABLE, "").strip()
    if limit and not (limit.isascii() and limit.isdigit()):
        raise InputError(MAX_BYTES_VARIABLE, f"must be a whole number of bytes (got {limit[:40]!r}), "
                                             "e.g. 8000000000 for 8 GB; unset it to use 80 % of the free memory")
    cap = int(limit) if limit else (int(have * 0.8) if have else None)
    if cap is not None and need > cap:
        raise ModelLoadError(f"{name!r} needs about {need / 2**30:.1f} GiB for its weights but only "
                             f"{cap / 2**30:.1f} GiB are available; pick a smaller model or free memory")


def load_model(name_or_path: str, device: str | torch.device | None = None) -> LanguageModel:
    """Load a demo model name, a local folder or a Hugging Face id (from the local cache when offline)."""
    name, path = resolve(name_or_path)
    where = str(path) if path is not None else name
    try:
        config = AutoConfig.from_pretrained(where, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        hint = ""
        if path is None:
            hint = (" If it is a gated model, accept its licence on the Hub and log in (`hf auth login`), or "
                    "download it and give its folder; offline, only models already in the local cache load."
                    if "gated" in str(exc).lower() or "401" in str(exc) or "403" in str(exc) else
                    " Offline, a Hugging Face id loads only from the local cache; a gated model also needs its "
                    "licence accepted and a login.")
        raise ModelLoadError(f"cannot read the config of {name!r}: {str(exc).rstrip('. ')}.{hint} Valid choices: "
                             f"{', '.join(DEMO_MODELS)}, a local model folder, or a Hugging Face id") from None
    adapter = adapter_for(config.model_type)
    check_fits(name, config)
    try:
        model = AUTO_CLASSES[adapter.kind].from_pretrained(where, use_safetensors=True, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {name!r}: {exc}. KN Explorer loads safetensors weights only") from None
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    log.info("loaded %s (%s, %d layers)", name, adapter.family, adapter.n_layers(model))
    return LanguageModel(name=name, model=model, tokenizer=tokenizer, adapter=adapter, source=path)


THREADS_VARIABLE = "KN_EXPLORER_THREADS"  # torch CPU threads of the CLI and the app


def default_threads() -> int:
    """``$KN_EXPLORER_THREADS`` when set, else 1."""
    value = os.environ.get(THREADS_VARIABLE, "1")
    try:
        threads = int(value)
    except ValueError:
        raise InputError(THREADS_VARIABLE, f"must be a whole number of threads (got {value!r})") from None
    if threads < 1:
        raise InputError(THREADS_VARIABLE, f"must be at least 1 (got {threads})")
    return threads
