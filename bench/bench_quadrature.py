"""Accuracy at speed: the completeness residual of the paper's AMIG against the number of points m, for the
right-Riemann rule (the paper's) and Gauss–Legendre (Captum's default), on a real model.

For each rule and m, one attribution of the prompt (default ``masked`` baseline: one integral per masked
prompt; fast engine, every layer) and, over every path j and layer l whose baseline moves P(object)
measurably (|P(a) − P(b_j)| ≥ 1 % of the largest such gap), the relative residual
|Σ_i Attr_j,l,i − (P(a) − P(b_j))| / |P(a) − P(b_j)|: its median and its 90th percentile, and the seconds
of the attribution. Prints a Markdown table and writes the plot (``--plot``, PNG).

    python bench/bench_quadrature.py                          # SmolLM2-135M, m = 1, 2, 4, 8, 16, 32
    python bench/bench_quadrature.py --model gemma3-270m --steps 2,4,8,20
    python bench/bench_quadrature.py --model demo-clm --steps 2,4 --plot /tmp/q.png   # a quick check
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kn_core.attribution import AttributionConfig, attribute  # noqa: E402
from kn_core.attribution.quadrature import RULES  # noqa: E402
from kn_core.model.loading import load_model  # noqa: E402

TEMPLATE = "The official language of the country called [X] is [Y]."
MEASURABLE = 0.01  # paths whose |P(a) − P(b_j)| is at least this share of the largest gap


def relative_residuals(result) -> np.ndarray:
    """|delta_j,l| / |P(a) − P(b_j,l)| over the paths and layers whose baseline moves P measurably."""
    gaps = np.abs(np.mean(result.token_probs) - result.path_baseline_probs)  # [n_paths, n_layers]
    keep = gaps >= MEASURABLE * gaps.max()
    return np.abs(result.path_deltas)[keep] / gaps[keep]


def measure(lm, prompt, baseline: str, rule: str, steps: int) -> dict:
    start = time.perf_counter()
    result = attribute(lm, prompt, AttributionConfig(baseline=baseline, steps=steps, rule=rule))
    seconds = time.perf_counter() - start
    rel = relative_residuals(result)
    return {"rule": rule, "m": steps, "median": float(np.median(rel)), "p90": float(np.quantile(rel, 0.9)),
            "seconds": seconds, "paths": result.n_paths, "scores": result.scores}


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for rule, color in zip(RULES, ("tab:blue", "tab:green")):
        mine = [r for r in rows if r["rule"] == rule]
        ax.plot([r["m"] for r in mine], [r["median"] for r in mine], "o-", color=color, label=f"{rule}, median")
        ax.plot([r["m"] for r in mine], [r["p90"] for r in mine], "x--", color=color,
                label=f"{rule}, 90th percentile")
    ax.set(xscale="log", yscale="log", xlabel="points per integral m",
           ylabel="|residual| / |P(a) − P(b_j)|", title=title)
    ax.set_xticks(sorted({r["m"] for r in rows}), labels=[str(m) for m in sorted({r["m"] for r in rows})])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--subject", default="France")
    parser.add_argument("--object", default="French")
    parser.add_argument("--baseline", default="masked")
    parser.add_argument("--steps", default="1,2,4,8,16,32", help="comma-separated m values")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", type=Path, default=Path("bench/quadrature.png"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    prompt = lm.prompt(TEMPLATE, args.subject, args.object)
    steps = [int(m) for m in args.steps.split(",")]
    print(f"{args.model}, {TEMPLATE!r} with {args.subject} / {args.object} ({len(prompt.input_ids)} tokens), "
          f"baseline {args.baseline}, fast engine, every layer, {args.threads} thread(s) on {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    rows = [measure(lm, prompt, args.baseline, rule, m) for m in steps for rule in RULES]
    finest = max(steps)
    best = next(r["scores"] for r in rows if r["rule"] == "gauss-legendre" and r["m"] == finest)
    print(f"{rows[0]['paths']} path(s); score deviation: largest |Δ| against Gauss–Legendre m = {finest}, relative to "
          "its largest score")
    print("| rule | m | median relative residual | 90th percentile | score deviation | seconds |")
    print("|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["rule"], r["m"])):
        deviation = float(np.abs(r["scores"] - best).max() / np.abs(best).max())
        print(f"| {r['rule']} | {r['m']} | {r['median']:.2e} | {r['p90']:.2e} | {deviation:.1e} | "
              f"{r['seconds']:.1f} |")
    plot(rows, args.plot, f"{args.model}: completeness residual vs m ({args.baseline})")
    print(f"plot: {args.plot}; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
