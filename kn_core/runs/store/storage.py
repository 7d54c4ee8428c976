"""The result store itself (:class:`ResultStore`): one SQLite file, a connection per thread and process, every write
in its own ``BEGIN IMMEDIATE`` transaction; attributions, JSON documents, batch failures, claims
(:mod:`.claims`), maintenance, and the atlas read beneath the file."""
from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

from kn_core.attribution.result import Attribution
from kn_core.errors import StoreError
from kn_core.runs.atlas import Atlas, ModelAtlas, default_root
from kn_core.runs.store import schema
from kn_core.runs.store.claims import Claims
from kn_core.runs.store.location import BUSY_TIMEOUT_S, _check_location, _explain, default_path, writable
from kn_core.runs.store.records import (METHOD_VERSION, SUMMARY_COLUMNS, Failure, ResultKey, ResultSummary,
                                        _decode_or_explain, _encode, _failure_id, _now)

log = logging.getLogger(__name__)

EXPORT_BATCH = 64


# -- the store ------------------------------------------------------------------------------------
class ResultStore(Claims):
    """Attributions, batch failures and JSON documents in one SQLite file (see :mod:`kn_core.runs.store`).

    Safe to share between threads (each thread gets its own connection) and between processes.
    """

    def __init__(self, path: str | os.PathLike | None = None, atlas: Atlas | None | Literal["default"] = "default",
                 read_only: bool = False):
        """``read_only``: open an existing store for reading only (a store the user may not write, e.g. for
        ``store info`` and ``store export``): nothing is created, upgraded or written, and a write raises
        :class:`StoreError`."""
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.atlas = _default_atlas() if atlas == "default" else atlas
        self.read_only = read_only
        self._local = threading.local()
        _check_location(self.path, read_only)
        with self._guard():
            self._open()

    # connections and transactions
    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            if self.read_only:  # immutable where no writer can exist: no -wal/-shm can be made beside it
                immutable = "" if writable(self.path.parent) else "&immutable=1"
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro{immutable}", uri=True,
                                       timeout=BUSY_TIMEOUT_S, isolation_level=None)
            else:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.row_factory = sqlite3.Row
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front (no deadlock on upgrade)."""
        if self.read_only:
            raise StoreError(f"the store {self.path} was opened read-only; nothing can be written to it")
        with self._guard():
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._guard():
            return self._connection().execute(sql, params).fetchall()

    def _open(self) -> None:
        """Check the file is ours (or new and empty), create the schema on first use, upgrade an older one."""
        conn = self._connection()
        found = schema.identify(conn, self.path)
        if self.read_only:
            if found != "ours":
                raise StoreError(f"the store {self.path} is {'empty' if found == 'new' else 'of an older schema'}; "
                                 "open it once with a command that may write it (e.g. `python -m kn_core store info` "
                                 "with write access) to create or upgrade it")
            return
        if found == "old":
            with self._write() as conn:
                schema.upgrade(conn, self.path)
        elif found == "new":
            schema.create(conn, self.path)

    # attributions
    def get(self, key: ResultKey) -> Attribution | None:
        """The result stored under ``key``: in the file, else in the atlas (None when neither holds it)."""
        rows = self._query("SELECT * FROM results WHERE key = ?", (key.digest,))
        if not rows:
            layer = self._atlas_of(key.digest)
            if layer is None:
                return None
            return _decode_or_explain(layer.store_row(key.digest), key.digest, f"the atlas of {key.model}", key.model)
        return _decode_or_explain(rows[0], key.digest, str(self.path), key.model)

    def has(self, key: ResultKey) -> bool:
        """Whether ``key`` is stored, in the file or the atlas (without reading its arrays)."""
        return (bool(self._query("SELECT 1 FROM results WHERE key = ?", (key.digest,)))
                or self._atlas_of(key.digest) is not None)

    def in_file(self, key: ResultKey) -> bool:
        """Whether ``key`` is stored in the file itself (not only in the atlas)."""
        return bool(self._query("SELECT 1 FROM results WHERE key = ?", (key.digest,)))

    # the atlas layer
    def _atlas_of(self, digest: str) -> ModelAtlas | None:
        return None if self.atlas is None else self.atlas.find(digest)

    def _atlas_models(self, model: str | None) -> list[ModelAtlas]:
        if self.atlas is None:
            return []
        if model is None:
            return self.atlas.active()
        found = self.atlas.model(model)
        return [] if found is None else [found]

    def _file_keys(self, model: str | None) -> set[str]:
        where, params = ("WHERE model = ?", (model,)) if model is not None else ("", ())
        return {row["key"] for row in self._query(f"SELECT key FROM results {where}", params)}

    def put(self, key: ResultKey, attribution: Attribution) -> None:
        """Store ``attribution`` under ``key``; a result already stored under that key is kept as it is."""
        row = _encode(key, attribution)
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._write() as conn:
            conn.execute(f"INSERT INTO results ({columns}) VALUES ({marks}) ON CONFLICT (key) DO NOTHING",
                         tuple(row.values()))

    def results(self, model: str | None = None) -> list[ResultSummary]:
        """What is stored (of ``model``, or all), oldest first; then what the atlas adds."""
        where, params = ("WHERE model = ?", (model,)) if model is not None else ("", ())
        rows = self._query(f"SELECT {SUMMARY_COLUMNS} FROM results {where} ORDER BY created, rowid", params)
        found = [ResultSummary(**dict(row)) for row in rows]
        layers = self._atlas_models(model)
        if layers:
            seen = {row.key for row in found}
            fields = SUMMARY_COLUMNS.split(", ")
            found += [ResultSummary(**{f: layer.rows[key][f] for f in fields})
                      for layer in layers for key in layer.rows if key not in seen]
        return found

    # JSON documents (derived neuron sets, calibrations, ...)
    def put_json(self, kind: str, key: str, payload: dict) -> None:
        """Store ``payload`` under (kind, key), replacing what was there."""
        text = json.dumps(payload, ensure_ascii=False)
        with self._write() as conn:
            conn.execute("INSERT INTO documents (kind, key, payload, created) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (kind, key) DO UPDATE SET payload = excluded.payload, "
                         "created = excluded.created", (kind, key, text, _now()))

    def get_json(self, kind: str, key: str) -> dict | None:
        """The document (kind, key): in the file, else in the atlas."""
        rows = self._query("SELECT payload FROM documents WHERE kind = ? AND key = ?", (kind, key))
        if rows:
            return json.loads(rows[0]["payload"])
        return None if self.atlas is None else self.atlas.document(kind, key)

    # batch failures
    def record_failure(self, failure: Failure) -> None:
        """Record (or update) why a batch prompt failed."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO failures (model, fingerprint, fact_id, lang, template, baseline, "
                         "steps, rule, reason, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (*_failure_id(failure), failure.reason, _now()))

    def clear_failure(self, failure: Failure) -> None:
        """Forget an earlier failure of the same prompt (its reason is ignored)."""
        with self._write() as conn:
            conn.execute("DELETE FROM failures WHERE model = ? AND fingerprint = ? AND fact_id = ? AND lang = ? "
                         "AND template = ? AND baseline = ? AND steps = ? AND rule = ?", _failure_id(failure))

    def failures(self, model: str | None = None) -> list[Failure]:
        where, params = ("WHERE model = ?", (model,)) if model is not None else ("", ())
        rows = self._query(f"SELECT * FROM failures {where} ORDER BY created, rowid", params)
        return [Failure(**dict(row)) for row in rows]

    # maintenance
    def info(self) -> dict:
        """Location, counts, size on disk (database + WAL) and results per model."""
        counts = {table: self._query(f"SELECT count(*) AS n FROM {table}")[0]["n"]
                  for table in ("results", "failures", "documents")}
        models = {row["model"]: row["n"] for row in
                  self._query("SELECT model, count(*) AS n FROM results GROUP BY model ORDER BY model")}
        return {"path": str(self.path), "results": counts["results"], "bytes": self.size(),
                "failures": counts["failures"], "documents": counts["documents"], "models": models,
                "schema_version": schema.SCHEMA_VERSION, "method_version": METHOD_VERSION,
                "atlas": {} if self.atlas is None else self.atlas.info()}

    def size(self) -> int:
        """Bytes on disk: the database file and its WAL and shared-memory files."""
        files = (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
        return sum(f.stat().st_size for f in files if f.exists())

    def check(self) -> str:
        """SQLite's integrity check: "ok", or the problems found."""
        rows = self._query("PRAGMA integrity_check")
        return "\n".join(str(row[0]) for row in rows)

    def prune(self, model: str) -> int:
        """Remove every result and failure of ``model``; returns the number of results removed."""
        with self._write() as conn:
            removed = conn.execute("DELETE FROM results WHERE model = ?", (model,)).rowcount
            conn.execute("DELETE FROM failures WHERE model = ?", (model,))
        with self._guard():
            self._connection().execute("PRAGMA incremental_vacuum")
        log.info("pruned %d result(s) of %s from %s", removed, model, self.path)
        return removed

    def rows(self, columns: tuple[str, ...], model: str | None = None,
             batch: int = EXPORT_BATCH) -> Iterator[list[sqlite3.Row] | list[dict]]:
        """The stored results' ``columns`` (of ``model``, or all), oldest first, ``batch`` rows at a time;
        the ``scores`` column is the raw float32 blob."""
        where, params = ("WHERE model = ?", (model,)) if model is not None else ("", ())
        with self._guard():
            cursor = self._connection().execute(f"SELECT {', '.join(columns)} FROM results {where} ORDER BY rowid",
                                                params)
            while found := cursor.fetchmany(batch):
                yield found
        layers = self._atlas_models(model)
        if layers:  # then the atlas's results that the file does not hold, as dicts of the same columns
            in_file = self._file_keys(model)
            keys = [(layer, key) for layer in layers for key in sorted(layer.rows) if key not in in_file]
            for start in range(0, len(keys), batch):
                yield [layer.store_row(key, columns) for layer, key in keys[start:start + batch]]


@functools.cache
def _atlas_at(root: Path | None) -> Atlas | None:
    return None if root is None else Atlas(root)


def _default_atlas() -> Atlas | None:
    """The atlas of :func:`kn_core.runs.atlas.default_root` (read once per process and folder)."""
    return _atlas_at(default_root())
