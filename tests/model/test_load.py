"""Load: many reruns keep memory bounded and the model loaded once; several sessions share one model safely.

- 100 reruns of the fact browser in AppTest (cached model, store reads and an edit-effect forward each rerun):
  resident memory between rerun 10 and rerun 100 grows by less than ``RERUN_GROWTH_MB``, the model is loaded
  once, nothing new is stored and no hook is left on the model.
- Threads attributing on one shared ``LanguageModel`` (serialised by its lock), alone, through one store and
  next to interventions that install hooks, give exactly the serial results and leave no hook behind.
- Two app sessions at once: both render, the model is loaded once, and a session whose model is busy waits.
"""
from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same, until_stored

from kn_core.attribution import AttributionConfig, attribute
from kn_core.method.interventions import verify
from kn_core.model.hooks import count_hooks
from kn_core.model.loading import DEMO_MODELS, LanguageModel
from kn_core.runs import cached
from kn_core.runs.store import ResultStore

APP = str(Path(__file__).resolve().parents[2] / "app.py")
RERUNS = 100
RERUN_GROWTH_MB = 50.0  # a leak of 0.5 MB per rerun (one figure, one score matrix) would exceed it
TEMPLATES = ("The capital of [X] is [Y].", "[X]'s capital is [Y].", "[X] has the capital [Y].")
CONFIG = AttributionConfig(steps=3)
demo_present = pytest.mark.skipif(not all((p / "config.json").is_file() for p in DEMO_MODELS.values()),
                                  reason="demo models missing: run `python -m kn_core.demo train`")


def rss_mb() -> float:
    """Resident memory of this process, in MB (after a full collection)."""
    gc.collect()
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    pytest.skip("resident memory is read from /proc (Linux only)")


@pytest.fixture
def fresh_app(tmp_path, monkeypatch):
    """A store in ``tmp_path``, empty resource caches, and a count of the model loads the app makes."""
    from kn_core.app import resources as ui
    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path))
    loads: list[str] = []
    real = ui.load_model

    def counting(name, *args, **kwargs):
        loads.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ui, "load_model", counting)
    ui._load.clear()
    ui.store.clear()
    yield loads, ResultStore(tmp_path / "store.sqlite")
    ui._load.clear()
    ui.store.clear()


def new_session():
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(APP, default_timeout=300)


def check(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# -- many reruns ---------------------------------------------------------------------------------------
@demo_present
def test_reruns_keep_memory_bounded_and_load_the_model_once(fresh_app):
    from kn_core.app import resources as ui
    loads, store = fresh_app
    at = new_session()
    at.run()  # the first run loads the model and queues the default fact's prompts for the model's worker
    until_stored(at)  # ... which computes and stores them, the page showing them as they come
    check(at)
    assert at.title[0].value == "Fact browser" and len(at.get("plotly_chart")) >= 2
    stored = store.info()["results"]
    assert stored >= 1
    start = time.perf_counter()
    for rerun in range(1, RERUNS + 1):
        at.run()
        if rerun == 10:
            baseline = rss_mb()
    elapsed = time.perf_counter() - start
    growth = rss_mb() - baseline
    check(at)
    assert len(at.get("plotly_chart")) >= 2, "the reruns must still draw the page"
    assert growth < RERUN_GROWTH_MB, f"resident memory grew {growth:.1f} MB from rerun 10 to {RERUNS}"
    assert loads == ["demo-mlm"], f"the model was loaded {len(loads)} times"
    assert store.info()["results"] == stored, "reruns must read stored results, not compute them again"
    lm = ui.model("demo-mlm")
    assert count_hooks(lm) == 0 and loads == ["demo-mlm"]
    print(f"{RERUNS} reruns in {elapsed:.1f} s; resident memory {growth:+.1f} MB from rerun 10 to {RERUNS}")


def assert_all_same(results, expected) -> None:
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        assert_same(got, want)


# -- threads on one shared model --------------------------------------------------------------------------
def serial(lm) -> list:
    return [attribute(lm, lm.prompt(t, "Tanzania", "Dodoma"), CONFIG, lang="en") for t in TEMPLATES]


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_threads_attributing_on_one_model_match_a_serial_run(request, name, one_thread):
    """Bit for bit: any hook leaking between sessions would show. On one torch thread, because with several a
    matmul's reduction order may differ between the main thread and a pool thread (last-bit differences that
    depend on which test set the process's thread count before)."""
    lm = request.getfixturevalue(name)
    expected = serial(lm)
    prompts = [lm.prompt(t, "Tanzania", "Dodoma") for t in TEMPLATES]
    neurons = [(0, 1), (1, 2), (2, 3)]
    stop = threading.Event()
    edits = []

    def edit_continuously():  # another session suppressing neurons meanwhile: hooks on the same modules
        while not stop.is_set():
            edits.append(verify(lm, prompts, neurons, "suppress", seed=0).own)

    def session(order: int) -> list:
        indices = np.roll(np.arange(len(TEMPLATES)), order)
        found = {int(i): attribute(lm, prompts[i], CONFIG, lang="en") for i in indices}
        return [found[i] for i in range(len(TEMPLATES))]

    editor = threading.Thread(target=edit_continuously)
    editor.start()
    try:
        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(session, range(3)))
    finally:
        stop.set()
        editor.join()
    for results in outcomes:
        assert_all_same(results, expected)
    assert edits and len(set(edits)) == 1, "the edits themselves must not see the attributions either"
    assert count_hooks(lm) == 0
    assert lm.lock.acquire(blocking=False)
    lm.lock.release()


