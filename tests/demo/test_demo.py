"""The bundled demo models (assets/models) and their training script (kn_core.demo)."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from kn_core.attribution import AttributionConfig, attribute
from kn_core.data import FactSet, load_bundled
from kn_core.demo import card
from kn_core.demo.corpus import build_corpus
from kn_core.demo.tokenizer import train_vocab
from kn_core.demo.train import TrainConfig, TrainRecord, train
from kn_core.errors import DataError
from kn_core.method.evaluate import correct_flags
from kn_core.method.interventions import verify
from kn_core.method.neurons import coarse_neurons, default_tau
from kn_core.model.loading import DEMO_MODELS, load_model

pytestmark = pytest.mark.usefixtures("one_thread")

DEMOS = tuple(DEMO_MODELS)
TOP_NEURONS = 15
LOCATE_FACTS = ("P36-france", "P36-japan", "P37-brazil")

needs_demos = pytest.mark.skipif(not all((DEMO_MODELS[name] / "config.json").is_file() for name in DEMOS),
                                 reason="demo models missing: run `python -m kn_core.demo train`")


@pytest.fixture(scope="module")
def factset() -> FactSet:
    return load_bundled()


@pytest.fixture(scope="module", params=DEMOS)
def demo(request):
    return load_model(request.param)


def first_prompts(lm, factset: FactSet, lang: str, count: int) -> list:
    """The first train template of each of the first ``count`` facts, in ``lang``."""
    return [lm.prompt(factset.relation(fact.relation).templates_for(lang, heldout=False)[0].text,
                      fact.subject(lang), fact.object(lang)) for fact in factset.facts[:count]]


# -- the shipped models -------------------------------------------------------------------------------
@needs_demos
@pytest.mark.parametrize("name", DEMOS)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_demo_model_loads_offline_and_completes_a_fact_it_knows(name, lang, factset, monkeypatch):
    def no_network(*_args, **_kwargs):
        raise OSError("network access attempted while loading a bundled demo model")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    lm = load_model(name)
    prompts = first_prompts(lm, factset, lang, 20)
    flags = correct_flags(lm, prompts)
    assert sum(flags) >= 18, f"{name} completes only {sum(flags)} of 20 {lang} facts"
    prompt = prompts[flags.index(True)]
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([prompt.input_ids])).logits[0]
    predicted = logits[list(prompt.target_positions)].argmax(-1).tolist()
    assert predicted == list(prompt.object_ids)
    assert lm.tokenizer.decode(predicted).replace(" ", "") == prompt.object.replace(" ", "")


@needs_demos
def test_demo_models_share_one_vocabulary_and_have_their_special_tokens():
    mlm, clm = load_model("demo-mlm"), load_model("demo-clm")
    assert mlm.tokenizer.get_vocab() == clm.tokenizer.get_vocab()
    assert mlm.tokenizer.mask_token_id is not None and clm.tokenizer.eos_token_id is not None
    text = "The capital of 法国 is Paris。"
    assert clm.tokenizer.encode(text) == mlm.tokenizer.encode(text, add_special_tokens=False)
    assert len(mlm.tokenizer.encode("多多马", add_special_tokens=False)) == 3  # CJK split into characters


@needs_demos
def test_suppressing_knowledge_neurons_hurts_far_more_than_random_neurons(demo, factset):
    own, control = [], []
    for fact_id in LOCATE_FACTS:
        fact = factset.fact(fact_id)
        for lang in ("en", "zh"):
            template = factset.relation(fact.relation).templates_for(lang, heldout=False)[0]
            prompt = demo.prompt(template.text, fact.subject(lang), fact.object(lang))
            scores = attribute(demo, prompt, AttributionConfig(steps=20)).scores
            neurons = [(layer, index) for layer, index, _ in coarse_neurons(scores, default_tau(lang))[:TOP_NEURONS]]
            result = verify(demo, [prompt], neurons, "suppress", seed=0)
            own.append(result.own)
            control.append(result.random)
    assert all(o < c for o, c in zip(own, control)), (own, control)
    assert np.mean(own) < -0.1, own
    assert abs(np.mean(control)) < 0.2 * abs(np.mean(own)), (own, control)


# -- the training script ------------------------------------------------------------------------------
def small_factset(factset: FactSet) -> FactSet:
    return FactSet(factset.relations, factset.facts[::25])


@pytest.mark.parametrize("model", DEMOS)
def test_smoke_training_is_deterministic_and_saves_a_loadable_model(model, factset, tmp_path):
    data = small_factset(factset)
    config = TrainConfig.for_model(model, steps=4, batch_size=8, layers=1, hidden=16, heads=2, d_ff=24, log_every=2)
    reported: list[tuple[int, float]] = []
    first = train(config, tmp_path / "a", data, progress=lambda step, loss: reported.append((step, loss)))
    second = train(config, tmp_path / "b", data)
    assert len(first.losses) == 4 and all(np.isfinite(first.losses))
    assert first.losses == second.losses
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert [step for step, _ in reported] == [2, 4]
    lm = load_model(str(tmp_path / "a"))
    assert (lm.kind, lm.n_layers, lm.d_ff) == ({"demo-mlm": "masked", "demo-clm": "causal"}[model], 1, 24)
    assert len(correct_flags(lm, first_prompts(lm, data, "zh", 3))) == 3


def test_model_card_is_written_from_the_training_record(factset, tmp_path):
    data = small_factset(factset)
    config = TrainConfig.for_model("demo-mlm", steps=2, batch_size=4, layers=1, hidden=16, heads=2, d_ff=24)
    result = train(config, tmp_path, data)
    assert TrainRecord.load(tmp_path) == result.record
    measured = card.write(tmp_path, data)
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert card.accuracy_table(measured.accuracy) in text and card.effects_table(measured.effects) in text
    splits = {(result.lang, result.heldout) for result in measured.accuracy}
    assert splits == {(lang, heldout) for lang in ("en", "zh") for heldout in (False, True)}
    (tmp_path / "training.json").unlink()
    with pytest.raises(DataError, match="training record"):
        card.write(tmp_path, data)


def test_training_sets_seeds_inside_and_restores_the_thread_count(factset, tmp_path):
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    config = TrainConfig.for_model("demo-clm", steps=2, batch_size=4, layers=1, hidden=16, heads=2, d_ff=24,
                                   threads=2)
    losses = train(config, tmp_path / "a", small_factset(factset)).losses
    torch.rand(5)  # the global RNG state before a run must not matter
    assert train(config, tmp_path / "b", small_factset(factset)).losses == losses
    assert torch.get_num_threads() == threads


def test_corpus_uses_train_templates_only_and_mixes_languages(factset):
    corpus = build_corpus(factset)
    heldout = {t.text for relation in factset.relations.values() for t in relation.templates if t.heldout}
    assert not heldout & {sentence.template for sentence in corpus}
    kinds = {sentence.kind for sentence in corpus}
    assert kinds == {"fact", "switched", "bridge"}
    switched = next(s for s in corpus if s.kind == "switched" and s.lang == "en")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in switched.subject)
    assert switched.object.isascii()


def test_vocabulary_is_deterministic_and_splits_chinese_into_characters(factset):
    texts = [sentence.text for sentence in build_corpus(small_factset(factset))]
    vocab = train_vocab(texts, "多马")
    assert vocab == train_vocab(texts, "多马")
    assert list(vocab)[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "多" in vocab and "马" in vocab and "多马" not in vocab
