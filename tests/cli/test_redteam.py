"""Red-team cases of issue #17: each bad input or hostile path, given to ``python -m kn_core`` as an attacker or a
careless user would, ends in one ``error:`` line (exit code 2, no traceback) and leaves the store file
byte-identical; the inputs that must work (mLAMA oddities, strict JSON, ``--threads`` everywhere) work.

Every case failed before the fix (a traceback, exit 0 with the store replaced, a silently wrong result, or a
misleading message). Commands run in-process through :func:`kn_core.cli.main` on the tiny models of
``tests/helpers.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from kn_core import cli
from kn_core.runs.store import ResultStore

TEMPLATE = "The capital of [X] is [Y]."
MAX_BYTES = "KN_EXPLORER_MAX_MODEL_BYTES"


@dataclass(frozen=True)
class Ctx:
    """Where a case runs: ``store`` is the default store ($KN_EXPLORER_HOME/store.sqlite), holding one result."""

    tmp: Path
    store: Path
    bert: Path
    gpt2: Path


def locate(ctx: Ctx, *extra: str, model: str | None = None, template: str = TEMPLATE, subject: str = "Tanzania",
           lang: str = "en") -> list[str]:
    return ["locate", "--model", model or str(ctx.bert), "--lang", lang, "--template", template, "--subject", subject,
            "--object", "Dodoma", "--steps", "2", "--store", str(ctx.store), "--threads", "1", *extra]


# -- model folders ----------------------------------------------------------------------------------------
def model_variant(ctx: Ctx, name: str, config: dict | None = None, weights: Callable[[bytes], bytes] | None = None,
                  drop: Callable[[str], bool] | None = None, source: Path | None = None,
                  tokenizer: Callable[[bytes], bytes] | None = None) -> str:
    """A copy of the tiny BERT (or ``source``) with its config updated, its weights or tokenizer.json rewritten or
    some files removed."""
    folder = ctx.tmp / name
    shutil.copytree(source or ctx.bert, folder)
    if tokenizer is not None:
        path = folder / "tokenizer.json"
        path.write_bytes(tokenizer(path.read_bytes()))
    if config is not None:
        path = folder / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    if weights is not None:
        path = folder / "model.safetensors"
        path.write_bytes(weights(path.read_bytes()))
    for file in list(folder.iterdir()):
        if drop is not None and drop(file.name):
            file.unlink()
    return str(folder)


def config_only(ctx: Ctx, name: str, config: dict) -> str:
    """A folder with a config.json (no weights): the size guard must refuse it from the config alone."""
    folder = ctx.tmp / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


REMOTE_CODE = ("from pathlib import Path\nPath(__file__).with_name('RAN').write_text('ran')\n"
               "from transformers import PretrainedConfig\n"
               "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")


def remote_code_model(ctx: Ctx) -> str:
    folder = Path(config_only(ctx, "remote", {"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}}))
    (folder / "evil.py").write_text(REMOTE_CODE)
    return str(folder)


def _small_llama(vocab: int, hidden: int, tie: bool) -> dict:
    return {"model_type": "llama", "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 8,
            "max_position_embeddings": 64, "tie_word_embeddings": tie}


# -- mLAMA and stores ---------------------------------------------------------------------------------------
def mlama(ctx: Ctx, fact_lines: list[str], templates_prefix: str = "") -> str:
    root = ctx.tmp / "mlama"
    (root / "en").mkdir(parents=True)
    (root / "en" / "templates.jsonl").write_text(
        templates_prefix + json.dumps({"relation": "P36", "template": TEMPLATE}) + "\n", encoding="utf-8")
    (root / "en" / "P36.jsonl").write_text("\n".join(fact_lines) + "\n", encoding="utf-8")
    return str(root)


GOOD_FACT = json.dumps({"uuid": "u1", "sub_label": "Tanzania", "obj_label": "Dodoma"})
DEEP = "[" * 100_000 + "]" * 100_000
HUGE_UUID = '{"uuid": ' + "7" * 5000 + ', "sub_label": "France", "obj_label": "Paris"}'


def damage_one_row(store: Path) -> None:
    """One stored result's score matrix cut to 3 bytes, as a disk error or a foreign writer might leave it."""
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE results SET scores = x'010203' WHERE rowid = (SELECT min(rowid) FROM results)")
    conn.close()


