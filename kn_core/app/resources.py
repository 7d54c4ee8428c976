"""Resources cached once per process (``st.cache_resource``): models, the result store, the bundled facts."""
from __future__ import annotations

from pathlib import Path

import streamlit as st
import torch

from kn_core.app.guard import plain
from kn_core.data import FactSet, load_bundled
from kn_core.model.loading import LanguageModel, default_threads, load_model
from kn_core.runs.store import ResultStore, default_path


@st.cache_resource(show_spinner=False, max_entries=2)
def _load(name: str) -> LanguageModel:
    torch.set_num_threads(default_threads())  # the process's torch threads: $KN_EXPLORER_THREADS, else 1
    return load_model(name)


def model(name: str) -> LanguageModel:
    """The model, loaded once per process: Streamlit's resource cache holds a lock per model name while it
    computes, so two sessions asking for the same model load it once, and a session whose model is loaded
    never waits for another one that is loading a different model."""
    with st.spinner(f"Loading {plain(name)}…"):
        return _load(name)


@st.cache_resource(show_spinner=False)
def _store(path: Path) -> ResultStore:
    return ResultStore(path)


def store() -> ResultStore:
    """The result store at ``$KN_EXPLORER_HOME`` as it is now (one open store per path and process)."""
    return _store(default_path())


store.clear = _store.clear  # forget the open stores (tests that move $KN_EXPLORER_HOME)


@st.cache_resource(show_spinner=False)
def facts() -> FactSet:
    return load_bundled()
