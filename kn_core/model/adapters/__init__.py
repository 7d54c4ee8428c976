"""Architecture adapters, registered by ``config.model_type`` (a plain dict)."""
from __future__ import annotations

from kn_core.errors import UnsupportedArchitectureError
from kn_core.model.adapters.base import Adapter, CausalLMAdapter, MaskedLMAdapter
from kn_core.model.adapters.bert import BertAdapter
from kn_core.model.adapters.gemma3 import Gemma3Adapter
from kn_core.model.adapters.gpt2 import GPT2Adapter
from kn_core.model.adapters.llama import GatedMLPAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    model_type: cls for cls in (BertAdapter, GPT2Adapter, GatedMLPAdapter, Gemma3Adapter)
    for model_type in cls.model_types
}


def supported() -> str:
    """Human-readable list of supported families and their model types."""
    families: dict[str, list[str]] = {}
    for model_type, cls in ADAPTERS.items():
        families.setdefault(cls.family, []).append(model_type)
    return "; ".join(f"{fam} ({', '.join(types)})" for fam, types in families.items())


def adapter_for(model_type: str) -> Adapter:
    try:
        return ADAPTERS[model_type]()
    except KeyError:
        raise UnsupportedArchitectureError(
            f"model type {model_type!r} is not supported; supported families: {supported()}") from None


__all__ = ["ADAPTERS", "Adapter", "CausalLMAdapter", "MaskedLMAdapter", "adapter_for", "supported"]