def _link(kind: str) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        target = ctx.tmp / f"{kind}.parquet"
        (os.symlink if kind == "symlink" else os.link)(ctx.store, target)
        return ["store", "export", str(target), "--store", str(ctx.store)]
    return build


def _fifo(ctx: Ctx) -> list[str]:
    os.mkfifo(ctx.tmp / "pipe.parquet")
    return ["store", "export", str(ctx.tmp / "pipe.parquet"), "--store", str(ctx.store)]


def _folder(ctx: Ctx) -> str:
    (ctx.tmp / "a-folder").mkdir()
    return str(ctx.tmp / "a-folder")


# -- cases of issue #26 -------------------------------------------------------------------------------------
LONG = "a" * 300  # one path component over the 255 bytes file systems allow


def overwrite_4k(data: bytes) -> bytes:
    """4 KiB of the weights (past the header) overwritten with 0xff: float32 NaNs."""
    at = len(data) // 2
    return data[:at] + b"\xff" * 4096 + data[at + 4096:]


def damaged_install(ctx: Ctx) -> list[str]:
    """smollm2-135m's folder under $KN_EXPLORER_HOME/models with its kn_model.json deleted."""
    folder = Path(os.environ["KN_EXPLORER_HOME"]) / "models" / "smollm2-135m"
    shutil.copytree(ctx.bert, folder)
    return locate(ctx, model="smollm2-135m")


@dataclass(frozen=True)
class Case:
    """A command line that must end in exactly one ``error:`` line containing ``match`` (exit code 2)."""

    what: str
    argv: Callable[[Ctx], list[str]]
    match: str
    env: dict = field(default_factory=dict)
    only_line: bool = False  # nothing else on stderr either (no retry warnings, no load report)
    setup: Callable[[Path], None] | None = None  # run on the store before the case (its bytes are compared after)


