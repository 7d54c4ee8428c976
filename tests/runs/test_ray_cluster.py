"""The ray executor for real, as a user runs it: a head node from `ray start --head`, then `python -m kn_core batch
--executor ray --address ADDRESS`; it stores what the local executor stores. A worker killed mid-batch stops the
batch with one error, keeps what the other workers computed, holds no claim, and the same batch resumes to the end.
An address where no cluster answers fails fast with one line. Ray is a dev requirement (requirements-dev.txt), so
nothing here skips for want of it.

The test's head node is its own: its own temp folder, its own ports, its own session (process group); it is
stopped by killing the processes of that session only, never with `ray stop` (which stops every Ray process on
the machine, another user's cluster included). It listens on this machine's network address, not 127.0.0.1."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from kn_core.attribution import AttributionConfig
from kn_core.errors import InputError, KNError
from kn_core.runs import batch as batch_module
from kn_core.runs.batch import run_batch
from kn_core.runs.executors import PACKAGE, check
from kn_core.runs.store import ResultStore

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this interpreter's Ray
CONFIG = AttributionConfig(steps=2)
BATCH = ["batch", "--model", "demo-mlm", "--langs", "en", "--relations", "P36", "--max-facts", "2",
         "--steps", str(CONFIG.steps), "--threads", "1", "--no-progress"]
PROMPTS = 10  # 2 facts × 5 English templates


def kn_core(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kn_core", *args], env=ENV, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def processes() -> dict[int, tuple[int, int, bytes]]:
    """pid → (parent pid, session id, command line) of every process on this machine that can be read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        found[int(entry.name)] = (int(fields[1]), int(fields[3]), command)
    return found


def own_pids(leader: int) -> list[int]:
    """The processes of the session that ``leader`` started, and every descendant of them (a process that left
    the session stays counted through its parent)."""
    table = processes()
    mine = {pid for pid, (_, session, _) in table.items() if session == leader} | {leader}
    grew = True
    while grew:
        more = {pid for pid, (parent, _, _) in table.items() if parent in mine} - mine
        mine |= more
        grew = bool(more)
    return sorted(pid for pid in mine if pid in table)


