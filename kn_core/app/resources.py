"""Resources cached once per process (``st.cache_resource``): models, the result store and its work queue, each
loaded model's background worker and measurer, the bundled facts."""
from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st
import torch

from kn_core.app.guard import plain
from kn_core.data import FactSet, load_bundled
from kn_core.model.loading import LanguageModel, default_threads, load_model
from kn_core.runs.atlas import Atlas
from kn_core.runs.measurer import Measurer
from kn_core.runs.queue import Queue
from kn_core.runs.store import ResultStore, default_path
from kn_core.runs.worker import Worker


@st.cache_resource(show_spinner=False)
def _workers() -> tuple[dict[str, Worker], threading.Lock]:
    return {}, threading.Lock()


@st.cache_resource(show_spinner=False)
def _measurers() -> tuple[dict[str, Measurer], threading.Lock]:
    return {}, threading.Lock()


def _retire(lm: LanguageModel) -> None:
    """A model leaves the cache: its worker stops (what it was computing goes back to the queue, and is taken
    up when the model is loaded again)."""
    workers, lock = _workers()
    with lock:
        if lm.name in workers and workers[lm.name].lm is lm:
            workers.pop(lm.name).stop()
    measurers, lock = _measurers()
    with lock:
        if lm.name in measurers and measurers[lm.name].lm is lm:
            measurers.pop(lm.name).stop()


@st.cache_resource(show_spinner=False, max_entries=2, on_release=_retire)
def _load(name: str) -> LanguageModel:
    torch.set_num_threads(default_threads())  # the process's torch threads: $KN_EXPLORER_THREADS, else 1
    lm = load_model(name)
    atlas = store().atlas
    if atlas is not None:
        threading.Thread(target=_warm_atlas, args=(atlas, name), name=f"atlas-{name}", daemon=True).start()
    return lm


def _warm_atlas(atlas: Atlas, name: str) -> None:
    """Decode the model's shipped atlas in the background (a page reading every result, such as the neuron
    search, then finds the score matrices decoded)."""
    found = atlas.model(name)
    if found is not None:
        found.warm()


def model(name: str) -> LanguageModel:
    """The model, loaded once per process, with its worker running (:func:`worker`: what was queued for it, in
    an earlier session or before a restart, is computed). Streamlit's resource cache holds a lock per model
    name while it computes, so two sessions asking for the same model load it once, and a session whose model
    is loaded never waits for another one that is loading a different model."""
    with st.spinner(f"Loading {plain(name)}…"):
        lm = _load(name)
    worker(lm)
    return lm


def worker(lm: LanguageModel) -> Worker:
    """The background worker of ``lm`` on the app's store: one per model name and process, shared by every
    session, started on first use, and replaced when its model object or the store has changed (a model
    loaded again after it left the cache; tests that move ``$KN_EXPLORER_HOME``) or its thread has ended."""
    workers, lock = _workers()
    results = store()
    with lock:
        running = workers.get(lm.name)
        if running is not None and running.lm is lm and running.store is results and running.alive:
            return running
        if running is not None:
            running.stop()
        workers[lm.name] = started = Worker(lm, results, facts=facts).start()
        return started


def measurer(lm: LanguageModel) -> Measurer:
    """The measurer of ``lm`` (:mod:`kn_core.runs.measurer`: edit effects, controls and checks computed off the
    pages' runs): one per model name and process, shared by every session, replaced when its model object has
    changed or it was stopped."""
    measurers, lock = _measurers()
    with lock:
        running = measurers.get(lm.name)
        if running is not None and running.lm is lm and running.alive:
            return running
        if running is not None:
            running.stop()
        measurers[lm.name] = started = Measurer(lm)
        return started


@st.cache_resource(show_spinner=False)
def _store(path: Path) -> ResultStore:
    return ResultStore(path)


class _Stores:
    """``store()``: the result store at ``$KN_EXPLORER_HOME`` as it is now (one open store per path and process);
    ``store.clear()``: forget the open stores (tests that move ``$KN_EXPLORER_HOME``)."""

    def __call__(self) -> ResultStore:
        """The result store at ``$KN_EXPLORER_HOME`` as it is now (one open store per path and process)."""
        return _store(default_path())

    def clear(self) -> None:
        """Forget the open stores (tests that move ``$KN_EXPLORER_HOME``)."""
        _store.clear()


store = _Stores()


@st.cache_resource(show_spinner=False)
def _queue(path: Path) -> Queue:
    return Queue(_store(path))


def queue() -> Queue:
    """The work queue in the app's store (:mod:`kn_core.runs.queue`)."""
    return _queue(default_path())


@st.cache_resource(show_spinner=False)
def facts() -> FactSet:
    return load_bundled()
