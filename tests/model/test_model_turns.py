"""Taking turns with a model (kn_core.model.turns): whoever waits for the model's lock when the worker finishes a
prompt goes before the worker's next prompt; a stream of waiters cannot hold the worker back longer than its
limit."""
from __future__ import annotations

import threading
import time

from kn_core.model.turns import Turns

TIMEOUT = 30


def _until(condition) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_page_waiting_when_a_prompt_ends_goes_before_the_next_prompt():
    turns, lock, order = Turns(), threading.RLock(), []

    def page() -> None:
        with turns.waiting():
            lock.acquire()
        order.append("page")
        time.sleep(0.05)
        lock.release()

    for _ in range(5):  # without the turn, the worker takes its own lock back before the page wakes
        order.clear()
        lock.acquire()  # the worker computes a prompt
        waiter = threading.Thread(target=page)
        waiter.start()
        _until(lambda: turns.waiting_count == 1)
        lock.release()  # the prompt is done
        assert turns.after_others(TIMEOUT)
        with lock:  # the next prompt
            order.append("worker")
        waiter.join(TIMEOUT)
        assert order == ["page", "worker"]
    assert turns.waiting_count == 0


def test_the_worker_waits_for_others_at_most_its_limit():
    turns, gate = Turns(), threading.Event()

    def forever() -> None:
        with turns.waiting():
            gate.wait(TIMEOUT)

    waiter = threading.Thread(target=forever)
    waiter.start()
    _until(lambda: turns.waiting_count == 1)
    started = time.monotonic()
    assert not turns.after_others(0.2)
    assert 0.15 < time.monotonic() - started < 5
    gate.set()
    waiter.join(TIMEOUT)
    assert turns.after_others(0.0) and turns.waiting_count == 0
