"""Latency of what the app does interactively, on the demo model (issue 6's app goals):

- **cached open**: a fact whose attributions are stored: read its prompts' results from the store, select
  the knowledge neurons and build the heatmap and layer figures (what the fact browser does before its
  edit-effect table, which runs forward passes by design);
- **page run**: the whole fact-browser page through Streamlit's AppTest with a warm store and a loaded
  model (edit effects included; AppTest adds its own overhead);
- **live verdict**: one claim judged by a calibrated DKN fact checker (DKN score on the DKN layers + the
  model's greedy answer), the work behind the fact-check page's verdict.

    python bench/bench_app.py            # about a minute on 2 cores
    python bench/bench_app.py --runs 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kn_core import figures  # noqa: E402
from kn_core.attribution import AttributionConfig  # noqa: E402
from kn_core.method.factcheck import calibrate, make_claims  # noqa: E402
from kn_core.data import load_bundled  # noqa: E402
from kn_core.model.loading import load_model  # noqa: E402
from kn_core.method.neurons import default_tau, knowledge_neurons, per_layer_counts  # noqa: E402
from kn_core.runs import cached  # noqa: E402
from kn_core.runs.store import ResultStore  # noqa: E402

MODEL, RELATION, LANG = "demo-mlm", "P36", "en"


def timed(fn, runs: int) -> tuple[float, float, float]:
    """Median, min and max seconds of ``runs`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def cached_open(lm, store: ResultStore, prompts, config: AttributionConfig) -> None:
    results = [cached.attribution(store, lm, p, config, LANG, compute_missing=False) for p in prompts]
    assert all(r is not None for r in results), "the bench's results were not stored"
    scores = [r.scores for r in results]
    neurons = knowledge_neurons(scores, default_tau(LANG), 0.7)
    figures.neuron_heatmap(np.mean(scores, axis=0), "mean", marked=[(l, i) for l, i, _ in neurons])
    figures.layer_histogram({"neurons": per_layer_counts(neurons, lm.n_layers)})


def page_run(home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    os.environ["KN_EXPLORER_HOME"] = str(home)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    assert not at.exception, at.exception


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm, factset, config = load_model(MODEL), load_bundled(), AttributionConfig()
    fact = factset.facts_of(RELATION)[0]
    prompts = [lm.prompt(t.text, fact.subject(LANG), fact.object(LANG))
               for t in factset.relation(RELATION).templates_for(LANG)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = ResultStore(home / "store.sqlite")
        for p in prompts:
            cached.attribution(store, lm, p, config, LANG)
        rows.append((f"cached open ({len(prompts)} prompts: store → neurons → figures)",
                     timed(lambda: cached_open(lm, store, prompts, config), args.runs), 0.2))
        store.close()
        rows.append(("page run (fact browser in AppTest, warm store, edit effects included)",
                     timed(lambda: page_run(home), max(1, args.runs // 2)), None))
    facts = factset.facts_of(RELATION)[:20]
    checker = calibrate(lm, factset, RELATION, LANG, config=config, t_low=0.05, t_high=0.08, facts=facts)
    claims = make_claims(factset, RELATION, LANG, 0, facts[:5])
    template = checker.template

    def verdicts() -> None:
        for claim in claims:
            checker.judge(lm, claim.subject, claim.candidate, template)

    median, low, high = timed(verdicts, args.runs)
    n = len(claims)
    rows.append((f"live verdict (DKN set of {len(checker.dkn)} neurons in layers "
                 f"{sorted({l for l, _ in checker.dkn})}; per claim)", (median / n, low / n, high / n), 1.0))
    print(f"torch {torch.__version__}, 1 thread; {MODEL}, relation {RELATION}, {LANG}; "
          f"median of {args.runs} run(s) after a warm-up; load average {os.getloadavg()[0]:.2f}")
    print("| what | median s | range s | goal s | met |")
    print("|---|---|---|---|---|")
    for what, (median, low, high), goal in rows:
        met = "—" if goal is None else ("yes" if median < goal else "no")
        print(f"| {what} | {median:.3f} | {low:.3f}–{high:.3f} | {'—' if goal is None else goal} | {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
