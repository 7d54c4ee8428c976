"""The measurer (kn_core.runs.measurer): a page's measurement runs in the measurer's thread, holding the model's
lock, once per key however often it is asked for; requests run in the order asked, and one nobody asks for any
more is dropped; a failure is kept with its reason and the next measurement still runs; while the model is in
another's turn (the worker computing a prompt) the measurement waits, says so, and runs once the turn is free."""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kn_core.errors import InputError
from kn_core.method.interventions import verify
from kn_core.model.hooks import count_hooks, run
from kn_core.model.turns import Turns
from kn_core.runs.measurer import Measurer

TIMEOUT = 60


class Model:
    """What a measurer needs of a model: a name, its lock and turns, its blocks (none here)."""

    def __init__(self) -> None:
        self.name, self.lock, self.model, self.turns = "m", threading.Lock(), None, Turns()
        self.adapter = SimpleNamespace(layers=lambda model: [])


@pytest.fixture
def measurer():
    found = Measurer(Model())  # type: ignore[arg-type]
    yield found
    found.stop()


def test_a_key_is_measured_once_however_often_it_is_asked_for(measurer):
    calls, gate = [], threading.Event()

    def measure():
        calls.append(1)
        gate.wait(TIMEOUT)
        return 42

    assert measurer.request("k", measure) is None  # not yet: the page draws its place
    assert measurer.request("k", measure) is None  # a second session, a second run: not queued again
    assert measurer.pending("k")
    gate.set()
    assert measurer.wait("k", TIMEOUT).value == 42
    assert measurer.request("k", measure).value == 42 and calls == [1]
    assert not measurer.pending("k")


def test_it_measures_holding_the_model_lock_and_waits_for_the_workers_turn(measurer):
    held = []
    with measurer.lm.lock:  # the worker computing a prompt
        measurer.request("k", lambda: held.append(measurer.lm.lock.locked()) or "done")
        deadline = time.monotonic() + TIMEOUT
        while not measurer.waiting_for_model():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert measurer.wait("k", 0.3) is None  # it waits for the turn
    assert measurer.wait("k", TIMEOUT).value == "done" and held == [True]
    assert not measurer.waiting_for_model()


def test_requests_run_in_order_and_what_nobody_asks_for_any_more_is_dropped():
    measurer = Measurer(Model(), stale_s=0.5)  # type: ignore[arg-type]
    order, gate = [], threading.Event()
    try:
        measurer.request("first", lambda: gate.wait(TIMEOUT) and order.append("first"))
        deadline = time.monotonic() + TIMEOUT
        while not measurer.pending("first") or measurer._waiting:  # "first" runs
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for key in ("left", "watched", "later"):
            measurer.request(key, lambda key=key: order.append(key))
        time.sleep(0.8)  # "left"'s page was left: nobody asks for it again
        measurer.request("watched", lambda: order.append("asked twice"))  # its page asks again: still wanted
        measurer.request("later", lambda: order.append("asked twice"))
        gate.set()
        for key in ("watched", "later"):
            assert measurer.wait(key, TIMEOUT) is not None
        assert order == ["first", "watched", "later"]  # in the order first asked, each once, "left" dropped
        assert measurer.get("left") is None and not measurer.pending("left")
        assert measurer.request("left", lambda: "back") is None  # asked again later: measured after all
        assert measurer.wait("left", TIMEOUT).value == "back"
    finally:
        measurer.stop()


def test_a_failure_is_kept_with_its_reason_and_the_next_one_runs(measurer):
    def broken():
        raise InputError("neuron", "no such neuron")

    def crashing():
        raise RuntimeError("boom")

    measurer.request("bad", broken)
    measurer.request("crash", crashing)
    assert measurer.wait("bad", TIMEOUT).error == "neuron: no such neuron"
    assert measurer.wait("crash", TIMEOUT).error == "RuntimeError: boom"
    measurer.request("good", lambda: 1)
    assert measurer.wait("good", TIMEOUT).value == 1


def test_only_the_most_recent_keys_are_kept():
    measurer = Measurer(Model(), keep=2)  # type: ignore[arg-type]
    try:
        for key in "abc":
            measurer.request(key, lambda key=key: key)
            assert measurer.wait(key, TIMEOUT).value == key
        assert measurer.get("a") is None and measurer.get("c").value == "c"
    finally:
        measurer.stop()


