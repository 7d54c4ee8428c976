"""The persistent result store: AMIG attributions, batch failures and derived JSON documents in SQLite.

One file, ``store.sqlite``, under ``$KN_EXPLORER_HOME`` (default: the platform's user cache folder).
A result is keyed by everything that determines it (:class:`ResultKey`): the model's name and weights
fingerprint, the prompt's token ids, template, subject, object, the language, the baseline, the number of
steps, the layers and :data:`METHOD_VERSION`. The engine is not part of the key (the engines agree to 1e-4).
Scores are stored exactly, as float32 blobs with their shape.

Safety:
- concurrency: WAL journal (readers never block the writer), one connection per thread and process, a
  30 s busy timeout, and every write in its own ``BEGIN IMMEDIATE`` transaction (one writer at a time);
  inserting a result that is already stored is a no-op, so racing writers never duplicate anything.
- faults: a process killed mid-write loses at most its open transaction; committed results stay intact.
- a corrupt, foreign, newer or read-only file raises :class:`~kn_core.errors.StoreError` naming the path
  and the remedy; a user's file is never deleted or rewritten automatically.
- the atlas: results that ship with the repository (:mod:`kn_core.runs.atlas`) are read as a read-only layer
  under the file: every read (a result, a listing, a document) falls back to it for the models whose installed
  weights it was computed on; the file wins where both hold a key, and nothing of the atlas is written into it.
- claims: a batch claims each prompt (its result key) just before computing it, so batches sharing the store
  split the work instead of doing it twice (:meth:`ResultStore.claim`). A claim lapses when it expires or when
  its holder, on this host, is no longer running; a killed batch therefore holds nothing back.

Schema versions: 1 had no ``claims`` table; 2 had no ``rule`` column (the rule was in each result's key and
record only, and not in a failure's key). Opening an older store upgrades it in place, in one transaction.
A process of the older version that had the store open before the upgrade goes on writing rows without the
new column: its results get their rule from their own record (a trigger), its failures the rule every old
failure is assumed to have (the column's default), so neither is refused nor stored under the wrong rule.
A stored record this version cannot read (a field it does not know, from a newer version, or a damaged row)
raises :class:`~kn_core.errors.StoreError` naming the result and the remedy.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import sqlite3
import stat
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields as dataclass_fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
from platformdirs import user_cache_dir

from kn_core.attribution.result import Attribution, AttributionConfig
from kn_core.data.prompts import Prompt
from kn_core.errors import KNError, StoreError
from kn_core.model.fingerprint import model_fingerprint
from kn_core.runs.atlas import Atlas, ModelAtlas, default_root

log = logging.getLogger(__name__)

# bump whenever the attribution maths changes: old results then stop matching (their rows stay readable).
# 2: ``masked`` is the paper's formula (one integral per masked prompt, averaged); version 1's ``masked`` was
# one integral from the mean baseline, now ``masked-mean``.
METHOD_VERSION = 2
# the rule every result had before rules could be chosen: keys (and document keys) of that rule leave it out, so
# that they stay what they were; fixed, whatever the default rule is now
KEYLESS_RULE = "riemann-right"
SCHEMA_VERSION = 3  # 2: the claims table; 3: the quadrature rule as a column of results and failures
APPLICATION_ID = 0x4B4E4558  # "KNEX", in the SQLite header: tells our files from other SQLite databases
HOME_VARIABLE = "KN_EXPLORER_HOME"
FILE_NAME = "store.sqlite"
BUSY_TIMEOUT_S = 30.0
CLAIM_TTL_S = 900.0  # a claim lapses unless renewed within this time (its holder renews it with each result)
EXPORT_BATCH = 64
REMEDY = f"move or delete it, or set {HOME_VARIABLE} (or pass --store) to use another location"

SCHEMA = tuple(statement.strip() for statement in f"""
CREATE TABLE results (
    key TEXT PRIMARY KEY,            -- sha256 of the ResultKey
    model TEXT NOT NULL, fingerprint TEXT NOT NULL, lang TEXT NOT NULL,
    template TEXT NOT NULL, subject TEXT NOT NULL, object TEXT NOT NULL,
    baseline TEXT NOT NULL, steps INTEGER NOT NULL, rule TEXT NOT NULL, layers TEXT NOT NULL,
    method_version INTEGER NOT NULL, engine TEXT NOT NULL, p_object REAL NOT NULL,
    n_layers INTEGER NOT NULL, d_ff INTEGER NOT NULL,
    scores BLOB NOT NULL, convergence_delta BLOB NOT NULL, baseline_probs BLOB NOT NULL,
    record TEXT NOT NULL,            -- JSON: prompt, token_probs, config, layers, meta
    created TEXT NOT NULL
);
CREATE INDEX results_model ON results (model);
CREATE TABLE failures (
    model TEXT NOT NULL, fingerprint TEXT NOT NULL, fact_id TEXT NOT NULL, lang TEXT NOT NULL,
    template TEXT NOT NULL, baseline TEXT NOT NULL, steps INTEGER NOT NULL,
    rule TEXT NOT NULL DEFAULT '{KEYLESS_RULE}',  -- what a failure of schema 2 (no rule) is taken for
    reason TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (model, fingerprint, fact_id, lang, template, baseline, steps, rule)
);
CREATE TABLE documents (
    kind TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (kind, key)
)
""".split(";"))
CLAIMS_SCHEMA = """CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,            -- the claimed result's key
    owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    expires REAL NOT NULL            -- Unix time
)"""
SUMMARY_COLUMNS = "key, model, lang, subject, object, template, baseline, steps, rule, p_object, created"
FAILURES_TABLE = next(statement for statement in SCHEMA if statement.startswith("CREATE TABLE failures"))
# a result inserted without its rule (by a process of schema 2 still running after the upgrade) gets the column's
# default; this takes the rule from the result's own record instead (a no-op for rows that name their rule)
RULE_TRIGGER = f"""CREATE TRIGGER IF NOT EXISTS results_rule_from_record AFTER INSERT ON results
WHEN NEW.rule = '{KEYLESS_RULE}' AND json_extract(NEW.record, '$.config.rule') IS NOT NEW.rule
     AND json_extract(NEW.record, '$.config.rule') IS NOT NULL
