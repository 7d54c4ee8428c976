"""A relation's batch from the app: :func:`kn_core.runs.batch.run_batch`, the code path of ``python -m kn_core
batch``, run in a background thread of the server so that it survives the page being left; any session that
opens the relation follows its progress (counted from the store) with an estimate of the time left."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import streamlit as st

from kn_core.app.guard import estimate
from kn_core.app.resources import store
from kn_core.attribution import AttributionConfig
from kn_core.data import FactSet
from kn_core.errors import KNError
from kn_core.model.loading import LanguageModel
from kn_core.runs.batch import BatchReport, plan, run_batch
from kn_core.runs.store import ResultKey, ResultStore

log = logging.getLogger(__name__)
POLL_S = 1.0


@dataclass
class BatchJob:
    """A batch running (or finished) in this server process."""

    keys: list[ResultKey]  # the prompts it covers, to count progress in the store
    results: ResultStore
    started: float = field(default_factory=time.monotonic)
    initial: int = 0  # prompts already stored when it started
    thread: threading.Thread | None = None
    report: BatchReport | None = None
    error: str | None = None

    def stored(self) -> int:
        return sum(self.results.has(key) for key in self.keys)


@st.cache_resource(show_spinner=False)
def _jobs() -> tuple[dict[tuple, BatchJob], threading.Lock]:
    return {}, threading.Lock()


def job_id(lm: LanguageModel, relation: str, langs: Sequence[str], config: AttributionConfig,
           max_facts: int | None) -> tuple:
    return lm.name, relation, tuple(langs), config.baseline, config.steps, config.rule, max_facts


def current(lm: LanguageModel, relation: str, langs: Sequence[str], config: AttributionConfig,
            max_facts: int | None) -> BatchJob | None:
    """The batch of these facts that this process runs or ran last, if any."""
    jobs, lock = _jobs()
    with lock:
        return jobs.get(job_id(lm, relation, langs, config, max_facts))


def start(lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str], config: AttributionConfig,
          max_facts: int | None) -> BatchJob:
    """Start the batch of the relation's first ``max_facts`` facts (all when None), unless it is running."""
    jobs, lock = _jobs()
    key = job_id(lm, relation, langs, config, max_facts)
    with lock:
        running = jobs.get(key)
        if running is not None and running.thread is not None and running.thread.is_alive():
            return running
        keys = []
        for task in plan(factset, langs, [relation], max_facts):
            try:
                keys.append(ResultKey.of(lm, lm.prompt(task.template, task.subject, task.object), config, task.lang))
            except KNError:  # the batch records it as a failure
                continue
        job = BatchJob(keys, store())
        job.initial = job.stored()
        job.thread = threading.Thread(target=_run, args=(job, lm, factset, relation, langs, config, max_facts),
                                      name=f"batch {relation}", daemon=True)
        jobs[key] = job
        job.thread.start()
    return job


def _run(job: BatchJob, lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str],
         config: AttributionConfig, max_facts: int | None) -> None:
    try:  # on the page's loaded model: no second copy in memory; sessions take turns with it per prompt
        job.report = run_batch(lm, factset, langs, config, job.results, relations=[relation],
                               max_facts=max_facts, progress=False)
    except KNError as exc:
        job.error = str(exc)
    except Exception as exc:  # the page shows it; the details go to the log
        log.exception("batch of %s failed", relation)
        job.error = f"Something went wrong ({type(exc).__name__}); the details are in the server log"


def follow(job: BatchJob) -> None:
    """A progress bar with the prompts stored so far and the time left, until the batch ends."""
    total = max(1, len(job.keys) - job.initial)
    bar = st.progress(0.0, text="Starting the batch…")
    while job.thread is not None and job.thread.is_alive():
        done = job.stored() - job.initial
        fraction = min(1.0, done / total)
        bar.progress(fraction, text=f"Batch: {done} of {total} prompt(s) computed"
                                    f"{estimate(time.monotonic() - job.started, fraction)}")
        time.sleep(POLL_S)
    bar.empty()
