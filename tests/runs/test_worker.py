"""The queue and the background worker (kn_core.runs.queue / worker) on a tiny GPT-2: a prompt submitted twice
(two sessions, two clicks, two workers) is computed once; cancelling drops a queued prompt and stops a running
one (nothing stored); a prompt that raises is recorded and the next one still computes; a killed worker's
prompt (thread stopped, or process killed with SIGKILL) is computed by the next worker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kn_core.attribution import AttributionConfig
from kn_core.runs import cached
from kn_core.runs.queue import BATCH, Queue, Request
from kn_core.runs.store import Claimant, ResultKey, ResultStore
from kn_core.runs.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
CONFIG = AttributionConfig(steps=3)
TEMPLATES = ("The capital of [X] is [Y].", "[X] is a country and [Y] is its capital.",
             "In [X] the capital city is [Y].")
TIMEOUT = 120


@pytest.fixture
def store(tmp_path):
    found = ResultStore(tmp_path / "store.sqlite")
    yield found
    found.close()


@pytest.fixture
def requests(gpt2):
    return [Request(gpt2.prompt(t, "Tanzania", "Dodoma"), CONFIG, "en", "P36-tanzania") for t in TEMPLATES]


@pytest.fixture
def computed(monkeypatch):
    """Every computation the worker starts, by template; ``slow`` templates report progress for a while first
    (so that they can be cancelled or stopped), ``broken`` ones raise."""
    calls: list[str] = []
    slow: set[str] = set()
    broken: set[str] = set()
    real = cached.compute

    def compute(lm, prompt, config, lang, progress=None):
        calls.append(prompt.template)
        if prompt.template in broken:
            raise RuntimeError("a broken prompt")
        if prompt.template in slow:
            for step in range(200):
                time.sleep(0.05)
                progress(step / 400)
        return real(lm, prompt, config, lang, progress)

    monkeypatch.setattr(cached, "compute", compute)
    return calls, slow, broken


def wait_for(condition, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def states(store: ResultStore) -> dict[str, str]:
    return {row["key"]: row["state"] for row in store._query("SELECT key, state FROM queue")}


def test_a_prompt_submitted_twice_is_computed_once(gpt2, store, requests, computed, one_thread):
    calls, _, _ = computed
    other_session = ResultStore(store.path)  # another session, or another server process, on the same file
    keys = Queue(store).submit(gpt2, requests)
    assert Queue(other_session).submit(gpt2, requests[:2] + requests[:1]) == keys[:2] + keys[:1]
    Queue(store).submit(gpt2, requests, BATCH)  # a batch asking for them too changes nothing
    assert len(states(store)) == 3
    workers = [Worker(gpt2, store, poll_s=0.05).start(), Worker(gpt2, other_session, poll_s=0.05).start()]
    try:
        wait_for(lambda: Queue(store).standing(gpt2, keys).complete)
    finally:
        for worker in workers:
            worker.stop(wait=10)
    assert sorted(calls) == sorted(TEMPLATES)  # two workers, three prompts, each once
    assert states(store) == {} and len(store.results()) == 3
    assert Queue(store).submit(gpt2, requests) == keys and states(store) == {}  # stored: nothing is queued again


def test_cancel_drops_a_queued_prompt_and_stops_a_running_one(gpt2, store, requests, computed, one_thread):
    calls, slow, _ = computed
    slow.add(TEMPLATES[0])
    queue = Queue(store)
    keys = queue.submit(gpt2, requests)
    queue.cancel([keys[1]])  # queued: dropped
    assert keys[1].digest not in states(store)
    worker = Worker(gpt2, store, poll_s=0.05).start()
    try:
        wait_for(lambda: states(store).get(keys[0].digest) == "running" and worker.running() is not None
                 and worker.running().fraction > 0)
        assert queue.standing(gpt2, keys).running == 1
        queue.cancel([keys[0]])  # running: stops at its next progress report
        wait_for(lambda: queue.standing(gpt2, [keys[2]]).complete)
    finally:
        worker.stop(wait=10)
    assert calls == [TEMPLATES[0], TEMPLATES[2]]
    assert not store.has(keys[0]) and not store.has(keys[1]) and store.has(keys[2])
    assert states(store) == {} and not store.claims()
    standing = queue.standing(gpt2, keys)
    assert (standing.stored, standing.waiting, standing.failed) == (1, 0, {})


def test_a_failing_prompt_is_recorded_and_the_queue_goes_on(gpt2, store, requests, computed, one_thread):
    calls, _, broken = computed
    broken.add(TEMPLATES[0])
    queue = Queue(store)
    keys = queue.submit(gpt2, requests)
    worker = Worker(gpt2, store, poll_s=0.05).start()
    try:
        wait_for(lambda: queue.standing(gpt2, keys).waiting == 0)
        standing = queue.standing(gpt2, keys)
        assert standing.stored == 2 and standing.failed == {keys[0].digest: "RuntimeError: a broken prompt"}
        assert worker.alive
        [failure] = store.failures()  # as a batch records it
        assert (failure.fact_id, failure.template, failure.reason) == ("P36-tanzania", TEMPLATES[0],
                                                                        "RuntimeError: a broken prompt")
        queue.submit(gpt2, requests)  # submitting again does not retry a failure by itself
        assert states(store) == {keys[0].digest: "failed"}
        broken.clear()
        queue.retry(keys)
        worker.wake()
        wait_for(lambda: queue.standing(gpt2, keys).complete)
    finally:
        worker.stop(wait=10)
    assert calls.count(TEMPLATES[0]) == 2 and not store.failures()


def test_a_stopped_worker_leaves_its_prompt_to_the_next(gpt2, store, requests, computed, one_thread):
    calls, slow, _ = computed
    slow.add(TEMPLATES[0])
    queue = Queue(store)
    keys = queue.submit(gpt2, requests[:1])
    first = Worker(gpt2, store, poll_s=0.05).start()
    wait_for(lambda: first.running() is not None and first.running().fraction > 0)
    first.stop(wait=10)
    assert not first.alive and states(store) == {keys[0].digest: "queued"} and not store.has(keys[0])
    second = Worker(gpt2, store, poll_s=0.05).start()
    try:
        wait_for(lambda: store.has(keys[0]))
    finally:
        second.stop(wait=10)
    assert calls == [TEMPLATES[0], TEMPLATES[0]]


WORKER_SCRIPT = textwrap.dedent("""
    import sys, time
    from kn_core.attribution import AttributionConfig
    from kn_core.model.loading import load_model
    from kn_core.runs import cached
    from kn_core.runs.store import ResultStore
    from kn_core.runs.worker import Worker

    def slow(lm, prompt, config, lang, progress=None):  # never finishes by itself
        while True:
            time.sleep(0.05)
            progress(0.5)

    cached.compute = slow
    Worker(load_model(sys.argv[1]), ResultStore(sys.argv[2]), poll_s=0.05).start()
    time.sleep(600)
