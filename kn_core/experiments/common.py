"""What every experiment shares: its settings, its outcome record, fact selection and prompt building."""
from __future__ import annotations

import functools
import logging
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm import tqdm

from kn_core.attribution import Attribution, AttributionConfig, Attributor
from kn_core.data import Fact, FactSet
from kn_core.data.prompts import Prompt
from kn_core.defaults import DKN_T, RULE, STEPS, T_HIGH, T_LOW, TOP_K
from kn_core.errors import InputError
from kn_core.method.dkn import check_settings as check_dkn_settings, check_t
from kn_core.method.metrics import OBJECTIVES
from kn_core.model.loading import LanguageModel, load_model
from kn_core.runs.cached import read_through
from kn_core.runs.store import ResultStore

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """One experiment run, as given on the command line.

    models: model names or folders, run one after the other. data: ``"bundled"`` or a data folder.
    langs: languages to run in (LIKN needs two or more). relations: relation ids (None = all).
    max_facts: facts per relation (None = the experiment's default; 0 = all), a seeded sample — or, with
    ``first_facts``, the relation's first that many (file order: the facts the atlas holds, so a run on them reads
    its attributions; every seed then keeps the same facts).
    max_templates: train templates per fact and language (None = all). steps, baseline, rule: the AMIG set-up.
    seed: fact sampling, the 80/20 split, wrong objects and random controls; seeds: how many seeds the
    experiments that repeat over seeds (``factcheck``, ``likn``) run, ``seed`` … ``seed + seeds − 1``, reporting
    the mean ± sd of every metric across them. top_k, t_low, t_high, max_group:
    the DKN search; t, objective: the fact checker's DKN threshold and λ objective. store: the result store
    file that attributions of true facts are read from and written to (None = compute everything, keep nothing).
    """

    models: tuple[str, ...]
    out: Path
    data: str = "bundled"
    langs: tuple[str, ...] = ("en", "zh")
    relations: tuple[str, ...] | None = None
    max_facts: int | None = None
    max_templates: int | None = None
    steps: int = STEPS
    baseline: str = "masked"
    rule: str = RULE
    seed: int = 0
    seeds: int = 1
    top_k: int = TOP_K
    t_low: float = T_LOW
    t_high: float = T_HIGH
    max_group: int = 2
    t: float = DKN_T
    objective: str = "f1"
    store: Path | None = None
    first_facts: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise InputError("model", "give at least one --model")
        if not self.langs:
            raise InputError("langs", "give at least one language, e.g. --langs en,zh")
        if self.max_facts is not None and self.max_facts < 0:
            raise InputError("max_facts", f"must be ≥ 0 (got {self.max_facts}); 0 means every fact")
        if self.max_templates is not None and self.max_templates < 1:
            raise InputError("max_templates", f"must be ≥ 1 (got {self.max_templates})")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise InputError("seeds", f"must be a whole number ≥ 1 (got {self.seeds!r})")
        check_dkn_settings(self.top_k, self.t_low, self.t_high, self.max_group)
        check_t(self.t)
        if self.objective not in OBJECTIVES:
            raise InputError("objective", f"unknown objective {self.objective!r}; "
                                          f"choose one of {', '.join(OBJECTIVES)}")

    @property
    def seed_list(self) -> tuple[int, ...]:
        """The seeds a repeated experiment runs: ``seed`` … ``seed + seeds − 1``."""
        return tuple(range(self.seed, self.seed + self.seeds))

    def with_seed(self, seed: int) -> "Settings":
        """These settings for one seed of a repeated run."""
        return replace(self, seed=seed, seeds=1)

    @property
    def config(self) -> AttributionConfig:
        return AttributionConfig(baseline=self.baseline, steps=self.steps, rule=self.rule)

    def result_store(self) -> ResultStore | None:
        """The run's result store (one open store per file and process), or None."""
        return None if self.store is None else _open_store(Path(self.store))

    def attribution(self, lm: LanguageModel, prompt: Prompt, lang: str) -> Attribution:
        """The attribution of a true fact's prompt: from the store when given (computed and stored if absent)."""
        return self.attributor()(lm, prompt, self.config, lang)

    def attributor(self) -> Attributor:
        """Read-through attributions over the run's store (plain computation without one)."""
        return read_through(self.result_store())

    def facts_per_relation(self, default: int) -> int | None:
        """The cap on facts per relation: ``max_facts``, else the experiment's default; None means no cap."""
        cap = default if self.max_facts is None else self.max_facts
        return cap or None


