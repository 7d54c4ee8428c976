"""Batch throughput: prompts per minute of ``python -m kn_core batch`` on one machine, local executor vs Ray.

What a user running a data set waits for. Per model, each executor runs the same command in a fresh process
with a fresh store: every English prompt (each template: 5 per fact) of the first ``--facts`` facts of relation
``--relation`` (bundled facts), the product's defaults otherwise (the paper's masked baseline, right Riemann
m = 20, fast engine; ``--rule`` / ``--steps`` change the integral):

- ``local``: one process, ``--threads`` torch threads;
- ``ray``: a Ray instance started by the command on this machine, one actor per CPU (Ray gives each actor
  one thread), each loading the model once; Ray's start and the actors' model loads are part of the time.

Prints wall seconds (the whole process: imports, model load, the batch, the store), prompts stored, prompts
per minute, and the largest score difference between the two executors' stored results (the same inputs on
a different number of threads: float rounding only).

    python bench/bench_batch.py                                   # smollm2-135m and gemma3-270m, one fact each
    python bench/bench_batch.py --models gemma3-270m --rule gauss-legendre --steps 4
    python bench/bench_batch.py --quick                           # demo-clm, 2 facts, local only (a smoke test)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kn_core.runs.store import ResultStore  # noqa: E402


def run(model: str, executor: str, facts: int, relation: str, threads: int, integral: list[str], work: Path) -> dict:
    """One whole ``batch`` process on a fresh store: its wall seconds and the stored scores by prompt."""
    store = work / f"{model.replace('/', '_')}-{executor}.sqlite"
    for path in work.glob(store.name + "*"):
        path.unlink()
    argv = [sys.executable, "-m", "kn_core", "batch", "--model", model, "--langs", "en", "--relations", relation,
            "--max-facts", str(facts), "--store", str(store), "--no-progress", "--threads", str(threads),
            "--executor", executor, *integral]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"batch --executor {executor} on {model} failed:\n{done.stderr[-3000:]}")
    scores = {}
    for rows in ResultStore(store).rows(("subject", "object", "template", "scores")):
        for row in rows:
            scores[(row["subject"], row["object"], row["template"])] = np.frombuffer(row["scores"], dtype=np.float32)
    return {"seconds": seconds, "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--facts", type=int, default=1, help="facts of the relation (every English template of each)")
    parser.add_argument("--relation", default="P36")
    parser.add_argument("--rule", default=None, help="quadrature rule (default: the product's, riemann-right)")
    parser.add_argument("--steps", type=int, default=None, help="points per integral (default: the product's, 20)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the local executor")
    parser.add_argument("--executors", default="local,ray")
    parser.add_argument("--quick", action="store_true", help="demo-clm, 2 facts, local only: checks the script")
    args = parser.parse_args()
    if args.quick:
        args.models, args.facts, args.executors, args.threads = "demo-clm", 2, "local", 1
    integral = [*(["--rule", args.rule] if args.rule else []), *(["--steps", str(args.steps)] if args.steps else [])]
    executors = args.executors.split(",")
    if "ray" in executors and importlib.util.find_spec("ray") is None:
        print("ray is not installed (pip install -r requirements-ray.txt): local only")
        executors = [e for e in executors if e != "ray"]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; local: --threads {args.threads}; ray: "
          f"one actor per CPU, one thread each; {args.facts} fact(s) of {args.relation} (en, bundled, every "
          f"template); masked baseline, fast engine, {' '.join(integral) or 'riemann-right m = 20'}; whole processes, "
          f"one run each")
    print("| model | executor | prompts stored | wall s | prompts / min | max score difference to local |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            results = {e: run(model, e, args.facts, args.relation, args.threads, integral, Path(tmp))
                       for e in executors}
            local = results.get("local")
            for executor, r in results.items():
                n = len(r["scores"])
                if local is None or executor == "local":
                    diff = "–"
                else:
                    shared = set(r["scores"]) & set(local["scores"])
                    diff = f"{max(float(np.abs(r['scores'][k] - local['scores'][k]).max()) for k in shared):.1e}" \
                        if shared else "–"
                print(f"| {model} | {executor} | {n} | {r['seconds']:.1f} | {60 * n / r['seconds']:.2f} | {diff} |",
                      flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
