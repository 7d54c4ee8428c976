"""``python -m kn_core.demo train [--model demo-mlm|demo-clm|all] [--steps N] [--out DIR] [--seed S]``.

- ``train`` trains the demo models into ``DIR/<model>`` (default: ``assets/models``), then measures them on
  the bundled fact set and writes each folder's model card (README.md);
- ``card [--model ...] [--out DIR]`` measures already trained models again and rewrites their cards from
  the training record (``training.json``) saved with them.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import torch

from kn_core.demo import card
from kn_core.demo.train import DEFAULT_STEPS, TrainConfig, train
from kn_core.errors import KNError
from kn_core.facts import FactSet, load_bundled
from kn_core.loading import MODELS_DIR

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
    return parser


def describe(folder: Path, factset: FactSet) -> None:
    """Measure the model in ``folder``, write its card and log the tables."""
    measured = card.write(folder, factset)
    log.info("%s: model card written\n%s\n%s", folder.name, card.accuracy_table(measured.accuracy),
             card.effects_table(measured.effects))


def run(args: argparse.Namespace) -> int:
    """Run ``train`` or ``card`` on each requested model; the whole command uses ``--threads`` threads
    (more threads than free cores slow small models down badly)."""
    torch.set_num_threads(args.threads)
    factset = load_bundled()
    for model in list(DEFAULT_STEPS) if args.model == "all" else [args.model]:
        if args.command == "train":
            steps = {} if args.steps is None else {"steps": args.steps}
            config = TrainConfig.for_model(model, seed=args.seed, threads=args.threads, **steps)
            result = train(config, args.out / model, factset)
            log.info("%s: trained in %.1f min", model, result.record.seconds / 60)
        describe(args.out / model, factset)
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
