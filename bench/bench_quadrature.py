"""Which quadrature: every rule × m against Gauss–Legendre m = 64, on real models and many prompts (issue #24).

For each sampled prompt (``masked`` baseline: the paper's one integral per masked prompt; fast engine, every
layer): the reference, Gauss–Legendre m = 64, once; then every (rule, m) of the grid. Per prompt and (rule, m):

- ``err``: max over all neurons of all layers of |s − s_ref| / max |s_ref| (``Attribution.scores``, the paths'
  mean): the score error as a share of the prompt's top score;
- ``jaccard``: Jaccard of the coarse knowledge-neuron set (score > τ · max, τ of the language: 0.3 en, 0.2 zh;
  :func:`kn_core.method.neurons.coarse_neurons`) with the reference's (1 where both are empty);
- ``residual``: the worst path's completeness residual, max over paths j and layers l of |δ_jl| / |P(a) − P(b_jl)|
  (absolute |δ_jl| where that gap is below 1e-3);
- ``seconds``: the attribution's wall time (``--threads`` torch threads, or on ``--device cuda``: a GPU session
  runs the whole study in a fraction of the CPU's time; the ``device`` column says where each row ran). The
  prompt's clean pass and masked baselines (the same for every rule) are computed once per prompt and timed
  once; that time is added to every row of the prompt, so ``seconds`` is what one whole attribution costs.

Work shared between the grid's attributions of a prompt, exactly (the results are the same numbers):

- every engine call is remembered for the prompt: the adaptive rule's first pass at m *is* Gauss–Legendre m,
  computed just before; its ``seconds`` include that pass's time, as if it had been computed again;
- right Riemann is derived from left Riemann: R_m = L_m + (R_1 − L_1)/m (the two sums share the points
  1/m … (m − 1)/m; R_1 is the gradient at α = 1, L_1 at α = 0), for scores and residuals alike (both are
  linear in the sum). Its ``seconds`` are measured only where it is computed on its own (``--timed-right``:
  the first N prompts of a run, default 1; ``--time-right-at``: these m on every prompt, default 20, the
  paper preset); elsewhere they are left empty. ``--check-derived`` computes it on
  its own everywhere and records both (the ``derived_err`` column: max |derived − computed| / max |s_ref|).

Rows go to ``--out`` (CSV) as they are computed; a rerun skips the (prompt, rule, m) already there, so a killed
run resumes. ``--table`` only re-makes the table from that file. The table, per (model, language, rule, m),
over prompts: max and 95th percentile of ``err``, the share of prompts with Jaccard ≥ 0.95 and ``err`` ≤ 2 %
(the issue's criterion), mean Jaccard, 95th percentile of the worst residual, mean seconds.

Prompts: a seeded sample (``--seed``, default 0) over the bundled facts: relation i mod 10 for the i-th prompt,
then a random fact of it and a random template of the language (held-out ones included).

    python bench/bench_quadrature.py --model smollm2-135m --lang en --prompts 40 --out bench/results/quadrature.csv
    python bench/bench_quadrature.py --model gemma3-270m --lang zh --prompts 10 --out bench/results/quadrature.csv
    python bench/bench_quadrature.py --table --out bench/results/quadrature.csv
    python bench/bench_quadrature.py --model demo-clm --prompts 2 --steps 2,4 --out /tmp/q.csv   # a quick check
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kn_core.attribution as attribution  # noqa: E402
from kn_core.attribution import AttributionConfig, attribute  # noqa: E402
from kn_core.data import load_dataset  # noqa: E402
from kn_core.defaults import TAU  # noqa: E402
from kn_core.method.neurons import coarse_neurons  # noqa: E402

RULES = ("riemann-right", "riemann-left", "gauss-legendre", "gauss-legendre-adaptive")
STEPS = (2, 4, 8, 12, 20)
REFERENCE = ("gauss-legendre", 64)
GAP_FLOOR = 1e-3  # below this |P(a) − P(b_j)| the residual is taken absolute
OK_JACCARD, OK_ERR = 0.95, 0.02  # the criterion for one prompt
FIELDS = ("model", "lang", "prompt", "relation", "fact", "template", "tokens", "paths", "p_object", "rule", "m",
          "err", "jaccard", "kn", "kn_ref", "residual", "seconds", "shared_seconds", "threads", "load", "derived_err",
          "device")


def sample_prompts(lang: str, count: int, seed: int) -> list[dict]:
    """``count`` (fact, template) pairs of ``lang``: relation i mod (relations), a random fact of it with labels
    in ``lang``, a random template of the language; no pair twice."""
    facts = load_dataset("bundled")
    relations = list(facts.relations)
    rng = random.Random(seed)
    chosen, seen = [], set()
    while len(chosen) < count:
        relation = relations[len(chosen) % len(relations)]
        fact = rng.choice([f for f in facts.facts_of(relation) if lang in f.labels])
        template = rng.choice(list(facts.relation(relation).templates_for(lang)))
        if (fact.id, template.text) in seen:
            continue
        seen.add((fact.id, template.text))
        chosen.append({"relation": relation, "fact": fact.id, "template": template.text,
                       "subject": fact.subject(lang), "object": fact.object(lang)})
    return chosen


def worst_residual(result) -> float:
    """max_j,l |δ_jl| / |P(a) − P(b_jl)|, absolute where the gap is below :data:`GAP_FLOOR`."""
    rows = list(result.layers)
    gaps = np.abs(np.mean(result.token_probs) - result.path_baseline_probs[:, rows])
    deltas = np.abs(result.path_deltas[:, rows])
    return float(np.max(np.where(gaps >= GAP_FLOOR, deltas / np.maximum(gaps, GAP_FLOOR), deltas)))


def kn_set(scores: np.ndarray, lang: str) -> set[tuple[int, int]]:
    return {(n[0], n[1]) for n in coarse_neurons(scores, TAU[lang])}


def jaccard(a: set, b: set) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


class EngineMemo:
    """``kn_core.attribution.ENGINES[name]`` remembered per prompt: a call with the same rule, m, layers and
    baseline paths (the same tensor) returns the first call's result; ``credit`` sums the seconds that the
    remembered calls took, for the attribution that reused them."""

    def __init__(self, name: str = "fast"):
        self.engine, self.name = attribution.ENGINES[name], name
        self.cache: dict = {}
        self.credit = 0.0
        attribution.ENGINES[name] = self

    def reset(self) -> None:
        self.cache, self.credit = {}, 0.0

    def __call__(self, lm, prompt, clean, start, layers, steps, progress, rule):
        key = (rule, steps, tuple(layers), start.data_ptr(), tuple(start.shape), clean.data_ptr())
        if key in self.cache:
            out, seconds = self.cache[key]
            self.credit += seconds
            return out
        began = time.perf_counter()
        out = self.engine(lm, prompt, clean, start, layers, steps, progress, rule=rule)
        synchronize(lm)
        self.cache[key] = (out, time.perf_counter() - began)
        return out


def synchronize(lm) -> None:
    """Wait for the GPU's queued work (its time is then counted where it was launched); nothing on the CPU."""
    if lm.device.type == "cuda":
        torch.cuda.synchronize(lm.device)