def kill_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def head_node():
    """A two-CPU Ray head node on this machine, its own in every way (temp folder, ports, session), stopped
    afterwards by killing its own processes only. Yields (address, pid of the session leader)."""
    from ray._private.services import get_node_ip_address

    temp = Path(tempfile.mkdtemp(prefix="kn-ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = free_port()
    ports = [arg for flag in ("--node-manager-port", "--object-manager-port",
                              "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
                              "--runtime-env-agent-port") for arg in (flag, str(free_port()))]
    log = temp / "head.log"
    with open(log, "wb") as out:
        head = subprocess.Popen([*RAY, "start", "--head", "--block", "--temp-dir", str(temp), "--port", str(port),
                                 *ports, "--num-cpus", "2", "--object-store-memory", "100000000",
                                 "--include-dashboard=false", "--disable-usage-stats"],
                                env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while b"Ray runtime started" not in log.read_bytes():
            assert head.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no head node after 180 s:\n" + log.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        yield f"{get_node_ip_address()}:{port}", head.pid
    finally:
        pids = own_pids(head.pid)
        kill_all(pids, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while (left := [pid for pid in pids if pid in processes()]) and time.monotonic() < deadline:
            time.sleep(0.5)
        kill_all(left, signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def stored(path: Path) -> dict[str, tuple[float, np.ndarray]]:
    """Result key → (P(object), scores) of every result in the store at ``path``."""
    rows = [row for batch in ResultStore(path).rows(("key", "p_object", "scores")) for row in batch]
    return {row["key"]: (row["p_object"], np.frombuffer(row["scores"], np.float32)) for row in rows}


def test_a_batch_on_a_real_head_node_stores_what_the_local_executor_stores(head_node, tmp_path, one_thread):
    address, _ = head_node
    remote = kn_core(*BATCH, "--executor", "ray", "--address", address, "--store", str(tmp_path / "ray.sqlite"),
                     timeout=400)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert f"demo-mlm: {PROMPTS} computed, 0 already stored, 0 failed" in remote.stdout
    run_batch("demo-mlm", "bundled", ["en"], CONFIG, ResultStore(tmp_path / "local.sqlite"), relations=["P36"],
              max_facts=2, progress=False)
    theirs, mine = stored(tmp_path / "ray.sqlite"), stored(tmp_path / "local.sqlite")
    assert theirs.keys() == mine.keys() and len(mine) == PROMPTS
    for key, (p_object, scores) in mine.items():
        assert theirs[key][0] == pytest.approx(p_object, rel=1e-5)
        np.testing.assert_allclose(theirs[key][1], scores, rtol=1e-4, atol=1e-7)


def actors(leader: int) -> dict[int, bytes]:
    """pid → process title of the batch's Ray actors (``ray::Worker``, ``ray::Worker.compute`` while computing)
    among the head node's own processes."""
    table = processes()
    return {pid: table[pid][2] for pid in own_pids(leader) if table.get(pid, (0, 0, b""))[2].startswith(b"ray::Worker")}


def test_a_worker_killed_mid_batch_keeps_the_others_results_and_the_batch_resumes(head_node, tmp_path, monkeypatch,
                                                                                   one_thread):
    ray = pytest.importorskip("ray")
    address, leader = head_node
    facts, prompts = 4, 20  # 4 facts × 5 English templates, on 2 actors
    batch = dict(relations=["P36"], max_facts=facts, progress=False)
    local = ResultStore(tmp_path / "local.sqlite")
    run_batch("demo-mlm", "bundled", ["en"], CONFIG, local, **batch)
    store = ResultStore(tmp_path / "ray.sqlite")
    killed: list[tuple[int, bytes]] = []
    receive = batch_module._Run.receive

    def receive_then_kill(run, outcome):  # after the second result, SIGKILL an actor (a computing one if any)
        receive(run, outcome)
        if run.report.done == 2 and not killed:
            found = actors(leader)
            assert found, f"no Ray actor among the head node's processes {own_pids(leader)}"
            pid = max(found, key=lambda p: (b"compute" in found[p], p))
            os.kill(pid, signal.SIGKILL)
            killed.append((pid, found[pid]))

    monkeypatch.setattr(batch_module._Run, "receive", receive_then_kill)
    ray.init(address=address, log_to_driver=False, runtime_env={"py_modules": [PACKAGE]})
    try:
        with pytest.raises(KNError, match="a Ray worker failed .*what was computed is stored: run the same command "
                                          "again to resume"):
            run_batch("demo-mlm", "bundled", ["en"], CONFIG, store, executor="ray", **batch)
        assert killed, "the batch ended before an actor could be killed"
        kept = stored(tmp_path / "ray.sqlite")
        assert 2 <= len(kept) < prompts, f"{len(kept)} stored after killing {killed}"
        assert store.claims() == {}  # the killed batch holds nothing back
        monkeypatch.setattr(batch_module._Run, "receive", receive)
        report = run_batch("demo-mlm", "bundled", ["en"], CONFIG, store, executor="ray", **batch)
    finally:
        ray.shutdown()  # leaves the cluster (the fixture stops it)
    assert (report.skipped, report.done, report.failed) == (len(kept), prompts - len(kept), [])
    theirs, mine = stored(tmp_path / "ray.sqlite"), stored(tmp_path / "local.sqlite")
    assert theirs.keys() == mine.keys() and len(mine) == prompts
    for key, (p_object, scores) in mine.items():  # what the surviving worker stored is exact, and so is the rest
        assert theirs[key][0] == pytest.approx(p_object, rel=1e-5)
        np.testing.assert_allclose(theirs[key][1], scores, rtol=1e-4, atol=1e-7)
        if key in kept:
            np.testing.assert_array_equal(kept[key][1], theirs[key][1])


def test_an_address_where_no_cluster_answers_fails_at_once_with_one_line(tmp_path):
    started = time.monotonic()
    result = kn_core(*BATCH, "--executor", "ray", "--address", "127.0.0.1:1", "--ray-timeout", "5",
                     "--store", str(tmp_path / "store.sqlite"), timeout=120)
    took = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: address: no Ray cluster at 127.0.0.1:1") and "--address auto" in lines[0]
    assert took < 90, f"took {took:.0f} s"  # Ray alone retries for minutes; this is interpreter start-up and 5 s
    assert ResultStore(tmp_path / "store.sqlite").info()["results"] == 0


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_a_timeout_that_is_not_a_positive_number_is_refused(timeout):
    with pytest.raises(InputError, match="ray-timeout: must be a positive number"):
        check("ray", "auto", timeout)
