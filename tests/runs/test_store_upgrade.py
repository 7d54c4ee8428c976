"""Opening a store written by an older schema upgrades it in place and keeps every result: version 1 (no claims
table) and version 2 (no ``rule`` column: the rule was only in each result's key and record, and not in a
failure's key). The old layouts are rebuilt here from their DDL as those versions wrote it."""
from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from test_store import CONFIG, synthetic

from kn_core.attribution.quadrature import DEFAULT_RULE
from kn_core.runs.export import export
from kn_core.runs.store import APPLICATION_ID, SCHEMA_VERSION, Claimant, Failure, ResultStore

# the tables as schema versions 1 and 2 created them (version 1: no claims table)
OLD_TABLES = """
CREATE TABLE results (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, fingerprint TEXT NOT NULL, lang TEXT NOT NULL,
    template TEXT NOT NULL, subject TEXT NOT NULL, object TEXT NOT NULL,
    baseline TEXT NOT NULL, steps INTEGER NOT NULL, layers TEXT NOT NULL, method_version INTEGER NOT NULL,
    engine TEXT NOT NULL, p_object REAL NOT NULL, n_layers INTEGER NOT NULL, d_ff INTEGER NOT NULL,
    scores BLOB NOT NULL, convergence_delta BLOB NOT NULL, baseline_probs BLOB NOT NULL,
    record TEXT NOT NULL, created TEXT NOT NULL
);
CREATE INDEX results_model ON results (model);
CREATE TABLE failures (
    model TEXT NOT NULL, fingerprint TEXT NOT NULL, fact_id TEXT NOT NULL, lang TEXT NOT NULL,
    template TEXT NOT NULL, baseline TEXT NOT NULL, steps INTEGER NOT NULL,
    reason TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (model, fingerprint, fact_id, lang, template, baseline, steps)
);
CREATE TABLE documents (
    kind TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""
CLAIMS = "CREATE TABLE claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, " \
         "expires REAL NOT NULL);"
OLD_RESULT_COLUMNS = ("key, model, fingerprint, lang, template, subject, object, baseline, steps, layers, "
                      "method_version, engine, p_object, n_layers, d_ff, scores, convergence_delta, baseline_probs, "
                      "record, created")
OLD_FAILURE_COLUMNS = "model, fingerprint, fact_id, lang, template, baseline, steps, reason, created"
GL = "gauss-legendre"


def gauss_legendre(i: int):
    """A synthetic result integrated with Gauss–Legendre (its key and its record say so)."""
    key, result = synthetic(i)
    return replace(key, rule=GL), replace(result, config=replace(CONFIG, rule=GL))


def old_store(tmp_path, version: int):
    """A version-``version`` store holding a default-rule result, a Gauss–Legendre one and a failure, as that
    version wrote them (rows copied from a current store, less the columns the old one lacked)."""
    current = tmp_path / "current.sqlite"
    store = ResultStore(current)
    rows = [synthetic(0), gauss_legendre(1)]
    for key, result in rows:
        store.put(key, result)
    store.record_failure(Failure("synthetic", "f", "P36-x", "en", "[X] is [Y].", "masked", 4, GL, "too long"))
    store.close()
    path = tmp_path / f"v{version}.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_TABLES + (CLAIMS if version >= 2 else ""))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("ATTACH DATABASE ? AS current", (str(current),))
        conn.execute(f"INSERT INTO results SELECT {OLD_RESULT_COLUMNS} FROM current.results")
        conn.execute(f"INSERT INTO failures SELECT {OLD_FAILURE_COLUMNS} FROM current.failures")
    conn.close()
    return path, [key for key, _ in rows]


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_store_is_upgraded_and_keeps_its_results(tmp_path, version):
    path, keys = old_store(tmp_path, version)
    store = ResultStore(path)
    assert store.info()["results"] == 2
    assert [store.get(key).config.rule for key in keys] == [DEFAULT_RULE, GL]  # each still found by its key
    assert {row.key: row.rule for row in store.results()} == {keys[0].digest: DEFAULT_RULE, keys[1].digest: GL}
    assert store.claim(synthetic(2)[0], Claimant.this_process()) == "claimed"  # the claims table (version 1)
    (failure,) = store.failures()  # an old failure did not say its rule: the default is assumed
    assert (failure.fact_id, failure.rule, failure.reason) == ("P36-x", DEFAULT_RULE, "too long")
    store.record_failure(replace(failure, rule=GL, reason="other"))  # the rule is part of a failure's key now
    assert sorted((f.rule, f.reason) for f in store.failures()) == sorted([(DEFAULT_RULE, "too long"), (GL, "other")])
    store.clear_failure(replace(failure, rule=GL))
    assert [f.rule for f in store.failures()] == [DEFAULT_RULE]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()
    assert store.check() == "ok"


def test_export_carries_the_rule(tmp_path):
    pd = pytest.importorskip("pandas")
    store = ResultStore(tmp_path / "store.sqlite")
    store.put(*synthetic(0))
    store.put(*gauss_legendre(1))
    table = pd.read_csv(export(store, tmp_path / "out.csv", "csv"))
    assert sorted(table["rule"]) == sorted([DEFAULT_RULE, GL])
