"""Benchmark of the whole ``python -m kn_core locate`` process: ``--engine fast`` against ``--engine reference``.

What a user running one fact from the command line waits for: interpreter start, imports, model load, the
clean pass and the baseline, the integral, the suppress / enhance verification, the result store and the
output. Each run is a fresh subprocess (wall clock), with the same arguments but the engine, a fresh store
file each (so that nothing is read from a store and the store's write is paid), on:

- ``bert``: BERT-base (bert-base-cased config, random weights, seed 0) saved once as safetensors with a local
  WordPiece tokenizer (30522 entries: bert-base-cased's special ids, the prompt's words, filler) to a model
  folder, so that ``--model FOLDER`` loads it the way a user's folder loads;
- ``smollm2``: ``--model smollm2-135m`` (installed by ``python -m kn_core models install smollm2-135m``).

Both on "The capital of [X] is [Y]." with France / Paris, English, locate's defaults otherwise (the
paper's masked baseline, m = 20). After the timed runs, one more fast run per model in a fresh process with
wall-clock timers around its steps breaks its time down (imports wherever they happen, model load, store and
weights fingerprint, clean pass, baseline, engine, verification, output: exclusive seconds, no profiler
overhead); ``-X importtime`` lists the heaviest imported packages.

    python bench/bench_locate.py                  # 10+ minutes on 2 shared cores
    python bench/bench_locate.py --quick          # tiny BERT folder, seconds (a smoke test)
    python bench/bench_locate.py --models smollm2 --runs 2
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE, SUBJECT, OBJECT = "The capital of [X] is [Y].", "France", "Paris"
ENGINES = ("fast", "reference")


def make_bert_folder(folder: Path, quick: bool) -> Path:
    """BERT-base with random weights (seed 0) and a local WordPiece tokenizer, saved once to ``folder``."""
    if (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists():
        return folder
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    # bert-base-cased's special ids: [PAD] 0, [unused1..99] 1-99, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = {"The", "capital", "of", "France", "is", "Paris", ".", ",", "the", "a", "an", "in", "and"}
    vocab += sorted(words | set("abcdefghijklmnopqrstuvwxyz"))
    size = 1000 if quick else 30522
    vocab += [f"[filler{i}]" for i in range(size - len(vocab))]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=False)
    config = BertConfig(vocab_size=size) if not quick else BertConfig(
        vocab_size=size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    BertForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def locate_args(model: str, engine: str, threads: int, store: Path, out: Path) -> list[str]:
    return ["locate", "--model", model, "--lang", "en", "--template", TEMPLATE, "--subject", SUBJECT,
            "--object", OBJECT, "--engine", engine, "--threads", str(threads), "--store", str(store),
            "--json", str(out)]


def timed_run(model: str, engine: str, threads: int, work: Path) -> tuple[float, dict]:
    """Wall-clock seconds of one whole ``python -m kn_core locate`` process, and its JSON result."""
    handle, name = tempfile.mkstemp(suffix=".sqlite", dir=work)
    os.close(handle)
    store, out = Path(name), Path(name).with_suffix(".json")
    store.unlink()  # a fresh store file: nothing to read, the write is paid
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kn_core", *locate_args(model, engine, threads, store, out)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"locate --engine {engine} on {model} failed:\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    for path in work.glob(store.name + "*"):
        path.unlink()
    out.unlink()
    return seconds, result


def interpreter_start() -> float:
    """Wall seconds of ``python -c pass`` (best of 3): the floor of any process."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        best = min(best, time.perf_counter() - start)
    return best


