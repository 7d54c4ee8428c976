"""Benchmark against the field's own code: our fast engine vs EleutherAI's ``knowledge-neurons==0.0.2``.

Same model (random weights of the real size: bert-base-cased's BERT-base config, GPT-2 small; nothing is
downloaded), same 13-token prompt, same integral: every layer, m = 20 points, zero baseline at the target
position (theirs: ``KnowledgeNeurons.get_scores``; ours: ``attribute(..., AttributionConfig(baseline="zero"))``).
Their package is a dependency of this bench only (``pip install -r bench/requirements.txt``), used as
installed. Prints seconds per prompt (median of alternating runs after a warm-up) of their code, our Captum
reference engine, our fast engine on torch's matmul kernel and as shipped, the speed-ups over theirs, and the
score agreement (Spearman over all neurons, max relative deviation).

    python bench/bench_peers.py            # a few minutes on 2 cores
    python bench/bench_peers.py --quick    # tiny models, seconds (a smoke test)
    python bench/bench_peers.py --quadrature                       # accuracy at speed, trained demo models
    python bench/bench_peers.py --quadrature --models bert,gpt2    # … and random weights of the real sizes

``--quadrature`` (issue #24) asks another question: at each code's own setting, how fast and how exact? On
the same models and prompt, zero baseline (the path their code integrates), every layer: their code at its
default m = 20, ours at our recommended quadrature (``--ours RULE:M``, default :data:`RECOMMENDED`) and at
the paper preset (right Riemann, m = 20), each timed (median of alternating runs after a warm-up) and
compared with the converged integral, our Gauss–Legendre m = 64: max |s − s_64| / max |s_64| over all
neurons, and the Jaccard of the coarse knowledge-neuron sets (τ = 0.3). Their code at m = 64 is run too
(untimed), to show that both codes converge to that same integral. Their code only drives BERT and GPT-2
models, so the trained models here are the repo's demo models (``demo-mlm``: BERT, ``demo-clm``: GPT-2;
4 layers × 512 neurons, trained on the bundled facts), whose paths bend like a trained model's do; random
weights (``bert``, ``gpt2``) give nearly straight paths, where every rule is exact.

How their code is driven, and why (read from their source, knowledge_neurons/knowledge_neurons.py):

- Tokenizer: they call ``tokenizer(prompt, return_tensors="pt")``, ``convert_tokens_to_ids(target)`` (BERT) and
  ``encode(target)`` (GPT). No hub is reachable here, so :class:`FixedIds` answers those three calls with the
  very token ids our engine gets (and refuses any other text).
- GPT: ``model_type="gpt"`` (their multi-token GPT path: one integral per object token). With ``"gpt2"``
  ``get_scores`` also ran here (one-token object, :class:`FixedIds`); the two differ only for objects of
  several tokens, where ``"gpt2"`` indexes the probabilities with all object ids at once. Their GPT neuron is
  the output of ``mlp.c_fc`` (before GELU); ours is the output of ``mlp.act`` (after it, like their BERT neuron
  ``intermediate``). To integrate the same quantity, :func:`post_activation_site` swaps in, for their calls
  only, ``mlp.c_fc = Sequential(c_fc, act)`` and ``mlp.act = Identity`` (the same function; GPT2MLP.forward
  is ``c_proj(act(c_fc(x)))``).
- Quadrature: theirs integrates at α = linspace(0, 1, m) (0, 1/19, …, 1 for m = 20; weight 1/m each), ours
  at α = k/m, k = 1..m (right Riemann). Same number of gradient points, so the timing compares like with
  like; the scores differ by the rule. The agreement is therefore printed twice: as shipped, and with their
  ``scaled_input`` given our points (:func:`right_riemann_points`, one extra run of theirs, not timed), where both
  compute the very same sum.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers import (
    BatchEncoding,
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kn_core.attribution import AttributionConfig, attribute, kernels
from kn_core.data.prompts import Prompt
from kn_core.model.adapters import adapter_for
from kn_core.model.loading import LanguageModel

from bench.bench_amig import environment  # noqa: E402  (the same $KN_EXPLORER_MATMUL switch)

try:
    import knowledge_neurons
    from knowledge_neurons import KnowledgeNeurons
except ImportError as exc:  # pragma: no cover - the bench says what to install
    knowledge_neurons = KnowledgeNeurons = None
    IMPORT_ERROR = exc
else:
    IMPORT_ERROR = None

STEPS = 20
# "[CLS] The official language of the United Republic of Tanzania is [MASK] [SEP]" (bert-base-cased ids)
BERT_IDS = (101, 1109, 2078, 1846, 1104, 1103, 1244, 2250, 1104, 11866, 1110, 103, 102)
BERT_TEXT = "The official language of the United Republic of Tanzania is [MASK]"
# "The official language of the United Republic of Tanzania in East Africa is" (gpt2 ids)
GPT2_IDS = (464, 1743, 3303, 286, 262, 1578, 2066, 286, 46141, 287, 3687, 5478, 318)
GPT2_TEXT = "The official language of the United Republic of Tanzania in East Africa is"
OBJECT = {"bert": ("Swahili", 24632), "gpt2": (" Swahili", 2451)}  # the object text their code gets, and its id
MASK_ID, EOS_ID = 103, 50256
TINY = {"hidden": 64, "layers": 2, "heads": 4, "d_ff": 256, "vocab": 997}  # --quick: ids taken modulo "vocab"


class FixedIds:
    """The three tokenizer calls their code makes, answered with fixed ids (no vocabulary files needed)."""

    def __init__(self, text: str, ids: tuple[int, ...], obj: str, obj_id: int, bert: bool,
                 specials: tuple[int, int] = (MASK_ID, 100)):
        self.text, self.ids, self.obj, self.obj_id, self.bert = text, ids, obj, obj_id, bert
        self.mask_token_id, self.unk_token_id = specials if bert else (None, None)

    def __call__(self, text: str, return_tensors: str = "pt") -> BatchEncoding:
        if text != self.text:
            raise ValueError(f"FixedIds knows only {self.text!r}, not {text!r}")
        ids = torch.tensor([self.ids])
        data = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if self.bert:
            data["token_type_ids"] = torch.zeros_like(ids)
        return BatchEncoding(data)

    def _object(self, text: str) -> int:
        if text != self.obj:
            raise ValueError(f"FixedIds knows only the object {self.obj!r}, not {text!r}")
        return self.obj_id

    def convert_tokens_to_ids(self, text: str) -> int:  # their BERT path
        return self._object(text)

    def encode(self, text: str) -> list[int]:  # their GPT path
        return [self._object(text)]


def build(name: str, quick: bool):
    """A random-weight model (real size, or tiny with ``quick``), our LanguageModel and Prompt over it, their
    KnowledgeNeurons over the same model object, and the prompt text / object they are called with."""
    torch.manual_seed(0)
    obj, obj_id = OBJECT[name]
    small = (lambda ids: tuple(i % TINY["vocab"] for i in ids)) if quick else tuple
    obj_id = small([obj_id])[0]
    if name == "bert":
        config = BertConfig() if not quick else BertConfig(
            vocab_size=TINY["vocab"], hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
            num_attention_heads=TINY["heads"], intermediate_size=TINY["d_ff"])
        model = BertForMaskedLM(config)
        ids, text, target = small(BERT_IDS), BERT_TEXT, BERT_IDS.index(MASK_ID)
        assert ids.count(MASK_ID) == 1  # their code finds the target as the one [MASK]
        context = tuple(j for j in range(1, len(ids) - 1) if j != target)
        prompt = Prompt("The official language of [X] is [Y]", "the United Republic of Tanzania", obj, ids,
                        (target,), (obj_id,), context)
        theirs_type = "bert"
    else:
        config = GPT2Config() if not quick else GPT2Config(
            vocab_size=TINY["vocab"], n_embd=TINY["hidden"], n_layer=TINY["layers"], n_head=TINY["heads"],
            n_inner=TINY["d_ff"], bos_token_id=0, eos_token_id=0)
        model = GPT2LMHeadModel(config)
        ids, text = small(GPT2_IDS), GPT2_TEXT
        prompt = Prompt("The official language of [X] in East Africa is [Y]", "the United Republic of Tanzania",
                        obj, ids, (len(ids) - 1,), (obj_id,), tuple(range(len(ids))))
        theirs_type = "gpt"  # their GPT path (see the module docstring)
    model.eval().requires_grad_(False)
    tokenizer = SimpleNamespace(mask_token_id=MASK_ID, eos_token_id=EOS_ID)  # all our baseline code needs
    lm = LanguageModel(name, model, tokenizer, adapter_for(config.model_type))
    theirs = KnowledgeNeurons(model, FixedIds(text, ids, obj, obj_id, bert=name == "bert"),
                              model_type=theirs_type, device="cpu")
    return lm, prompt, theirs, text, obj


@contextlib.contextmanager
def post_activation_site(model):
    """For GPT-2: make their neuron site ``mlp.c_fc`` output the post-GELU activation (ours), by
    ``c_fc := Sequential(c_fc, act)`` and ``act := Identity`` in every block; the model computes the same
    function. Restored on exit. BERT needs nothing (their site ``intermediate`` is post-activation)."""
    if not isinstance(model, GPT2LMHeadModel):
        yield
        return
    saved = [(block.mlp.c_fc, block.mlp.act) for block in model.transformer.h]
    for block, (c_fc, act) in zip(model.transformer.h, saved):
        block.mlp.c_fc, block.mlp.act = torch.nn.Sequential(c_fc, act), torch.nn.Identity()
    try:
        yield
    finally:
        for block, (c_fc, act) in zip(model.transformer.h, saved):
            block.mlp.c_fc, block.mlp.act = c_fc, act


@contextlib.contextmanager
def right_riemann_points():
    """Their ``scaled_input`` (activations × linspace(0, 1, steps)) with our points α = k/steps, k = 1..steps:
    used for the exact agreement check only, never timed."""
    original = KnowledgeNeurons.__dict__["scaled_input"]  # the staticmethod object itself

    def scaled_input(activations, steps=20, device="cpu"):
        alphas = torch.arange(1, steps + 1, dtype=activations.dtype, device=device) / steps
        return activations.repeat(steps, 1) * alphas[:, None]

    KnowledgeNeurons.scaled_input = staticmethod(scaled_input)
    try:
        yield
    finally:
        KnowledgeNeurons.scaled_input = original


def their_scores(theirs, text: str, obj: str, steps: int = STEPS) -> np.ndarray:
    batch_size = 10 if steps % 10 == 0 else math.gcd(steps, 16)  # theirs: batch_size must divide steps
    with post_activation_site(theirs.model):
        scores = theirs.get_scores(text, obj, batch_size=batch_size, steps=steps, pbar=False)  # their defaults but pbar
    return scores.detach().float().numpy()


def our_scores(lm, prompt, engine: str, kernel: str | None) -> np.ndarray:
    with environment(kernel):
        # rule: the paper's points, whatever the default
        return attribute(lm, prompt, AttributionConfig(baseline="zero", steps=STEPS, engine=engine,
                                                       rule="riemann-right")).scores


# contender: how to run it (model, prompt, theirs, text, obj) -> scores [n_layers, d_ff]
CONTENDERS = {
    "knowledge-neurons": lambda lm, prompt, theirs, text, obj: their_scores(theirs, text, obj),
    "reference": lambda lm, prompt, theirs, text, obj: our_scores(lm, prompt, "reference", None),
    "fast, torch matmul": lambda lm, prompt, theirs, text, obj: our_scores(lm, prompt, "fast", "torch"),
    "fast": lambda lm, prompt, theirs, text, obj: our_scores(lm, prompt, "fast", None),
}


def agreement(scores: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(Spearman rank correlation over all neurons, max |scores − other| / max |other|)."""
    rho = spearmanr(scores.ravel(), other.ravel()).statistic
    return float(rho), float(np.abs(scores - other).max() / np.abs(other).max())


