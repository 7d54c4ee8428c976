"""The result store: exact round trip, reads without recomputation, keys, concurrency, faults, clear errors."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from platformdirs import user_cache_dir
from helpers import assert_same, make_bert

from kn_core.attribution import Attribution, AttributionConfig
from kn_core.cli import main
from kn_core.data.prompts import Prompt
from kn_core.errors import StoreError
from kn_core.model.fingerprint import model_fingerprint
from kn_core.model.loading import LanguageModel, load_model
from kn_core.runs import cached
from kn_core.runs.export import export
from kn_core.runs.store import Failure, ResultKey, ResultStore

ROOT = Path(__file__).resolve().parents[2]
CONFIG = AttributionConfig(steps=4, rule="riemann-right")  # the rule of every store before rules could be chosen
TEMPLATE = "The capital of [X] is [Y]."


def capital_prompt(lm) -> Prompt:
    return lm.prompt(TEMPLATE, "Tanzania", "Dodoma")


def synthetic(i: int) -> tuple[ResultKey, Attribution]:
    """A made-up result of realistic size (12 × 3072) whose content depends only on ``i``."""
    prompt = Prompt(TEMPLATE, f"subject{i}", "object", (1, 2, 3), (2,), (7,), (1,))
    scores = np.random.default_rng(i).standard_normal((12, 3072)).astype(np.float32)
    result = Attribution(prompt=prompt, scores=scores, convergence_delta=np.full(12, i, np.float32),
                         token_probs=(0.5,), baseline_probs=np.zeros(12, np.float32), config=CONFIG,
                         model="synthetic", layers=tuple(range(12)), lang="en")
    key = ResultKey("f" * 64, "synthetic", "en", TEMPLATE, f"subject{i}", "object", (1, 2, 3), (2,), (7,),
                    "masked", 4, tuple(range(12)))
    return key, result


# -- round trip and reads ---------------------------------------------------------------------------
def test_round_trip_gives_identical_results(bert, tmp_path):
    path = tmp_path / "store.sqlite"
    store = ResultStore(path)
    computed = cached.attribution(store, bert, capital_prompt(bert), CONFIG, "en")
    store.close()
    reopened = ResultStore(path).get(ResultKey.of(bert, capital_prompt(bert), CONFIG, "en"))
    assert reopened is not None
    assert_same(computed, reopened)


def test_second_request_is_served_without_a_forward_pass(lm, tmp_path):
    path = tmp_path / "store.sqlite"
    first = cached.attribution(ResultStore(path), lm, capital_prompt(lm), CONFIG, "en")
    calls = []
    handle = lm.model.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        again = cached.attribution(ResultStore(path), lm, capital_prompt(lm), CONFIG, "en")
    finally:
        handle.remove()
    assert calls == []
    assert_same(first, again)


def test_absent_result_is_not_computed_when_asked_not_to(bert, tmp_path):
    store = ResultStore(tmp_path / "store.sqlite")
    assert cached.attribution(store, bert, capital_prompt(bert), CONFIG, "en", compute_missing=False) is None
    assert store.info()["results"] == 0


def test_key_holds_what_determines_the_result_and_not_the_engine(bert):
    prompt = capital_prompt(bert)
    key = ResultKey.of(bert, prompt, CONFIG, "en").digest
    assert ResultKey.of(bert, prompt, replace(CONFIG, engine="reference"), "en").digest == key
    assert ResultKey.of(bert, prompt, replace(CONFIG, layers=(0, 1, 2)), "en").digest == key  # = all layers
    others = [ResultKey.of(bert, prompt, replace(CONFIG, steps=5), "en"),
              ResultKey.of(bert, prompt, replace(CONFIG, baseline="zero"), "en"),
              ResultKey.of(bert, prompt, replace(CONFIG, layers=(0,)), "en"),
              ResultKey.of(bert, prompt, CONFIG, "zh"),
              ResultKey.of(bert, bert.prompt(TEMPLATE, "Tanzania", "Paris"), CONFIG, "en"),
              replace(ResultKey.of(bert, prompt, CONFIG, "en"), method_version=0)]
    assert len({other.digest for other in others} | {key}) == len(others) + 1


def test_fingerprint_follows_the_weights(tmp_path, bert):
    a, b = (load_model(str(make_bert(tmp_path / name, seed=seed))) for name, seed in (("a", 0), ("b", 1)))
    assert model_fingerprint(a) == model_fingerprint(bert) != model_fingerprint(b)
    in_memory = LanguageModel(name="m", model=a.model, tokenizer=a.tokenizer, adapter=a.adapter)
    other = LanguageModel(name="m", model=b.model, tokenizer=b.tokenizer, adapter=b.adapter)
    assert len(model_fingerprint(in_memory)) == 64 and model_fingerprint(in_memory) != model_fingerprint(other)


# -- documents, listing, maintenance ------------------------------------------------------------------
def test_documents_listing_info_export_prune(bert, tmp_path):
    store = ResultStore(tmp_path / "store.sqlite")
    result = cached.attribution(store, bert, capital_prompt(bert), CONFIG, "en")
    store.put(*synthetic(0))
    store.put_json("neurons", "k", {"neurons": [[0, 1]]})
    store.put_json("neurons", "k", {"neurons": [[2, 3]]})
    store.record_failure(Failure("synthetic", "f", "P36-x", "en", TEMPLATE, "masked", 4, "riemann-right", "too long"))
    assert store.get_json("neurons", "k") == {"neurons": [[2, 3]]} and store.get_json("neurons", "j") is None
    (row,) = store.results(model=bert.name)
    assert (row.lang, row.subject, row.object, row.template) == ("en", "Tanzania", "Dodoma", TEMPLATE)
    assert row.p_object == pytest.approx(result.p_object)
    info = store.info()
    assert (info["results"], info["failures"], info["documents"]) == (2, 1, 1) and info["bytes"] > 0
    assert info["models"] == {bert.name: 1, "synthetic": 1}

    table = pd.read_parquet(export(store, tmp_path / "out.parquet", "parquet"))
    mine = table[table.model == bert.name].iloc[0]
    assert np.array_equal(np.asarray(mine.scores, np.float32).reshape(mine.n_layers, mine.d_ff), result.scores)
    csv = pd.read_csv(export(store, tmp_path / "out.csv", "csv"))
    assert len(csv) == 2 and "scores" not in csv.columns

    assert store.prune("synthetic") == 1
    assert store.info()["models"] == {bert.name: 1} and store.failures() == []


def test_store_cli_info_export_prune(bert, tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    cached.attribution(ResultStore(path), bert, capital_prompt(bert), CONFIG, "en")
    assert main(["store", "info", "--store", str(path), "--json", str(tmp_path / "info.json"), "--check"]) == 0
    info = json.loads((tmp_path / "info.json").read_text(encoding="utf-8"))
    assert info["results"] == 1 and info["bytes"] > 0 and info["integrity"] == "ok"
    assert main(["store", "export", str(tmp_path / "all.csv"), "--store", str(path)]) == 0
    assert len(pd.read_csv(tmp_path / "all.csv")) == 1
    assert main(["store", "prune", "--model", bert.name, "--store", str(path)]) == 0
    assert "removed 1 result" in capsys.readouterr().out


def test_a_read_only_store_is_read_by_info_and_export_and_left_untouched(bert, tmp_path, capsys):
    """A store the user may not write (file and folder without write bits) still answers `store info` and
    `store export`; nothing is created beside it and a write is refused; `prune` still says it is read-only."""
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "store.sqlite"
    writer = ResultStore(path)
    cached.attribution(writer, bert, capital_prompt(bert), CONFIG, "en")
    writer.close()
    with sqlite3.connect(path) as conn:  # the last connection: everything into the file, no -wal/-shm left
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        assert main(["store", "info", "--store", str(path), "--json", str(tmp_path / "info.json")]) == 0
        assert json.loads((tmp_path / "info.json").read_text(encoding="utf-8"))["results"] == 1
        assert main(["store", "export", str(tmp_path / "all.csv"), "--store", str(path)]) == 0
        assert len(pd.read_csv(tmp_path / "all.csv")) == 1
        with pytest.raises(StoreError, match="read-only"):
            ResultStore(path, read_only=True).put_json("doc", "k", {})
        assert main(["store", "prune", "--model", bert.name, "--store", str(path)]) == 2
        assert "read-only" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


def test_default_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path / "home"))
    assert ResultStore().path == tmp_path / "home" / "store.sqlite"
    assert (tmp_path / "home" / "store.sqlite").is_file()


# -- concurrency --------------------------------------------------------------------------------------
def test_threads_share_one_store(tmp_path):
    store = ResultStore(tmp_path / "store.sqlite")

    def work(i: int) -> None:
        store.put(*synthetic(i))
        store.put_json("doc", str(i), {"i": i})
        assert store.get(synthetic(i)[0]) is not None

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(24)))
    assert store.info()["results"] == 24 and store.info()["documents"] == 24


WRITER = """
import sys, time
from pathlib import Path
from test_store import synthetic
from kn_core.runs.store import ResultStore

