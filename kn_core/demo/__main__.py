"""``python -m kn_core.demo train [--model demo-mlm|demo-clm|all] [--steps N] [--out DIR] [--seed S] [--jobs J]``.

- ``train`` trains the demo models into ``DIR/<model>`` (default: ``assets/models``), then measures them on
  the bundled fact set and writes each folder's model card (README.md);
- ``card [--model ...] [--out DIR]`` measures already trained models again and rewrites their cards from
  the training record (``training.json``) saved with them.

With ``--model all`` the models are built in ``--jobs`` processes at once (default: one per model, at most one
per CPU core), each on ``--threads`` threads; a model's weights depend only on its config (seed and thread
count included), not on what runs beside it.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

from kn_core.demo.build import build, build_in_worker
from kn_core.demo.train import DEFAULT_STEPS, TrainConfig
from kn_core.errors import InputError, KNError
from kn_core.model.loading import MODELS_DIR

log = logging.getLogger("kn_core.demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kn_core.demo", description="Build the bundled demo models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    trainer = sub.add_parser("train", help="train demo models, measure them and write their model cards")
    cards = sub.add_parser("card", help="measure trained demo models again and rewrite their model cards")
    for p in (trainer, cards):
        p.add_argument("--model", default="all", choices=[*DEFAULT_STEPS, "all"])
        p.add_argument("--out", type=Path, default=MODELS_DIR,
                       help=f"parent folder of the models (default: {MODELS_DIR})")
        p.add_argument("--threads", type=int, default=TrainConfig.threads,
                       help="CPU threads; keep it fixed to reproduce the weights bit for bit")
    trainer.add_argument("--steps", type=int, default=None, help="optimisation steps (default: " +
                         ", ".join(f"{model} {steps}" for model, steps in DEFAULT_STEPS.items()) + ")")
    trainer.add_argument("--seed", type=int, default=TrainConfig.seed)
    for p in (trainer, cards):
        p.add_argument("--jobs", type=int, default=None,
                       help="models built at once, each in its own process (default: one per model, at most "
                            "one per CPU core)")
    return parser


def run(args: argparse.Namespace) -> int:
    models = list(DEFAULT_STEPS) if args.model == "all" else [args.model]
    jobs = args.jobs if args.jobs is not None else min(len(models), max(1, (os.cpu_count() or 1) // args.threads))
    if jobs < 1:
        raise InputError("jobs", "--jobs must be at least 1")
    settings = dict(command=args.command, out=args.out, threads=args.threads, seed=getattr(args, "seed", None),
                    steps=getattr(args, "steps", None))
    if jobs == 1 or len(models) == 1:
        for model in models:
            build(model, **settings)
        return 0
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(build_in_worker, model, **settings) for model in models]:
            future.result()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except KNError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
