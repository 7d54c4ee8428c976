"""Top-1 object accuracy (kn_core.method.evaluate) and the ``accuracy`` command."""
from __future__ import annotations

import json

import pytest
import torch

from kn_core.cli import main
from kn_core.data import Fact, FactSet, Relation, Template
from kn_core.method.evaluate import AccuracyResult, correct_flags, fact_prompts, object_accuracy
from kn_core.model.hooks import run
from kn_core.model.loading import DEMO_MODELS

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATES = (Template("P36", "en", "The capital of [X] is [Y].", False),
             Template("P36", "en", "[X]'s capital is [Y].", False),
             Template("P36", "en", "[X] has its capital in the city of [Y].", True))
FACTS = (Fact("P36-tanzania", "P36", {"en": ("Tanzania", "Dodoma")}),
         Fact("P36-france", "P36", {"en": ("France", "Paris")}),
         Fact("P36-kenya", "P36", {"en": ("Kenya", "Dar es Salaam")}),
         Fact("P36-japan", "P36", {"en": ("Japan", "Tokyo")}),
         Fact("P36-peru", "P36", {"en": ("Peru", "Lima ☃")}))  # the tiny WordPiece vocabulary has no snowman


@pytest.fixture(scope="module")
def small_set() -> FactSet:
    return FactSet({"P36": Relation("P36", "capital", "", TEMPLATES)}, FACTS)


def single_prompt_flag(lm, prompt) -> bool:
    """The reference: one unbatched forward pass."""
    with torch.inference_mode():
        logits = run(lm, torch.tensor([prompt.input_ids]))[0]
    return logits[list(prompt.target_positions)].argmax(-1).tolist() == list(prompt.object_ids)


def test_batched_flags_equal_single_forward_passes(lm, small_set):
    prompts, skipped = fact_prompts(lm, small_set, "en", heldout=False)
    assert len(prompts) + skipped == len(FACTS) * 2
    assert len({len(p.input_ids) for p in prompts}) > 1  # several lengths, so several groups
    assert correct_flags(lm, prompts, batch_size=2) == [single_prompt_flag(lm, p) for p in prompts]


def test_accuracy_counts_every_fact_and_template_of_the_split(lm, small_set):
    result = object_accuracy(lm, small_set, "en", heldout=False)
    assert isinstance(result, AccuracyResult) and result.split == "train"
    unspellable = 2 if lm.kind == "masked" else 0  # the tiny GPT-2's byte-level BPE spells every character
    assert (result.n, result.skipped) == (len(FACTS) * 2 - unspellable, unspellable)
    assert 0 <= result.correct <= result.n
    heldout = object_accuracy(lm, small_set, "en", heldout=True)
    assert heldout.heldout and heldout.n + heldout.skipped == len(FACTS)
    with pytest.raises(ValueError, match="lang"):
        object_accuracy(lm, small_set, "zh", heldout=False)


def test_accuracy_of_an_empty_split_is_none(lm):
    facts = FactSet({"P36": Relation("P36", "capital", "", TEMPLATES[:1])}, FACTS[:2])
    result = object_accuracy(lm, facts, "en", heldout=True)
    assert (result.n, result.accuracy) == (0, None)


def test_templates_a_causal_lm_cannot_take_are_skipped_not_counted(lm):
    object_first = Template("P36", "en", "[Y] is the capital of [X].", False)
    facts = FactSet({"P36": Relation("P36", "capital", "", (object_first,))}, FACTS[:2])
    result = object_accuracy(lm, facts, "en", heldout=False)
    assert (result.n, result.skipped) == ((0, 2) if lm.kind == "causal" else (2, 0))


def test_accuracy_command_writes_the_json_fields(bert_dir, tmp_path, capsys):
    out = tmp_path / "acc.json"
    assert main(["accuracy", "--model", str(bert_dir), "--lang", "zh", "--json", str(out)]) == 0
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert {"model", "lang", "accuracy", "n", "heldout_accuracy", "heldout_n"} <= payload.keys()
    assert payload["lang"] == "zh" and payload["n"] > 0 and payload["heldout_n"] > 0
    assert "held-out" in capsys.readouterr().out


def test_accuracy_command_rejects_an_unknown_language(bert_dir, capsys):
    assert main(["accuracy", "--model", str(bert_dir), "--lang", "pt"]) == 2
    assert "lang" in capsys.readouterr().err


@pytest.mark.skipif(not (DEMO_MODELS["demo-clm"] / "config.json").is_file(),
                    reason="demo models missing: run `python -m kn_core.demo train`")
def test_demo_model_reaches_its_documented_accuracy(tmp_path):
    out = tmp_path / "acc.json"
    assert main(["accuracy", "--model", "demo-clm", "--lang", "en", "--json", str(out)]) == 0
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["accuracy"] >= 0.9 and payload["skipped"] == 0
    assert payload["heldout_accuracy"] is not None
