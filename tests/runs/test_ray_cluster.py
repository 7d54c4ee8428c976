"""The ray executor for real, as a user runs it: a head node from `ray start --head`, then `python -m kn_core batch
--executor ray --address auto`; it stores what the local executor stores. An address where no cluster answers
fails fast with one line. Ray is a dev requirement (requirements-dev.txt), so nothing here skips for want of it; the
head-node test skips only where a Ray cluster already runs (it would join that cluster and stop it)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kn_core.attribution import AttributionConfig
from kn_core.errors import InputError
from kn_core.runs.batch import run_batch
from kn_core.runs.executors import check
from kn_core.runs.store import ResultStore

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


def ray_clusters_running() -> list[int]:
    """The pids of Ray's cluster-state servers (one per running head node) on this machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "gcs_server":
                pids.append(int(entry.name))
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
    return pids


@pytest.fixture
def head_node():
    """A one-CPU Ray head node on this machine, stopped afterwards whatever happens. Skipped when a Ray cluster
    already runs here: `--address auto` would join it, and `ray stop` (which stops every Ray process of the
    machine) would take it down."""
    if running := ray_clusters_running():
        pytest.skip(f"a Ray cluster already runs on this machine (gcs_server pid {running[0]}): this test would "
                    "join it and then stop it; run it where no Ray cluster runs")
    try:
        started = subprocess.run([*RAY, "start", "--head", "--num-cpus", "1", "--object-store-memory", "100000000",
                                  "--include-dashboard=false", "--disable-usage-stats"],
                                 env=ENV, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield
    finally:
        subprocess.run([*RAY, "stop", "--force"], env=ENV, capture_output=True, timeout=180)


def stored(path: Path) -> dict[str, tuple[float, np.ndarray]]:
    """Result key → (P(object), scores) of every result in the store at ``path``."""
    rows = [row for batch in ResultStore(path).rows(("key", "p_object", "scores")) for row in batch]
    return {row["key"]: (row["p_object"], np.frombuffer(row["scores"], np.float32)) for row in rows}


def test_a_batch_on_a_real_head_node_stores_what_the_local_executor_stores(head_node, tmp_path, one_thread):
    remote = kn_core(*BATCH, "--executor", "ray", "--address", "auto", "--store", str(tmp_path / "ray.sqlite"),
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
