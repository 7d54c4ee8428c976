"""The background worker of a loaded model: it computes the queue's work (:mod:`kn_core.runs.queue`) one piece at
a time, in a daemon thread, and stores each result as it finishes.

The app keeps one per loaded model in its server process, shared by all sessions (they only submit and
watch); nothing here knows Streamlit. A worker
- takes the next row of its model that it can claim (:meth:`~kn_core.runs.queue.Queue.take`): the store's
  claims keep it from computing what another worker or a command-line batch computes, and hand it the rows of
  a worker that was killed;
- computes a prompt holding the model's lock (others sharing the model, e.g. a page's edit effect, take
  turns with it per prompt, as with the local batch executor: whoever waits for the model when a prompt is
  done goes before the next one, :class:`~kn_core.model.turns.Turns`), stores it through the store and clears
  an earlier failure of the prompt;
- records a prompt that raises as that prompt's failure (in the queue, with the reason, and in the store's
  failures as a batch does) and goes on with the next;
- stops a running prompt at its next progress report when it is cancelled (nothing is stored) or when the
  worker is stopped (the row goes back to the queue for the next worker);
- renews its claim while a long piece of work runs, and measures its pace (seconds per prompt, per attribution
  set-up) for the pages' estimates of the time left;
- runs below the pages' CPU priority (Linux: its thread, and the torch threads it starts, :data:`NICE` levels
  down), so that a page drawn while it computes, and the browser showing it, go first.
Any other error (the store locked for longer than its timeout, a full disk) is logged and the worker tries
again after a pause: the thread never ends before it is stopped.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from kn_core.attribution import AttributionConfig
from kn_core.data import FactSet, load_bundled
from kn_core.errors import KNError, StoreError
from kn_core.model.fingerprint import model_fingerprint
from kn_core.runs import cached, queries
from kn_core.runs.priority import yield_to_pages
from kn_core.runs.queue import Entry, FactCheckJob, JobKey, Queue, Request
from kn_core.runs.store import Claimant, Failure, ResultKey, ResultStore

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)
POLL_S = 0.5  # how often an idle worker looks at the queue (a submission in this process wakes it at once)
CHECK_S = 0.25  # how often a running piece of work looks for a cancel or a stop
RENEW_S = 60.0  # how often its claim is renewed (claims lapse after CLAIM_TTL_S)
PACE_WEIGHT = 0.5  # weight of the latest prompt in the running mean of the pace
NICE = 10  # the worker's threads run this many nice levels below the process's others (Linux)
YIELD_S = 30.0  # before each prompt, the worker lets waiting pages and measurements go first, for at most this long
CALIBRATION_SHARE = 0.8  # of a fact-check job's progress: the calibration; the rest, the held-out evaluation


class _Cancelled(Exception):
    """Raised from a progress report: the running row was cancelled."""


class _Stopping(Exception):
    """Raised from a progress report: the worker is stopping."""


@dataclass(frozen=True)
class Running:
    """The piece of work a worker is computing: its queue key, since when (monotonic s) and the share done."""

    key: str
    started: float
    fraction: float = 0.0


def _setup(config: AttributionConfig) -> tuple:
    return config.baseline, config.steps, config.rule, config.layers


class Worker:
    """Computes the queue's rows of ``lm`` into ``store`` in a daemon thread (:meth:`start`, :meth:`stop`).
    ``facts`` gives the fact set of fact-check jobs (the bundled one)."""

    def __init__(self, lm: LanguageModel, store: ResultStore, facts: Callable[[], FactSet] = load_bundled,
                 poll_s: float = POLL_S):
        self.lm, self.store, self.facts, self.poll_s = lm, store, facts, poll_s
        self.queue = Queue(store)
        self._stop, self._wake = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._pace: dict[tuple, float] = {}
        self._running: Running | None = None

    # control
    def start(self) -> "Worker":
        self._thread = threading.Thread(target=self._loop, name=f"kn worker {self.lm.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: float | None = None) -> None:
        """Stop after the running piece of work's next progress report (it goes back to the queue); wait up to
        ``wait`` seconds for the thread to end (None: do not wait)."""
        self._stop.set()
        self._wake.set()
        if wait is not None and self._thread is not None:
            self._thread.join(wait)

    def wake(self) -> None:
        """Look at the queue now (after a submission)."""
        self._wake.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    # what the pages show
    def running(self) -> Running | None:
        return self._running

    def pace(self, config: AttributionConfig) -> float | None:
        """Seconds per prompt under ``config``'s set-up as measured here (a running mean), else from the running
        prompt's progress so far; None before there is any basis."""
        measured = self._pace.get(_setup(config))
        if measured is not None:
            return measured
        running = self._running
        if running is not None and running.fraction >= 0.05:
            return (time.monotonic() - running.started) / running.fraction
        return None

    # the thread
    def _loop(self) -> None:
        claimant = Claimant.this_process()
        yield_to_pages(NICE)  # before its first torch call: the threads torch starts for it inherit the priority
        log.info("worker of %s started", self.lm.name)
        try:
            while not self._stop.is_set():
                try:
                    entry = self.queue.take(self.lm, claimant)
                    if entry is not None:
                        self._run(entry, claimant)
                        continue
                except Exception:  # never end the thread: the store may be locked for a while, a disk full
                    log.exception("the worker of %s failed; trying again in %.1f s", self.lm.name, self.poll_s)
                self._wake.wait(self.poll_s)
                self._wake.clear()
        finally:
            try:
                self.store.release_all(claimant)
            except StoreError as exc:  # its claims lapse anyway once this process is gone
                log.warning("worker of %s: could not release its claims: %s", self.lm.name, exc)
            log.info("worker of %s stopped", self.lm.name)

    def _run(self, entry: Entry, claimant: Claimant) -> None:
        key = entry.claim_key(self.lm)
        started = time.monotonic()
        self._running = Running(entry.key, started)
        report = _Reporter(self, entry, key, claimant)
        try:
            self._work(entry, key, report)
        except _Cancelled:
            log.info("%s: cancelled %s", self.lm.name, entry.key[:12])
            self.queue.finish(entry)
        except _Stopping:
            self.queue.requeue(entry)
        except KNError as exc:
            self._failed(entry, str(exc))
        except Exception as exc:  # one prompt's failure is recorded, the queue goes on
            log.exception("%s: %s failed", self.lm.name, entry.key[:12])
            self._failed(entry, f"{type(exc).__name__}: {exc}")
        else:
            self.queue.finish(entry)
            seconds = time.monotonic() - started
            log.info("%s: computed %s in %.1f s", self.lm.name, entry.key[:12], seconds)
            if isinstance(entry.work, Request):
                self._measured(entry.work.config, seconds)
        finally:
            self._running = None
            self.store.release(key, claimant)

    def _work(self, entry: Entry, key: ResultKey | JobKey, report: Callable[[float], None]) -> None:
        work = entry.work
        if isinstance(work, Request):
            self.lm.turns.after_others(YIELD_S)  # a page or measurement waiting for the model goes first
            with self.lm.lock:
                result = cached.compute(self.lm, work.prompt, work.config, work.lang, report)
            if not math.isfinite(result.p_object):
                raise KNError("P(object) is not a finite number (NaN or infinite): the model's outputs are not "
                              "usable for this prompt; check the model's weights")
            assert isinstance(key, ResultKey)  # a prompt's claim key is its result key (Entry.claim_key)
            self.store.put(key, result)
            self.store.clear_failure(self._failure(work))
            return
        assert isinstance(work, FactCheckJob)
        facts, share = self.facts(), CALIBRATION_SHARE
        checker = queries.calibrated_checker(self.store, self.lm, facts, work.relation, work.lang, work.config,
                                             work.dkn, progress=lambda f: report(share * f))
        queries.measured_evaluation(self.store, self.lm, facts, checker, work.relation, work.lang, work.config,
                                    work.dkn, progress=lambda f: report(share + (1 - share) * f))

    def _failure(self, work: Request, reason: str = "") -> Failure:
        prompt, config = work.prompt, work.config
        return Failure(self.lm.name, model_fingerprint(self.lm), work.fact_id or f"{prompt.subject} → {prompt.object}",
                       work.lang, prompt.template, config.baseline, config.steps, config.rule, reason)

    def _failed(self, entry: Entry, reason: str) -> None:
        log.info("%s: %s failed: %s", self.lm.name, entry.key[:12], reason)
        self.queue.fail(entry, reason)
        if isinstance(entry.work, Request):  # as a batch records it (`store info` lists it)
            self.store.record_failure(self._failure(entry.work, reason))

    def _measured(self, config: AttributionConfig, seconds: float) -> None:
        setup = _setup(config)
        previous = self._pace.get(setup)
        self._pace[setup] = seconds if previous is None else PACE_WEIGHT * seconds + (1 - PACE_WEIGHT) * previous


class _Reporter:
    """The progress callback of one piece of work: it records the share done and, at most every
    :data:`CHECK_S`, raises to stop the work when it was cancelled or the worker is stopping; it renews the
    claim every :data:`RENEW_S`."""

    def __init__(self, worker: Worker, entry: Entry, key: ResultKey | JobKey, claimant: Claimant):
        self.worker, self.entry, self.key, self.claimant = worker, entry, key, claimant
        self.checked = self.renewed = time.monotonic()

    def __call__(self, fraction: float) -> None:
        worker = self.worker
        if worker._running is not None:
            worker._running = replace(worker._running, fraction=min(1.0, max(0.0, fraction)))
        now = time.monotonic()
        if now - self.checked >= CHECK_S:
            self.checked = now
            if worker._stop.is_set():
                raise _Stopping
            if worker.queue.cancelled(self.entry):
                raise _Cancelled
        if now - self.renewed >= RENEW_S:
            self.renewed = now
            worker.store.claim(self.key, self.claimant)
