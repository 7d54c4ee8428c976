"""Where oneDNN's matmul pays: a fast attribution on either kernel for random models from demo size up.

For each size (hidden, vocabulary, layers) and both architectures, builds a random-weight model, attributes
one 14-token prompt with the fast engine (m = 20, every layer) on ``KN_EXPLORER_MATMUL=torch`` and on
``onednn`` (alternating, median of the timed runs after a warm-up) and prints milliseconds per prompt, the
ratio and what ``auto`` picks for that model (oneDNN from ``kernels.AUTO_MIN_PARAMETERS`` parameters on).
One thread, as the CLI and the app default to.

    python bench/bench_kernels.py            # about half a minute
    python bench/bench_kernels.py --quick    # two small sizes, one run (a smoke test)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kn_core.model.adapters import adapter_for  # noqa: E402
from kn_core.attribution import AttributionConfig, attribute, kernels  # noqa: E402
from kn_core.model.loading import LanguageModel  # noqa: E402
from kn_core.data.prompts import Prompt  # noqa: E402
from bench_amig import environment  # noqa: E402  (this folder)

IDS = (101, 109, 207, 184, 110, 103, 124, 250, 110, 118, 111, 103, 119, 102)  # 14 tokens, [MASK] = 103 at 11
SIZES = [(128, 1523, 4), (160, 4000, 4), (192, 1523, 4), (192, 8000, 4), (256, 1523, 4), (256, 8000, 6),
         (384, 1523, 4), (512, 30522, 6)]
QUICK = [(64, 500, 2), (128, 1523, 4)]


def build(arch: str, hidden: int, vocab: int, layers: int) -> tuple[LanguageModel, Prompt]:
    torch.manual_seed(0)
    if arch == "bert":
        config = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                            intermediate_size=4 * hidden, vocab_size=vocab)
        model, targets, context = BertForMaskedLM(config), (11,), tuple(j for j in range(1, 13) if j != 11)
    else:
        config = GPT2Config(n_embd=hidden, n_layer=layers, n_head=4, n_inner=4 * hidden, vocab_size=vocab,
                            bos_token_id=0, eos_token_id=0)
        model, targets, context = GPT2LMHeadModel(config), (len(IDS) - 1,), tuple(range(len(IDS)))
    model.eval().requires_grad_(False)
    prompt = Prompt("[X] [Y]", "s", "o", IDS, targets, (200,), context)
    tokenizer = SimpleNamespace(mask_token_id=103, eos_token_id=0)  # all the baseline needs
    return LanguageModel(arch, model, tokenizer, adapter_for(config.model_type)), prompt


def seconds(lm, prompt, kernel: str) -> float:
    with environment(kernel):
        start = time.perf_counter()
        attribute(lm, prompt, AttributionConfig(engine="fast"))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small sizes, one run")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per kernel (default 5, quick 1)")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; fast engine, m = 20, every layer, 14 tokens; median of {runs} "
          f"run(s) after a warm-up; auto picks oneDNN from {kernels.AUTO_MIN_PARAMETERS / 1e6:g}M parameters; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| model | hidden | vocabulary | layers | parameters | torch ms | oneDNN ms | torch / oneDNN | auto |")
    print("|---|---|---|---|---|---|---|---|---|")
    for hidden, vocab, layers in QUICK if args.quick else SIZES:
        for arch in ("bert", "gpt2"):
            lm, prompt = build(arch, hidden, vocab, layers)
            times: dict[str, list[float]] = {"torch": [], "onednn": []}
            for kernel in times:  # warm-up
                seconds(lm, prompt, kernel)
            for _ in range(runs):
                for kernel, values in times.items():
                    values.append(seconds(lm, prompt, kernel))
            median = {kernel: statistics.median(values) for kernel, values in times.items()}
            picked = kernels.resolve("auto", lm.model)
            parameters = sum(p.numel() for p in lm.model.parameters())
            print(f"| {arch} | {hidden} | {vocab} | {layers} | {parameters / 1e6:.1f}M | "
                  f"{median['torch'] * 1e3:.0f} | {median['onednn'] * 1e3:.0f} | "
                  f"{median['torch'] / median['onednn']:.2f} | {picked} |")


if __name__ == "__main__":
    main()
