"""Plotly figures: pure functions from numbers to figures (no Streamlit, no model).

Every text that may come from a user is escaped before it reaches a figure's HTML labels.
"""
from __future__ import annotations

import html
import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from kn_core.runs.queries import relative_depth

MAX_COLUMNS = 512  # heatmap columns before neurons are binned (each bin shows its strongest neuron)
SCALE = "RdBu_r"


def esc(text: object) -> str:
    """HTML-escape user text for figure titles, labels and hover text."""
    return html.escape(str(text), quote=True)


def bin_columns(scores: np.ndarray, max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin [n_layers, d_ff] into at most ``max_columns`` columns, keeping per bin the value of largest
    magnitude. Returns (binned values [n_layers, n_bins], argmax index per cell [n_layers, n_bins], bin width)."""
    n_layers, d_ff = scores.shape
    width = max(1, int(np.ceil(d_ff / max_columns)))
    n_bins = int(np.ceil(d_ff / width))
    padded = np.zeros((n_layers, n_bins * width), dtype=np.float32)
    padded[:, :d_ff] = scores
    blocks = padded.reshape(n_layers, n_bins, width)
    pick = np.abs(blocks).argmax(axis=2)
    values = np.take_along_axis(blocks, pick[..., None], axis=2)[..., 0]
    index = np.minimum(pick + np.arange(n_bins)[None, :] * width, d_ff - 1)
    return values, index, width


def neuron_heatmap(scores: np.ndarray, title: str = "", zmax: float | None = None,
                   marked: Sequence[tuple[int, int]] = (), max_columns: int = MAX_COLUMNS) -> go.Figure:
    """Layers × neurons heatmap of attribution scores; wide layers are binned (hover names the neuron).

    ``zmax`` fixes a symmetric colour scale (to compare two heatmaps); ``marked`` neurons get a marker.
    """
    values, index, width = bin_columns(np.asarray(scores, dtype=np.float32), max_columns)
    n_layers = values.shape[0]
    limit = float(zmax if zmax is not None else max(np.abs(values).max(), 1e-12))
    custom = np.stack([index, np.broadcast_to(np.arange(n_layers)[:, None], index.shape)], axis=-1)
    fig = go.Figure(go.Heatmap(
        z=values, x=np.arange(values.shape[1]) * width, y=np.arange(n_layers), customdata=custom,
        colorscale=SCALE, zmid=0, zmin=-limit, zmax=limit, colorbar={"title": "attribution"},
        hovertemplate="layer %{customdata[1]}, neuron %{customdata[0]}<br>score %{z:.3e}<extra></extra>"))
    if marked:
        fig.add_trace(go.Scatter(x=[i for _, i in marked], y=[l for l, _ in marked], mode="markers",
                                 marker={"symbol": "circle-open", "size": 10, "color": "black"},
                                 name="knowledge neurons",
                                 hovertemplate="layer %{y}, neuron %{x}<extra>knowledge neuron</extra>"))
    binned = f" (bins of {width} neurons, strongest shown)" if width > 1 else ""
    fig.update_layout(title=esc(title) + binned, xaxis_title="neuron index", yaxis_title="layer",
                      yaxis={"dtick": 1}, height=180 + 28 * n_layers, margin={"t": 50, "b": 40},
                      showlegend=False)
    return fig


def layer_histogram(counts: Mapping[str, Sequence[int] | np.ndarray],
                    title: str = "Knowledge neurons per layer") -> go.Figure:
    """Grouped bars: for each named neuron set, how many neurons sit in each layer."""
    fig = go.Figure()
    for name, values in counts.items():
        fig.add_trace(go.Bar(x=list(range(len(values))), y=list(values), name=esc(name)))
    top = max((max(values, default=0) for values in counts.values()), default=0)
    fig.update_layout(title=esc(title), xaxis_title="layer", yaxis_title="neurons", barmode="group",
                      xaxis={"dtick": 1}, yaxis={"rangemode": "nonnegative", "dtick": max(1, math.ceil(top / 6)),
                                                 "range": None if top else [0, 1]},
                      height=320, margin={"t": 50, "b": 40})
    return fig


def prompt_scores(labels: Sequence[str], values: Sequence[float], title: str) -> go.Figure:
    """Bars of one value per prompt (e.g. a neuron's score under each template and language)."""
    fig = go.Figure(go.Bar(x=[esc(l) for l in labels], y=list(values),
                           hovertemplate="%{x}<br>%{y:.3e}<extra></extra>"))
    fig.update_layout(title=esc(title), height=320, margin={"t": 50, "b": 120}, yaxis_title="attribution")
    return fig


def venn(sizes: tuple[int, int, int], names: tuple[str, str], title: str = "") -> go.Figure:
    """Two-set Venn diagram from (only a, shared, only b) counts."""
    only_a, shared, only_b = sizes
    fig = go.Figure()
    for x0, color in ((0.0, "rgba(31,119,180,0.35)"), (1.2, "rgba(214,39,40,0.35)")):
        fig.add_shape(type="circle", x0=x0, y0=0, x1=x0 + 2, y1=2, fillcolor=color, line={"color": color})
    fig.add_trace(go.Scatter(
        x=[0.6, 1.6, 2.6, 1.0, 2.2], y=[1, 1, 1, 2.2, 2.2], mode="text",
        text=[str(only_a), str(shared), str(only_b), esc(names[0]), esc(names[1])],
        textfont={"size": [22, 26, 22, 14, 14]}, hoverinfo="skip"))
    fig.update_layout(title=esc(title), xaxis={"visible": False, "range": [-0.2, 3.4]},
                      yaxis={"visible": False, "range": [-0.2, 2.5], "scaleanchor": "x"}, height=320,
                      showlegend=False, margin={"t": 50, "b": 10})
    return fig


def verdict_gauge(score: float, lam: float, correct: bool) -> go.Figure:
    """Where a claim's DKN score falls relative to the calibrated threshold λ."""
    span = max(abs(score), abs(lam), 1e-12) * 2
    fig = go.Figure(go.Indicator(
        mode="gauge+number", value=score, number={"valueformat": ".3e"},
        title={"text": "correct" if correct else "wrong"},
        gauge={"axis": {"range": [-span, span]}, "bar": {"color": "seagreen" if correct else "firebrick"},
               "threshold": {"line": {"color": "black", "width": 3}, "value": lam}}))
    fig.update_layout(height=260, margin={"t": 60, "b": 10})
    return fig


def depth_distribution(counts: Mapping[str, Sequence[int] | np.ndarray],
                       title: str = "Knowledge neurons over depth") -> go.Figure:
    """Grouped bars, one group per layer at its relative depth layer / (n_layers − 1): each named set's share of
    its knowledge neurons in that layer (the count in the bar's label and hover)."""
    fig = go.Figure()
    for name, layer_counts in counts.items():
        values = np.asarray(layer_counts, dtype=float)
        share = values / values.sum() if values.sum() else values
        fig.add_trace(go.Bar(x=relative_depth(len(values)), y=share, name=esc(name), text=[str(int(v)) for v in values],
                             customdata=np.arange(len(values)), textposition="outside",
                             hovertemplate="layer %{customdata} (depth %{x:.2f})<br>share %{y:.1%}, %{text} neuron(s)"
                                           f"<extra>{esc(name)}</extra>"))
    fig.update_layout(title=esc(title), xaxis_title="relative depth (layer / (layers − 1))",
                      yaxis_title="share of the knowledge neurons", barmode="group",
                      xaxis={"range": [-0.1, 1.1]}, yaxis={"tickformat": ".0%", "rangemode": "nonnegative"},
                      height=340, margin={"t": 50, "b": 40})
    return fig


def layer_profile(scores: np.ndarray) -> np.ndarray:
    """Each layer's share of the positive attribution of a [n_layers, d_ff] matrix (zeros when there is none)."""
    positive = np.clip(np.asarray(scores, dtype=np.float64), 0, None).sum(axis=1)
    total = positive.sum()
    return positive / total if total > 0 else positive


def depth_profiles(profiles: Mapping[str, Sequence[float]], title: str = "Where the attribution sits") -> go.Figure:
    """One line per model: a per-layer profile (e.g. :func:`layer_profile`) against relative depth, so that
    models of different depth share one axis."""
    fig = go.Figure()
    for name, values in profiles.items():
        values = list(values)
        fig.add_trace(go.Scatter(x=relative_depth(len(values)), y=values, mode="lines+markers", name=esc(name),
                                 customdata=np.arange(len(values)),
                                 hovertemplate="layer %{customdata} (depth %{x:.2f}): %{y:.1%}"
                                               f"<extra>{esc(name)}</extra>"))
    fig.update_layout(title=esc(title), xaxis_title="relative depth (layer / (layers − 1))",
                      yaxis_title="share of positive attribution", yaxis={"tickformat": ".0%"},
                      xaxis={"range": [-0.05, 1.05]}, height=340, margin={"t": 50, "b": 40})
    return fig


def token_activations(tokens: Sequence[str], values: Sequence[float], title: str,
                      raw: Sequence[str] | None = None) -> go.Figure:
    """Bars of a neuron's activation at each token of a sentence: the tokens' text (escaped, numbered to stay
    distinct), with their raw vocabulary entries (``raw``) in the hover text."""
    labels = [f"{i}: {esc(t)}" for i, t in enumerate(tokens)]
    entries = [esc(r) for r in raw] if raw is not None else [esc(t) for t in tokens]
    fig = go.Figure(go.Bar(x=labels, y=list(values), customdata=entries,
                           hovertemplate="%{x} (token %{customdata})<br>%{y:.4f}<extra></extra>"))
    fig.update_layout(title=esc(title), height=320, margin={"t": 50, "b": 100}, yaxis_title="activation")
    return fig


CONTROL_GROUPS = {"own": "this fact", "same_relation": "same relation", "other_relation": "other relations",
                  "random": "random neurons"}


def control_bars(effects: Mapping[str, float], random_sd: float = float("nan"),
                 title: str = "Suppressing the set: who loses P(object)?") -> go.Figure:
    """Four bars of a neuron set's suppression controls (:meth:`kn_core.method.controls.Controls.effects`):
    the relative change of P(object) on the fact itself, on other facts of its relation, on facts of other
    relations, and for random same-size sets (their mean, with ±sd as the error bar). A group not measured
    (NaN) is shown as an empty slot named "not measured"."""
    names = [name for name in CONTROL_GROUPS if name in effects]
    values = [float(effects[name]) for name in names]
    shown = [None if math.isnan(v) else v for v in values]
    labels = [CONTROL_GROUPS[name] + (" (not measured)" if math.isnan(v) else "") for name, v in zip(names, values)]
    errors = [float(random_sd) if name == "random" and not math.isnan(random_sd) else 0.0 for name in names]
    colours = ["firebrick" if name == "own" else "grey" if name == "random" else "steelblue" for name in names]
    fig = go.Figure(go.Bar(x=labels, y=shown, marker_color=colours,
                           error_y={"type": "data", "array": errors, "visible": any(errors)},
                           text=["–" if v is None else f"{v:+.1%}" for v in shown], textposition="outside",
                           hovertemplate="%{x}: %{y:+.1%}<extra></extra>"))
    low = min([v for v in shown if v is not None] + [0.0])
    high = max([v for v in shown if v is not None] + [0.0])
    pad = max(0.1, 0.2 * (high - low))
    fig.update_layout(title=esc(title), yaxis_title="relative change of P(object)",
                      yaxis={"tickformat": ".0%", "range": [low - pad, high + pad], "zeroline": True},
                      height=300, margin={"t": 50, "b": 40}, showlegend=False)
    return fig


# -- N languages (docs/method.md §3) ---------------------------------------------------------------------
def language_depth(counts: Mapping[str, Sequence[int]], title: str = "Knowledge neurons over depth, per language"
                   ) -> go.Figure:
    """One row per named set (a language, or "shared by k"), a dot at each layer's relative depth
    layer / (n_layers − 1) sized by how many of the set's neurons sit there (the count in the hover and label);
    layers without one are left empty."""
    fig = go.Figure()
    names = list(counts)
    top = max((max(values, default=0) for values in counts.values()), default=0) or 1
    for name in names:
        values = np.asarray(counts[name], dtype=int)
        depth, layers = relative_depth(len(values)), np.nonzero(values)[0]
        fig.add_trace(go.Scatter(
            x=depth[layers], y=[esc(name)] * len(layers), mode="markers+text", name=esc(name),
            text=[str(v) for v in values[layers]], textposition="top center", customdata=layers,
            marker={"size": 8 + 22 * np.sqrt(values[layers] / top), "opacity": 0.75},
            hovertemplate="layer %{customdata} (depth %{x:.2f}): %{text} neuron(s)" f"<extra>{esc(name)}</extra>"))
    fig.update_layout(title=esc(title), xaxis_title="relative depth (layer / (layers − 1))",
                      xaxis={"range": [-0.05, 1.05]},
                      yaxis={"categoryorder": "array", "categoryarray": [esc(n) for n in reversed(names)]},
                      height=140 + 48 * len(names), margin={"t": 50, "b": 40}, showlegend=False)
    return fig


def language_matrices(panels: Mapping[str, np.ndarray], langs: Sequence[str], title: str = "",
                      percent: bool = False, hover: Mapping[str, np.ndarray] | None = None,
                      row_title: str = "", column_title: str = "") -> go.Figure:
    """Language × language heatmaps side by side (e.g. the overlap matrix and its two baselines, or the
    suppression matrix and its random control), one colour scale for all, each cell labelled. ``percent``:
    relative changes on a diverging scale centred at 0 (else values from 0, e.g. Jaccard). ``hover``: per panel,
    an [N, N] array of extra text for each cell. NaN cells are left blank."""
    from plotly.subplots import make_subplots

    names = list(panels)
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=[esc(n) for n in names],
                        horizontal_spacing=0.08)
    labels = [esc(lang) for lang in langs]
    off = ~np.eye(len(langs), dtype=bool)
    cells = [np.abs(np.asarray(panels[n], float)[off if not percent and len(langs) > 1 else slice(None)])
             for n in names]
    high = max([float(np.nanmax(c)) for c in cells if np.isfinite(c).any()] + [1e-12])
    for col, name in enumerate(names, start=1):
        values = np.asarray(panels[name], dtype=float)
        text = [["" if not np.isfinite(v) else (f"{v:+.0%}" if percent else f"{v:.2f}") for v in row]
                for row in values]
        extra = np.full(values.shape, "", dtype=object) if hover is None or name not in hover else hover[name]
        gap = np.array(None, dtype=object)  # a non-finite cell is None: a gap in the heatmap
        fig.add_trace(go.Heatmap(
            z=np.where(np.isfinite(values), values, gap), x=labels, y=labels, text=text, texttemplate="%{text}",
            customdata=[[esc(e) for e in row] for row in extra], coloraxis="coloraxis",
            hovertemplate=(f"{esc(row_title) or 'row'} %{{y}}, {esc(column_title) or 'column'} %{{x}}: %{{text}}"
                           "<br>%{customdata}" f"<extra>{esc(name)}</extra>")), row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col, title_text=esc(row_title) if col == 1 else None)
        fig.update_xaxes(row=1, col=col, title_text=esc(column_title))
    scale = ({"colorscale": SCALE, "cmid": 0, "cmin": -high, "cmax": high, "colorbar": {"tickformat": ".0%"}}
             if percent else {"colorscale": "Blues", "cmin": 0, "cmax": high})
    fig.update_layout(title=esc(title), coloraxis=scale, height=260 + 26 * len(langs),
                      margin={"t": 80, "b": 40})
    return fig
