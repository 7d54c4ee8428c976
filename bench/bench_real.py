"""The paper's AMIG on the real models: what one attribution costs, side by side in one run.

For each model (installed with ``python -m kn_core models install NAME``) and one prompt, every layer unless
said otherwise, fast engine unless said otherwise, 1 thread by default:

- ``paper``: the default, ``masked`` (one integral per masked prompt), right Riemann, m = 20;
- ``averaged``: ``masked-mean`` (the authors' single averaged path), right Riemann, m = 20;
- ``paper, Gauss–Legendre m``: the paper's paths integrated with m Gauss–Legendre points, for each m of
  ``--gl-steps`` (the completeness residual against m: ``bench/bench_quadrature.py``);
- ``reference`` vs ``fast`` on the layers of ``--ref-layers`` only (the Captum reference runs the whole model
  for every path point: every layer would take hours on a CPU): the paper's formula, m = 20.

Prints seconds, the ratios, the largest score deviation of fast from reference (same layers) and the peak
resident memory of this process after the fast runs (model, engine and its batches).

    python bench/bench_real.py                                   # smollm2-135m and gemma3-270m (where installed)
    python bench/bench_real.py --models smollm2-135m --ref-layers 0,29
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kn_core.attribution import AttributionConfig, attribute  # noqa: E402
from kn_core.errors import KNError  # noqa: E402
from kn_core.model.loading import load_model  # noqa: E402

TEMPLATE = "The official language of the country called [X] is [Y]."


def timed(lm, prompt, **config) -> tuple[float, object]:
    start = time.perf_counter()
    result = attribute(lm, prompt, AttributionConfig(**config))
    return time.perf_counter() - start, result


def bench(name: str, gl_steps: list[int], ref_layers: str | None) -> dict:
    lm = load_model(name)
    prompt = lm.prompt(TEMPLATE, "France", "French")
    timed(lm, prompt, steps=2, baseline="masked-mean")  # warm-up: kernels, the one-time self-check
    paper, _ = timed(lm, prompt)
    averaged, _ = timed(lm, prompt, baseline="masked-mean")
    legendre = {m: timed(lm, prompt, steps=m, rule="gauss-legendre")[0] for m in gl_steps}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    top = lm.n_layers - 1
    layers = tuple(int(x) for x in ref_layers.split(",")) if ref_layers else (0, top // 2, top)
    fast_sub, fast_result = timed(lm, prompt, layers=layers)
    ref_sub, ref_result = timed(lm, prompt, layers=layers, engine="reference")
    deviation = float(np.abs(fast_result.scores - ref_result.scores).max() / np.abs(ref_result.scores).max())
    return {"model": name, "tokens": len(prompt.input_ids), "paths": len(prompt.context_positions),
            "paper": paper, "averaged": averaged, "legendre": legendre, "layers": layers,
            "fast_sub": fast_sub, "ref_sub": ref_sub, "deviation": deviation, "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--gl-steps", default="4,8", help="comma-separated Gauss–Legendre m values")
    parser.add_argument("--ref-layers", default=None, help="comma-separated layers (default: first, middle, top)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s) on {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; prompt {TEMPLATE!r} with France / French; one run each")
    rows = []
    for name in args.models.split(","):
        try:
            rows.append(bench(name, [int(m) for m in args.gl_steps.split(",")], args.ref_layers))
        except KNError as exc:
            print(f"{name}: skipped ({exc})")
    print("| model | tokens | paths | paper m=20 s | averaged m=20 s | paper / averaged | paper, Gauss–Legendre: s "
          "(× averaged) | layers | reference s | fast s | reference / fast | max deviation | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        legendre = ", ".join(f"m={m}: {s:.1f} ({s / r['averaged']:.2f}x)" for m, s in r["legendre"].items())
        print(f"| {r['model']} | {r['tokens']} | {r['paths']} | {r['paper']:.1f} | {r['averaged']:.1f} | "
              f"{r['paper'] / r['averaged']:.1f}x | {legendre} | {','.join(map(str, r['layers']))} | "
              f"{r['ref_sub']:.1f} | {r['fast_sub']:.1f} | {r['ref_sub'] / r['fast_sub']:.1f}x | "
              f"{r['deviation']:.1e} | {r['rss']:.0f} |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