# -- the breakdown: one fast run in a fresh process, wall time charged to phases -----------------------------
class Phases:
    """Exclusive wall time per phase: entering a phase charges the time since the last switch to the phase
    being left (so nested phases are not counted twice). Imports are a phase of their own wherever they
    happen (``import kn_core.cli`` at the start, and the lazy ones inside model loading and elsewhere)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.stack = ["other (argparse, glue)"]
        self.last = time.perf_counter()

    def _switch(self) -> None:
        now = time.perf_counter()
        self.seconds[self.stack[-1]] = self.seconds.get(self.stack[-1], 0.0) + now - self.last
        self.last = now

    def wrap(self, label: str, fn):
        def timed(*args, **kwargs):
            self._switch()
            self.stack.append(label)
            try:
                return fn(*args, **kwargs)
            finally:
                self._switch()
                self.stack.pop()
        return timed


def profile_child(argv: list[str], out: Path) -> None:
    """Runs in a fresh process: kn_core.cli.main(argv) with its main steps wrapped in wall-clock timers
    (:class:`Phases`); writes the seconds per phase as JSON to ``out``."""
    import _frozen_importlib  # CPython's import machinery: `import x` calls its _find_and_load by name

    phases = Phases()
    find_and_load = _frozen_importlib._find_and_load
    timed_import = phases.wrap("imports", find_and_load)
    _frozen_importlib._find_and_load = lambda *a, **k: (timed_import if phases.stack[-1] != "imports"
                                                        else find_and_load)(*a, **k)
    sys.path.insert(0, str(REPO))
    import kn_core.cli
    import kn_core.commands.locate as command
    import kn_core.method.locate as method
    from kn_core import attribution
    from kn_core.runs import cached
    from kn_core.runs.store import ResultKey, ResultStore

    command.load_model = phases.wrap("model load (config, weights, tokenizer)", command.load_model)
    ResultStore.__init__ = phases.wrap("store: open", ResultStore.__init__)
    ResultStore.get = phases.wrap("store: get", ResultStore.get)
    ResultStore.put = phases.wrap("store: put", ResultStore.put)
    ResultKey.of = classmethod(phases.wrap("store: key (weights sha256 fingerprint)", ResultKey.of.__func__))
    cached.compute = phases.wrap("attribute: rest (result assembly)", cached.compute)
    attribution._clean_pass = phases.wrap("attribute: clean pass", attribution._clean_pass)
    attribution.baseline = phases.wrap("attribute: baseline (masked prompts)", attribution.baseline)
    for engine in list(attribution.ENGINES):
        attribution.ENGINES[engine] = phases.wrap(f"attribute: engine ({engine})", attribution.ENGINES[engine])
    method.verify = phases.wrap("verify (suppress + enhance passes)", method.verify)
    method.coarse_neurons = phases.wrap("neuron selection", method.coarse_neurons)
    method.knowledge_neurons = phases.wrap("neuron selection", method.knowledge_neurons)
    command.render = phases.wrap("output (render, --json)", command.render)
    command.to_json = phases.wrap("output (render, --json)", command.to_json)
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            code = phases.wrap("kn_core.cli.main", kn_core.cli.main)(argv)
        finally:
            sys.stdout = stdout
    phases._switch()
    if code != 0:
        raise SystemExit(f"locate exited with {code}")
    phases.seconds["other (argparse, glue)"] = (phases.seconds.get("other (argparse, glue)", 0.0)
                                                + phases.seconds.pop("kn_core.cli.main", 0.0))
    out.write_text(json.dumps(phases.seconds), encoding="utf-8")


def breakdown(model: str, threads: int, work: Path) -> dict:
    """The fast run's wall time, broken down in a fresh process (see :func:`profile_child`)."""
    store, out, json_out = work / "profile.sqlite", work / "profile.json", work / "profile-result.json"
    for path in (store, out, json_out):
        path.unlink(missing_ok=True)
    argv = locate_args(model, "fast", threads, store, json_out)
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--profile-child", str(out), "--", *argv], cwd=REPO, check=True)
    wall = time.perf_counter() - start
    return {"wall": wall, "phases": json.loads(out.read_text(encoding="utf-8"))}


