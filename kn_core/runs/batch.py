"""Batch runs: attribute every prompt of a data set on a model and keep the results in the store.

A prompt is one (fact, language, template), over all of the relation's templates (train and held-out).
What the store already holds is skipped, so a killed run resumes where it stopped; a prompt that fails is
recorded in the store with its reason (``store info`` lists them) and the run goes on. The work itself is
done by an executor (:mod:`kn_core.runs.executors`): ``local`` by default, or ``ray``.

Batches sharing a store split the work: each prompt is claimed in the store just before it is computed
(:meth:`~kn_core.runs.store.ResultStore.claim`); a prompt another running batch holds is put aside and
looked at again once this batch has done the rest, until that batch has stored it or given it up (a
killed batch gives up everything at once). Claims are released as results arrive and when the run ends.
A prompt that fails in one batch may be tried again by another that runs at the same time.

A batch works through the app's queue (:mod:`kn_core.runs.queue`), the one its background workers take from:
its prompts are rows there while it runs (at batch priority, tagged by relation: :func:`~kn_core.runs.queue.
batch_tag`), so the app's pages show them waiting, and the worker of an app that has the model loaded shares
the work (the claims keep each prompt computed once). A stored prompt leaves the queue, a failed one stays
there failed with its reason; when the batch ends, however it ends, it withdraws its rows that still wait
unless a page has asked for them meanwhile.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

from tqdm import tqdm

from kn_core.attribution import AttributionConfig
from kn_core.data import FactSet, load_dataset
from kn_core.errors import InputError, KNError
from kn_core.model.fingerprint import model_fingerprint
from kn_core.model.loading import load_model
from kn_core.runs.executors import CONNECT_TIMEOUT_S, EXECUTORS, Job, Outcome, check
from kn_core.runs.store import Claimant, ClaimState, Failure, ResultKey, ResultStore

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel
    from kn_core.runs.queue import Queue

log = logging.getLogger(__name__)
CLAIM_POLL_S = 1.0  # how often a batch looks again at prompts another batch holds


@dataclass(frozen=True)
class Task:
    """One prompt of the batch: a fact in one language under one template."""

    fact_id: str
    lang: str
    template: str
    subject: str
    object: str
    relation: str = ""


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
    if relations is not None and not list(relations):
        raise InputError("relations", "is empty; give at least one relation id, e.g. P36 (or leave it out for "
                                      f"all: {', '.join(facts.relations)})")
    chosen = list(relations) if relations is not None else list(facts.relations)
    selected = [fact for rid in chosen for fact in facts.facts_of(rid)][:max_facts]
    return [Task(fact.id, lang, template.text, fact.subject(lang), fact.object(lang), fact.relation)
            for fact in selected for lang in langs if lang in fact.labels
            for template in facts.relation(fact.relation).templates_for(lang)]


class _Run:
    """The bookkeeping of one batch run: prompts to keys, the store, the report and the progress bar (in facts;
    facts with nothing left to compute count as its starting point)."""

    def __init__(self, lm: LanguageModel, tasks: list[Task], config: AttributionConfig, store: ResultStore,
                 progress: bool):
        self.lm, self.config, self.store = lm, config, store
        self.claimant = Claimant.this_process()
        self.fingerprint = model_fingerprint(lm)
        self.report = BatchReport()
        self.pending: dict[int, tuple[Task, ResultKey]] = {}
        self.jobs: list[Job] = []
        self.remaining = Counter(task.fact_id for task in tasks)
        # imported here, not at the top: the queue imports the store's queries (pandas), and every command's
        # parser imports this module
        from kn_core.runs.queue import Queue
        self.queue: Queue = Queue(store)
        settled = sum(self._prepare(task) for task in tasks)
        self.queued = self._enqueue()
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

    def _enqueue(self) -> list[ResultKey]:
        """Put the prompts to compute in the shared queue (batch priority, a tag per relation); returns the keys
        of the rows this run added (those it withdraws when it ends)."""
        from kn_core.runs.queue import BATCH, Request, batch_tag

        keys = [key for _, key in self.pending.values()]
        before = self.queue.present(keys)
        by_tag: dict[str, list[Request]] = {}
        for job in self.jobs:
            task, _ = self.pending[job.id]
            by_tag.setdefault(batch_tag(task.relation, self.config), []).append(
                Request(job.prompt, self.config, task.lang, task.fact_id))
        for tag, requests in by_tag.items():
            self.queue.submit(self.lm, requests, BATCH, tag)
        return [key for key in keys if key.digest not in before]

    def _failure(self, task: Task, reason: str = "") -> Failure:
        return Failure(self.lm.name, self.fingerprint, task.fact_id, task.lang, task.template,
                       self.config.baseline, self.config.steps, self.config.rule, reason)

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

    def claim(self, job: Job) -> ClaimState:
        """Claim ``job`` in the store; one whose result another batch has stored meanwhile counts as stored."""
        state = self.store.claim(self.pending[job.id][1], self.claimant)
        if state == "stored":
            task, key = self.pending.pop(job.id)
            self.queue.settle(key)
            self.report.skipped += 1
            self.bar.update(int(self._settled(task)))
            self._show()
        return state

    def receive(self, outcome: Outcome) -> None:
        """Store an attribution (clearing an earlier failure of the prompt) or record why it failed; either way
        the prompt's claim is released."""
        task, key = self.pending.pop(outcome.job_id)
        if outcome.attribution is None or not math.isfinite(outcome.attribution.p_object):
            reason = outcome.reason or ("P(object) is not a finite number (NaN or infinite): the model's outputs "
                                        "are not usable for this prompt; check the model's weights")
            fact_done = self._failed(task, reason)
            self.queue.settle(key, reason)
        else:
            self.store.put(key, outcome.attribution)
            self.queue.settle(key)
            self.store.clear_failure(self._failure(task))
            self.report.done += 1
            log.debug("computed %s [%s] %r", task.fact_id, task.lang, task.template)
            fact_done = self._settled(task)
        self.store.release(key, self.claimant)
        self.bar.update(int(fact_done))
        self._show()