def test_threads_sharing_one_store_store_each_result_once(bert, tmp_path, one_thread):
    expected = serial(bert)
    store = ResultStore(tmp_path / "store.sqlite")
    prompts = [bert.prompt(t, "Tanzania", "Dodoma") for t in TEMPLATES]
    barrier = threading.Barrier(3)

    def session(_: int) -> list:
        barrier.wait()  # all three ask for the same missing results at once
        return [cached.attribution(store, bert, p, CONFIG, "en") for p in prompts]

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(session, range(3)))
    for results in outcomes:
        assert_all_same(results, expected)
    assert store.info()["results"] == len(TEMPLATES)
    assert_all_same([cached.attribution(store, bert, p, CONFIG, "en", compute_missing=False) for p in prompts],
                    expected)
    assert store.check() == "ok" and count_hooks(bert) == 0


# -- several app sessions --------------------------------------------------------------------------------
@demo_present
def test_loading_one_model_does_not_hold_up_a_session_on_another(fresh_app, monkeypatch):
    """A slow load (a large model from the hub) must not make sessions on an already loaded model wait."""
    from kn_core.app import resources as ui
    loads, _ = fresh_app
    counting, entered, release, got = ui.load_model, threading.Event(), threading.Event(), {}

    def load(name, *args, **kwargs):
        if name == "slow/model":
            entered.set()
            release.wait(60)
            return object()
        return counting(name, *args, **kwargs)

    monkeypatch.setattr(ui, "load_model", load)
    starting = ui.worker  # the stand-in "slow/model" is no model: no worker for it
    monkeypatch.setattr(ui, "worker", lambda lm: starting(lm) if isinstance(lm, LanguageModel) else None)
    demo = ui.model("demo-mlm")
    slow = threading.Thread(target=lambda: got.setdefault("slow", ui.model("slow/model")))
    slow.start()
    try:
        assert entered.wait(30)
        other = threading.Thread(target=lambda: got.setdefault("demo", ui.model("demo-mlm")))
        other.start()
        other.join(10)
        assert got.get("demo") is demo, "a session on a loaded model waited for another model's load"
    finally:
        release.set()
        slow.join(30)
    assert "slow" in got and loads == ["demo-mlm"]


@demo_present
def test_two_app_sessions_at_once_share_one_model(fresh_app, monkeypatch):
    from streamlit.runtime.scriptrunner import magic
    from streamlit.testing.v1.util import patch_config_options

    loads, store = fresh_app
    # A Streamlit server compiles each page once, under its script cache's lock; two AppTests have a cache each and
    # compiled the same page at once, which CPython 3.11's parser does not survive ("AST constructor recursion depth
    # mismatch", seen once in a full run). The sessions compile one at a time here, as in a server.
    compiling, add_magic = threading.Lock(), magic.add_magic

    def one_at_a_time(*args, **kwargs):
        with compiling:
            return add_magic(*args, **kwargs)

    monkeypatch.setattr(magic, "add_magic", one_at_a_time)
    sessions = [new_session(), new_session()]
    barrier = threading.Barrier(2)

    def run(at):
        barrier.wait()
        at.run()
        return until_stored(at)

    # AppTest turns the global option "global.appTest" on for each run and restores the previous value after it:
    # with two sessions' runs overlapping, the first to end turns it off under the other, whose widgets then go
    # unrecorded (a KeyError in its next run). Kept on for the whole test.
    with patch_config_options({"global.appTest": True}), ThreadPoolExecutor(2) as pool:
        for at in pool.map(run, sessions):
            check(at)
            assert at.title[0].value == "Fact browser" and len(at.get("plotly_chart")) >= 2
    assert loads == ["demo-mlm"], f"the model was loaded {len(loads)} times"
    results = store.results()
    assert results and len({r.key for r in results}) == len(results)


@demo_present
def test_a_page_is_not_held_up_while_the_model_is_busy(fresh_app):
    """While another session holds the model, a page whose fact is not stored queues it and renders; the
    model's worker computes it once the model is free, and the page then shows it."""
    from kn_core.app import resources as ui
    loads, store = fresh_app
    lm = ui.model("demo-mlm")  # the process-wide cached model the sessions share
    held, release = threading.Event(), threading.Event()

    def other_session():
        with lm.lock:
            held.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=other_session)
    holder.start()
    held.wait(timeout=30)
    timer = threading.Timer(1.5, release.set)
    timer.start()
    try:
        at = new_session()
        at.run()
        check(at)
    finally:
        release.set()
        holder.join()
        timer.cancel()
    until_stored(at)
    check(at)
    assert len(at.get("plotly_chart")) >= 2 and not at.get("warning"), [w.value for w in at.get("warning")]
    assert loads == ["demo-mlm"] and store.info()["results"] >= 1 and count_hooks(lm) == 0


def test_loading_prints_nothing_and_restores_transformers_settings(tmp_path, capfd):
    """transformers' "Loading weights" bar and load report stay off stderr; its own settings are put back."""
    from helpers import make_bert
    from transformers.utils import logging as transformers_logging

    from kn_core.model.loading import load_model

    folder = make_bert(tmp_path / "m")
    capfd.readouterr()
    for enabled in (True, False):
        (transformers_logging.enable_progress_bar if enabled else transformers_logging.disable_progress_bar)()
        load_model(str(folder))
        assert transformers_logging.is_progress_bar_enabled() is enabled
    transformers_logging.enable_progress_bar()
    assert "Loading weights" not in capfd.readouterr().err
