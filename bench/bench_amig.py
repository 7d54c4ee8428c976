"""Benchmark of a full AMIG attribution (every layer, m = 20 steps): the reference engine against the fast one.

Builds random-weight models of the real sizes (bert-base, gpt2; nothing is downloaded), attributes the same
14-token prompt with the reference engine, the fast engine on torch's default matmul kernel and the fast
engine as shipped (its default kernel, ``$KN_EXPLORER_MATMUL``: auto, oneDNN at these sizes), alternating
them after a warm-up, and prints per model: seconds per prompt (median), the speed-ups, the FLOP floor (the
floating-point operations the fast path performs, counted by torch's FLOP counter, forward and backward,
divided by this machine's best measured fp32 matmul rate over both kernels), the peak resident memory of a
fast-only run in a fresh process, and the largest deviation of the fast engine's scores from the reference's.

    python bench/bench_amig.py            # full run, a few minutes on 2 cores
    python bench/bench_amig.py --quick    # tiny models, seconds (a smoke test)
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kn_core.model.adapters import adapter_for  # noqa: E402
from kn_core.attribution import AttributionConfig, attribute, kernels  # noqa: E402
from kn_core.model.loading import LanguageModel  # noqa: E402
from kn_core.data.prompts import Prompt  # noqa: E402

# "[CLS] The official language of the United Republic of Tanzania is [MASK] . [SEP]" (bert-base-cased ids)
BERT_IDS = (101, 1109, 2078, 1846, 1104, 1103, 1244, 2250, 1104, 11866, 1110, 103, 119, 102)
# "The official language of the United Republic of Tanzania, in East Africa, is" (gpt2 ids)
GPT2_IDS = (464, 1743, 3303, 286, 262, 1578, 2066, 286, 46141, 11, 287, 3687, 5478, 318)
MASK_ID, EOS_ID = 103, 50256
TINY = {"hidden": 64, "layers": 2, "heads": 4, "d_ff": 256}


def build(name: str, quick: bool) -> tuple[LanguageModel, Prompt]:
    """A random-weight model (real sizes, or tiny ones with ``quick``) and its 14-token prompt."""
    torch.manual_seed(0)
    if name == "bert":
        config = BertConfig() if not quick else BertConfig(
            hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"],
            intermediate_size=TINY["d_ff"])
        model = BertForMaskedLM(config)
        target = BERT_IDS.index(MASK_ID)
        prompt = Prompt("The official language of [X] is [Y] .", "the United Republic of Tanzania", "Swahili",
                        BERT_IDS, (target,), (24632,), tuple(j for j in range(1, 13) if j != target))
    else:
        config = GPT2Config() if not quick else GPT2Config(n_embd=TINY["hidden"], n_layer=TINY["layers"],
                                                           n_head=TINY["heads"], n_inner=TINY["d_ff"])
        model = GPT2LMHeadModel(config)
        prompt = Prompt("The official language of [X], in East Africa, is [Y]", "the United Republic of Tanzania",
                        "Swahili", GPT2_IDS, (len(GPT2_IDS) - 1,), (2451,), tuple(range(len(GPT2_IDS))))
    model.eval().requires_grad_(False)
    tokenizer = SimpleNamespace(mask_token_id=MASK_ID, eos_token_id=EOS_ID)  # all the baseline needs
    return LanguageModel(name, model, tokenizer, adapter_for(config.model_type)), prompt


def matmul_rates(quick: bool) -> dict[str, float]:
    """Best fp32 matmul rate of this machine per kernel, FLOP/s, over a few shapes like the workload's:
    torch's default (``a @ b``) and, where it works, oneDNN's (the fast engine's :mod:`kernels`)."""
    shapes = [(256, 256, 256)] if quick else [(2048, 2048, 2048), (1176, 768, 3072), (1176, 3072, 768)]
    kernel_names = ["torch"] + (["onednn"] if kernels.onednn_works() else [])
    rates = dict.fromkeys(kernel_names, 0.0)
    for m, k, n in shapes:
        a, weight = torch.randn(m, k), torch.randn(n, k)  # a linear layer's weight: [out, in]
        for name in kernel_names:
            product = ((lambda: a @ weight.t()) if name == "torch"
                       else (lambda: kernels.OneDNNLinear.apply(a, weight, None)))
            product()
            for _ in range(5):
                start = time.perf_counter()
                product()
                rates[name] = max(rates[name], 2 * m * k * n / (time.perf_counter() - start))
    return rates


# run: (engine, $KN_EXPLORER_MATMUL for the whole attribution; None: as the caller's environment has it)
RUNS = {"reference": ("reference", "torch"), "fast, torch matmul": ("fast", "torch"), "fast": ("fast", None)}


def timed(lm, prompt, engine: str, kernel: str | None):
    """Seconds of one attribution by ``engine`` with ``$KN_EXPLORER_MATMUL`` set to ``kernel``, and its result."""
    with environment(kernel):
        start = time.perf_counter()
        result = attribute(lm, prompt, AttributionConfig(engine=engine))
        return time.perf_counter() - start, result


def deviation(scores: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(scores - reference).max() / np.abs(reference).max())


@contextlib.contextmanager
def environment(kernel: str | None):
    """``$KN_EXPLORER_MATMUL`` set to ``kernel`` (None: as the caller's environment has it) for the block."""
    before = os.environ.get(kernels.VARIABLE)
    if kernel is not None:
        os.environ[kernels.VARIABLE] = kernel
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(kernels.VARIABLE, None)
        else:
            os.environ[kernels.VARIABLE] = before


def fast_flops(lm, prompt) -> int:
    """Floating-point operations of one fast attribution (matmuls and attention, forward and backward),
    counted on torch's kernel (the counter does not know oneDNN's op; the operations are the same)."""
    with environment("torch"), FlopCounterMode(display=False) as counter:
        attribute(lm, prompt, AttributionConfig(engine="fast"))
    return counter.get_total_flops()


def peak_rss_mb(name: str, quick: bool) -> float:
    """Peak resident memory of building the model and one fast attribution, in a fresh process."""
    args = [sys.executable, __file__, "--rss-child", name] + (["--quick"] if quick else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def rss_child(name: str, quick: bool) -> None:
    lm, prompt = build(name, quick)
    attribute(lm, prompt, AttributionConfig(engine="fast"))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux reports KiB


def bench(name: str, runs: int, rate: float, quick: bool) -> dict:
    lm, prompt = build(name, quick)
    scores = {run: timed(lm, prompt, *RUNS[run])[1].scores for run in RUNS}  # warm-up
    # each fast run against the reference on the same kernel: then both start from the same clean pass and
    # baseline (a − b cancels for neurons the baseline barely moves, which would amplify a kernel's rounding)
    shipped_reference = timed(lm, prompt, "reference", RUNS["fast"][1])[1].scores
    error = max(deviation(scores["fast, torch matmul"], scores["reference"]),
                deviation(scores["fast"], shipped_reference))
    times: dict[str, list[float]] = {run: [] for run in RUNS}
    for _ in range(runs):  # alternate, so that a busy spell of the machine hits every run alike
        for run in times:
            times[run].append(timed(lm, prompt, *RUNS[run])[0])
    median = {run: statistics.median(values) for run, values in times.items()}
    floor = fast_flops(lm, prompt) / rate
    return {"model": name, "kernel": kernels.resolve(RUNS["fast"][1], lm.model), "tokens": len(prompt.input_ids),
            "ref": median["reference"],
            "fast_torch": median["fast, torch matmul"], "fast": median["fast"],
            "speedup_torch": median["reference"] / median["fast, torch matmul"],
            "speedup": median["reference"] / median["fast"], "floor": floor, "vs_floor": median["fast"] / floor,
            "rss": peak_rss_mb(name, quick), "error": error, "spread": {k: (min(v), max(v)) for k, v in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, one run: checks that the script works")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per engine (default 3, quick 1)")
    parser.add_argument("--models", default="bert,gpt2", help="comma-separated subset of: bert, gpt2")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.quick)
        return
    runs = args.runs or (1 if args.quick else 3)
    rates = matmul_rates(args.quick)
    rate = max(rates.values())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} CPUs; best fp32 matmul "
          + ", ".join(f"{name} {value / 1e9:.0f}" for name, value in rates.items())
          + f" GFLOP/s; $KN_EXPLORER_MATMUL: {kernels.chosen()}; load average {os.getloadavg()[0]:.2f}; "
          f"{'tiny models' if args.quick else 'random weights, real sizes'}; m = 20, every layer; "
          f"median of {runs} run(s) after a warm-up")
    rows = [bench(name, runs, rate, args.quick) for name in args.models.split(",")]
    print("| model | prompt tokens | reference s/prompt | fast, torch matmul s/prompt | speed-up | fast s/prompt "
          "| speed-up | FLOP floor s | fast/floor | peak RSS MB (fast) | max score deviation |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['tokens']} | {r['ref']:.2f} | {r['fast_torch']:.2f} | {r['speedup_torch']:.2f}x | "
              f"{r['fast']:.2f} | {r['speedup']:.2f}x | {r['floor']:.2f} | {r['vs_floor']:.2f} | {r['rss']:.0f} | "
              f"{r['error']:.1e} |")
    print("fast engine's kernel: " + ", ".join(f"{r['model']} {r['kernel']}" for r in rows))
    spread = "; ".join(f"{r['model']} {k} {lo:.2f}-{hi:.2f} s" for r in rows for k, (lo, hi) in r["spread"].items())
    print(f"range of the timed runs: {spread}; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
