"""Types of the command-line options shared by several commands: argparse calls them on the raw text, and
their errors become the CLI's one ``error: argument --NAME: ...`` line."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from kn_core.attribution import ENGINES
from kn_core.attribution.baselines import BASELINES
from kn_core.attribution.quadrature import RULES
from kn_core.attribution.result import MAX_STEPS, AttributionConfig
from kn_core.data.records import validate_lang
from kn_core.defaults import PAPER_RULE, PAPER_STEPS, PRESETS
from kn_core.errors import InputError
from kn_core.model.loading import check_threads

SEED_MAX = 2**32 - 1  # numpy's and torch's seeds both take this range


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An option type: a whole number from ``low`` (to ``high``)."""
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number {span} (got {ascii(text)[:40]})") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {span} (got {value})")
        return value
    return parse


def threads_option(text: str) -> int:
    """``--threads``: from 1 to the CPUs this process may use."""
    try:
        return check_threads("threads", whole_number(1)(text))
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def lang_option(text: str) -> str:
    """``--lang``: a language code such as en or zh."""
    try:
        return validate_lang("lang", text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def langs_option(text: str) -> tuple[str, ...]:
    """``--langs``: comma-separated language codes, e.g. ``en,zh``."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise argparse.ArgumentTypeError("give at least one language code, e.g. en,zh")
    return tuple(lang_option(name) for name in names)


seed_option = whole_number(0, SEED_MAX)
SEEDS_MAX = 100  # each seed repeats a whole experiment: more would run for days (and a huge N exhausts memory)
seeds_option = whole_number(1, SEEDS_MAX)


def names_option(field_name: str, example: str) -> Callable[[str], tuple[str, ...]]:
    """An option type: comma-separated names (e.g. ``--relations P36,P37``); an empty list is refused (leaving
    the option out is how to ask for all of them)."""
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        if not names:
            raise argparse.ArgumentTypeError(f"give at least one {field_name}, e.g. {example} (leave the option out "
                                             "for all)")
        return names
    return parse


relations_option = names_option("relation id", "P36,P37")


def store_option(text: str) -> Path:
    """``--store``: the store file's path, refused at once when a part of it is too long for a file system."""
    from kn_core.commands.outputs import check_path_name  # outputs imports the store module: only when parsed

    try:
        return check_path_name(text, "store")
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def add_attribution_options(parser: argparse.ArgumentParser, engine: bool = True) -> None:
    """``--preset``, ``--baseline``, ``--steps``, ``--rule`` (and ``--engine``): how the attributions integrate."""
    default = AttributionConfig()
    parser.add_argument("--preset", default=None, choices=list(PRESETS),
                        help=f"numerics in one word: default ({default.rule}, m = {default.steps}: chosen by measured "
                             f"error, bench/bench_quadrature.py) or paper ({PAPER_RULE}, m = {PAPER_STEPS}); "
                             "--rule/--steps set them one by one instead")
    parser.add_argument("--baseline", default=default.baseline, choices=list(BASELINES),
                        help="IG baseline: masked = the paper's (one integral per masked prompt), masked-mean = the "
                             "authors' code (one averaged baseline), zero")
    parser.add_argument("--steps", type=whole_number(1, MAX_STEPS), default=None,
                        help=f"points m of each integral (default {default.steps}; the paper's: {PAPER_STEPS})")
    parser.add_argument("--rule", default=None, choices=list(RULES),
                        help=f"quadrature rule (default {default.rule}; the paper's: {PAPER_RULE}, the authors' "
                             "code's: riemann-left)")
    if engine:
        parser.add_argument("--engine", default=default.engine, choices=sorted(ENGINES))


def attribution_config(args: argparse.Namespace) -> AttributionConfig:
    """The :class:`AttributionConfig` of the options :func:`add_attribution_options` added: the preset's rule and
    steps (the default preset when none is given), either of which --rule / --steps may replace."""
    rule, steps = PRESETS[getattr(args, "preset", None) or "default"]
    return AttributionConfig(baseline=args.baseline, steps=steps if args.steps is None else args.steps,
                             rule=rule if args.rule is None else args.rule,
                             engine=getattr(args, "engine", AttributionConfig().engine))
