"""``masked`` (the paper's formula: one IG integral per masked prompt, averaged) against ``masked-mean`` (the
authors' code: one integral from the mean of the masked baselines) and ``zero``, on the bundled demo models.

For each model and each of N facts of the bundled set (English, the relation's first English template; the
facts are taken round-robin over the relations, so they span several), one prompt is attributed with every
baseline (fast engine, every layer, m = 20 by default) and the script reports:

- the knowledge neurons of each baseline: the coarse set Attr > τ_en · max (one prompt per fact, so refined =
  coarse), their sizes, and the Jaccard index of the ``masked`` and ``masked-mean`` sets;
- the suppression effect of each set (``kn_core.method.interventions.verify``): the relative change of the
  fact's own P(object) when the set is zeroed, and of the same number of random neurons in the same layers;
  and, since the sets differ in size, the same for each baseline's top ``--top`` neurons (a size-matched
  comparison);
- P(a) − P(b) at the top layer (mean over paths for ``masked``): how much the baseline removes;
- the worst per-path completeness residual relative to the largest |P(a) − P(b_j)| of the layer
  (``Attribution.worst_relative_path_delta``), and the combined one, both the largest over layers;
- seconds of one attribution per baseline (fast engine, median of ``--runs`` after a warm-up).

    python bench/compare_baselines.py               # both demo models, 10 facts, about a minute on 1 thread
    python bench/compare_baselines.py --facts 3 --models demo-mlm
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kn_core.attribution import AttributionConfig, attribute  # noqa: E402
from kn_core.attribution.baselines import BASELINES  # noqa: E402
from kn_core.data import load_bundled  # noqa: E402
from kn_core.errors import KNError  # noqa: E402
from kn_core.method.interventions import verify  # noqa: E402
from kn_core.method.neurons import coarse_neurons, default_tau  # noqa: E402
from kn_core.model.loading import load_model  # noqa: E402

LANG = "en"


def facts_round_robin(factset, n: int, lang: str):
    """The first fact of each relation, then the second of each, … (only facts with ``lang`` labels, relations
    with a ``lang`` template): up to ``n`` (fact, first template) pairs."""
    queues = []
    for rid, relation in factset.relations.items():
        templates = relation.templates_for(lang)
        facts = [f for f in factset.facts_of(rid) if lang in f.labels]
        if templates and facts:
            queues.append((templates[0].text, facts))
    out, depth = [], 0
    while len(out) < n and any(depth < len(facts) for _, facts in queues):
        for template, facts in queues:
            if depth < len(facts) and len(out) < n:
                out.append((facts[depth], template))
        depth += 1
    return out


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def measure(lm, prompt, steps: int, runs: int, top: int) -> dict:
    tau = default_tau(LANG)
    row: dict = {}
    sets = {}
    for base in BASELINES:
        config = AttributionConfig(baseline=base, steps=steps, engine="fast")
        result = attribute(lm, prompt, config)  # warm-up, and the result
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            attribute(lm, prompt, config)
            times.append(time.perf_counter() - start)
        neurons = [(layer, index) for layer, index, _ in coarse_neurons(result.scores, tau)]
        sets[base] = set(neurons)
        check = verify(lm, [prompt], neurons, "suppress", seed=0) if neurons else None
        flat = np.argsort(-result.scores, axis=None, kind="stable")[:top]
        best = [(int(i // lm.d_ff), int(i % lm.d_ff)) for i in flat]
        top_check = verify(lm, [prompt], best, "suppress", seed=0)
        top = lm.n_layers - 1
        row[base] = {
            "seconds": statistics.median(times), "n_paths": result.n_paths, "size": len(neurons),
            "suppress_own": check.own if check else float("nan"),
            "suppress_random": check.random if check else float("nan"),
            "suppress_top": top_check.own, "suppress_top_random": top_check.random,
            "gap_top": float(np.mean(result.token_probs) - result.baseline_probs[top]),
            "p_object": float(np.mean(result.token_probs)),
            "worst_path_rel": float(np.nanmax(result.worst_relative_path_delta())),
            "combined_rel": float(np.nanmax(result.relative_delta())),
            "scores": result.scores,
        }
    row["jaccard"] = jaccard(sets["masked"], sets["masked-mean"])
    row["jaccard_zero"] = jaccard(sets["masked"], sets["zero"])
    paper, authors = row["masked"]["scores"], row["masked-mean"]["scores"]
    row["score_diff"] = float(np.abs(paper - authors).max() / np.abs(paper).max())
    row["top1_same"] = bool(np.argmax(paper) == np.argmax(authors))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="demo-mlm,demo-clm")
    parser.add_argument("--facts", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="timed attributions per baseline and prompt")
    parser.add_argument("--top", type=int, default=5, help="size of the size-matched suppression sets")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    factset = load_bundled()
    chosen = facts_round_robin(factset, args.facts, LANG)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); load average {os.getloadavg()[0]:.2f}; "
          f"{len(chosen)} facts (en, first template, round-robin over relations); m = {args.steps}, every layer, "
          f"fast engine; τ_en = {default_tau(LANG)}")
    for name in args.models.split(","):
        lm = load_model(name)
        rows = []
        print(f"\n## {name} ({lm.n_layers} layers × {lm.d_ff} neurons)\n")
        print("| fact | template | P(o) | paths | |KN| masked / mean / zero | Jaccard masked∩mean | "
              "suppress own: masked / mean | suppress random: masked / mean | P(a)−P(b) top layer: masked / mean "
              "| max score diff | worst path rel. residual |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for fact, template in chosen:
            try:
                prompt = lm.prompt(template, fact.subject(LANG), fact.object(LANG))
            except KNError as exc:
                print(f"| {fact.id} | skipped: {exc} |")
                continue
            r = measure(lm, prompt, args.steps, args.runs, args.top)
            rows.append(r)
            m, a, z = r["masked"], r["masked-mean"], r["zero"]
            print(f"| {fact.id} | {template} | {m['p_object']:.3f} | {m['n_paths']} | {m['size']} / {a['size']} / "
                  f"{z['size']} | {r['jaccard']:.2f} | {m['suppress_own']:+.2f} / {a['suppress_own']:+.2f} | "
                  f"{m['suppress_random']:+.2f} / {a['suppress_random']:+.2f} | {m['gap_top']:.4f} / "
                  f"{a['gap_top']:.4f} | {r['score_diff']:.2f} | {m['worst_path_rel']:.3f} |")
        if not rows:
            continue

        def mean(key, base=None):
            values = [row[key] if base is None else row[base][key] for row in rows]
            return float(np.nanmean(values))

        print(f"\nmean over {len(rows)} facts:")
        print(f"- Jaccard(masked, masked-mean) = {mean('jaccard'):.3f}; Jaccard(masked, zero) = "
              f"{mean('jaccard_zero'):.3f}; same top-1 neuron in {sum(r['top1_same'] for r in rows)}/{len(rows)}; "
              f"largest score difference / largest score = {mean('score_diff'):.2f}")
        for base in BASELINES:
            print(f"- {base:11s}: |KN| {mean('size', base):5.1f}, suppress own {mean('suppress_own', base):+.3f}, "
                  f"random {mean('suppress_random', base):+.3f}; top-{args.top} suppress own "
                  f"{mean('suppress_top', base):+.3f}, random {mean('suppress_top_random', base):+.3f}; "
                  f"P(a)−P(b) top layer {mean('gap_top', base):.4f}; "
                  f"paths {mean('n_paths', base):.1f}; worst per-path rel. residual "
                  f"{mean('worst_path_rel', base):.3f} (combined {mean('combined_rel', base):.3f}); "
                  f"{mean('seconds', base):.3f} s / attribution")


if __name__ == "__main__":
    main()
