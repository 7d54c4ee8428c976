"""The N-language part of the ``likn`` experiment's report: per-fact rows of the overlap matrix (with its baselines),
of the neurons shared by k of N languages and of the cross-language suppression matrix, summarised per model into
language × language matrices, the per-relation ranking of language pairs, ``report.json`` and the matrix figures.

Summaries pool every (fact, seed) row: a matrix cell is the mean over the sampled facts of every seed.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kn_core.method.language_suppression import SuppressionMatrix
from kn_core.method.languages import OverlapMatrix, SharedNeurons, pair_ranking

REPORT_KIND = "kn-explorer/likn-report"
MATRIX_METRICS = ("jaccard", "jaccard_same_relation", "jaccard_other_relation")
SUPPRESSION_METRICS = ("change", "random_mean", "random_sd", "random_rank")


# -- per-fact rows -----------------------------------------------------------------------------------
def matrix_rows(matrix: OverlapMatrix, same: np.ndarray, other: np.ndarray) -> list[dict]:
    """One record per ordered language pair (A, B): the fact's Jaccard and its two baselines (cell [A, B] of
    :func:`~kn_core.method.languages.baseline_matrix` with other facts of the same / of other relations)."""
    return [{"lang_a": a, "lang_b": b, "jaccard": float(matrix.jaccard[i, j]),
             "jaccard_same_relation": float(same[i, j]), "jaccard_other_relation": float(other[i, j])}
            for i, a in enumerate(matrix.langs) for j, b in enumerate(matrix.langs)]


def pair_rows(matrix: OverlapMatrix, same: np.ndarray, other: np.ndarray) -> list[dict]:
    """One record per unordered pair (a before b in the run's order): sizes, shared, Jaccard, baselines."""
    index = {lang: i for i, lang in enumerate(matrix.langs)}
    return [{"lang_a": a, "lang_b": b, "n_a": int(matrix.sizes[index[a]]), "n_b": int(matrix.sizes[index[b]]),
             "n_shared": int(matrix.shared[index[a], index[b]]), "jaccard": value,
             "jaccard_same_relation": float(same[index[a], index[b]]),
             "jaccard_other_relation": float(other[index[a], index[b]])} for a, b, value in matrix.pairs()]


def k_rows(shared: SharedNeurons) -> list[dict]:
    """One record per k = 1 … N: how many neurons at least k languages share."""
    return [{"k": k, "n_langs": len(shared.langs), "n_neurons": count} for k, count in enumerate(shared.by_k, 1)]


def suppression_rows(matrix: SuppressionMatrix) -> list[dict]:
    """One record per (suppressed, measured) cell of the fact's suppression matrix."""
    return matrix.rows()


# -- summaries ---------------------------------------------------------------------------------------
def square(frame: pd.DataFrame, langs: Sequence[str], row: str, column: str, value: str) -> np.ndarray:
    """The long ``frame`` (one model's rows) as a float [N, N] matrix of the mean of ``value`` (NaN: no row)."""
    means = frame.groupby([row, column])[value].mean()
    return np.array([[float(means.get((a, b), np.nan)) for b in langs] for a in langs])


def overlap_summary(matrices: pd.DataFrame) -> pd.DataFrame:
    """Per model and ordered language pair: the mean Jaccard and baselines over facts (and seeds), ``facts``."""
    grouped = matrices.groupby(["model", "lang_a", "lang_b"], sort=False)
    return grouped[list(MATRIX_METRICS)].mean().assign(facts=grouped.size()).reset_index()


def suppression_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model and (suppressed, measured) cell: the means over facts whose suppressed set is non-empty."""
    used = rows[rows["n_neurons"] > 0]
    grouped = used.groupby(["model", "suppressed", "measured"], sort=False)
    return grouped[list(SUPPRESSION_METRICS)].mean().assign(facts=grouped["fact_id"].nunique()).reset_index()


def k_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model and k: the mean number of neurons shared by at least k languages and the facts with one."""
    grouped = rows.groupby(["model", "k"], sort=False)["n_neurons"]
    return pd.DataFrame({"facts": grouped.size(), "mean_neurons": grouped.mean(),
                         "facts_with_one": grouped.apply(lambda s: int((s > 0).sum()))}).reset_index()


def ranking(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per model and relation, the language pairs ranked by mean Jaccard over facts (and seeds)."""
    frames = [pair_ranking(group).assign(model=model) for model, group in pairs.groupby("model", sort=False)]
    if not frames:
        return pd.DataFrame(columns=["model", "relation", "lang_a", "lang_b", "jaccard", "facts", "rank"])
    table = pd.concat(frames, ignore_index=True)
    return table[["model", *[c for c in table.columns if c != "model"]]]


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.1%}"


def _num(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def overlap_shown(summary: pd.DataFrame, langs: Sequence[str]) -> pd.DataFrame:
    """The overlap matrices as text, one block of rows per model: cell "J (same relation / other relation)"."""
    rows = []
    for model, group in summary.groupby("model", sort=False):
        for a in langs:
            row = {"model": model, "facts' language": a}
            for b in langs:
                cell = group[(group["lang_a"] == a) & (group["lang_b"] == b)]
                row[b] = "–" if cell.empty else (f"{_num(cell['jaccard'].iloc[0])} "
                                                 f"({_num(cell['jaccard_same_relation'].iloc[0])} / "
                                                 f"{_num(cell['jaccard_other_relation'].iloc[0])})")
            rows.append(row)
    return pd.DataFrame(rows)


def suppression_shown(summary: pd.DataFrame, langs: Sequence[str]) -> pd.DataFrame:
    """The suppression matrices as text, one block per model: cell "change (random mean ± sd)"."""
    rows = []
    for model, group in summary.groupby("model", sort=False):
        for a in langs:
            row = {"model": model, "suppressed": a}
            for b in langs:
                cell = group[(group["suppressed"] == a) & (group["measured"] == b)]
                row[f"on {b}"] = "–" if cell.empty else (
                    f"{_pct(cell['change'].iloc[0])} (random {_pct(cell['random_mean'].iloc[0])} ± "
                    f"{abs(cell['random_sd'].iloc[0]):.1%})")
            rows.append(row)
    return pd.DataFrame(rows)


def ranking_shown(table: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """The ``top`` pairs of each model and relation."""
    if table.empty:
        return table
    return table[table["rank"] <= top].reset_index(drop=True)


# -- report.json and figures -----------------------------------------------------------------------
def _strict(value):
    """NaN and ±Infinity as None, numpy scalars as Python numbers, for strict JSON."""
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_strict(v) for v in value]
    return value


def report_json(langs: Sequence[str], overlaps: pd.DataFrame, suppression: pd.DataFrame, by_k: pd.DataFrame,
                pairs: pd.DataFrame) -> dict:
    """``report.json``'s content: per model, the language × language matrices (rows and columns in ``langs``
    order) of the overlap and its baselines, of the suppression and its random control, the neurons shared by
    k of N, and per relation the pairs ranked by mean Jaccard."""
    models = {}
    for model in dict.fromkeys([*overlaps["model"], *suppression["model"]]):
        o, s = overlaps[overlaps["model"] == model], suppression[suppression["model"] == model]
        k, r = by_k[by_k["model"] == model], pairs[pairs["model"] == model]
        models[model] = {
            "overlap": {name: square(o, langs, "lang_a", "lang_b", name).tolist() for name in MATRIX_METRICS}
            | {"facts": square(o, langs, "lang_a", "lang_b", "facts").tolist(),
               "rows": "the fact's language", "columns": "the language compared (for the baselines, another fact's)"},
            "suppression": {name: square(s, langs, "suppressed", "measured", name).tolist()
                            for name in SUPPRESSION_METRICS}
            | {"facts": square(s, langs, "suppressed", "measured", "facts").tolist(),
               "rows": "the language whose knowledge neurons are suppressed", "columns": "the prompts' language"},
            "shared_by_k": k.drop(columns="model").to_dict(orient="records"),
            "pair_ranking": {rid: g.drop(columns=["model", "relation"]).to_dict(orient="records")
                             for rid, g in r.groupby("relation", sort=False)}}
    return _strict({"kind": REPORT_KIND, "version": 1, "langs": list(langs), "models": models})


def write_report_json(report: dict, folder: Path) -> Path:
    """``report.json`` in ``folder`` (strict JSON, UTF-8)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "report.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=1, allow_nan=False), encoding="utf-8")
    return path


def matrix_figure(panels: dict[str, np.ndarray], langs: Sequence[str], title: str, percent: bool = False,
                  xlabel: str = "", ylabel: str = "") -> Figure:
    """One annotated heatmap per panel (e.g. model, or Jaccard and its baselines), rows and columns ``langs``."""
    fig = Figure(figsize=(3.4 * max(1, len(panels)) + 0.6, 3.2 + 0.15 * len(langs)), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    off = ~np.eye(len(langs), dtype=bool)  # the colour scale follows the pairs (a Jaccard diagonal is 1)
    cells = [np.abs(v[off] if not percent and len(langs) > 1 else v) for v in panels.values()]
    high = max([float(np.nanmax(c)) for c in cells if np.isfinite(c).any()] + [1e-12])
    for ax, (name, matrix) in zip(axes, panels.items()):
        image = ax.imshow(matrix, cmap="RdBu_r" if percent else "Blues", vmin=-high if percent else 0, vmax=high)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, "–" if not np.isfinite(value) else (f"{value:+.0%}" if percent else f"{value:.2f}"),
                    ha="center", va="center", fontsize="x-small",
                    color="white" if np.isfinite(value) and abs(value) > 0.6 * high else "black")
        ax.set_xticks(range(len(langs)), list(langs))
        ax.set_yticks(range(len(langs)), list(langs))
        ax.set(title=name, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    fig.suptitle(title)
    return fig


__all__ = ["MATRIX_METRICS", "REPORT_KIND", "SUPPRESSION_METRICS", "k_rows", "k_summary", "matrix_figure",
           "matrix_rows", "overlap_shown", "overlap_summary", "pair_rows", "ranking", "ranking_shown", "report_json",
           "square", "suppression_rows", "suppression_shown", "suppression_summary", "write_report_json"]