""")


def test_a_killed_worker_process_leaves_its_prompt_to_the_next(gpt2, gpt2_dir, store, requests, computed, tmp_path,
                                                                one_thread):
    """A server process killed with SIGKILL mid-prompt: its row stays ``running`` and its claim in the store,
    but the claim lapses with the process, and a worker elsewhere computes the prompt."""
    calls, _, _ = computed
    queue = Queue(store)
    keys = queue.submit(gpt2, requests[:1])
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KN_EXPLORER_THREADS": "1"}
    process = subprocess.Popen([sys.executable, str(script), str(gpt2_dir), str(store.path)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: states(store).get(keys[0].digest) == "running" or process.poll() is not None)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert states(store) == {keys[0].digest: "running"} and keys[0].digest in store.claims()
    worker = Worker(gpt2, store, poll_s=0.05).start()
    try:
        wait_for(lambda: store.has(keys[0]))
    finally:
        worker.stop(wait=10)
    assert calls == [TEMPLATES[0]] and states(store) == {}


def test_the_latest_page_goes_first_and_the_time_left_counts_the_work_ahead(gpt2, store, requests):
    """Pages' work is taken latest first (the fact the user opened last, or looks at again), before any batch,
    whose work is first come, first served; the time left counts what goes first. An idle worker has no pace."""
    queue = Queue(store)
    requests = [*requests, Request(gpt2.prompt(TEMPLATES[0], "Kenya", "Nairobi"), CONFIG, "en", "P36-kenya")]
    batch = queue.submit(gpt2, requests[:1], BATCH, tag="batch P36")
    later_batch = queue.submit(gpt2, requests[3:4], BATCH, tag="batch P36 more")
    earlier = queue.submit(gpt2, requests[1:2])
    mine = queue.submit(gpt2, requests[2:3])
    standing = queue.standing(gpt2, mine)
    assert (standing.queued, standing.ahead) == (1, 0)
    assert queue.standing(gpt2, earlier).ahead == 1
    assert queue.standing(gpt2, batch).ahead == 2 and queue.tagged(gpt2, "batch P36") == 1
    assert queue.standing(gpt2, later_batch).ahead == 3
    claimant = Claimant.this_process()
    order = []
    while (entry := queue.take(gpt2, claimant)) is not None:
        order.append(entry.key)
        queue.finish(entry)
    assert order == [k.digest for k in (*mine, *earlier, *batch, *later_batch)]
    queue.submit(gpt2, requests[1:2])  # opened again: now it goes first
    queue.submit(gpt2, requests[2:3])
    again = queue.submit(gpt2, requests[1:2])
    assert queue.standing(gpt2, again).ahead == 0
    assert queue.standing(gpt2, requests_keys(gpt2, requests[2:3])).ahead == 1
    assert Worker(gpt2, store).pace(CONFIG) is None


def requests_keys(lm, requests):
    return [ResultKey.of(lm, r.prompt, r.config, r.lang) for r in requests]


def test_the_worker_survives_a_store_error(gpt2, store, requests, computed, monkeypatch, one_thread):
    """An error outside any prompt (here: taking the next row fails once) is logged; the worker goes on."""
    queue = Queue(store)
    keys = queue.submit(gpt2, requests[:1])
    worker = Worker(gpt2, store, poll_s=0.05)
    failing = threading.Event()
    take = worker.queue.take

    def flaky(lm, claimant):
        if not failing.is_set():
            failing.set()
            raise OSError("disk full")
        return take(lm, claimant)

    monkeypatch.setattr(worker.queue, "take", flaky)
    worker.start()
    try:
        wait_for(lambda: store.has(keys[0]))
    finally:
        worker.stop(wait=10)
    assert failing.is_set()


def test_a_row_this_version_cannot_read_fails_with_its_reason_and_the_queue_goes_on(gpt2, store, requests):
    """A queue row written by a newer version (a field this one does not know) or damaged is recorded as failed,
    saying why; the worker takes the next row instead of stopping on a raw TypeError."""
    queue = Queue(store)
    fine, newer, damaged = (queue.submit(gpt2, [r]) for r in requests)  # pages' latest first: fine comes last
    with store._write() as conn:
        row = conn.execute("SELECT request FROM queue WHERE key = ?", (newer[0].digest,)).fetchone()
        conn.execute("UPDATE queue SET request = ? WHERE key = ?",
                     (row["request"].replace('"prompt": {', '"prompt": {"from_the_future": 1, ', 1),
                      newer[0].digest))
        conn.execute("UPDATE queue SET request = '{not json' WHERE key = ?", (damaged[0].digest,))
    entry = queue.take(gpt2, Claimant.this_process())
    assert entry is not None and entry.key == fine[0].digest
    for keys in (newer, damaged):
        standing = queue.standing(gpt2, keys)
        assert "cannot be read by this version" in standing.failed[keys[0].digest]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_the_worker_computes_below_the_pages_cpu_priority(gpt2, store, requests, computed, one_thread):
    """The worker's thread runs NICE levels below the thread that started it (the app's pages, the browser
    on the same machine, go first); the caller's own priority is left as it was."""
    from kn_core.runs.worker import NICE

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []
    calls, _, _ = computed
    real = cached.compute

    def compute(lm, prompt, config, lang, progress=None):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(lm, prompt, config, lang, progress)

    keys = Queue(store).submit(gpt2, requests[:1])
    worker = Worker(gpt2, store, poll_s=0.05)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cached, "compute", compute)
            worker.start()
            wait_for(lambda: Queue(store).standing(gpt2, keys).complete)
    finally:
        worker.stop(wait=10)
    assert seen == [min(19, mine + NICE)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