def derived_right(left, right_1, left_1, m: int):
    """Right Riemann m from left Riemann m and the one-point rules at α = 1 and α = 0: R_m = L_m + (R_1 − L_1)/m
    (scores and per-path residuals: both linear in the sum)."""
    return dataclasses.replace(left, scores=left.scores + (right_1.scores - left_1.scores) / m,
                               path_deltas=left.path_deltas + (right_1.path_deltas - left_1.path_deltas) / m,
                               config=dataclasses.replace(left.config, rule="riemann-right"))


class SharedPasses:
    """The clean pass and the masked baselines of the prompt being studied, computed once and handed to every
    attribution of it (``kn_core.attribution``'s two module functions, replaced while the study runs)."""

    def __init__(self):
        self.key, self.clean, self.start, self.seconds = None, None, None, 0.0
        self._clean_pass, self._baseline = attribution._clean_pass, attribution.baseline
        attribution._clean_pass, attribution.baseline = self.clean_pass, self.baseline

    def prepare(self, lm, prompt, baseline_name: str) -> float:
        """Compute and time both for ``prompt`` (seconds)."""
        ids = torch.tensor(prompt.input_ids, device=lm.device)[None]
        began = time.perf_counter()
        with lm.lock, attribution.kernels.matmuls(model=lm.model):
            self.clean = self._clean_pass(lm, ids, prompt)
            self.start = self._baseline(lm, prompt, baseline_name)
            synchronize(lm)
        self.seconds = time.perf_counter() - began
        self.key = (prompt.input_ids, prompt.target_positions, baseline_name)
        return self.seconds

    def clean_pass(self, lm, ids, prompt):
        assert self.key is not None and self.key[:2] == (prompt.input_ids, prompt.target_positions)
        return self.clean

    def baseline(self, lm, prompt, name):
        assert self.key == (prompt.input_ids, prompt.target_positions, name)
        return self.start


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def append_rows(path: Path, rows: list[dict]) -> None:
    if path.exists() and path.stat().st_size:
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if tuple(header) != FIELDS:  # a file of an earlier version: rewritten with today's columns (empty where new)
            old = read_rows(path)
            path.write_text("", encoding="utf-8")
            append_rows(path, [{field: row.get(field, "") for field in FIELDS} for row in old])
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def study(args) -> None:
    from kn_core.model.loading import load_model

    torch.set_num_threads(args.threads)
    rules = args.rules.split(",")
    steps = [int(m) for m in args.steps.split(",")]
    done = {(r["model"], r["lang"], r["prompt"], r["rule"], r["m"]) for r in read_rows(args.out)}
    lm = load_model(args.model, device=args.device)
    shared, memo = SharedPasses(), EngineMemo()
    if "riemann-right" in rules and "riemann-left" in rules:  # derived: computed after left (see the docstring)
        rules = [r for r in rules if r != "riemann-right"] + ["riemann-right"]
    order = {"gauss-legendre": 0, "gauss-legendre-adaptive": 1}  # the adaptive rule reuses Gauss–Legendre's pass
    rules.sort(key=lambda r: order.get(r, -1))
    print(f"{args.model} {args.lang}: {args.prompts} prompts (seed {args.seed}), rules {rules}, m {steps}, reference "
          f"{REFERENCE}; {args.device}, {args.threads} thread(s) on {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}",
          flush=True)
    for number, task in enumerate(sample_prompts(args.lang, args.prompts, args.seed)):
        name = f"{task['fact']}|{task['template']}"
        todo = [(r, m) for r in rules for m in steps if (args.model, args.lang, name, r, str(m)) not in done]
        if not todo:
            continue
        prompt = lm.prompt(task["template"], task["subject"], task["object"])
        shared_seconds = shared.prepare(lm, prompt, args.baseline)
        memo.reset()
        timed_right = number < args.timed_right or args.check_derived

        def run(rule: str, m: int):
            credit = memo.credit
            began = time.perf_counter()
            result = attribute(lm, prompt, AttributionConfig(baseline=args.baseline, steps=m, rule=rule),
                               lang=args.lang)
            return result, time.perf_counter() - began + shared_seconds + (memo.credit - credit)

        ref, ref_seconds = run(*REFERENCE)
        top, ref_kn = float(np.abs(ref.scores).max()), kn_set(ref.scores, args.lang)
        base = {"model": args.model, "lang": args.lang, "prompt": name, "relation": task["relation"],
                "fact": task["fact"], "template": task["template"], "tokens": len(prompt.input_ids),
                "paths": ref.n_paths, "p_object": f"{ref.p_object:.6g}", "kn_ref": len(ref_kn),
                "shared_seconds": f"{shared_seconds:.3f}", "threads": args.threads, "device": args.device}

        def row(rule, m, result, seconds, derived_err=""):
            kn = kn_set(result.scores, args.lang)
            return {**base, "rule": rule, "m": m, "err": f"{float(np.abs(result.scores - ref.scores).max()) / top:.6g}",
                    "jaccard": f"{jaccard(kn, ref_kn):.6g}", "kn": len(kn), "residual": f"{worst_residual(result):.6g}",
                    "seconds": "" if seconds is None else f"{seconds:.3f}", "load": f"{os.getloadavg()[0]:.2f}",
                    "derived_err": derived_err}

        rows = [] if (args.model, args.lang, name, "reference", "64") in done else \
            [row("reference", REFERENCE[1], ref, ref_seconds)]
        lefts, ones = {}, {}
        for rule, m in todo:
            if rule == "riemann-right" and "riemann-left" in rules:
                if not ones:
                    ones = {r: run(r, 1)[0] for r in ("riemann-right", "riemann-left")}
                left = lefts.get(m) or run("riemann-left", m)[0]
                derived = derived_right(left, ones["riemann-right"], ones["riemann-left"], m)
                if timed_right or m in args.time_right_at:
                    result, seconds = run(rule, m)
                    check = f"{float(np.abs(derived.scores - result.scores).max()) / top:.3g}"
                    rows.append(row(rule, m, result if args.check_derived else derived, seconds, check))
                else:
                    rows.append(row(rule, m, derived, None))
                continue
            result, seconds = run(rule, m)
            if rule == "riemann-left":
                lefts[m] = result
            rows.append(row(rule, m, result, seconds))
        append_rows(args.out, rows)
        worst = max(rows, key=lambda r: float(r["err"]))
        print(f"[{number + 1}/{args.prompts}] {name} ({len(prompt.input_ids)} tokens, {ref.n_paths} paths, "
              f"P = {ref.p_object:.3g}): reference {ref_seconds:.1f} s; worst {worst['rule']} m={worst['m']} "
              f"err {float(worst['err']):.3g}", flush=True)


