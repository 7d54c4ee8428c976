"""The store's SQLite schema: its tables, the version in the file's header, and the upgrades of older versions.

Versions: 1 had no ``claims`` table; 2 had no ``rule`` column (the rule was in each result's key and record only,
and not in a failure's key); 3 is this one. A process of version 2 that had the store open before its upgrade
goes on writing rows without the rule: its results get their rule from their own record (:data:`RULE_TRIGGER`),
its failures the rule every old failure is taken for (the column's default)."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Literal

from kn_core.errors import StoreError
from kn_core.runs.store.location import REMEDY
from kn_core.runs.store.records import KEYLESS_RULE

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 2: the claims table; 3: the quadrature rule as a column of results and failures
APPLICATION_ID = 0x4B4E4558  # "KNEX", in the SQLite header: tells our files from other SQLite databases


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



def identify(conn: sqlite3.Connection, path: Path) -> Literal["ours", "old", "new"]:
    """What the file behind ``conn`` is: a store of this schema, of an older one, or new and empty. A newer
    store, or an SQLite database that is not a store, raises :class:`StoreError`."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreError(f"the store {path} was written by a newer KN Explorer (schema {version}, "
                             f"this one reads {SCHEMA_VERSION}); upgrade, or {REMEDY}")
        return "ours" if version == SCHEMA_VERSION else "old"
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != 0 or tables:
        raise StoreError(f"{path} is an SQLite database but not a KN Explorer store; {REMEDY}")
    return "new"


def create(conn: sqlite3.Connection, path: Path) -> None:
    """Create this schema in the new, empty file behind ``conn`` (unless another process did meanwhile)."""
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if identify(conn, path) == "new":  # another process may have created it meanwhile
            for statement in (*SCHEMA, CLAIMS_SCHEMA, RULE_TRIGGER):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    log.info("created the result store %s", path)


def upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the store behind ``conn`` (inside a write transaction) from an older schema to this one (version
    1 → 2: add the claims table; 2 → 3: the rule column of results, from each record, and of failures, whose key
    gains it)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have upgraded it
    if version < 2:
        conn.execute(CLAIMS_SCHEMA)
    if version < 3:
        for statement in UPGRADE_3:
            conn.execute(statement)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        log.info("upgraded the result store %s from schema %d to %d", path, version, SCHEMA_VERSION)
