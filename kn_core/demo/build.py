"""Build one demo model: train it (``train``) and write its model card, or only rewrite the card (``card``)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from kn_core.data import FactSet, load_bundled
from kn_core.demo import card
from kn_core.demo.corpus import DEMO_LANGUAGES
from kn_core.demo.train import TrainConfig, train

log = logging.getLogger("kn_core.demo")


def describe(folder: Path, factset: FactSet) -> None:
    """Measure the model in ``folder``, write its card and log the tables."""
    measured = card.write(folder, factset)
    log.info("%s: model card written\n%s\n%s", folder.name, card.accuracy_table(measured.accuracy),
             card.effects_table(measured.effects))


def build(model: str, command: str, out: Path, threads: int, seed: int | None = None,
          steps: int | None = None) -> None:
    """``train`` (then measure and write the card) or ``card`` (measure and write it) for ``model`` in
    ``out/model``, on ``threads`` CPU threads (more threads than free cores slow small models down badly)."""
    torch.set_num_threads(threads)
    factset = load_bundled().only(DEMO_LANGUAGES)
    if command == "train":
        overrides = {"steps": steps} if steps is not None else {}
        if seed is not None:
            overrides["seed"] = seed
        config = TrainConfig.for_model(model, threads=threads, **overrides)
        result = train(config, out / model, factset)
        log.info("%s: trained in %.1f min", model, result.record.seconds / 60)
    describe(out / model, factset)


def build_in_worker(model: str, **settings) -> None:
    """:func:`build` in a fresh worker process (which has no logging set up yet)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build(model, **settings)
