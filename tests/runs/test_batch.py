"""Batch runs: every prompt stored once, failures recorded, a SIGKILLed run resumes to the rows of an
uninterrupted run (the ray executor on a real head node: test_ray_cluster.py)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kn_core.runs.executors as executors
from kn_core.attribution import AttributionConfig
from kn_core.data import load_dataset
from kn_core.errors import InputError
from kn_core.runs.batch import plan, run_batch
from kn_core.runs.export import export
from kn_core.runs.store import ResultStore

ROOT = Path(__file__).resolve().parents[2]
CONFIG = AttributionConfig(steps=4)
LANGS = ["en", "zh"]
# Words the tiny BERT knows; its vocabulary lacks the Chinese objects except 巴黎 and 东京, so 7 zh prompts fail.
FILES = {
    "relations.tsv": "id\tname\tdescription\nP36\tcapital\tA capital.\nP30\tcontinent\tA continent.\n",
    "templates.tsv": "relation\tlang\tsplit\ttemplate\n"
                     "P36\ten\ttrain\tThe capital of [X] is [Y].\nP36\ten\theldout\t[X] capital is [Y].\n"
                     "P36\tzh\ttrain\t[X]的首都是[Y]。\nP30\ten\ttrain\t[X] is in [Y].\n"
                     "P30\ten\theldout\t[X] is a country in [Y].\nP30\tzh\ttrain\t[X]在[Y]。\n",
    "P36.tsv": "subject_en\tobject_en\tsubject_zh\tobject_zh\nTanzania\tDodoma\t坦桑尼亚\t多多马\n"
               "France\tParis\t法国\t巴黎\nJapan\tTokyo\t日本\t东京\nKenya\tNairobi\t肯尼亚\t内罗毕\nPeru\tLima\t秘鲁\t利马\n",
    "P30.tsv": "subject_en\tobject_en\tsubject_zh\tobject_zh\nTanzania\tAfrica\t坦桑尼亚\t非洲\n"
               "France\tEurope\t法国\t欧洲\nJapan\tAsia\t日本\t亚洲\nKenya\tAfrica\t肯尼亚\t非洲\n",
}
PROMPTS, STORABLE, FAILING = 27, 20, 7


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("facts")
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def stored_prompts(store: ResultStore) -> list[tuple[str, str, str, str]]:
    return [(r.lang, r.template, r.subject, r.object) for r in store.results()]


def scores_by_key(store: ResultStore, out: Path) -> dict[str, np.ndarray]:
    table = pd.read_parquet(export(store, out, "parquet"))
    return {row.key: np.asarray(row.scores, np.float32) for row in table.itertuples()}


def test_plan_covers_every_template_of_every_language(data):
    facts = load_dataset(data)
    assert len(plan(facts, LANGS)) == PROMPTS
    assert len(plan(facts, ["en"], relations=["P36"], max_facts=2)) == 4  # 2 facts × (train + heldout)
    with pytest.raises(InputError, match="relation"):
        plan(facts, LANGS, relations=["P999"])
    with pytest.raises(InputError, match="max-facts"):
        plan(facts, LANGS, max_facts=0)


def test_batch_stores_every_prompt_once_records_failures_and_skips_what_is_stored(bert_dir, data, tmp_path,
                                                                                  monkeypatch):
    store = ResultStore(tmp_path / "store.sqlite")
    real = executors.attribute

    def flaky(lm, prompt, *args, **kwargs):
        if prompt.subject == "Japan":
            raise RuntimeError("boom")
        return real(lm, prompt, *args, **kwargs)

    monkeypatch.setattr(executors, "attribute", flaky)
    first = run_batch(str(bert_dir), data, LANGS, CONFIG, store, progress=False)
    boom = [fact_id for fact_id, *_, reason in first.failed if reason == "RuntimeError: boom"]
    assert boom == ["P36-japan"] * 2 + ["P30-japan"] * 2  # the English prompts (train + heldout)
    assert (first.done, first.skipped, len(first.failed)) == (STORABLE - 4, 0, FAILING + 4)
    assert len(store.failures()) == FAILING + 4

    monkeypatch.setattr(executors, "attribute", real)
    second = run_batch(str(bert_dir), data, LANGS, CONFIG, store, progress=False)
    assert (second.done, second.skipped, len(second.failed)) == (4, STORABLE - 4, FAILING)
    assert len(store.failures()) == FAILING  # the retried prompts' failures are cleared
    assert all("unknown to this model's vocabulary" in f.reason for f in store.failures())
    assert sorted(stored_prompts(store)) == sorted(set(stored_prompts(store))) and len(store.results()) == STORABLE


def test_a_loaded_model_is_used_as_is_and_each_prompt_takes_its_lock(bert_dir, data, tmp_path, monkeypatch):
    """The app hands its loaded model over (no second copy); the local executor holds the model's lock per
    prompt, so a session sharing the model takes turns with the batch."""
    import kn_core.runs.batch as batch
    from kn_core.model.loading import load_model

    lm = load_model(str(bert_dir))
    monkeypatch.setattr(batch, "load_model", lambda *a, **k: pytest.fail("loaded a second copy"))
    real, held = executors.attribute, []

    def watched(model, prompt, *args, **kwargs):
        assert model is lm
        held.append(lm.lock._is_owned())  # RLock: owned by this thread while the prompt is computed
        return real(model, prompt, *args, **kwargs)

    monkeypatch.setattr(executors, "attribute", watched)
    store = ResultStore(tmp_path / "store.sqlite")
    report = run_batch(lm, data, ["en"], CONFIG, store, relations=["P30"], progress=False)
    assert report.done == len(held) == 8 and all(held)
    assert not lm.lock._is_owned() and lm.lock.acquire(blocking=False)  # released at the end
    lm.lock.release()


def test_a_batch_works_through_the_apps_queue(bert_dir, data, tmp_path, monkeypatch):
    """While a batch runs, its prompts wait as rows of the queue the app's workers take from, tagged by
    relation (the Relation overview follows them); each leaves as it is stored, a failed one stays failed with
    its reason; a batch that stops part-way withdraws what still waits, except what a page asked for."""
    from kn_core.model.loading import load_model
    from kn_core.runs.queue import BATCH, PAGE, Queue, Request, batch_tag

    lm = load_model(str(bert_dir))
    store = ResultStore(tmp_path / "store.sqlite")
    facts = load_dataset(data)

    def rows() -> dict[str, dict]:  # the queue of the store in use (the second part opens another)
        return {r["key"]: dict(r) for r in store._query("SELECT key, tag, priority, state, error FROM queue")}

    seen: list[dict] = []
    real = executors.attribute

    def watched(model, prompt, *args, **kwargs):
        seen.append(rows())
        if prompt.subject == "Japan":
            raise RuntimeError("boom")
        return real(model, prompt, *args, **kwargs)

    monkeypatch.setattr(executors, "attribute", watched)
    report = run_batch(lm, facts, ["en"], CONFIG, store, relations=["P36"], max_facts=3, progress=False)
    assert report.done == 4 and len(report.failed) == 2
    assert len(seen[0]) == 6 and {r["tag"] for r in seen[0].values()} == {batch_tag("P36", CONFIG)}
    assert {r["priority"] for r in seen[0].values()} == {BATCH}
    assert [len(s) for s in seen] == [6, 5, 4, 3, 2, 2]  # one fewer per stored prompt; the failed one stays
    left = rows()
    assert len(left) == 2 and {(r["state"], r["error"]) for r in left.values()} == {("failed", "RuntimeError: boom")}

    # part-way: the executor stops after two prompts; a page has asked for one of the rest meanwhile
    store = ResultStore(tmp_path / "other.sqlite")
    later = [lm.prompt(t.text, f.subject("en"), f.object("en")) for f in facts.facts_of("P30")[2:3]
             for t in facts.relations["P30"].templates_for("en")][:1]
    calls = []

    def stopping(model, prompt, *args, **kwargs):
        calls.append(prompt)
        if len(calls) == 1:
            Queue(store).submit(lm, [Request(later[0], CONFIG, "en", "P30-japan")], PAGE)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(model, prompt, *args, **kwargs)

    monkeypatch.setattr(executors, "attribute", stopping)
    with pytest.raises(KeyboardInterrupt):
        run_batch(lm, facts, ["en"], CONFIG, store, relations=["P30"], progress=False)
    left = rows()
    assert len(store.results()) == 2 and len(left) == 1  # the page's row stays; the batch's others are gone
    assert next(iter(left.values()))["priority"] == PAGE


def test_unknown_language_and_executor_are_clear_errors(bert_dir, data, tmp_path):
    store = ResultStore(tmp_path / "store.sqlite")
    with pytest.raises(InputError, match="fr not in the data set"):
        run_batch(str(bert_dir), data, ["fr"], CONFIG, store, progress=False)
    with pytest.raises(InputError, match="unknown executor"):
        run_batch(str(bert_dir), data, LANGS, CONFIG, store, executor="spark", progress=False)


def test_ray_executor_without_ray_says_how_to_install_it(bert_dir, data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(InputError, match="requirements-ray.txt"):
        run_batch(str(bert_dir), data, ["en"], CONFIG, ResultStore(tmp_path / "s.sqlite"), executor="ray",
                  progress=False)


SLOW_BATCH = """
import sys, time
import kn_core.runs.executors as executors
from kn_core.cli import main