BEGIN UPDATE results SET rule = json_extract(NEW.record, '$.config.rule') WHERE key = NEW.key; END"""
# schema 2 → 3: the rule becomes a column; results take it from their record, failures (whose rows never said)
# the default rule
UPGRADE_3 = tuple(statement.strip() for statement in f"""
ALTER TABLE results ADD COLUMN rule TEXT NOT NULL DEFAULT '{KEYLESS_RULE}';
UPDATE results SET rule = coalesce(json_extract(record, '$.config.rule'), '{KEYLESS_RULE}');
ALTER TABLE failures RENAME TO failures_2;
{FAILURES_TABLE};
INSERT INTO failures (model, fingerprint, fact_id, lang, template, baseline, steps, rule, reason, created)
    SELECT model, fingerprint, fact_id, lang, template, baseline, steps, '{KEYLESS_RULE}', reason, created
    FROM failures_2;
DROP TABLE failures_2
""".split(";")) + (RULE_TRIGGER,)


# -- records --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResultKey:
    """Everything that determines an attribution; :attr:`digest` is the store's primary key."""

    fingerprint: str
    model: str
    lang: str
    template: str
    subject: str
    object: str
    input_ids: tuple[int, ...]
    target_positions: tuple[int, ...]
    object_ids: tuple[int, ...]
    baseline: str
    steps: int
    layers: tuple[int, ...]
    method_version: int = METHOD_VERSION
    rule: str = KEYLESS_RULE

    @classmethod
    def of(cls, lm, prompt: Prompt, config: AttributionConfig, lang: str) -> "ResultKey":
        """The key of ``prompt`` on ``lm`` under ``config`` (all layers when ``config.layers`` is None)."""
        layers = tuple(range(lm.n_layers)) if config.layers is None else tuple(config.layers)
        return cls(fingerprint=model_fingerprint(lm), model=lm.name, lang=lang, template=prompt.template,
                   subject=prompt.subject, object=prompt.object, input_ids=tuple(prompt.input_ids),
                   target_positions=tuple(prompt.target_positions), object_ids=tuple(prompt.object_ids),
                   baseline=config.baseline, steps=config.steps, layers=layers, rule=config.rule)

    @property
    def digest(self) -> str:
        fields = asdict(self)
        if fields["rule"] == KEYLESS_RULE:  # the key of every result stored before rules could be chosen
            del fields["rule"]
        text = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ResultSummary:
    """One stored result, without its arrays (for listings)."""

    key: str
    model: str
    lang: str
    subject: str
    object: str
    template: str
    baseline: str
    steps: int
    rule: str
    p_object: float
    created: str


