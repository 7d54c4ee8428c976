"""Smoke tests of the peer and whole-process benches: their --quick modes run (tiny models, no timing goals).

bench_peers.py needs EleutherAI's knowledge-neurons (`pip install -r bench/requirements.txt`); without it
that test skips and says so.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("knowledge_neurons") is None,
                    reason="knowledge-neurons is not installed (pip install -r bench/requirements.txt)")
def test_bench_peers_quick_runs():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_peers.py"), "--quick"], cwd=REPO,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    assert "| bert | 13 |" in out.stdout and "| gpt2 | 13 |" in out.stdout
    # same points, same integral: their code and ours agree to float rounding
    rows = [line.split("|") for line in out.stdout.splitlines() if line.startswith(("| bert |", "| gpt2 |"))]
    assert all(float(row[-2]) < 1e-4 for row in rows), out.stdout


def test_bench_locate_quick_runs(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_locate.py"), "--quick", "--workdir",
                          str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    assert "| bert |" in out.stdout and "speed-up" in out.stdout
    assert "attribute: engine (fast)" in out.stdout and "heaviest imports" in out.stdout


def test_bench_batch_quick_runs():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_batch.py"), "--quick"], cwd=REPO,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("| demo-clm | local |"))
    assert int(row.split("|")[3]) >= 2, out.stdout  # every template of both facts stored