class _Claims:
    """The jobs of one round, each claimed as the executor asks for it: a job another running batch holds goes
    to :attr:`deferred`, one it has stored is settled; ``len`` counts them all (the executor sizes itself by it)."""

    def __init__(self, run: _Run, jobs: list[Job]):
        self.run, self.jobs = run, jobs
        self.deferred: list[Job] = []

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[Job]:
        for job in self.jobs:
            state = self.run.claim(job)
            if state == "claimed":
                yield job
            elif state == "busy":
                self.deferred.append(job)


def run_batch(model: str | LanguageModel, data: str | os.PathLike | FactSet, langs: Sequence[str],
              config: AttributionConfig, store: ResultStore, executor: str = "local",
              relations: Sequence[str] | None = None, max_facts: int | None = None, progress: bool = True,
              address: str | None = None, connect_timeout: float = CONNECT_TIMEOUT_S) -> BatchReport:
    """Attribute every prompt of ``data`` (a FactSet, ``"bundled"`` or a folder) in ``langs`` on the model and
    store the results; see the module docstring. ``model`` is a name (loaded here) or a model already loaded
    (the app's: no second copy; the local executor takes the model's lock for each prompt, so other users of
    the same model wait at most one prompt). ``address`` is a Ray cluster's (``executor="ray"``), which must
    answer within ``connect_timeout`` seconds."""
    check(executor, address, connect_timeout)
    facts = data if isinstance(data, FactSet) else load_dataset(data)
    _check_langs(facts, langs)
    tasks = plan(facts, langs, relations, max_facts)
    lm = load_model(model) if isinstance(model, str) else model
    run = _Run(lm, tasks, config, store, progress)
    jobs = run.jobs
    waiting = 0
    try:
        while jobs:
            claims = _Claims(run, jobs)
            for outcome in EXECUTORS[executor](lm, claims, config, address=address):
                run.receive(outcome)
            jobs = claims.deferred
            if jobs and len(jobs) != waiting:  # say so when the wait starts and whenever it shrinks
                log.warning("%s: waiting for %d prompt(s) that another batch on %s is computing (or holds while "
                            "paused); they are stored when it finishes them, or taken over when it stops. Stop "
                            "waiting with Ctrl-C: what was computed is stored", lm.name, len(jobs), store.path)
            waiting = len(jobs)
            if jobs:
                time.sleep(CLAIM_POLL_S)
    finally:
        run.bar.close()
        run.queue.withdraw(run.queued)
        store.release_all(run.claimant)
    log.info("%s: %d computed, %d already stored, %d failed", lm.name, run.report.done, run.report.skipped,
             len(run.report.failed))
    return run.report


def _check_langs(facts: FactSet, langs: Sequence[str]) -> None:
    if not langs:
        raise InputError("langs", "give at least one language, e.g. en,zh")
    unknown = [lang for lang in langs if lang not in facts.languages]
    if unknown:
        raise InputError("langs", f"{', '.join(unknown)} not in the data set; it has {', '.join(facts.languages)}")