@dataclass(frozen=True)
class Failure:
    """A prompt a batch could not compute, with the reason."""

    model: str
    fingerprint: str
    fact_id: str
    lang: str
    template: str
    baseline: str
    steps: int
    rule: str
    reason: str = ""
    created: str = ""


@dataclass(frozen=True)
class Claimant:
    """Who holds claims: one batch run (``id``) of a process (``pid``) on ``host``."""

    id: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> "Claimant":
        """A new claimant for a run in this process (active until :meth:`ResultStore.release_all`)."""
        claimant = cls(uuid.uuid4().hex, socket.gethostname(), os.getpid())
        _ACTIVE.add(claimant.id)
        return claimant


ClaimState = Literal["claimed", "stored", "busy"]
_ACTIVE: set[str] = set()  # the claimants of this process whose runs have not ended (e.g. the app's batch threads)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user counts)."""
    if pid < 1:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def _held(holder: sqlite3.Row, claimant: Claimant, now: float) -> bool:
    """Whether ``holder`` (a claims row) still holds its claim against ``claimant``: another run's claim that
    has not expired and, when it was made on this host, whose run is still going: in this process, an active
    claimant (another with this pid was an earlier process, now gone); else a process that still runs."""
    if holder["owner"] == claimant.id or holder["expires"] <= now:
        return False
    if holder["host"] != claimant.host:
        return True
    if holder["pid"] == claimant.pid:
        return holder["owner"] in _ACTIVE
    return _running(holder["pid"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=np.float32).tobytes()


def _array(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32).reshape(shape).copy()


def _tuples(mapping: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()}


def _encode(key: ResultKey, result: Attribution) -> dict:
    """The ``results`` row of ``result`` stored under ``key``."""
    if result.scores.ndim != 2:
        raise StoreError(f"cannot store scores of shape {result.scores.shape}; expected [n_layers, d_ff]")
    record = {"prompt": asdict(result.prompt), "token_probs": list(result.token_probs),
              "config": asdict(result.config), "layers": list(result.layers), "lang": result.lang}
    if result.path_deltas is not None and result.path_baseline_probs is not None:  # float32 → JSON is exact
        record["path_deltas"] = np.asarray(result.path_deltas, dtype=np.float32).tolist()
        record["path_baseline_probs"] = np.asarray(result.path_baseline_probs, dtype=np.float32).tolist()
    return {"key": key.digest, "model": key.model, "fingerprint": key.fingerprint, "lang": key.lang,
            "template": key.template, "subject": key.subject, "object": key.object, "baseline": key.baseline,
            "steps": key.steps, "rule": key.rule, "layers": json.dumps(list(key.layers)), "method_version": key.method_version,
            "engine": result.engine_used, "p_object": result.p_object, "n_layers": result.n_layers,
            "d_ff": result.d_ff, "scores": _blob(result.scores), "convergence_delta": _blob(result.convergence_delta),
            "baseline_probs": _blob(result.baseline_probs), "record": json.dumps(record, ensure_ascii=False),
            "created": _now()}


def _paths(record: dict, name: str, n_layers: int) -> np.ndarray | None:
    """A per-path array [n_paths, n_layers] of the record; None in rows written before paths existed."""
    if name not in record:
        return None
    return np.asarray(record[name], dtype=np.float32).reshape(-1, n_layers)


class _Incompatible(ValueError):
    """A stored record with fields this version does not know (written by a newer version)."""


def _arguments(cls, mapping: dict, what: str) -> dict:
    """``mapping`` (a record's part) as keyword arguments of the dataclass ``cls``; :class:`_Incompatible` when it
    holds fields ``cls`` does not have. Fields it lacks keep their defaults (older records)."""
    unknown = sorted(set(mapping) - {f.name for f in dataclass_fields(cls)})
    if unknown:
        raise _Incompatible(f"its {what} has field(s) this version does not know: {', '.join(unknown)}")
    return _tuples(mapping)


def _decode(row: sqlite3.Row | dict) -> Attribution:
    """The attribution of a ``results`` row, in this version's format or an older one (records without ``lang``
    kept it under ``meta``; without per-path arrays or the prompt's ``reader``, those stay empty)."""
    record = json.loads(row["record"])
    n_layers = row["n_layers"]
    return Attribution(prompt=Prompt(**_arguments(Prompt, record["prompt"], "prompt")),
                       scores=_array(row["scores"], (n_layers, row["d_ff"])),
                       convergence_delta=_array(row["convergence_delta"], (n_layers,)),
                       token_probs=tuple(record["token_probs"]),
                       baseline_probs=_array(row["baseline_probs"], (n_layers,)),
                       config=AttributionConfig(**_arguments(AttributionConfig, record["config"], "configuration")),
                       model=row["model"], layers=tuple(record["layers"]),
                       lang=record["lang"] if "lang" in record else record.get("meta", {}).get("lang"),
                       path_deltas=_paths(record, "path_deltas", n_layers),
                       path_baseline_probs=_paths(record, "path_baseline_probs", n_layers),
                       engine_used=row["engine"])


def _decode_or_explain(row: sqlite3.Row | dict, digest: str, where: str, model: str) -> Attribution:
    """:func:`_decode`, with a :class:`StoreError` naming the result, where it is and the remedy in place of a
    traceback when its record is of a newer version or damaged."""
    remedy = f"prune the model {model!r} (`python -m kn_core store prune --model {model}`) or {REMEDY}"
    try:
        return _decode(row)
    except _Incompatible as exc:
        raise StoreError(f"the stored result {digest[:12]} in {where} was written by a newer KN Explorer ({exc}); "
                         f"use that version, or {remedy}") from None
    except (ValueError, KeyError, TypeError, AttributeError, KNError) as exc:
        raise StoreError(f"the stored result {digest[:12]} in {where} is damaged ({type(exc).__name__}: {exc}); "
                         f"{remedy}") from None


# -- location and checks --------------------------------------------------------------------------
def default_path() -> Path:
    """``$KN_EXPLORER_HOME/store.sqlite``, else the user cache folder's ``kn-explorer/store.sqlite``."""
    home = os.environ.get(HOME_VARIABLE)
    return Path(home).expanduser() / FILE_NAME if home else Path(user_cache_dir("kn-explorer")) / FILE_NAME


def writable(path: Path) -> bool:
    """Writable for this process *and* not marked read-only (no write bit), which root would ignore."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _check_location(path: Path, read_only: bool = False) -> None:
    """Refuse, with the remedy, a store path that is a folder, a device, a FIFO or a socket (also through a
    symlink: SQLite would write a ``-journal`` beside the device), a name the file system cannot hold, or a
    location this process cannot write (``read_only``: a file that does not exist)."""
    remedy = f"set {HOME_VARIABLE} (or pass --store) to a writable location"
    try:
        if read_only:
            if not path.is_file():
                raise StoreError(f"there is no store file at {path}; {remedy.replace('a writable', 'an existing')}")
            return
        if path.is_dir():
            raise StoreError(f"the store path {path} is a folder; give a file path such as {path / FILE_NAME}")
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            raise StoreError(f"the store path {path} is not a regular file (a device, FIFO or socket); give the path "
                             f"of a store file, or {remedy}")
        path.parent.mkdir(parents=True, exist_ok=True)
        targets = (path.parent, path) if path.exists() else (path.parent,)
        problem = next((t for t in targets if not writable(t)), None)
    except OSError as exc:
        raise StoreError(f"cannot use the store path {path}: {exc.strerror or exc}; {remedy}") from None
    if problem is not None:
        raise StoreError(f"the store at {path} is read-only ({problem} is not writable); make it writable, or "
                         f"{remedy}")


def _explain(path: Path, exc: sqlite3.Error) -> StoreError:
    """A StoreError saying what went wrong with the file at ``path`` and what to do."""
    message = str(exc)
    lowered = message.lower()
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return StoreError(f"the store file {path} is corrupt or not a database ({message}); {REMEDY}")
    if "locked" in lowered or "busy" in lowered:
        return StoreError(f"the store {path} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s; "
                          "retry when the other job has finished")
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return StoreError(f"cannot write the store {path} ({message}); make it writable, or set "
                          f"{HOME_VARIABLE} (or pass --store) to a writable location")
    return StoreError(f"the store {path} failed: {message}")


# -- the store ------------------------------------------------------------------------------------
class ResultStore:
    """Attributions, batch failures and JSON documents in one SQLite file (see the module docstring).

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
        found = self._identify(conn)
        if self.read_only:
            if found != "ours":
                raise StoreError(f"the store {self.path} is {'empty' if found == 'new' else 'of an older schema'}; "
                                 "open it once with a command that may write it (e.g. `python -m kn_core store info` "
                                 "with write access) to create or upgrade it")
            return
        if found == "old":
            self._upgrade()
        elif found == "new":
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._identify(conn) == "new":  # another process may have created it meanwhile
                    for statement in (*SCHEMA, CLAIMS_SCHEMA, RULE_TRIGGER):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            log.info("created the result store %s", self.path)

    def _upgrade(self) -> None:
        """Bring a store of an older schema to this one, in one transaction (version 1 → 2: add the claims
        table; 2 → 3: the rule column of results, from each record, and of failures, whose key gains it)."""
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have upgraded it
            if version < 2:
                conn.execute(CLAIMS_SCHEMA)
            if version < 3:
                for statement in UPGRADE_3:
                    conn.execute(statement)
            if version < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                log.info("upgraded the result store %s from schema %d to %d", self.path, version, SCHEMA_VERSION)

    def _identify(self, conn: sqlite3.Connection) -> Literal["ours", "old", "new"]:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                raise StoreError(f"the store {self.path} was written by a newer KN Explorer (schema {version}, "
                                 f"this one reads {SCHEMA_VERSION}); upgrade, or {REMEDY}")
            return "ours" if version == SCHEMA_VERSION else "old"
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != 0 or tables:
            raise StoreError(f"{self.path} is an SQLite database but not a KN Explorer store; {REMEDY}")
        return "new"

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

    # claims (batches sharing the store split the work)
    def claim(self, key: ResultKey, claimant: Claimant, ttl: float = CLAIM_TTL_S) -> ClaimState:
        """Claim ``key`` for ``claimant`` to compute for ``ttl`` seconds: ``"stored"`` when its result is stored,
        ``"busy"`` while another running batch holds it, else ``"claimed"`` (taking over a lapsed claim)."""
        now = time.time()
        with self._write() as conn:
            if (conn.execute("SELECT 1 FROM results WHERE key = ?", (key.digest,)).fetchone()
                    or self._atlas_of(key.digest) is not None):
                return "stored"
            holder = conn.execute("SELECT owner, host, pid, expires FROM claims WHERE key = ?",
                                  (key.digest,)).fetchone()
            if holder is not None and _held(holder, claimant, now):
                return "busy"
            conn.execute("INSERT OR REPLACE INTO claims (key, owner, host, pid, expires) VALUES (?, ?, ?, ?, ?)",
                         (key.digest, claimant.id, claimant.host, claimant.pid, now + ttl))
        return "claimed"

    def release(self, key: ResultKey, claimant: Claimant, ttl: float = CLAIM_TTL_S) -> None:
        """Give up ``claimant``'s claim of ``key`` (its result is stored, or it failed) and renew its other
        claims for ``ttl`` seconds."""
        with self._write() as conn:
            conn.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key.digest, claimant.id))
            conn.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + ttl, claimant.id))

    def release_all(self, claimant: Claimant) -> None:
        """Give up every claim of ``claimant``: its run has ended."""
        _ACTIVE.discard(claimant.id)
        with self._write() as conn:
            conn.execute("DELETE FROM claims WHERE owner = ?", (claimant.id,))

    def claims(self) -> dict[str, str]:
        """The claims held now (lapsed ones included): result key → claimant id."""
        return {row["key"]: row["owner"] for row in self._query("SELECT key, owner FROM claims")}

    # maintenance
    def info(self) -> dict:
        """Location, counts, size on disk (database + WAL) and results per model."""
        counts = {table: self._query(f"SELECT count(*) AS n FROM {table}")[0]["n"]
                  for table in ("results", "failures", "documents")}
        models = {row["model"]: row["n"] for row in
                  self._query("SELECT model, count(*) AS n FROM results GROUP BY model ORDER BY model")}
        return {"path": str(self.path), "results": counts["results"], "bytes": self.size(),
                "failures": counts["failures"], "documents": counts["documents"], "models": models,
                "schema_version": SCHEMA_VERSION, "method_version": METHOD_VERSION,
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
             batch: int = EXPORT_BATCH) -> Iterator[list[sqlite3.Row]]:
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


def _failure_id(failure: Failure) -> tuple:
    return (failure.model, failure.fingerprint, failure.fact_id, failure.lang, failure.template,
            failure.baseline, failure.steps, failure.rule)