def heaviest_imports(count: int = 8) -> list[tuple[str, float]]:
    """``python -X importtime -c 'import kn_core.cli; kn_core.cli.build_parser()'``: seconds per top-level
    package, each counted where it is first imported from outside itself (cumulative, so a package's own
    first-time dependencies are in its figure)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import kn_core.cli; kn_core.cli.build_parser()"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    entries = []  # (depth, module, cumulative seconds), children listed before their parent
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if match:
            entries.append((len(match.group(3)), match.group(4), int(match.group(2)) / 1e6))
    packages: dict[str, float] = {}
    for n, (depth, module, seconds) in enumerate(entries):
        parent = next((m for d, m, _ in entries[n + 1:] if d < depth), None)
        package = module.split(".")[0]
        if parent is None or parent.split(".")[0] != package:
            packages[package] = packages.get(package, 0.0) + seconds
    packages.pop("kn_core", None)  # the whole tree
    return sorted(packages.items(), key=lambda item: item[1], reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny BERT folder, one run: checks the script works")
    parser.add_argument("--models", default=None, help="comma-separated subset of: bert, smollm2 (default both; "
                                                        "quick: bert)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per engine (default 3, quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="--threads of locate (default 2, quick 1)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the BERT-base folder is kept between runs (default: a temporary folder)")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the profiled run and the import times")
    parser.add_argument("--no-warmup", action="store_true", help="no warm-up run (the page cache is warm already)")
    parser.add_argument("--breakdown-only", action="store_true", help="only the profiled run and the import times")
    parser.add_argument("--profile-child", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.profile_child:
        profile_child([a for a in rest if a != "--"], args.profile_child)
        return
    runs = args.runs or (1 if args.quick else 3)
    threads = args.threads or (1 if args.quick else 2)
    names = (args.models or ("bert" if args.quick else "bert,smollm2")).split(",")
    with tempfile.TemporaryDirectory(prefix="kn-bench-locate-") as tmp:
        work = Path(tmp)
        keep = args.workdir or work
        models = {}
        for name in names:
            if name == "bert":
                models[name] = str(make_bert_folder(keep / ("bert-tiny" if args.quick else "bert-base"), args.quick))
            elif name == "smollm2":
                models[name] = "smollm2-135m"
            else:
                raise SystemExit(f"unknown model {name!r}: choose bert, smollm2")
        floor = interpreter_start()
        print(f"{os.cpu_count()} CPUs (shared with other jobs), locate --threads {threads}; load average "
              f"{os.getloadavg()[0]:.2f}; '{TEMPLATE}' {SUBJECT} / {OBJECT}, en, locate's defaults (masked baseline, "
              f"m = 20), a fresh --store per run; median of {runs} run(s)"
              f"{'' if args.no_warmup else ' after a warm-up run'}, alternating; "
              f"`python -c pass` {floor:.2f} s")
        rows = []
        for name, model in ({} if args.breakdown_only else models).items():
            if not args.no_warmup:
                timed_run(model, "fast", threads, work)  # warm-up: the page cache (weights, .pyc files)
            times: dict[str, list[float]] = {engine: [] for engine in ENGINES}
            results = {}
            for _ in range(runs):  # alternating, so that a busy spell of the shared machine hits both alike
                for engine in ENGINES:
                    seconds, results[engine] = timed_run(model, engine, threads, work)
                    times[engine].append(seconds)
            median = {engine: statistics.median(v) for engine, v in times.items()}
            fast, ref = results["fast"], results["reference"]
            neurons = [[(n[0], n[1]) for n in r["neurons"]] for r in (fast, ref)]
            worst = max(abs(x - y) for a, b in zip(fast["scores"], ref["scores"]) for x, y in zip(a, b))
            top = max(abs(y) for b in ref["scores"] for y in b)
            rows.append({"name": name, "median": median, "times": times, "tokens": len(fast["prompt"]["input_ids"]),
                         "paths": fast["n_paths"], "neurons": len(neurons[0]), "same": neurons[0] == neurons[1],
                         "deviation": worst / top})
        if rows:
            table(rows)
        if args.no_breakdown:
            return
        for name, model in models.items():
            b = breakdown(model, threads, work)
            print(f"\nbreakdown of one fast run on {name} (fresh process, wall {b['wall']:.2f} s; exclusive wall "
                  f"seconds per phase; `python -c pass` {floor:.2f} s is part of the process start):")
            print(f"  {'process start + interpreter exit (rest)':45s} {b['wall'] - sum(b['phases'].values()):7.2f}")
            for label, seconds in sorted(b["phases"].items(), key=lambda item: -item[1]):
                print(f"  {label:45s} {seconds:7.2f}")
        print("\nheaviest imports of `import kn_core.cli` + build_parser (-X importtime, cumulative s): "
              + ", ".join(f"{name} {seconds:.2f}" for name, seconds in heaviest_imports()))


def table(rows: list[dict]) -> None:
    print("| model | prompt tokens | baseline paths | reference s (whole process) | fast s (whole process) | "
          "speed-up | knowledge neurons | same as reference | max score deviation |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["median"]
        print(f"| {r['name']} | {r['tokens']} | {r['paths']} | {m['reference']:.1f} | {m['fast']:.1f} | "
              f"{m['reference'] / m['fast']:.2f}x | {r['neurons']} | {'yes' if r['same'] else 'NO'} | "
              f"{r['deviation']:.1e} |")
    spread = "; ".join(f"{r['name']} {engine} {min(v):.1f}-{max(v):.1f} s" for r in rows
                       for engine, v in r["times"].items())
    print(f"range of the timed runs: {spread}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