def bench(name: str, runs: int, quick: bool) -> dict:
    built = build(name, quick)
    lm, prompt, theirs, text, obj = built
    scores = {c: run(*built) for c, run in CONTENDERS.items()}  # warm-up
    with right_riemann_points():
        same_points = their_scores(theirs, text, obj)
    times: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    for _ in range(runs):  # alternate, so that a busy spell of the shared machine hits every contender alike
        for c, run in CONTENDERS.items():
            start = time.perf_counter()
            run(*built)
            times[c].append(time.perf_counter() - start)
    median = {c: statistics.median(v) for c, v in times.items()}
    print(f"{name} done: " + ", ".join(f"{c} {m:.2f} s" for c, m in median.items()), file=sys.stderr, flush=True)
    return {"model": name, "tokens": len(prompt.input_ids), "neurons": scores["fast"].size,
            "kernel": kernels.resolve(None, lm.model), "median": median,
            "spread": {c: (min(v), max(v)) for c, v in times.items()},
            "as_shipped": agreement(scores["fast"], scores["knowledge-neurons"]),
            "same_points": agreement(scores["fast"], same_points),
            "ref_same_points": agreement(scores["reference"], same_points),
            "fast_vs_ref": agreement(scores["fast"], scores["reference"])}


RECOMMENDED = ("gauss-legendre-adaptive", 4)  # bench_quadrature.py's recommendation (bench/README.md)
PAPER = ("riemann-right", 20)
REFERENCE = ("gauss-legendre", 64)
TRAINED = ("The capital of [X] is [Y].", "Tanzania", "Dodoma")  # a one-token object in the demo vocabulary