CASES = [
    # output paths: the store itself, links to it, a pipe, a folder, a missing folder, a device
    Case("store export onto the store", lambda c: ["store", "export", str(c.store), "--store", str(c.store)],
         "result store"),
    Case("store info --json onto the store", lambda c: ["store", "info", "--json", str(c.store)], "result store"),
    Case("locate --json onto the store", lambda c: locate(c, "--json", str(c.store)), "result store"),
    Case("accuracy --json onto the (default) store",
         lambda c: ["accuracy", "--model", str(c.bert), "--lang", "en", "--json", str(c.store), "--threads", "1"],
         "result store"),
    Case("data summary --json onto the store", lambda c: ["data", "summary", "bundled", "--json", str(c.store)],
         "result store"),
    Case("store export onto a symlink to the store", _link("symlink"), "result store"),
    Case("store export onto a hard link to the store", _link("hardlink"), "result store"),
    Case("store export onto a named pipe", _fifo, "not a regular file"),
    Case("locate --json into a folder", lambda c: locate(c, "--json", _folder(c)), "is a folder"),
    Case("locate --json in a missing folder", lambda c: locate(c, "--json", str(c.tmp / "no" / "such" / "x.json")),
         "does not exist"),
    Case("locate --json to a full device", lambda c: locate(c, "--json", "/dev/full"), "not a regular file"),
    *(Case(f"experiment factcheck {' '.join(extra)}, refused before loading",
           lambda c, extra=extra: ["experiment", "factcheck", "--model", str(c.bert), "--langs", "en",
                                   "--out", str(c.tmp / "fc"), "--threads", "1", *extra], match)
      for extra, match in ((("--top-k", "0"), "top_k"), (("--t-low", "0.5", "--t-high", "0.2"), "T_low"),
                           (("--t-high", "nan"), "T_high"), (("--max-group", "1"), "max_size"),
                           (("--t", "1.5"), "t: must lie in [0, 1]"))),
    Case("experiment --out onto the store, refused before computing",
         lambda c: ["experiment", "localize", "--model", str(c.bert), "--langs", "en", "--relations", "P36",
                    "--max-facts", "1", "--max-templates", "1", "--steps", "2", "--out", str(c.store),
                    "--threads", "1"], "not a folder"),
    # model folders
    Case("garbage safetensors", lambda c: locate(c, model=model_variant(c, "garbage", weights=lambda b: b"\x8a" * 999)),
         "weights"),
    Case("truncated safetensors",
         lambda c: locate(c, model=model_variant(c, "truncated", weights=lambda b: b[:len(b) // 2])), "weights"),
    Case("empty safetensors", lambda c: locate(c, model=model_variant(c, "empty", weights=lambda b: b"")), "weights"),
    Case("config with a negative size", lambda c: locate(c, model=model_variant(c, "neg", {"hidden_size": -24})),
         "hidden_size"),
    Case("config with a non-numeric size",
         lambda c: locate(c, model=model_variant(c, "text", {"intermediate_size": "big"})), "intermediate_size"),
    Case("config sizes not matching the weights",
         lambda c: locate(c, model=model_variant(c, "wider", {"intermediate_size": 50})), "do not match"),
    Case("config with more layers than the weights hold",
         lambda c: locate(c, model=model_variant(c, "deeper", {"num_hidden_layers": 5})), "missing"),
    Case("position embeddings counted by the size guard",
         lambda c: locate(c, model=config_only(c, "positions", {
             "model_type": "bert", "vocab_size": 100, "hidden_size": 24, "num_hidden_layers": 1,
             "num_attention_heads": 2, "intermediate_size": 8, "max_position_embeddings": 4_000_000})),
         "GiB", env={MAX_BYTES: "300000000"}),
    Case("token-type embeddings counted by the size guard",
         lambda c: locate(c, model=config_only(c, "types", {
             "model_type": "bert", "vocab_size": 100, "hidden_size": 24, "num_hidden_layers": 1,
             "num_attention_heads": 2, "intermediate_size": 8, "type_vocab_size": 4_000_000})),
         "GiB", env={MAX_BYTES: "300000000"}),
    Case("an untied output head counted by the size guard",
         lambda c: locate(c, model=config_only(c, "untied", _small_llama(1_000_000, 64, tie=False))),
         "GiB", env={MAX_BYTES: "400000000"}),
    Case("folder without tokenizer files",
         lambda c: locate(c, model=model_variant(c, "no-tokenizer", drop=lambda n: "token" in n or "vocab" in n)),
         "tokenizer"),
    Case("model that needs remote code", lambda c: locate(c, model=remote_code_model(c)), "remote code",
         only_line=True),
    Case("hub id neither cached nor reachable: fast, one line",
         lambda c: locate(c, model="kn-explorer-test/no-such-model"), "kn-explorer-test/no-such-model",
         only_line=True),
    # labels, templates and numbers
    Case("subject that closes a slot marker of the template",
         lambda c: locate(c, template="The capital of [X]] is [Y].", subject="Tanzania [Y"), "slot"),
    Case("subject of only a zero-width space", lambda c: locate(c, subject="\u200b"), "subject"),
    Case("subject of only a byte-order mark", lambda c: locate(c, subject="\ufeff \u2060"), "subject"),
    Case("negative --seed", lambda c: locate(c, "--seed", "-1"), "--seed"),
    Case("negative --top", lambda c: locate(c, "--top", "-1"), "--top"),
    Case("absurd --threads", lambda c: locate(c)[:-2] + ["--threads", "99999999999"], "threads"),
    Case("--lang that is not a language code", lambda c: locate(c, "--tau", "0.3", lang="\udcff"), "--lang"),
    Case("empty --lang", lambda c: locate(c, "--tau", "0.3", lang=""), "--lang"),
    # issue #26
    Case("F7 config with fewer layers than the weights hold (BERT)",
         lambda c: locate(c, model=model_variant(c, "shallower", {"num_hidden_layers": 1})), "not used by"),
    Case("F7 config with fewer layers than the weights hold (GPT-2 n_layer)",
         lambda c: locate(c, model=model_variant(c, "shallower-gpt2", {"n_layer": 1}, source=c.gpt2)),
         "not used by"),
    Case("F8 4 KiB of the weights overwritten with 0xff (NaN)",
         lambda c: locate(c, model=model_variant(c, "nan", weights=overwrite_4k)), "NaN"),
    Case("F9 a truncated tokenizer.json is blamed on the tokenizer",
         lambda c: locate(c, model=model_variant(c, "bad-tokenizer", source=c.gpt2,
                                                 tokenizer=lambda b: b[:len(b) // 2])), "tokenizer of"),
    Case("F10 an installed model without kn_model.json is damaged, repaired with --force", damaged_install,
         "models install smollm2-135m --force"),
    Case("F5 batch --relations ''", lambda c: ["batch", "--model", str(c.bert), "--relations", "", "--store",
                                               str(c.store), "--no-progress"], "relation id"),
    Case("F5 batch --relations ','", lambda c: ["batch", "--model", str(c.bert), "--relations", ",", "--store",
                                                str(c.store), "--no-progress"], "relation id"),
    Case("F5 showcase --relations ','", lambda c: ["showcase", "--model", str(c.bert), "--relations", ",",
                                                   "--store", str(c.store)], "relation id"),
    Case("F6 showcase --steps 7 suggests a batch with --steps 7",
         lambda c: ["showcase", "--model", str(c.bert), "--relations", "P36", "--langs", "en", "--steps", "7",
                    "--store", str(c.store)], "--steps 7"),
    Case("F1 --model with a path part over 255 bytes", lambda c: locate(c, model=str(c.tmp / LONG)), "255"),
    Case("F1 --json with a path part over 255 bytes", lambda c: locate(c, "--json", str(c.tmp / LONG)), "255"),
    Case("F1 batch --store with a path part over 255 bytes",
         lambda c: ["batch", "--model", str(c.bert), "--store", str(c.tmp / LONG), "--no-progress"], "255"),
    Case("F1 store info --store with a path part over 255 bytes",
         lambda c: ["store", "info", "--store", str(c.tmp / LONG)], "255"),
    Case("F1 store export to a path part over 255 bytes",
         lambda c: ["store", "export", str(c.tmp / LONG), "--store", str(c.store)], "255"),
    Case("F1 experiment --out with a path part over 255 bytes",
         lambda c: ["experiment", "localize", "--model", str(c.bert), "--langs", "en", "--out",
                    str(c.tmp / LONG / "out")], "255"),
    Case("F1 data summary of a path part over 255 bytes", lambda c: ["data", "summary", str(c.tmp / LONG)], "255"),
    Case("store export --model of a model with no stored result",
         lambda c: ["store", "export", str(c.tmp / "x.csv"), "--model", "nosuch", "--store", str(c.store)],
         "no stored result of 'nosuch'"),
    # the store
    Case("store export of a store with one damaged row",
         lambda c: ["store", "export", str(c.tmp / "out.parquet"), "--store", str(c.store)], "damaged",
         setup=damage_one_row),
]


@pytest.fixture(scope="module")
def seed_store(tmp_path_factory, bert_dir) -> Path:
    """A store holding one result of the tiny BERT, copied for each case."""
    path = tmp_path_factory.mktemp("seed") / "store.sqlite"
    assert cli.main(["locate", "--model", str(bert_dir), "--lang", "en", "--template", TEMPLATE, "--subject",
                     "Tanzania", "--object", "Dodoma", "--steps", "2", "--store", str(path), "--threads", "1"]) == 0
    assert ResultStore(path).info()["results"] == 1
    return path


@pytest.fixture
def ctx(tmp_path, seed_store, bert_dir, gpt2_dir, monkeypatch) -> Ctx:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(seed_store, home / "store.sqlite")
    monkeypatch.setenv("KN_EXPLORER_HOME", str(home))
    return Ctx(tmp_path, home / "store.sqlite", bert_dir, gpt2_dir)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = cli.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_red_team_case_is_one_error_line(ctx, capsys, monkeypatch, case):
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    if case.setup is not None:
        case.setup(ctx.store)
    before = ctx.store.read_bytes()
    argv = case.argv(ctx)
    started = time.monotonic()
    rc, _, err = run_cli(argv, capsys)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert rc == 2 and len(errors) == 1, (rc, err[-2000:])
    assert case.match in errors[0], errors[0]
    assert "trust_remote_code=True" not in err
    if case.only_line:
        assert [line for line in err.splitlines() if line.strip()] == errors, err[-2000:]
        assert time.monotonic() - started < 10
    assert ctx.store.read_bytes() == before, "the store file changed"
    assert not list(ctx.tmp.glob("**/*.partial")) and not list(ctx.tmp.glob("**/.*.tmp")), "a temporary file was left"
    assert not (ctx.tmp / "remote" / "RAN").exists(), "remote code ran"


# -- inputs that must work -----------------------------------------------------------------------------------
@pytest.mark.parametrize("lines,problem", [([GOOD_FACT, DEEP], "P36.jsonl:2"), ([GOOD_FACT, HUGE_UUID], "P36.jsonl:2")],
                         ids=["a 100,000-deep nested line", "a 5,000-digit uuid"])
def test_mlama_bad_line_is_a_listed_problem(ctx, capsys, lines, problem):
    rc, out, err = run_cli(["data", "summary", mlama(ctx, lines), "--threads", "1"], capsys)
    assert rc == 0 and "Traceback" not in err, err[-2000:]
    assert f"en/{problem}" in out and "valid facts per language: en 1" in out, out


def test_mlama_templates_with_a_byte_order_mark_are_read(ctx, capsys):
    rc, out, err = run_cli(["data", "summary", mlama(ctx, [GOOD_FACT], templates_prefix="\ufeff"), "--threads", "1"],
                           capsys)
    assert rc == 0 and "relations (1): P36" in out and "problems: 0" in out, out + err


def test_locate_json_is_strict_json(ctx, capsys):
    out = ctx.tmp / "out.json"
    rc, _, err = run_cli(locate(ctx, "--json", str(out)), capsys)
    assert rc == 0, err

    def refuse(constant: str):
        raise AssertionError(f"{constant} is not JSON")
    payload = json.loads(out.read_text(encoding="utf-8"), parse_constant=refuse)
    assert payload["suppress"]["unrelated"] is None  # no unrelated facts were given: NaN becomes null


@pytest.mark.parametrize("argv", [["store", "info"], ["store", "export", "{tmp}/x.csv"], ["data", "list"],
                                  ["data", "summary", "bundled"]], ids=" ".join)
def test_store_and_data_take_threads(ctx, capsys, argv):
    rc, _, err = run_cli([arg.format(tmp=ctx.tmp) for arg in argv] + ["--threads", "1"], capsys)
    assert rc == 0, err


def test_invisible_marks_the_tokenizer_drops_are_not_stored(ctx, capsys):
    rc, _, err = run_cli(locate(ctx, subject="Tan\u200bzania\u2060"), capsys)
    assert rc == 0, err
    assert {row.subject for row in ResultStore(ctx.store).results()} == {"Tanzania"}


def test_template_words_read_as_the_unknown_token_are_named(ctx, capsys, caplog):
    """Warned, not refused: the warning (a log line on stderr) names the words; the run goes on."""
    rc, _, err = run_cli(locate(ctx, template="the capital of [X] is qzxv [Y]."), capsys)
    assert rc == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'qzxv'" in w and "unknown token" in w and "'the'" not in w for w in warnings), warnings


# -- a bug is one line too ------------------------------------------------------------------------------------
@pytest.mark.parametrize("raised,rc,match", [
    (RuntimeError("boom\nsecond line"), 1, "unexpected RuntimeError: boom second line"),
    (KeyboardInterrupt(), 130, "interrupted")])
def test_an_unexpected_exception_is_one_error_line(ctx, capsys, monkeypatch, raised, rc, match):
    from kn_core.commands import store as store_command

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(store_command, "ResultStore", fail)
    before = ctx.store.read_bytes()
    code, out, err = run_cli(["store", "info", "--store", str(ctx.store)], capsys)
    assert code == rc and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [line for line in err.splitlines() if
                                                                  line.startswith("error: ")] and match in err, err
    assert len(err.strip().splitlines()) == 1
    assert ctx.store.read_bytes() == before


# -- issue #26: cases that are not one command line -------------------------------------------------------------
def _mlama_with(ctx: Ctx, extra: Callable[[Path], None]) -> Path:
    root = Path(mlama(ctx, [GOOD_FACT]))
    (root / "en" / "templates.jsonl").write_text(
        json.dumps({"relation": "P36", "template": TEMPLATE}) + "\n"
        + json.dumps({"relation": "P37", "template": "[X] speaks [Y]."}) + "\n", encoding="utf-8")
    extra(root)
    return root


def _in_thread(call: Callable[[], object], seconds: float = 60) -> object:
    """``call()`` in a thread, failing the test (instead of hanging it) when it does not return in time."""
    import threading

    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(value=call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s (it hangs)"
    return box.get("value")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_F2_a_data_file_that_is_no_regular_file_is_a_problem_not_a_hang(ctx, capsys, kind):
    def add(root: Path) -> None:
        target = root / "en" / "P37.jsonl"
        os.mkfifo(target) if kind == "fifo" else os.symlink("/dev/zero", target)
    root = _mlama_with(ctx, add)
    rc, out, err = _in_thread(lambda: run_cli(["data", "summary", str(root)], capsys))
    assert rc == 0 and "Traceback" not in err, err[-2000:]
    assert "en/P37.jsonl: not a regular file" in out and "valid facts per language: en 1" in out, out


def test_F2_a_data_file_over_the_size_limit_is_a_problem(ctx, monkeypatch):
    from kn_core.data import records, summarize

    monkeypatch.setattr(records.read_data_file, "__defaults__", (150,))  # bytes; the templates file holds 113
    summary = summarize(_mlama_with(ctx, lambda root: (root / "en" / "P37.jsonl").write_text(GOOD_FACT + " " * 200)))
    assert any(p["file"] == "en/P37.jsonl" and "over the 150 a data file may hold" in p["reason"]
               for p in summary["problems"]), summary
    assert summary["facts"] == {"en": 1}


def test_uppercase_language_folders_follow_the_langs_rule(ctx, capsys):
    def add(root: Path) -> None:
        shutil.copytree(root / "en", root / "EN")
    root = _mlama_with(ctx, add)
    rc, out, err = run_cli(["data", "summary", str(root)], capsys)
    assert rc == 0, err
    assert "valid facts per language: en 1" in out and "EN/templates.jsonl: folder 'EN' is not a language code" in out


@pytest.mark.parametrize("seeds", ["1000000000000"])
def test_F3_seeds_are_bounded(ctx, capsys, seeds):
    rc, _, err = run_cli(["experiment", "factcheck", "--model", str(ctx.bert), "--langs", "en", "--out",
                          str(ctx.tmp / "fc"), "--seeds", seeds], capsys)
    assert rc == 2 and err.startswith("error: argument --seeds") and "from 1 to" in err, err[-2000:]


@pytest.mark.parametrize("relations", ["", ","])
def test_F5_experiment_relations_may_not_be_empty(ctx, capsys, relations):
    rc, _, err = run_cli(["experiment", "localize", "--model", str(ctx.bert), "--langs", "en", "--out",
                          str(ctx.tmp / "loc"), "--relations", relations], capsys)
    assert rc == 2 and "relation id" in err and len(err.strip().splitlines()) == 1, err[-2000:]


def test_F10_models_list_says_damaged_and_how_to_repair(ctx, capsys):
    damaged_install(ctx)
    rc, out, err = run_cli(["models", "list"], capsys)
    assert rc == 0, err
    assert "damaged" in out and "models install smollm2-135m --force" in out, out


def test_licence_question_interrupted_says_nothing_was_installed(ctx, capsys, monkeypatch):
    import sys

    def interrupt(prompt: str = "") -> str:
        raise KeyboardInterrupt
    monkeypatch.setattr("builtins.input", interrupt)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    rc, _, err = run_cli(["models", "install", "gemma3-270m"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert rc == 2 and len(errors) == 1 and "nothing was installed" in errors[0], err[-2000:]
    assert "what was finished is stored" not in err
    assert not (Path(os.environ["KN_EXPLORER_HOME"]) / "models" / "gemma3-270m").exists()


def test_F11_damaged_documents_are_ignored_and_recomputed_not_a_crash(ctx, bert, caplog):
    from kn_core.attribution import AttributionConfig
    from kn_core.runs import queries

    store = ResultStore(ctx.store)
    config = AttributionConfig(steps=2)
    dkn = queries.DKNSettings()
    keys = [(queries.SHOWCASE_KIND, queries.SHOWCASE_KEY),
            (queries.CHECKER_KIND, queries.checker_key(bert, "P36", "en", config, dkn)),
            (queries.EVALUATION_KIND, queries.checker_key(bert, "P36", "en", config, dkn))]
    for payload in ("{bad", "[1, 2]", '"text"', '{"rows": 3}', '{"model": 1}'):
        for kind, key in keys:
            store.put_json(kind, key, {})
        with sqlite3.connect(ctx.store) as conn:
            conn.execute("UPDATE documents SET payload = ?", (payload,))
        conn.close()
        assert queries.showcase(store) is None
        assert queries.stored_checker(store, bert, "P36", "en", config, dkn) is None
        assert queries.stored_evaluation(store, bert, "P36", "en", config, dkn) is None
    assert any("damaged" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_F12_a_sentence_of_no_usable_tokens_is_an_input_error(bert, gpt2):
    from kn_core.errors import InputError

    for lm in (bert, gpt2):
        for text in ("\u200b\u200b", "\ufeff"):
            if lm is gpt2 and text != "\u200b\u200b":
                continue
            try:
                ids = lm.sentence_ids(text)
            except InputError as exc:
                assert exc.field == "sentence" and "no token" in exc.message
            else:
                assert ids.shape[1] > 0 and not all(int(i) in lm.tokenizer.all_special_ids for i in ids[0])
    with pytest.raises(InputError, match="sentence: .*no token"):
        bert.sentence_ids("\u200b\u200b")
    with pytest.raises(InputError, match="sentence: .*no token"):
        bert.sentence_ids("\U0001F1EB\U0001F1F7")  # a flag: characters the tiny vocabulary lacks
    assert bert.sentence_ids("the capital of France").shape[1] > 2


def test_F15_load_model_takes_a_pathlib_path(bert_dir):
    from kn_core import load_model

    assert load_model(Path(bert_dir)).n_layers == 3


def test_F16_a_prompt_built_for_another_model_is_refused(bert, gpt2):
    from kn_core.attribution import AttributionConfig, attribute
    from kn_core.errors import InputError

    prompt = bert.prompt(TEMPLATE, "Tanzania", "Dodoma")
    with pytest.raises(InputError, match="prompt: was built for another model"):
        attribute(gpt2, prompt, AttributionConfig(steps=2))
    with pytest.raises(InputError, match="prompt: was built for another model"):
        attribute(bert, gpt2.prompt(TEMPLATE, "Tanzania", "Dodoma"), AttributionConfig(steps=2))
    assert attribute(bert, prompt, AttributionConfig(steps=2)).p_object > 0


def test_a_batch_waiting_for_another_batch_says_what_it_waits_for(ctx, bert, monkeypatch, caplog):
    from kn_core.attribution import AttributionConfig
    from kn_core.data import load_mlama
    from kn_core.runs import batch as batch_module
    from kn_core.runs.store import Claimant, ResultKey

    config = AttributionConfig(steps=2)
    store = ResultStore(ctx.tmp / "shared.sqlite")
    facts = load_mlama(mlama(ctx, [GOOD_FACT]))
    other = Claimant("another-batch", "another-host", 1)  # a batch on another machine: its claim holds
    key = ResultKey.of(bert, bert.prompt(TEMPLATE, "Tanzania", "Dodoma"), config, "en")
    assert store.claim(key, other) == "claimed"
    sleeps = []

    def sleep(seconds: float) -> None:  # the other batch finishes (gives the prompt up) while this one waits
        sleeps.append(seconds)
        store.release_all(other)
    monkeypatch.setattr(batch_module.time, "sleep", sleep)
    report = batch_module.run_batch(bert, facts, ["en"], config, store, progress=False)
    assert report.done == 1 and sleeps
    waits = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "waiting for" in r.getMessage()]
    assert waits and "another batch" in waits[0], waits