@functools.lru_cache(maxsize=4)
def _open_store(path: Path) -> ResultStore:
    return ResultStore(path)


@dataclass(frozen=True)
class Outcome:
    """What an experiment produced.

    headline: the table printed and put first in the report; caption: what its columns mean, printed and put
    under it (empty: none). shown: title -> further summary tables shown in
    the report. tables: name -> tidy table, each written as ``<name>.csv`` (and ``.parquet``). figures:
    name -> figure, written as ``<name>.png``. notes: Markdown paragraphs for the report (how to read the
    results, caveats). files: other files written into the output folder (e.g. stored checkers).
    """

    name: str
    title: str
    headline: pd.DataFrame
    caption: str = ""
    shown: dict[str, pd.DataFrame] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()


def across_seeds(frame: pd.DataFrame, by: Sequence[str], seed: str = "seed") -> pd.DataFrame:
    """Per group of ``by`` (first-seen order): the mean over seeds of every other numeric column under its own
    name, its sample standard deviation as ``<column>_sd`` (NaN with one seed) and ``n_seeds``. NaNs (e.g. a
    metric without a verdict) are left out of the mean and sd."""
    numeric = [c for c in frame.columns if c not in (*by, seed) and pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    rows = []
    for key, group in frame.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n_seeds"] = int(group[seed].nunique()) if seed in group else 1
        for column in numeric:
            values = group[column].astype(float)
            row[column] = float(values.mean())
            row[f"{column}_sd"] = float(values.std(ddof=1)) if values.notna().sum() > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on stderr (silent when stderr is not a terminal)."""
    return iter(tqdm(items, desc=desc, total=total, disable=None, leave=False))


def models(settings: Settings) -> Iterator[LanguageModel]:
    """Load the settings' models one at a time."""
    for name in settings.models:
        log.info("loading %s", name)
        yield load_model(name)


def select_facts(factset: FactSet, settings: Settings, default_cap: int) -> dict[str, tuple[Fact, ...]]:
    """Relation id -> its facts that have labels in every language of the run, capped by a seeded sample (kept
    in file order), or by the first ones with ``settings.first_facts``."""
    missing = [lang for lang in settings.langs if lang not in factset.languages]
    if missing:
        raise InputError("langs", f"the data has no {', '.join(missing)}; its languages are "
                                  f"{', '.join(factset.languages) or 'none'}")
    relations = tuple(factset.relations) if settings.relations is None else settings.relations
    cap = settings.facts_per_relation(default_cap)
    out = {}
    for rid in relations:
        facts = [f for f in factset.facts_of(rid) if all(lang in f.labels for lang in settings.langs)]
        if cap is not None and len(facts) > cap and settings.first_facts:
            facts = facts[:cap]
        elif cap is not None and len(facts) > cap:
            rng = np.random.default_rng([settings.seed, zlib.crc32(rid.encode("utf-8"))])
            facts = [facts[i] for i in sorted(rng.choice(len(facts), size=cap, replace=False))]
        if not facts:
            log.warning("relation %s has no fact in %s; skipped", rid, ", ".join(settings.langs))
            continue
        out[rid] = tuple(facts)
    if not out:
        raise InputError("relations", f"no relation of {', '.join(relations)} has a fact labelled in every one of "
                                      f"{', '.join(settings.langs)}; check --relations and --langs against the data")
    return out


def templates_of(factset: FactSet, relation: str, lang: str, settings: Settings) -> list[str]:
    """The relation's train templates in ``lang``, at most ``max_templates`` of them."""
    templates = [t.text for t in factset.relation(relation).templates_for(lang, heldout=False)]
    return templates[:settings.max_templates] if settings.max_templates else templates


def fact_prompts(lm: LanguageModel, templates: Sequence[str], fact: Fact, lang: str) -> list[Prompt]:
    """The fact's prompts that the model can take (others are logged and skipped, e.g. labels outside the
    vocabulary or a template that does not suit a causal LM)."""
    return list(lm.prompts(templates, fact.subject(lang), fact.object(lang)).prompts)


def unrelated_fact(selection: dict[str, tuple[Fact, ...]], fact: Fact) -> Fact | None:
    """A control fact for ``fact``: the same-position fact of the next relation in the selection, or another
    fact of the same relation when only one relation is selected (None when there is no other fact)."""
    relations = list(selection)
    if len(relations) > 1:
        other = selection[relations[(relations.index(fact.relation) + 1) % len(relations)]]
        return other[selection[fact.relation].index(fact) % len(other)]
    others = [f for f in selection[fact.relation] if f.id != fact.id]
    return others[0] if others else None
