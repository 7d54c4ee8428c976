"""Opening a store written by an older schema upgrades it in place and keeps every result: version 1 (no claims
table) and version 2 (no ``rule`` column: the rule was only in each result's key and record, and not in a
failure's key). The old layouts are rebuilt here from their DDL as those versions wrote it, and a process of
version 2 that goes on writing after the upgrade writes its rows with that version's own statements. Records of
this version, of an older one and of a newer one (fields this version does not know) are read, or refused with
one clear error."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, replace

import pytest
from test_store import CONFIG, synthetic

from kn_core.attribution.quadrature import DEFAULT_RULE
from kn_core.runs.export import export
from kn_core.data.prompts import Prompt
from kn_core.errors import StoreError
from kn_core.runs.store import APPLICATION_ID, KEYLESS_RULE, SCHEMA_VERSION, Claimant, Failure, ResultStore

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


# -- a process of schema 2 writing after the upgrade ---------------------------------------------------
# the statements schema 2's store ran (kn_core/runs/store.py at that version): rows without the rule column
V2_PUT_RESULT = (f"INSERT INTO results ({OLD_RESULT_COLUMNS}) VALUES ({', '.join('?' * 20)}) "
                 "ON CONFLICT (key) DO NOTHING")
V2_RECORD_FAILURE = (f"INSERT OR REPLACE INTO failures ({OLD_FAILURE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def result_row(key, result, tmp_path) -> tuple:
    """The row of (key, result) as schema 2 wrote it: this version's row less the rule column."""
    scratch = ResultStore(tmp_path / f"scratch-{key.digest[:8]}.sqlite")
    scratch.put(key, result)
    (row,) = [dict(r) for batch in scratch.rows(tuple(OLD_RESULT_COLUMNS.split(", "))) for r in batch]
    scratch.close()
    return tuple(row.values())


def test_a_version_2_process_writing_after_the_upgrade_is_stored_under_the_right_rule(tmp_path):
    path, _ = old_store(tmp_path, 2)
    older = sqlite3.connect(path, isolation_level=None)  # the older process had the store open before the upgrade
    assert older.execute("SELECT count(*) FROM results").fetchone()[0] == 2
    store = ResultStore(path)  # this version opens it: upgraded to schema 3
    assert store.info()["results"] == 2
    gl_key, gl_result = gauss_legendre(5)
    right_key, right_result = synthetic(6)
    older.execute(V2_PUT_RESULT, result_row(gl_key, gl_result, tmp_path))  # the older process goes on writing
    older.execute(V2_PUT_RESULT, result_row(right_key, right_result, tmp_path))
    older.execute(V2_RECORD_FAILURE, ("synthetic", "f", "P36-y", "en", "[X] is [Y].", "masked", 4, "too long", "now"))
    older.close()
    rules = {row.key: row.rule for row in store.results()}
    assert rules[gl_key.digest] == GL and rules[right_key.digest] == KEYLESS_RULE  # from each result's record
    assert store.get(gl_key).config.rule == GL and store.has(gl_key)
    new_failure = next(f for f in store.failures() if f.fact_id == "P36-y")  # not refused: the old default rule
    assert new_failure.rule == KEYLESS_RULE and new_failure.reason == "too long"
    store.put(*gauss_legendre(7))  # this version's rows are untouched by the trigger
    assert {row.key: row.rule for row in store.results()}[gauss_legendre(7)[0].digest] == GL
    assert store.check() == "ok"


