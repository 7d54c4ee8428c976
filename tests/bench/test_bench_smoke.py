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


def test_bench_quadrature_runs_resumes_and_keeps_an_older_files_rows(tmp_path):
    """The quadrature study on a demo model: rows per (rule, m) against the reference, a rerun computes nothing
    new, and a CSV written before the ``device`` column keeps its rows (rewritten with the column, empty)."""
    import csv

    out = tmp_path / "q.csv"
    old = "model,lang,prompt,rule,m,err,seconds\nsmollm2-135m,en,p,reference,64,0,86.7\n"  # an older header, a row
    out.write_text(old, encoding="utf-8")
    command = [sys.executable, str(REPO / "bench" / "bench_quadrature.py"), "--model", "demo-clm", "--prompts", "1",
               "--steps", "2", "--rules", "gauss-legendre,riemann-left", "--out", str(out)]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["model"], r["rule"], r["m"], r["device"]) for r in rows] == [
        ("smollm2-135m", "reference", "64", ""), ("demo-clm", "reference", "64", "cpu"),
        ("demo-clm", "riemann-left", "2", "cpu"), ("demo-clm", "gauss-legendre", "2", "cpu")]
    assert float(rows[1]["err"]) == 0 and all(float(r["err"]) > 0 for r in rows[2:])
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0 and len(list(csv.DictReader(out.open(encoding="utf-8")))) == 4
