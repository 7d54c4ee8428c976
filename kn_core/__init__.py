"""KN Explorer: knowledge neurons in pretrained language models (AMIG, after Chen et al., AAAI 2024).

The front door::

    import kn_core
    lm = kn_core.load_model("demo-mlm")
    result = kn_core.locate(lm, ["The capital of [X] is [Y]."], "Tanzania", "Dodoma", "en")
    result.neurons, result.suppress

Rooms (each imports only the rooms above it in this list): ``errors``/``defaults``/``types`` (shared),
``data`` (facts, prompts, mLAMA), ``model`` (loading, hooks, adapters), ``attribution`` (AMIG engines),
``method`` (neurons, interventions, locate, LIKN, DKN, fact-checking), ``runs`` (store, batches),
``app`` (the only Streamlit code); ``commands``, ``experiments`` and ``demo`` sit on top.

Names are imported on first use, so ``python -m kn_core --help`` does not pay for torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.4.0"

_EXPORTS = {
    "load_model": "kn_core.model.loading",
    "LanguageModel": "kn_core.model.loading",
    "attribute": "kn_core.attribution",
    "Attribution": "kn_core.attribution",
    "AttributionConfig": "kn_core.attribution",
    "locate": "kn_core.method.locate",
    "LocateResult": "kn_core.method.locate",
    "ResultStore": "kn_core.runs.store",
    "read_through": "kn_core.runs.cached",
    "load_dataset": "kn_core.data",
    "Neuron": "kn_core.types",
    "ScoredNeuron": "kn_core.types",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kn_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
