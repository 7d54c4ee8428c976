"""Batch runs: attribute every prompt of a data set on a model and keep the results in the store.

A prompt is one (fact, language, template), over all of the relation's templates (train and held-out).
What the store already holds is skipped, so a killed run resumes where it stopped; a prompt that fails is
recorded in the store with its reason (``store info`` lists them) and the run goes on. The work itself is
done by an executor (:mod:`kn_core.runs.executors`): ``local`` by default, or ``ray``.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from tqdm import tqdm

from kn_core.attribution import AttributionConfig
from kn_core.data import FactSet, load_dataset
from kn_core.errors import InputError, KNError
from kn_core.model.fingerprint import model_fingerprint
from kn_core.model.loading import load_model
from kn_core.runs.executors import EXECUTORS, Job, Outcome
from kn_core.runs.store import Failure, ResultKey, ResultStore

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One prompt of the batch: a fact in one language under one template."""

    fact_id: str
    lang: str
    template: str
    subject: str
    object: str


@dataclass
class BatchReport:
    """What a run did: prompts computed now, prompts already stored, and failures (fact, lang, template, reason)."""

    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, str, str]] = field(default_factory=list)


def plan(facts: FactSet, langs: Sequence[str], relations: Sequence[str] | None = None,
         max_facts: int | None = None) -> list[Task]:
    """Every prompt of the chosen facts: the first ``max_facts`` facts (file order) of ``relations`` (all when
    None), in each of ``langs`` where the fact has labels, under all of the relation's templates."""
    if max_facts is not None and max_facts < 1:
        raise InputError("max-facts", f"must be at least 1 (got {max_facts})")
    chosen = list(relations) if relations else list(facts.relations)
    selected = [fact for rid in chosen for fact in facts.facts_of(rid)][:max_facts]
    return [Task(fact.id, lang, template.text, fact.subject(lang), fact.object(lang))
            for fact in selected for lang in langs if lang in fact.labels
            for template in facts.relation(fact.relation).templates_for(lang)]


class _Run:
    """The bookkeeping of one batch run: prompts to keys, the store, the report and the progress bar (in facts;
    facts with nothing left to compute count as its starting point)."""

    def __init__(self, lm: LanguageModel, tasks: list[Task], config: AttributionConfig, store: ResultStore,
                 progress: bool):
        self.lm, self.config, self.store = lm, config, store
        self.fingerprint = model_fingerprint(lm)
        self.report = BatchReport()
        self.pending: dict[int, tuple[Task, ResultKey]] = {}
        self.jobs: list[Job] = []
        self.remaining = Counter(task.fact_id for task in tasks)
        settled = sum(self._prepare(task) for task in tasks)
        self.bar = tqdm(total=len(self.remaining), initial=settled, unit="fact", desc=lm.name, disable=not progress,
                        smoothing=0.1, dynamic_ncols=True)
        self._show()

    def _prepare(self, task: Task) -> bool:
        """Skip a stored prompt, record one that cannot be built, queue the rest; True when that settles its fact."""
        try:
            prompt = self.lm.prompt(task.template, task.subject, task.object)
        except KNError as exc:
            return self._failed(task, str(exc))
        key = ResultKey.of(self.lm, prompt, self.config, task.lang)
        if self.store.has(key):
            self.report.skipped += 1
            return self._settled(task)
        job = Job(len(self.jobs), prompt, task.lang)
        self.pending[job.id] = (task, key)
        self.jobs.append(job)
        return False

    def _failure(self, task: Task, reason: str = "") -> Failure:
        return Failure(self.lm.name, self.fingerprint, task.fact_id, task.lang, task.template,
                       self.config.baseline, self.config.steps, reason)

    def _failed(self, task: Task, reason: str) -> bool:
        self.store.record_failure(self._failure(task, reason))
        self.report.failed.append((task.fact_id, task.lang, task.template, reason))
        log.info("failed %s [%s] %r: %s", task.fact_id, task.lang, task.template, reason)
        return self._settled(task)

    def _settled(self, task: Task) -> bool:
        """Count one prompt of ``task``'s fact as settled; True when it was the fact's last."""
        self.remaining[task.fact_id] -= 1
        return self.remaining[task.fact_id] == 0

    def _show(self) -> None:
        self.bar.set_postfix(done=self.report.done, stored=self.report.skipped, failed=len(self.report.failed),
                             refresh=False)

    def receive(self, outcome: Outcome) -> None:
        """Store an attribution (clearing an earlier failure of the prompt) or record why it failed."""
        task, key = self.pending.pop(outcome.job_id)
        if outcome.attribution is None:
            fact_done = self._failed(task, outcome.reason or "unknown error")
        else:
            self.store.put(key, outcome.attribution)
            self.store.clear_failure(self._failure(task))
            self.report.done += 1
            fact_done = self._settled(task)
        self.bar.update(int(fact_done))
        self._show()


def run_batch(model_name: str, data: str | os.PathLike | FactSet, langs: Sequence[str], config: AttributionConfig,
              store: ResultStore, executor: str = "local", relations: Sequence[str] | None = None,
              max_facts: int | None = None, progress: bool = True, address: str | None = None) -> BatchReport:
    """Attribute every prompt of ``data`` (a FactSet, ``"bundled"`` or a folder) in ``langs`` on the model and
    store the results; see the module docstring. ``address`` is a Ray cluster's (``executor="ray"``)."""
    if executor not in EXECUTORS:
        raise InputError("executor", f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    facts = data if isinstance(data, FactSet) else load_dataset(data)
    _check_langs(facts, langs)
    tasks = plan(facts, langs, relations, max_facts)
    lm = load_model(model_name)
    run = _Run(lm, tasks, config, store, progress)
    try:
        for outcome in EXECUTORS[executor](lm, run.jobs, config, address=address):
            run.receive(outcome)
    finally:
        run.bar.close()
    log.info("%s: %d computed, %d already stored, %d failed", lm.name, run.report.done, run.report.skipped,
             len(run.report.failed))
    return run.report


def _check_langs(facts: FactSet, langs: Sequence[str]) -> None:
    if not langs:
        raise InputError("langs", "give at least one language, e.g. en,zh")
    unknown = [lang for lang in langs if lang not in facts.languages]
    if unknown:
        raise InputError("langs", f"{', '.join(unknown)} not in the data set; it has {', '.join(facts.languages)}")