def test_a_real_edit_effect_equals_the_one_measured_on_the_page_thread(gpt2, one_thread):
    prompts = [gpt2.prompt("The capital of [X] is [Y].", "Tanzania", "Dodoma")]
    neurons = [(0, 1), (1, 2)]
    measurer = Measurer(gpt2)
    try:
        measurer.request("edit", lambda: verify(gpt2, prompts, neurons, "suppress", seed=0))
        found = measurer.wait("edit", TIMEOUT).value
    finally:
        measurer.stop()
    np.testing.assert_equal(dataclasses.asdict(found),  # NaN equals NaN here (no unrelated prompts: NaN)
                            dataclasses.asdict(verify(gpt2, prompts, neurons, "suppress", seed=0)))
    assert found.own < 0 or found.own > 0  # it measured something


def test_a_running_measurement_nobody_asks_for_any_more_is_dropped_and_hands_the_model_back(gpt2, one_thread):
    """A page left while its measurement runs: at its next transformer block the measurement stops, its hooks
    are removed, the model's lock is free for the page now open; asked for again later, it is measured."""
    prompt = gpt2.prompt("The capital of [X] is [Y].", "Tanzania", "Dodoma")
    passes = []

    def endless():
        while len(passes) < 100_000:
            with torch.no_grad():
                passes.append(run(gpt2, torch.tensor([prompt.input_ids])))
        return "never"

    hooks_before = count_hooks(gpt2)
    measurer = Measurer(gpt2, stale_s=0.5)
    try:
        measurer.request("left", endless)
        deadline = time.monotonic() + TIMEOUT
        while not passes:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert measurer.pending("left") and measurer._holding
        assert gpt2.lock.acquire(timeout=TIMEOUT)  # the page now open gets the model: the measurement was dropped
        gpt2.lock.release()
        ran = len(passes)
        assert 0 < ran < 100_000 and measurer.get("left") is None and not measurer.pending("left")
        assert count_hooks(gpt2) == hooks_before
        measurer.request("left", lambda: "measured")
        assert measurer.wait("left", TIMEOUT).value == "measured"
    finally:
        measurer.stop()


def test_a_page_that_looks_more_slowly_than_the_drop_delay_still_gets_its_measurement(gpt2, one_thread):
    """A busy machine delays a page's polls beyond STALE_S: its measurement (longer than the delay) is dropped
    once; asked for again, it is given twice the gap seen, and finishes (else: dropped at every try, never shown)."""
    prompt = gpt2.prompt("The capital of [X] is [Y].", "Tanzania", "Dodoma")
    stale_s, poll_s = 0.3, 0.6

    def slow():  # forward passes for longer than stale_s (the measurer can drop it at every block)
        started = time.monotonic()
        while time.monotonic() - started < 2 * poll_s:
            with torch.no_grad():
                run(gpt2, torch.tensor([prompt.input_ids]))
        return "measured"

    measurer = Measurer(gpt2, stale_s=stale_s)
    dropped = []
    try:
        deadline, found = time.monotonic() + TIMEOUT, measurer.request("slow", slow)
        while found is None:  # the page's place, polling slowly
            assert time.monotonic() < deadline, "never measured"
            time.sleep(poll_s)
            dropped.append(not measurer.pending("slow") and measurer.get("slow") is None)
            found = measurer.request("slow", slow)
        assert found.value == "measured"
        assert any(dropped), "it was never dropped: the test did not poll more slowly than stale_s"
    finally:
        measurer.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_it_measures_below_the_pages_cpu_priority_and_above_the_workers():
    """The measurer's thread runs NICE levels below the thread that made it (a page: the browser drawing that
    page goes first), the worker's further below; the caller's priority is left as it was."""
    from kn_core.runs import measurer as measuring
    from kn_core.runs import worker

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    measurer = Measurer(Model())  # type: ignore[arg-type]
    try:
        measurer.request("nice", lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        assert measurer.wait("nice", TIMEOUT).value == min(19, mine + measuring.NICE)
    finally:
        measurer.stop()
    assert 0 < measuring.NICE < worker.NICE
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
