"""The paper's numbers (docs/method.md), in one place. Every one is a default the user can change.

Chen et al. (AAAI 2024) unless noted; the modules that use them import them from here.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

# §1 AMIG. The default numerics are chosen by measured error (bench/bench_quadrature.py, docs/performance.md):
# Gauss–Legendre with m = 4 points, each (layer, baseline path) whose completeness residual exceeds 1 % of the
# change it integrates integrated again with 8, 16, … points. The paper's numerics are the preset "paper".
RULE = "gauss-legendre-adaptive"  # quadrature rule of each integral
STEPS = 4  # m, its points (the adaptive rule's first pass)
PAPER_RULE, PAPER_STEPS = "riemann-right", 20  # the paper's: right Riemann sums, m = 20 (`--preset paper`)
PRESETS: Mapping[str, tuple[str, int]] = MappingProxyType({"default": (RULE, STEPS),
                                                           "paper": (PAPER_RULE, PAPER_STEPS)})

# §2 knowledge neurons
TAU: Mapping[str, float] = MappingProxyType({"en": 0.3, "zh": 0.2})  # coarse threshold τ per language (the paper's)
FALLBACK_TAU = 0.3  # τ for a language the paper gives none for: the English value (docs/method.md §2)
P_SHARE = 0.7  # refined: coarse in more than this share of a fact's prompts

# §4 degenerate knowledge neurons
TOP_K = 20  # candidates: the prompt's top-K knowledge neurons
T_LOW = 0.2  # aggregate: suppressing one neuron alone lowers P by at most this (relative)
T_HIGH = 0.25  # filter: suppressing the pair lowers P by more than this (relative)

# §5 fact-checking
DKN_T = 0.7  # a relation's DKN set: count in degenerate pairs > floor(t · max count)
TRAIN_SHARE = 0.8  # each relation's facts split train / test
CHECKER_FACTS = (5, 10, 20)  # the Fact-check page's quicker choices: calibrate on the relation's first N facts
#                             (the default: the atlas plan's facts where the model has one, else every fact)

# Controls and specificity verdicts (beyond the paper; docs/method.md §6, kn_core.method.controls)
CONTROL_FACTS = 5  # other facts of the same relation, and facts of other relations, per neuron set
RANDOM_DRAWS = 30  # random same-size neuron sets in the same layers
RANDOM_SD = 3.0  # "beyond random": the own drop exceeds the random draws' mean drop by this many sd …
MIN_EFFECT = 0.05  # … and by at least this much (5 points of relative change)
SPECIFIC_RATIO = 2.0  # "clearly exceeds": at least this many times the other drop …
SPECIFIC_MARGIN = 0.10  # … and at least this much more (10 points)

# Fact-check baselines (beyond the paper)
PAPER_LAMBDA = 1e-6  # the paper's raw λ for the DKN score
BOOTSTRAP = 1000  # bootstrap resamples of the 95 % intervals