real = executors.attribute

def slow(*args, **kwargs):  # so that the test can kill the run part-way
    time.sleep(0.25)
    return real(*args, **kwargs)

executors.attribute = slow
sys.exit(main(sys.argv[1:]))
"""


def test_sigkilled_batch_leaves_a_sound_store_and_resumes_to_the_rows_of_an_uninterrupted_run(bert_dir, data, tmp_path,
                                                                                              one_thread):
    path = tmp_path / "store.sqlite"
    store = ResultStore(path)
    script = tmp_path / "slow_batch.py"
    script.write_text(SLOW_BATCH, encoding="utf-8")
    batch = subprocess.Popen([sys.executable, str(script), "batch", "--model", str(bert_dir), "--data", str(data),
                              "--langs", "en,zh", "--steps", str(CONFIG.steps), "--store", str(path), "--threads", "1"],
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 45
    while store.info()["results"] < 3:
        assert batch.poll() is None, batch.stderr.read().decode()
        assert time.monotonic() < deadline, "the batch stored nothing in time"
        time.sleep(0.02)
    batch.send_signal(signal.SIGKILL)
    batch.wait()
    assert re.search(r"\d+/9 \[.*fact", batch.stderr.read().decode())  # the tqdm progress bar, in facts

    reopened = ResultStore(path)
    assert reopened.check() == "ok"
    finished = reopened.results()
    assert 3 <= len(finished) < STORABLE
    assert len(scores_by_key(reopened, tmp_path / "killed.parquet")) == len(finished)  # every result reads back

    assert len(reopened.claims()) <= 1  # the prompt the killed run was computing: its claim lapsed with it

    report = run_batch(str(bert_dir), data, LANGS, CONFIG, reopened, progress=False)
    assert (report.skipped, report.done, len(report.failed)) == (len(finished), STORABLE - len(finished), FAILING)
    prompts = stored_prompts(reopened)
    assert len(prompts) == len(set(prompts)) == STORABLE and reopened.claims() == {}

    uninterrupted = ResultStore(tmp_path / "uninterrupted.sqlite")
    run_batch(str(bert_dir), data, LANGS, CONFIG, uninterrupted, progress=False)
    resumed, whole = scores_by_key(reopened, tmp_path / "resumed.parquet"), scores_by_key(uninterrupted,
                                                                                          tmp_path / "whole.parquet")
    assert resumed.keys() == whole.keys() and all(np.array_equal(resumed[key], whole[key]) for key in whole)
