"""Batches sharing a store split the work through claims: a prompt is claimed before it is computed, a running
batch's claim holds, a dead or expired one lapses, and two batches at once compute each prompt once."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_store import synthetic  # a sibling module: pytest puts tests/runs on the path

from kn_core.runs.store import Claimant, ResultStore

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()


@pytest.fixture
def running_pid():
    """The pid of a process that runs for the test's duration."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # reaped: the pid names no process now
    return process.pid


def test_a_running_batch_holds_its_claim_until_it_stores_or_releases(tmp_path, running_pid):
    store = ResultStore(tmp_path / "store.sqlite")
    key, result = synthetic(0)
    other, me = Claimant("other", HOST, running_pid), Claimant.this_process()
    assert store.claim(key, other) == "claimed"
    assert store.claim(key, other) == "claimed"  # a claimant may claim again what it holds
    assert store.claim(key, me) == "busy"
    assert store.claims() == {key.digest: "other"}
    store.release(key, other)
    assert store.claim(key, me) == "claimed" and store.claims() == {key.digest: me.id}
    store.put(key, result)
    assert store.claim(key, other) == "stored"


def test_claims_of_dead_expired_or_earlier_processes_lapse(tmp_path, running_pid, dead_pid):
    store = ResultStore(tmp_path / "store.sqlite")
    me = Claimant.this_process()
    holders = {"dead": Claimant("dead", HOST, dead_pid),
               "expired": Claimant("expired", HOST, running_pid),
               "my pid, earlier run": Claimant("earlier", HOST, os.getpid()),
               "elsewhere, expired": Claimant("remote", "another-host", 1)}
    for i, holder in enumerate(holders.values()):
        ttl = -1.0 if holder.id in ("expired", "remote") else 60.0
        assert store.claim(synthetic(i)[0], holder, ttl=ttl) == "claimed"
    assert [store.claim(synthetic(i)[0], me) for i in range(len(holders))] == ["claimed"] * len(holders)


def test_two_runs_of_one_process_hold_their_claims_against_each_other_while_they_go_on(tmp_path):
    store = ResultStore(tmp_path / "store.sqlite")
    key = synthetic(0)[0]
    first, second = Claimant.this_process(), Claimant.this_process()  # e.g. two batch threads of the app
    assert store.claim(key, first) == "claimed" and store.claim(key, second) == "busy"
    store.release_all(first)
    assert store.claim(key, second) == "claimed"
    store.release_all(second)


def test_a_claim_from_another_host_holds_until_it_expires(tmp_path):
    store = ResultStore(tmp_path / "store.sqlite")
    key = synthetic(0)[0]
    store.claim(key, Claimant("remote", "another-host", os.getpid()), ttl=60.0)  # no pid to check there
    assert store.claim(key, Claimant.this_process()) == "busy"


def test_release_renews_the_other_claims_and_release_all_drops_them(tmp_path, running_pid):
    store = ResultStore(tmp_path / "store.sqlite")
    holder, me = Claimant("remote", "another-host", running_pid), Claimant.this_process()
    keys = [synthetic(i)[0] for i in range(3)]
    for key in keys:
        store.claim(key, holder, ttl=0.5)
    store.release(keys[0], holder, ttl=60.0)
    time.sleep(0.6)  # past the first ttl: only the renewal keeps the claims
    assert set(store.claims()) == {keys[1].digest, keys[2].digest}
    assert store.claim(keys[1], me) == "busy"
    store.release_all(holder)
    assert store.claims() == {} and store.claim(keys[1], me) == "claimed"


COUNTING_BATCH = """
import os, sys, time
from pathlib import Path
import kn_core.runs.executors as executors
from kn_core.cli import main

folder = Path(sys.argv[1])
real = executors.attribute

def counted(lm, prompt, *args, **kwargs):  # one line per computation; the batches compute together
    with (folder / f"{os.getpid()}.log").open("a", encoding="utf-8") as out:
        out.write(f"{prompt.template}|{prompt.subject}\\n")
    while not (folder / "go").exists():
        time.sleep(0.02)
    time.sleep(0.1)
    return real(lm, prompt, *args, **kwargs)

executors.attribute = counted
sys.exit(main(sys.argv[2:]))
"""
BATCH = ["batch", "--model", "demo-mlm", "--langs", "en", "--relations", "P36", "--max-facts", "2", "--steps", "2",
         "--baseline", "zero", "--threads", "1", "--no-progress"]
PROMPTS = 10  # 2 facts × 5 English templates


def test_two_batches_on_one_store_compute_each_prompt_once(tmp_path):
    path, logs = tmp_path / "store.sqlite", tmp_path / "logs"
    logs.mkdir()
    script = tmp_path / "counting_batch.py"
    script.write_text(COUNTING_BATCH, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    batches = [subprocess.Popen([sys.executable, str(script), str(logs), *BATCH, "--store", str(path)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120  # two fresh interpreters importing torch: slow on a loaded machine
        while len(list(logs.glob("*.log"))) < 2:  # each has claimed a prompt and waits to compute it
            assert time.monotonic() < deadline and all(b.poll() is None for b in batches), "a batch did not start"
            time.sleep(0.05)
        (logs / "go").touch()
        outputs = [b.communicate(timeout=240) for b in batches]
    finally:
        for b in batches:  # never leave a batch waiting for "go" behind a failed test
            if b.poll() is None:
                b.kill()
    assert [b.returncode for b in batches] == [0, 0], [err[-2000:] for _, err in outputs]
    computed = [log.read_text(encoding="utf-8").splitlines() for log in sorted(logs.glob("*.log"))]
    everything = [line for lines in computed for line in lines]
    assert all(computed) and len(everything) == len(set(everything)) == PROMPTS, computed
    done = sorted(int(out.split(" computed")[0].rsplit(" ", 1)[1]) for out, _ in outputs)
    assert done == sorted(len(lines) for lines in computed)  # each batch reports what it computed
    store = ResultStore(path)
    assert store.info()["results"] == PROMPTS and store.claims() == {} and store.check() == "ok"