def build_trained(name: str):
    """A demo model of the repo (trained), with the same four things as :func:`build`."""
    from kn_core.model.loading import load_model

    lm = load_model(name)
    prompt = lm.prompt(*TRAINED)
    assert prompt.n_object_tokens == 1, "their code takes one [MASK] / one object token here"
    bert = lm.kind != "causal"
    text, obj, obj_id = f"{name}: {TRAINED[0]}", TRAINED[2], prompt.object_ids[0]
    tok = lm.tokenizer
    theirs = KnowledgeNeurons(lm.model, FixedIds(text, tuple(prompt.input_ids), obj, obj_id, bert=bert,
                                                 specials=(tok.mask_token_id, tok.unk_token_id)),
                              model_type="bert" if bert else "gpt", device="cpu")
    return lm, prompt, theirs, text, obj


def ours_at(lm, prompt, rule: str, steps: int) -> np.ndarray:
    return attribute(lm, prompt, AttributionConfig(baseline="zero", steps=steps, rule=rule)).scores


def coarse(scores: np.ndarray) -> set:
    from kn_core.method.neurons import coarse_neurons
    return {(n[0], n[1]) for n in coarse_neurons(scores, 0.3)}


def quadrature(name: str, runs: int, quick: bool, ours: tuple[str, int]) -> list[dict]:
    """Time and score error against the converged integral (our Gauss–Legendre m = 64) of their code at m = 20
    and ours at ``ours`` and at the paper preset."""
    lm, prompt, theirs, text, obj = build_trained(name) if name.startswith("demo-") else build(name, quick)
    reference = ours_at(lm, prompt, *REFERENCE)
    contenders = {
        ("knowledge-neurons", "linspace(0, 1, m)", STEPS): lambda: their_scores(theirs, text, obj, STEPS),
        ("ours", ours[0], ours[1]): lambda: ours_at(lm, prompt, *ours),
        ("ours, --preset paper", PAPER[0], PAPER[1]): lambda: ours_at(lm, prompt, *PAPER),
    }
    scores = {c: run() for c, run in contenders.items()}  # warm-up
    times: dict = {c: [] for c in contenders}
    for _ in range(runs):
        for c, run in contenders.items():
            start = time.perf_counter()
            run()
            times[c].append(time.perf_counter() - start)
    top, ref_kn = float(np.abs(reference).max()), coarse(reference)
    theirs_64 = their_scores(theirs, text, obj, REFERENCE[1])
    rows = []
    for c, s in [*scores.items(), (("knowledge-neurons (untimed)", "linspace(0, 1, m)", 64), theirs_64)]:
        kn = coarse(s)
        rows.append({"model": name, "who": c[0], "rule": c[1], "m": c[2],
                     "seconds": statistics.median(times[c]) if c in times else None,
                     "err": float(np.abs(s - reference).max()) / top,
                     "jaccard": len(kn & ref_kn) / max(len(kn | ref_kn), 1)})
    theirs_s = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = theirs_s / r["seconds"] if r["seconds"] else None
    print(f"{name} done", file=sys.stderr, flush=True)
    return rows


