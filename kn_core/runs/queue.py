"""The work queue: prompts (and fact-check calibrations) waiting for a model's background worker, kept in
the result store's SQLite file so that every session of the app, every app process and every worker of a
model share it, and so that it outlives them (a browser reload, a closed session, a server restart).

One row per piece of work, keyed by its result key's digest: two sessions (or two clicks) that submit the same
prompt submit one row, and it is computed once. A row is ``queued``, ``running`` (a worker claimed it),
``cancelling`` (cancelled while running: the worker stops at its next progress report and stores nothing) or
``failed`` (the reason is kept; :meth:`Queue.retry` queues it again). A stored result leaves the queue, and so
does a cancelled queued row. Rows are taken in order of priority (:data:`PAGE` before :data:`BATCH`: a fact
opened in a page goes before a relation's batch), then pages' work latest first (what the user looks at now
goes before what a page opened earlier asked for: a page submits again each time it runs, which brings its
work forward; within one submission, in order) and batches' work first come, first served.

Who computes what is decided by the store's claims (:meth:`~kn_core.runs.store.ResultStore.claim`), the same
claims the command line's batches take: a worker takes a row only once it holds the row's claim, so a worker
and a ``python -m kn_core batch`` never compute one prompt twice, and a ``running`` row whose worker was killed
(its claim lapses: at once on this host, see :mod:`kn_core.runs.store`) is taken again by the next worker.

The table lives beside the store's own (``CREATE TABLE IF NOT EXISTS``, no schema version of its own): its
rows are transient work, not results, and an older program simply never reads it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from kn_core.attribution.result import AttributionConfig
from kn_core.data.prompts import Prompt
from kn_core.errors import KNError
from kn_core.model.fingerprint import model_fingerprint
from kn_core.runs.queries import CHECKER_KIND, EVALUATION_KIND, DKNSettings, checker_key
from kn_core.runs.store import Claimant, ResultKey, ResultStore

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

PAGE, BATCH = 0, 1  # priorities: lower goes first
# the order rows are taken in: priority, then pages' latest submission first, batches' earliest first
ORDER = f"priority, CASE priority WHEN {PAGE} THEN -submitted ELSE submitted END, rowid"
ATTRIBUTION, FACTCHECK = "attribution", "factcheck"  # kinds of work
SCAN = 32  # rows looked at per query while looking for one this worker may take
TABLE = """CREATE TABLE IF NOT EXISTS queue (
    key TEXT PRIMARY KEY,            -- the result key's digest (a fact-check job: its document key's digest)
    model TEXT NOT NULL, fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,              -- attribution | factcheck
    request TEXT NOT NULL,           -- JSON: what the worker needs (prompt, config, lang, fact id; or the job)
    tag TEXT NOT NULL,               -- who asked, to follow a group (e.g. a relation's batch); '' for a page
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,             -- queued | running | cancelling | failed
    submitted REAL NOT NULL,         -- Unix time
    started REAL, error TEXT
)"""
INDEX = "CREATE INDEX IF NOT EXISTS queue_order ON queue (model, fingerprint, priority, submitted)"
WAITING = ("queued", "running", "cancelling")


def batch_tag(relation: str, config: AttributionConfig) -> str:
    """The tag of a relation's batch rows under ``config``: the app's relation batches and the command line's
    batches tag their rows alike, so the Relation overview follows either."""
    return f"batch {relation} {config.baseline}/{config.steps}/{config.rule}"


@dataclass(frozen=True)
class Request:
    """One prompt to attribute and store; ``fact_id`` names it in a failure record (a bundled fact's id, or
    ``subject → object`` for a custom triple)."""

    prompt: Prompt
    config: AttributionConfig
    lang: str
    fact_id: str = ""


@dataclass(frozen=True)
class FactCheckJob:
    """A relation's fact-check calibration and held-out evaluation (:func:`kn_core.runs.queries.calibrated_checker`
    and :func:`~kn_core.runs.queries.measured_evaluation`), both stored as documents when done."""

    relation: str
    lang: str
    config: AttributionConfig
    dkn: DKNSettings = DKNSettings()


@dataclass(frozen=True)
class JobKey:
    """The key of a fact-check job: its queue and claim key (the store's claims need only a ``digest``) and the
    documents (kind, key) that hold its outcome once it is done."""

    digest: str
    documents: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Entry:
    """A row of the queue as a worker takes it."""

    key: str
    kind: str
    work: Request | FactCheckJob

    def claim_key(self, lm: LanguageModel) -> ResultKey | JobKey:
        """The key the store claims (and, for a prompt, stores the result under)."""
        if isinstance(self.work, Request):
            return ResultKey.of(lm, self.work.prompt, self.work.config, self.work.lang)
        return JobKey(self.key)


@dataclass(frozen=True)
class Standing:
    """Where a group of keys stands: stored, waiting (queued or running), failed (key → reason), and how many
    rows of the same model (others' work) are ahead of the group's last waiting one."""

    total: int
    stored: int
    queued: int
    running: int
    failed: dict[str, str]
    ahead: int = 0

    @property
    def waiting(self) -> int:
        return self.queued + self.running

    @property
    def complete(self) -> bool:
        return self.stored == self.total


def job_key(lm: LanguageModel, job: FactCheckJob) -> JobKey:
    """The queue key of a fact-check job: one per model, relation, language, attribution set-up and DKN search."""
    document = checker_key(lm, job.relation, job.lang, job.config, job.dkn)
    digest = hashlib.sha256(f"{FACTCHECK}|{document}".encode("utf-8")).hexdigest()
    return JobKey(digest, ((CHECKER_KIND, document), (EVALUATION_KIND, document)))


def _encode(work: Request | FactCheckJob) -> tuple[str, str]:
    if isinstance(work, Request):
        payload = {"prompt": asdict(work.prompt), "config": asdict(work.config), "lang": work.lang,
                   "fact_id": work.fact_id}
        return ATTRIBUTION, json.dumps(payload, ensure_ascii=False)
    payload = {"relation": work.relation, "lang": work.lang, "config": asdict(work.config), "dkn": asdict(work.dkn)}
    return FACTCHECK, json.dumps(payload, ensure_ascii=False)


def _tuples(mapping: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()}


def _decode(kind: str, text: str) -> Request | FactCheckJob:
    payload = json.loads(text)
    config = AttributionConfig(**_tuples(payload["config"]))
    if kind == ATTRIBUTION:
        return Request(Prompt(**_tuples(payload["prompt"])), config, payload["lang"], payload.get("fact_id", ""))
    return FactCheckJob(payload["relation"], payload["lang"], config, DKNSettings(**payload["dkn"]))


class Queue:
    """The queue table of ``store``'s file (created on first use); safe to share between threads."""

    def __init__(self, store: ResultStore):
        self.store = store
        with store._write() as conn:
            conn.execute(TABLE)
            conn.execute(INDEX)

    # submitting and following (the app's sessions)
    def submit(self, lm: LanguageModel, requests: Iterable[Request], priority: int = PAGE,
               tag: str = "") -> list[ResultKey]:
        """Queue each request whose result is not stored (one row per prompt, however often it is submitted;
        a page's submission moves a batch's row up to its priority, and revives a running row that was being
        cancelled). Returns every request's key, in order."""
        requests = list(requests)
        keys = [ResultKey.of(lm, r.prompt, r.config, r.lang) for r in requests]
        self._insert(lm, [(key.digest, r) for key, r in zip(keys, requests) if not self.store.has(key)],
                     priority, tag)
        return keys

    def submit_job(self, lm: LanguageModel, job: FactCheckJob, priority: int = PAGE) -> JobKey:
        """Queue a fact-check job (once, as :meth:`submit`)."""
        key = job_key(lm, job)
        self._insert(lm, [(key.digest, job)], priority, "")
        return key

    def _insert(self, lm: LanguageModel, rows: Sequence[tuple[str, Request | FactCheckJob]], priority: int,
                tag: str) -> None:
        if not rows:
            return
        fingerprint = model_fingerprint(lm)
        with self.store._write() as conn:
            latest = conn.execute("SELECT max(submitted) AS t FROM queue").fetchone()["t"] or 0.0
            now = max(time.time(), latest + 1e-6)  # every submission later than the one before: a strict order
            for digest, work in rows:
                kind, payload = _encode(work)
                conn.execute(
                    "INSERT INTO queue (key, model, fingerprint, kind, request, tag, priority, state, submitted) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?) ON CONFLICT (key) DO UPDATE SET "
                    "submitted = CASE WHEN excluded.priority = ? THEN excluded.submitted ELSE submitted END, "
                    "priority = min(priority, excluded.priority), "
                    "state = CASE state WHEN 'cancelling' THEN 'running' ELSE state END",
                    (digest, lm.name, fingerprint, kind, payload, tag, priority, now, PAGE))

    def standing(self, lm: LanguageModel, keys: Sequence[ResultKey | JobKey]) -> Standing:
        """Where ``keys`` stand (a job counts as stored once its documents are)."""
        rows = self._rows([key.digest for key in keys])
        stored = sum(1 for key in keys if key.digest not in rows and self._stored(key))
        states = [row["state"] for row in rows.values()]
        failed = {digest: row["error"] or "" for digest, row in rows.items() if row["state"] == "failed"}
        waiting = [row for row in rows.values() if row["state"] in WAITING]
        ahead = 0
        if waiting:  # every waiting row up to the group's last one (in ORDER), less the group's own
            priority = max(row["priority"] for row in waiting)
            times = [row["submitted"] for row in waiting if row["priority"] == priority]
            submitted, earlier = (min(times), ">=") if priority == PAGE else (max(times), "<=")
            before = self.store._query(
                "SELECT count(*) AS n FROM queue WHERE model = ? AND fingerprint = ? AND state IN "
                f"('queued', 'running', 'cancelling') AND (state != 'queued' OR priority < ? OR "
                f"(priority = ? AND submitted {earlier} ?))",  # a running row is ahead, whenever it was queued
                (lm.name, model_fingerprint(lm), priority, priority, submitted))[0]["n"]
            ahead = max(0, before - len(waiting))
        return Standing(total=len(keys), stored=stored, queued=states.count("queued"),
                        running=states.count("running") + states.count("cancelling"), failed=failed, ahead=ahead)

    def _stored(self, key: ResultKey | JobKey) -> bool:
        if isinstance(key, JobKey):
            return all(self.store.get_json(kind, document) is not None for kind, document in key.documents)
        return self.store.has(key)

    def tagged(self, lm: LanguageModel, tag: str) -> int:
        """How many rows of ``tag`` still wait (queued or running) for this model."""
        return self.store._query("SELECT count(*) AS n FROM queue WHERE model = ? AND fingerprint = ? AND tag = ? "
                                 "AND state IN ('queued', 'running')", (lm.name, model_fingerprint(lm), tag))[0]["n"]

    def present(self, keys: Sequence[ResultKey | JobKey]) -> set[str]:
        """The digests of ``keys`` that have a row (in any state)."""
        return set(self._rows([key.digest for key in keys]))

    def settle(self, key: ResultKey, reason: str | None = None) -> None:
        """A command-line batch computed ``key`` itself: stored (``reason`` None), its row leaves the queue;
        failed, its row fails with ``reason`` (the app shows it, with Try again)."""
        if reason is None:
            self._drop(key.digest)
        else:
            self._failed(key.digest, reason)

    def withdraw(self, keys: Iterable[ResultKey]) -> None:
        """Drop the rows of ``keys`` that still wait at batch priority (a page that asked for one since moved
        it up to its own priority: it stays)."""
        with self.store._write() as conn:
            for key in keys:
                conn.execute("DELETE FROM queue WHERE key = ? AND state = 'queued' AND priority = ?",
                             (key.digest, BATCH))

    def cancel(self, keys: Iterable[ResultKey | JobKey]) -> None:
        """Drop the queued (and failed) rows of ``keys``; mark running ones to stop at their next progress report."""
        digests = [key.digest for key in keys]
        with self.store._write() as conn:
            for digest in digests:
                conn.execute("DELETE FROM queue WHERE key = ? AND state IN ('queued', 'failed')", (digest,))
                conn.execute("UPDATE queue SET state = 'cancelling' WHERE key = ? AND state = 'running'", (digest,))

    def retry(self, keys: Iterable[ResultKey | JobKey]) -> None:
        """Queue the failed rows of ``keys`` again."""
        with self.store._write() as conn:
            for key in keys:
                conn.execute("UPDATE queue SET state = 'queued', error = NULL WHERE key = ? AND state = 'failed'",
                             (key.digest,))

    def _rows(self, digests: Sequence[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for start in range(0, len(digests), 500):  # SQLite's bound-parameter limit
            chunk = digests[start:start + 500]
            marks = ", ".join("?" for _ in chunk)
            for row in self.store._query(f"SELECT key, state, error, priority, submitted FROM queue "
                                         f"WHERE key IN ({marks})", tuple(chunk)):
                found[row["key"]] = dict(row)
        return found

    # taking and settling (the workers)
    def take(self, lm: LanguageModel, claimant: Claimant) -> Entry | None:
        """The next row of ``lm`` this worker may compute, claimed and marked running; None when there is none.
        On the way: a row whose result is stored meanwhile leaves the queue; one another worker or batch holds
        is left to it; a ``cancelling`` row whose worker is gone is dropped; a ``running`` one is taken over."""
        fingerprint, seen = model_fingerprint(lm), 0
        while True:
            rows = self.store._query(
                "SELECT key, kind, request, state FROM queue WHERE model = ? AND fingerprint = ? AND state IN "
                f"('queued', 'running', 'cancelling') ORDER BY {ORDER} LIMIT ? OFFSET ?",
                (lm.name, fingerprint, SCAN, seen))
            if not rows:
                return None
            seen += len(rows)
            for row in rows:
                try:
                    entry = Entry(row["key"], row["kind"], _decode(row["kind"], row["request"]))
                except (ValueError, TypeError, KeyError, KNError) as exc:  # another version's row, or a damaged one
                    self._unreadable(row["key"], exc)
                    continue
                key = entry.claim_key(lm)
                if isinstance(key, ResultKey) and self.store.has(key):
                    self.finish(entry)
                    continue
                state = self.store.claim(key, claimant)
                if state == "stored":
                    self.finish(entry)
                elif state == "claimed":
                    if self._start(entry):
                        return entry
                    self.store.release(key, claimant)

    def _start(self, entry: Entry) -> bool:
        """Mark a claimed row running; False (and it leaves the queue) when it was being cancelled, or is gone."""
        with self.store._write() as conn:
            row = conn.execute("SELECT state FROM queue WHERE key = ?", (entry.key,)).fetchone()
            if row is None or row["state"] == "cancelling":
                conn.execute("DELETE FROM queue WHERE key = ?", (entry.key,))
                return False
            conn.execute("UPDATE queue SET state = 'running', started = ? WHERE key = ?", (time.time(), entry.key))
        return True

    def cancelled(self, entry: Entry) -> bool:
        """Whether a running row was cancelled (or removed) since it was taken."""
        rows = self.store._query("SELECT state FROM queue WHERE key = ?", (entry.key,))
        return not rows or rows[0]["state"] == "cancelling"

    def finish(self, entry: Entry) -> None:
        """The row is done (stored) or dropped (cancelled): it leaves the queue."""
        self._drop(entry.key)

    def _drop(self, key: str) -> None:
        with self.store._write() as conn:
            conn.execute("DELETE FROM queue WHERE key = ?", (key,))

    def _unreadable(self, key: str, exc: Exception) -> None:
        """A row this version cannot read (written by a newer version, or damaged) fails with the reason, so the
        worker goes on with the rest of the queue; resubmitting it from this version queues it afresh."""
        reason = (f"this queue entry cannot be read by this version of KN Explorer ({type(exc).__name__}: {exc}); "
                  "it was written by another version or is damaged: open or submit it again")
        log.warning("%s", reason)
        self._failed(key, reason)

    def fail(self, entry: Entry, reason: str) -> None:
        self._failed(entry.key, reason)

    def _failed(self, key: str, reason: str) -> None:
        with self.store._write() as conn:
            conn.execute("UPDATE queue SET state = 'failed', error = ? WHERE key = ?", (reason, key))

    def requeue(self, entry: Entry) -> None:
        """Put a running row back (its worker is stopping); a cancelled one leaves the queue instead."""
        with self.store._write() as conn:
            conn.execute("DELETE FROM queue WHERE key = ? AND state = 'cancelling'", (entry.key,))
            conn.execute("UPDATE queue SET state = 'queued', started = NULL WHERE key = ?", (entry.key,))