def test_a_new_store_has_the_same_safeguards_as_an_upgraded_one(tmp_path):
    """A store created by this version gets the trigger and the failures' default too (schema 3 is one layout)."""
    ResultStore(tmp_path / "new.sqlite").close()
    path, _ = old_store(tmp_path, 2)
    ResultStore(path).close()
    layouts = []
    for file in (tmp_path / "new.sqlite", path):
        with sqlite3.connect(file) as conn:
            layouts.append(sorted(" ".join(sql.split()) for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type IN ('trigger', 'table') AND name != 'failures_2' "
                "AND name NOT LIKE 'sqlite_%'")))
        conn.close()
    for layout in layouts:  # the new store's, then the upgraded one's
        assert any("TRIGGER results_rule_from_record AFTER INSERT ON results" in sql for sql in layout)
        (failures,) = [sql for sql in layout if sql.startswith("CREATE TABLE failures")]
        assert f"rule TEXT NOT NULL DEFAULT '{KEYLESS_RULE}'" in failures


# -- records of this version, an older one and a newer one ---------------------------------------------
def edit_record(path, key, edit) -> None:
    with sqlite3.connect(path) as conn:
        (text,) = conn.execute("SELECT record FROM results WHERE key = ?", (key.digest,)).fetchone()
        record = json.loads(text)
        edit(record)
        conn.execute("UPDATE results SET record = ? WHERE key = ?", (json.dumps(record), key.digest))
    conn.close()


def test_a_record_of_this_version_keeps_the_prompts_reader(tmp_path):
    store = ResultStore(tmp_path / "store.sqlite")
    key, result = synthetic(0)
    result = replace(result, prompt=replace(result.prompt, reader="bert/masked:0123456789abcdef"))
    store.put(key, result)
    with sqlite3.connect(tmp_path / "store.sqlite") as conn:
        (text,) = conn.execute("SELECT record FROM results").fetchone()
    conn.close()
    assert json.loads(text)["prompt"]["reader"] == "bert/masked:0123456789abcdef"  # written ...
    assert store.get(key).prompt.reader == "bert/masked:0123456789abcdef"  # ... and read back


def test_a_record_of_an_older_format_is_read_with_defaults(tmp_path):
    """Records from before the prompt's reader, the record's lang and the per-path arrays still read."""
    path = tmp_path / "store.sqlite"
    store = ResultStore(path)
    key, result = synthetic(0)
    store.put(key, result)

    def older(record):
        for name in ("reader", "cut"):
            record["prompt"].pop(name, None)
        record["meta"] = {"lang": record.pop("lang")}
        record.pop("path_deltas", None)
        record.pop("path_baseline_probs", None)

    edit_record(path, key, older)
    found = store.get(key)
    assert found.prompt == result.prompt and found.prompt.reader == "" and found.lang == "en"
    assert found.path_deltas is None
    assert asdict(found.prompt).keys() == asdict(Prompt("t", "s", "o", (), (), (), ())).keys()


@pytest.mark.parametrize("part, field", [("prompt", "tokenizer_revision"), ("config", "schedule")])
def test_a_record_of_a_newer_version_is_one_clear_error(tmp_path, part, field):
    path = tmp_path / "store.sqlite"
    store = ResultStore(path)
    key, result = synthetic(0)
    store.put(key, result)
    edit_record(path, key, lambda record: record[part].update({field: 1}))
    with pytest.raises(StoreError, match=rf"stored result {key.digest[:12]} in .*store.sqlite was written by a newer "
                                         rf"KN Explorer \(its .* has field\(s\) this version does not know: {field}\); "
                                         r"use that version, or prune the model 'synthetic'"):
        store.get(key)
    assert store.has(key) and store.info()["results"] == 1  # listing and counting still work


@pytest.mark.parametrize("edit", [lambda r: r["prompt"].pop("template"), lambda r: r.update(config=[1, 2]),
                                  lambda r: r["config"].update(rule="no-such-rule")])
def test_a_damaged_record_is_one_clear_error(tmp_path, edit):
    path = tmp_path / "store.sqlite"
    store = ResultStore(path)
    key, result = synthetic(0)
    store.put(key, result)
    edit_record(path, key, edit)
    with pytest.raises(StoreError, match=rf"stored result {key.digest[:12]} in .* is damaged .*prune the model"):
        store.get(key)
