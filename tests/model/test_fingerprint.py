"""Weight fingerprints: remembered across processes by the files' identity, recomputed when a file changes."""
from __future__ import annotations

import json
import os

import pytest

from kn_core.model import fingerprint
from kn_core.model.fingerprint import CACHE_FILE, model_fingerprint
from kn_core.model.loading import load_model
from helpers import make_bert


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KN_EXPLORER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fingerprint, "_FILE_FINGERPRINTS", {})  # a fresh process's memory
    return tmp_path / "home"


def _new_process(monkeypatch):
    monkeypatch.setattr(fingerprint, "_FILE_FINGERPRINTS", {})


def test_a_new_process_reads_the_hash_instead_of_hashing(tmp_path, home, monkeypatch):
    lm = load_model(str(make_bert(tmp_path / "m")))
    first = model_fingerprint(lm)
    assert json.loads((home / CACHE_FILE).read_text()) and first in (home / CACHE_FILE).read_text()
    _new_process(monkeypatch)
    monkeypatch.setattr(fingerprint, "_hash_files", lambda files: pytest.fail("hashed again"))
    assert model_fingerprint(lm) == first


def test_a_rewritten_weight_file_is_hashed_again(tmp_path, home, monkeypatch):
    folder = make_bert(tmp_path / "m", seed=0)
    lm = load_model(str(folder))
    first = model_fingerprint(lm)
    other = make_bert(tmp_path / "other", seed=1)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    os.replace(other / "model.safetensors", weights)  # another checkpoint in its place
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old modification time
    _new_process(monkeypatch)
    assert model_fingerprint(lm) != first
    assert model_fingerprint(lm) == model_fingerprint(load_model(str(folder)))


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"x": 3}', ""])
def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path, home, monkeypatch, damage):
    lm = load_model(str(make_bert(tmp_path / "m")))
    expected = model_fingerprint(lm)
    (home / CACHE_FILE).write_text(damage)
    _new_process(monkeypatch)
    assert model_fingerprint(lm) == expected
    assert expected in json.loads((home / CACHE_FILE).read_text()).values()


def test_an_unwritable_home_still_gives_the_fingerprint(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the home folder should be")
    monkeypatch.setenv("KN_EXPLORER_HOME", str(blocker / "home"))
    _new_process(monkeypatch)
    lm = load_model(str(make_bert(tmp_path / "m")))
    assert len(model_fingerprint(lm)) == 64