def seconds(sec: np.ndarray, rows: int) -> str:
    """Mean seconds, and how many rows were timed where not all (derived right-Riemann rows are not)."""
    if not len(sec):
        return "– (derived)"
    return f"{sec.mean():.1f}" + ("" if len(sec) == rows else f" ({len(sec)} timed)")


def paper_seconds(rows: list[dict]) -> dict:
    """Per (model, lang, prompt): the seconds of the paper's setting, right Riemann m = 20, where it was timed,
    else of left Riemann m = 20 (the same number of gradient points: m − 1 plus the clean pass's, against m)."""
    out = {}
    for wanted in ("riemann-left", "riemann-right"):  # right, where timed, overrides left
        for r in rows:
            if r["rule"] == wanted and r["m"] == "20" and r["seconds"]:
                out[(r["model"], r["lang"], r["prompt"])] = float(r["seconds"])
    return out


def table(rows: list[dict]) -> str:
    paper = paper_seconds(rows)
    groups = defaultdict(list)
    for r in rows:
        if r["rule"] != "reference":
            groups[(r["model"], r["lang"], r["rule"], int(r["m"]))].append(r)
    order = {rule: i for i, rule in enumerate(RULES)}
    lines = ["| model | lang | rule | m | prompts | max err | p95 err | share OK (J ≥ 0.95, err ≤ 2 %) | mean Jaccard "
             "| p95 worst residual | mean s | time / paper's (same prompt) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (model, lang, rule, m), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                               order.get(kv[0][2], 99), kv[0][3])):
        err = np.array([float(r["err"]) for r in group])
        jac = np.array([float(r["jaccard"]) for r in group])
        res = np.array([float(r["residual"]) for r in group])
        sec = np.array([float(r["seconds"]) for r in group if r["seconds"]])  # derived rows: no time of their own
        ratio = [float(r["seconds"]) / paper[key] for r in group
                 if r["seconds"] and (key := (r["model"], r["lang"], r["prompt"])) in paper]
        ok = np.mean((jac >= OK_JACCARD) & (err <= OK_ERR))
        lines.append(f"| {model} | {lang} | {rule} | {m} | {len(group)} | {100 * err.max():.2f} % | "
                     f"{100 * np.quantile(err, 0.95):.2f} % | {100 * ok:.0f} % | {jac.mean():.3f} | "
                     f"{np.quantile(res, 0.95):.2e} | {seconds(sec, len(group))} | "
                     f"{f'{np.mean(ratio):.2f}' if ratio else '–'} |")
    decisions = [""]
    for (model, lang) in sorted({k[:2] for k in groups}):
        passing = []
        for (mo, la, rule, m), group in groups.items():
            err = np.array([float(r["err"]) for r in group])
            jac = np.array([float(r["jaccard"]) for r in group])
            sec = [float(r["seconds"]) for r in group if r["seconds"]]
            if (mo, la) == (model, lang) and sec and np.mean((jac >= OK_JACCARD) & (err <= OK_ERR)) >= 0.95:
                passing.append((np.mean(sec), rule, m))
        best = min(passing) if passing else None
        decisions.append(f"{model} {lang}: cheapest setting with Jaccard ≥ 0.95 and err ≤ 2 % on ≥ 95 % of prompts: "
                     + (f"{best[1]} m = {best[2]} ({best[0]:.1f} s mean)" if best else "none"))
    refs = defaultdict(list)
    for r in rows:
        if r["rule"] == "reference":
            refs[(r["model"], r["lang"])].append(float(r["seconds"]))
    # time / paper's: mean over prompts of seconds / the same prompt's right Riemann m = 20 seconds (left m = 20
    # where right was derived, not timed: :func:`paper_seconds`); the machine's load changes less within a prompt
    for (model, lang), sec in sorted(refs.items()):
        lines.append(f"| {model} | {lang} | reference: gauss-legendre | 64 | {len(sec)} | | | | | | "
                     f"{np.mean(sec):.1f} | |")
    return "\n".join(lines + decisions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default="masked")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="comma-separated m values")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU: the same study, far sooner)")
    parser.add_argument("--timed-right", type=int, default=1,
                        help="compute right Riemann on its own (timed) for the first N prompts, else derive it")
    parser.add_argument("--time-right-at", default="20", type=lambda v: {int(m) for m in v.split(",") if m},
                        help="compute right Riemann on its own (timed) at these m on every prompt (default 20: the "
                             "paper preset's time; '' for none)")
    parser.add_argument("--check-derived", action="store_true", help="compute right Riemann on its own everywhere")
    parser.add_argument("--out", type=Path, default=Path("bench/results/quadrature.csv"))
    parser.add_argument("--table", action="store_true", help="only print the table of the rows in --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.table:
        study(args)
    print(table(read_rows(args.out)))


if __name__ == "__main__":
    main()
