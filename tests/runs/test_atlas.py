"""The atlas: results that ship with the repository, read as a read-only layer under the user's store.

Built here from demo-clm (a bundled model with a stable name and weights), then read through a fresh, empty store:
what it gives (scores, knowledge-neuron sets, heatmaps, the relation overview, documents) equals what the full
results give; the user's file wins and receives nothing; other weights never see it; the files are written
deterministically. The real-model test recomputes one shipped prompt per model and compares it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from kn_core.app import figures
from kn_core.attribution import AttributionConfig, attribute
from kn_core.data import load_bundled
from kn_core.errors import StoreError
from kn_core.model.loading import load_model
from kn_core.runs import queries
from kn_core.home import home_dir
from kn_core.runs.atlas import QMAX, ROOT, Atlas, coarse_set, decode_scores, encode_scores
from kn_core.runs.atlas_build import AtlasPart, AtlasPlan, compute, derive, documents, planned_keys
from kn_core.runs.atlas import write_model_atlas
from kn_core.runs.store import ResultKey, ResultStore

CONFIG = AttributionConfig(steps=4)
PLAN = AtlasPlan("demo-clm", (AtlasPart(("en", "zh"), facts=2, relations=("P36",)),  # main: checkers, showcase
                              AtlasPart(("en",), facts=1, relations=("P37",))))  # a further part
MAIN = PLAN.main
P = 0.7
CHECKER = PLAN.checker  # the Fact-check page's default checker: calibrated on the plan's facts


def test_quantisation_keeps_every_score_within_its_bound_and_is_deterministic():
    rng = np.random.default_rng(0)
    scores = (rng.standard_normal((7, 33)) * rng.random((7, 33)) ** 4).astype(np.float32)
    blob, scale = encode_scores(scores)
    decoded = decode_scores(blob, scale, scores.shape)
    bound = np.abs(scores).max() / (2 * QMAX)
    assert np.abs(decoded - scores).max() <= bound * 1.0001
    assert encode_scores(scores) == (blob, scale)
    assert coarse_set(decoded, 0.3) == coarse_set(scores, 0.3)
    assert np.all(decode_scores(*encode_scores(np.zeros((2, 3), np.float32)), (2, 3)) == 0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """demo-clm's P36 facts (2 facts, en and zh, every template) computed into a full store, its effects, checkers
    and showcase (what ``atlas build`` derives), and written as an atlas."""
    root = tmp_path_factory.mktemp("atlas")
    full = ResultStore(root / "full.sqlite", atlas=None)
    lm = load_model("demo-clm")
    factset = load_bundled()
    compute(lm, PLAN, factset, CONFIG, full, progress=False)
    pick = derive(lm, PLAN, factset, CONFIG, full)
    keys = planned_keys(lm, PLAN, factset, CONFIG)
    rows = [dict(r) for batch in full.rows(_COLUMNS) for r in batch]
    counts = write_model_atlas(root / "atlas" / lm.name, lm.name, queries.model_fingerprint(lm), {"steps": 4},
                               rows, documents(lm, PLAN, factset, CONFIG, full, pick), {"en": 0.3, "zh": 0.2})
    return {"root": root, "full": full, "lm": lm, "factset": factset, "keys": keys, "counts": counts, "pick": pick}


_COLUMNS = ("key", "model", "fingerprint", "lang", "template", "subject", "object", "baseline", "steps", "rule",
            "layers", "method_version", "engine", "p_object", "n_layers", "d_ff", "record", "created", "scores",
            "convergence_delta", "baseline_probs")


def layered(built, tmp_path) -> ResultStore:
    return ResultStore(tmp_path / "user.sqlite", atlas=Atlas(built["root"] / "atlas"))


def test_the_atlas_gives_what_the_full_results_give(built, tmp_path):
    store, full, lm = layered(built, tmp_path), built["full"], built["lm"]
    assert built["counts"]["results"] == len(built["keys"]) == 2 * 2 * 5 + 1 * 5  # both parts
    for key in built["keys"]:
        assert store.has(key) and not store.in_file(key)
        mine, theirs = store.get(key), full.get(key)
        bound = np.abs(theirs.scores).max() / (2 * QMAX) * 1.0001
        assert np.abs(mine.scores - theirs.scores).max() <= bound
        assert mine.prompt == theirs.prompt and mine.token_probs == theirs.token_probs
        np.testing.assert_array_equal(mine.path_deltas, theirs.path_deltas)
        tau = queries.tau_of(key.lang)
        assert coarse_set(mine.scores, tau) == coarse_set(theirs.scores, tau)
        shown, expected = figures.neuron_heatmap(mine.scores).data[0], figures.neuron_heatmap(theirs.scores).data[0]
        np.testing.assert_allclose(np.asarray(shown.z), np.asarray(expected.z), rtol=0, atol=bound)
        np.testing.assert_array_equal(np.asarray(shown.customdata), np.asarray(expected.customdata))
    for lang in MAIN.langs:
        mine = queries.relation_overview(store, lm, built["factset"], "P36", MAIN.langs, CONFIG, P).langs[lang]
        theirs = queries.relation_overview(full, lm, built["factset"], "P36", MAIN.langs, CONFIG, P).langs[lang]
        for a, b in zip(mine.stored, theirs.stored, strict=True):  # each score within its prompts' bound
            bound = max(np.abs(r.scores).max() for r in b.results) / (2 * QMAX) * 1.0001
            np.testing.assert_allclose([n.score for n in a.neurons], [n.score for n in b.neurons], rtol=0, atol=bound)
        assert [[n[:2] for n in f.neurons] for f in mine.stored] == [[n[:2] for n in f.neurons] for f in theirs.stored]
        np.testing.assert_array_equal(mine.per_layer, theirs.per_layer)
        assert mine.effects == theirs.effects and len(mine.effects) == MAIN.facts
    assert queries.showcase(store).to_json() == built["pick"]
    for lang in MAIN.langs:  # the Fact-check page's checker and evaluation, read from the atlas alone
        checker = queries.stored_checker(store, lm, "P36", lang, CONFIG, CHECKER)
        assert checker is not None and checker == queries.stored_checker(full, lm, "P36", lang, CONFIG, CHECKER)
        assert len(checker.train_facts) + len(checker.test_facts) == CHECKER.facts
        assert queries.stored_evaluation(store, lm, "P36", lang, CONFIG, CHECKER).equals(
            queries.stored_evaluation(full, lm, "P36", lang, CONFIG, CHECKER))
    listed = {r.key for r in store.results(lm.name)}
    assert listed == {k.digest for k in built["keys"]}
    assert sum(len(b) for b in store.rows(("key", "scores"), model=lm.name)) == len(listed)
    assert store.info()["results"] == 0 and store.info()["atlas"]["demo-clm"]["used"]


def test_the_users_file_wins_and_receives_nothing(built, tmp_path):
    store, full = layered(built, tmp_path), built["full"]
    key = built["keys"][0]
    store.get(key)
    assert store.info()["results"] == 0 and store.info()["documents"] == 0
    other = full.get(key)
    changed = type(other)(**{**other.__dict__, "scores": other.scores * 0 + 1.0})
    store.put(key, changed)
    assert np.all(store.get(key).scores == 1.0)
    assert len(store.results(built["lm"].name)) == len(built["keys"])  # the file's row replaces the atlas's


def test_other_weights_never_see_the_atlas(built, tmp_path):
    """A copy of demo-clm whose weights differ by one value, under an atlas computed on demo-clm: unused."""
    import json

    from safetensors.torch import load_file, save_file

    source = Path(built["lm"].source)
    folder = tmp_path / "demo-clm-changed"
    shutil.copytree(source, folder)
    weights = load_file(folder / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] += 1.0
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    atlas_root = tmp_path / "atlas"
    shutil.copytree(built["root"] / "atlas" / "demo-clm", atlas_root / "changed")
    meta = json.loads((atlas_root / "changed" / "atlas.json").read_text())
    meta["name"] = str(folder)
    (atlas_root / "changed" / "atlas.json").write_text(json.dumps(meta))
    store = ResultStore(tmp_path / "user.sqlite", atlas=Atlas(atlas_root))
    changed = load_model(str(folder))
    key = built["keys"][0]
    moved = ResultKey.of(changed, changed.prompt(key.template, key.subject, key.object), CONFIG, key.lang)
    assert moved.digest != key.digest
    assert store.atlas.model(str(folder)) is None and store.results(str(folder)) == []
    assert store.get_json(queries.SHOWCASE_KIND, queries.SHOWCASE_KEY) is None


def test_writing_is_deterministic_and_a_rebuild_changes_only_what_changed(built, tmp_path):
    lm, full = built["lm"], built["full"]
    rows = [dict(r) for batch in full.rows(_COLUMNS) for r in batch]
    first, second = tmp_path / "a", tmp_path / "b"
    for out, chosen in ((first, rows), (second, rows[:-1])):
        write_model_atlas(out, lm.name, "f" * 64, {"steps": 4}, chosen, [], {"en": 0.3, "zh": 0.2})
    again = tmp_path / "c"
    write_model_atlas(again, lm.name, "f" * 64, {"steps": 4}, list(reversed(rows)), [], {"en": 0.3, "zh": 0.2})
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
    differing = [f for f in files if not (second / f).exists() or (first / f).read_bytes() != (second / f).read_bytes()]
    assert sorted(str(f) for f in differing) == sorted(["atlas.json", "results.jsonl", f"scores/{rows[-1]['key']}.xz"])


def test_a_damaged_atlas_folder_is_left_out_with_its_reason_and_the_store_still_works(built, tmp_path):
    root = tmp_path / "atlas"
    shutil.copytree(built["root"] / "atlas", root)
    (root / "demo-clm" / "results.jsonl").write_text("{not json\n")
    store = ResultStore(tmp_path / "user.sqlite", atlas=Atlas(root))
    assert not store.has(built["keys"][0]) and store.results() == []
    problem = store.info()["atlas"][str(root / "demo-clm")]
    assert not problem["used"] and "is damaged" in problem["problem"] and "git checkout" in problem["problem"]


def test_a_score_matrix_is_decoded_once_and_warm_decodes_them_all(built, tmp_path):
    root = tmp_path / "atlas"
    shutil.copytree(built["root"] / "atlas", root)
    model = Atlas(root).model("demo-clm")
    assert model is not None
    model.warm()
    for path in (root / "demo-clm" / "scores").iterdir():  # every matrix is held decoded: the files are not read
        path.write_bytes(b"damaged")
    for key in model.rows:
        first = model.scores(key)
        assert model.scores(key) is first and not first.flags.writeable  # shared, so nobody may change it
    damaged = Atlas(root).model("demo-clm")  # a new process reads the files again: the damage is reported
    assert damaged is not None
    with pytest.raises(StoreError, match="is damaged"):
        damaged.scores(next(iter(damaged.rows)))
    damaged.warm()  # never raises: logged, and raised again by the page that reads it


USER_HOME = home_dir()  # at collection: the user's home (where `make test` installs SmolLM2), not conftest's


@pytest.mark.real_model
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_a_shipped_prompt_recomputes_to_the_same_result(name, tmp_path, monkeypatch):
    """One shipped prompt per real model family, recomputed now with the settings it was stored with."""
    monkeypatch.setenv("KN_EXPLORER_HOME", str(USER_HOME))
    atlas = Atlas(ROOT)
    if name not in atlas.names:
        pytest.skip(f"the atlas holds no {name}")
    layer = atlas.model(name)
    if layer is None:
        pytest.skip(f"{name} is not installed in {USER_HOME} with the weights the atlas was computed on")
    store = ResultStore(tmp_path / "s.sqlite", atlas=atlas)
    lm = load_model(name)
    key_text = sorted(layer.rows)[0]
    row = layer.rows[key_text]
    import json

    record = json.loads(row["record"])
    config = AttributionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})
    prompt = lm.prompt(row["template"], row["subject"], row["object"])
    key = ResultKey.of(lm, prompt, config, row["lang"])
    assert key.digest == key_text
    shipped, fresh = store.get(key), attribute(lm, prompt, config, lang=row["lang"])
    peak = np.abs(fresh.scores).max()
    assert np.abs(shipped.scores - fresh.scores).max() <= 1e-3 * peak
    tau = queries.tau_of(row["lang"])
    assert coarse_set(shipped.scores, tau) == coarse_set(fresh.scores, tau)
    assert shipped.p_object == pytest.approx(fresh.p_object, rel=1e-4)


def test_the_showcase_prefers_a_fact_the_model_knows(built, monkeypatch):
    """Among the stored facts, the showcase is one whose mean P(object) reaches SHOWCASE_MIN_P when any does:
    with the bar just below the best-known fact's, that fact is chosen whatever its suppression effect."""
    full, lm, factset = built["full"], built["lm"], built["factset"]
    facts = [f for lang in MAIN.langs
             for f in queries.stored_facts(full, lm, factset, "P36", lang, CONFIG, queries.tau_of(lang), P)
             if f.neurons]
    best = max(facts, key=lambda f: np.mean([r.p_object for r in f.results]))
    monkeypatch.setattr(queries, "SHOWCASE_MIN_P", float(np.mean([r.p_object for r in best.results])) - 1e-9)
    pick = queries.choose_showcase(full, lm, factset, list(MAIN.langs), CONFIG, P, ["P36"])
    assert (pick.fact, pick.lang) == (best.fact.id, best.lang)


def test_a_checker_on_the_first_facts_has_its_own_key_and_every_fact_keeps_the_old_one(built):
    lm, factset = built["lm"], built["factset"]
    every = queries.DKNSettings()
    assert "facts=" not in queries.checker_key(lm, "P36", "en", CONFIG, every)  # what older stores hold
    assert queries.checker_key(lm, "P36", "en", CONFIG, CHECKER).endswith(f"|facts={CHECKER.facts}")
    assert ([f.id for f in CHECKER.chosen(factset, "P36", "en")]
            == [f.id for f in factset.facts_of("P36")[:CHECKER.facts]])
    assert len(every.chosen(factset, "P36", "en")) == len(factset.facts_of("P36"))