def main_quadrature(args) -> None:
    ours = (args.ours.split(":")[0], int(args.ours.split(":")[1]))
    runs = args.runs or (1 if args.quick else 3)
    models = args.models if args.models != "bert,gpt2" or args.quick else "demo-mlm,demo-clm"
    from importlib.metadata import version
    print(f"torch {torch.__version__}, knowledge-neurons {version('knowledge-neurons')}; {torch.get_num_threads()} "
          f"thread(s) on {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; zero baseline, every layer; "
          f"error: max |s − s_ref| / max |s_ref|, s_ref = ours, {REFERENCE[0]} m = {REFERENCE[1]}; Jaccard of the "
          f"coarse sets (τ 0.3) with s_ref's; median of {runs} run(s) after a warm-up, alternating")
    print("| model | code | rule | m | s/prompt | × faster than knowledge-neurons m=20 | max score error vs m=64 "
          "| Jaccard vs m=64 |")
    print("|---|---|---|---|---|---|---|---|")
    for name in models.split(","):
        for r in quadrature(name, runs, args.quick, ours):
            sec = "–" if r["seconds"] is None else f"{r['seconds']:.3f}"
            speed = "–" if r["speedup"] is None else f"{r['speedup']:.2f}x"
            print(f"| {r['model']} | {r['who']} | {r['rule']} | {r['m']} | {sec} | {speed} | {100 * r['err']:.2f} % "
                  f"| {r['jaccard']:.3f} |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, one run: checks that the script works")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per contender (default 3, quick 1)")
    parser.add_argument("--models", default="bert,gpt2", help="comma-separated subset of: bert, gpt2")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2, quick 1)")
    parser.add_argument("--quadrature", action="store_true",
                        help="time and score error against m = 64: their default m = 20 against ours (--ours) and "
                             "the paper preset; --models default demo-mlm,demo-clm (trained) here")
    parser.add_argument("--ours", default=":".join(map(str, RECOMMENDED)), help="RULE:M of ours for --quadrature")
    args = parser.parse_args()
    if KnowledgeNeurons is None:
        sys.exit(f"knowledge-neurons is not installed ({IMPORT_ERROR}); pip install -r bench/requirements.txt")
    torch.set_num_threads(args.threads or (1 if args.quick else 2))
    if args.quadrature:
        main_quadrature(args)
        return
    runs = args.runs or (1 if args.quick else 3)
    from importlib.metadata import version

    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, knowledge-neurons "
          f"{version('knowledge-neurons')}; {torch.get_num_threads()} threads on {os.cpu_count()} CPUs (shared); "
          f"load average {os.getloadavg()[0]:.2f}; {'tiny models' if args.quick else 'random weights, real sizes'}; "
          f"zero baseline, m = {STEPS}, every layer; median of {runs} run(s) after a warm-up, alternating")
    rows = [bench(name, runs, args.quick) for name in args.models.split(",")]
    print("| model | prompt tokens | knowledge-neurons s/prompt | reference s/prompt | fast, torch matmul s/prompt "
          "| fast s/prompt | fast vs knowledge-neurons | fast vs reference | Spearman (as shipped) "
          "| max rel. dev. (as shipped) | Spearman (same points) | max rel. dev. (same points) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["median"]
        print(f"| {r['model']} | {r['tokens']} | {m['knowledge-neurons']:.2f} | {m['reference']:.2f} | "
              f"{m['fast, torch matmul']:.2f} | {m['fast']:.2f} | {m['knowledge-neurons'] / m['fast']:.2f}x | "
              f"{m['reference'] / m['fast']:.2f}x | {r['as_shipped'][0]:.4f} | {r['as_shipped'][1]:.1e} | "
              f"{r['same_points'][0]:.6f} | {r['same_points'][1]:.1e} |")
    for r in rows:
        m = r["median"]
        print(f"{r['model']}: {r['neurons']} neurons; fast engine's kernel {r['kernel']}; knowledge-neurons / fast "
              f"on torch's kernel {m['knowledge-neurons'] / m['fast, torch matmul']:.2f}x; knowledge-neurons / "
              f"reference {m['knowledge-neurons'] / m['reference']:.2f}x; reference vs theirs (same points): "
              f"Spearman {r['ref_same_points'][0]:.6f}, max rel. dev. {r['ref_same_points'][1]:.1e}; fast vs "
              f"reference: Spearman {r['fast_vs_ref'][0]:.6f}, max rel. dev. {r['fast_vs_ref'][1]:.1e}")
    spread = "; ".join(f"{r['model']} {c} {lo:.2f}-{hi:.2f} s" for r in rows for c, (lo, hi) in r["spread"].items())
    print(f"range of the timed runs: {spread}; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