path, first, last, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
store = ResultStore(path)
(folder / f"ready-{first}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
for i in range(first, last):
    store.put(*synthetic(i))
    store.put_json("doc", str(i), {"writer": first})
"""


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "store.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "runs")])}
    ranges = [(0, 40), (20, 60)]  # 20 results written by both
    writers = [subprocess.Popen([sys.executable, str(script), str(path), str(a), str(b), str(tmp_path)], env=env,
                                stderr=subprocess.PIPE) for a, b in ranges]
    try:
        deadline = time.monotonic() + 120  # two fresh interpreters importing torch: slow on a loaded machine
        while not all((tmp_path / f"ready-{a}").exists() for a, _ in ranges):
            assert time.monotonic() < deadline and all(w.poll() is None for w in writers), "a writer did not start"
            time.sleep(0.02)
        (tmp_path / "go").touch()
        store = ResultStore(path)
        while any(w.poll() is None for w in writers):  # reading while both write: never blocked, never an error
            store.info()
            time.sleep(0.01)
    finally:
        for w in writers:  # never leave a writer waiting for "go" behind a failed test
            if w.poll() is None:
                w.kill()
    assert [w.wait() for w in writers] == [0, 0], [w.stderr.read().decode() for w in writers]
    assert store.check() == "ok"
    assert store.info()["results"] == 60 and store.info()["documents"] == 60
    for i in range(60):
        key, expected = synthetic(i)
        assert_same(store.get(key), expected)


# -- faults and clear errors ------------------------------------------------------------------------
def test_corrupt_file_is_a_clear_error_and_left_alone(tmp_path):
    path = tmp_path / "store.sqlite"
    garbage = b"this is not a database " * 500
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match="corrupt or not a database") as error:
        ResultStore(path)
    assert str(path) in str(error.value) and "KN_EXPLORER_HOME" in str(error.value)
    assert path.read_bytes() == garbage


def test_damaged_pages_are_a_clear_error(tmp_path):
    path = tmp_path / "store.sqlite"
    store = ResultStore(path)
    for i in range(4):
        store.put(*synthetic(i))
    store.close()  # the last connection to close checkpoints the WAL into the file
    with open(path, "r+b") as handle:  # keep the header page, scramble the rest
        handle.seek(4096)
        handle.write(np.random.default_rng(0).bytes(path.stat().st_size - 4096))
    with pytest.raises(StoreError, match="corrupt"):
        reopened = ResultStore(path)
        reopened.info()
        reopened.get(synthetic(0)[0])


def test_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(StoreError, match="not a KN Explorer store"):
        ResultStore(path)


def test_store_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "store.sqlite"
    ResultStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer KN Explorer"):
        ResultStore(path)


def test_read_only_locations_are_clear_errors(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    existing = tmp_path / "store.sqlite"
    ResultStore(existing).close()
    folder.chmod(0o555)
    existing.chmod(0o444)
    try:
        for path in (folder / "store.sqlite", existing):
            with pytest.raises(StoreError, match="read-only"):
                ResultStore(path)
    finally:
        folder.chmod(0o755)
        existing.chmod(0o644)


def test_unusable_paths_are_clear_errors(tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(StoreError, match="cannot use the store path .*File exists"):
        ResultStore(tmp_path / "file" / "store.sqlite")
    with pytest.raises(StoreError, match="is a folder"):
        ResultStore(tmp_path)


@pytest.mark.parametrize("target", ["/dev/null", "/dev/zero", "fifo", "long"])
def test_a_device_fifo_or_overlong_store_path_is_refused_and_nothing_is_written(tmp_path, target):
    """F4/F1: a device or FIFO as the store (also through a symlink) is refused before SQLite touches it (no
    stray ``-journal`` beside it); a name over the file system's limit is one clear error."""
    if target == "fifo":
        path = tmp_path / "store.fifo"
        os.mkfifo(path)
    elif target == "long":
        path = tmp_path / ("a" * 300) / "store.sqlite"
    else:
        path = tmp_path / "link.sqlite"
        path.symlink_to(target)
    before = set(tmp_path.iterdir())
    with pytest.raises(StoreError, match="not a regular file|cannot use the store path"):
        ResultStore(path)
    assert set(tmp_path.iterdir()) == before
    assert not Path(f"{target}-journal").exists()


def test_the_engine_that_ran_is_stored_and_read_back(tmp_path):
    """A fast-engine request that the reference engine computed (a fallback) is stored as "reference"."""
    store = ResultStore(tmp_path / "store.sqlite", atlas=None)
    key, result = synthetic(0)
    fell_back = replace(result, engine_used="reference")
    assert fell_back.config.engine == "fast"
    store.put(key, fell_back)
    assert [row["engine"] for batch in store.rows(("engine",)) for row in batch] == ["reference"]
    assert store.get(key).engine_used == "reference" and store.get(key).config.engine == "fast"


# -- the home folder ----------------------------------------------------------------------------------
def test_the_store_and_the_models_ask_the_one_home_function(tmp_path, monkeypatch):
    """The home folder is computed in one place (kn_core.home.home_dir): replace it, and both follow."""
    from kn_core import home
    from kn_core.runs.store import FILE_NAME, default_path

    monkeypatch.setattr(home, "home_dir", lambda: tmp_path / "elsewhere")
    assert default_path() == tmp_path / "elsewhere" / FILE_NAME
    assert home.models_dir() == tmp_path / "elsewhere" / "models"
    assert ResultStore(atlas=None).path == tmp_path / "elsewhere" / FILE_NAME


@pytest.mark.parametrize("value", ["", None, "~/kn-home-test"])
def test_the_home_rule_is_the_same_for_the_store_and_the_models(value, monkeypatch):
    from kn_core.home import HOME_VARIABLE, home_dir, models_dir
    from kn_core.runs.store import FILE_NAME, default_path

    if value is None:
        monkeypatch.delenv(HOME_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(HOME_VARIABLE, value)
    expected = Path(value).expanduser() if value else Path(user_cache_dir("kn-explorer"))
    assert home_dir() == expected and "~" not in str(home_dir())
    assert default_path() == expected / FILE_NAME and models_dir() == expected / "models"
