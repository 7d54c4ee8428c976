"""Report figures as pure functions returning matplotlib :class:`~matplotlib.figure.Figure` objects.

The object-oriented API is used (no pyplot), so nothing touches the global backend; saving goes through
Agg.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

WIDTH, HEIGHT = 7.0, 3.6


def grouped_bars(frame: pd.DataFrame, x: str, hue: str, y: str, title: str, ylabel: str) -> Figure:
    """Bars of ``y`` for each value of ``x``, one colour per value of ``hue`` (values in first-seen order)."""
    fig = Figure(figsize=(WIDTH, HEIGHT), layout="constrained")
    ax = fig.add_subplot()
    xs, hues = list(dict.fromkeys(frame[x])), list(dict.fromkeys(frame[hue]))
    width = 0.8 / max(len(hues), 1)
    for i, name in enumerate(hues):
        part = frame[frame[hue] == name].set_index(x)[y]
        ax.bar(np.arange(len(xs)) + i * width - 0.4 + width / 2, [part.get(v, np.nan) for v in xs], width,
               label=str(name))
    ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs], rotation=20, ha="right")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize="small")
    return fig


def layer_panels(panels: Mapping[str, Mapping[str, Sequence[float]]], title: str, ylabel: str) -> Figure:
    """One panel per key (e.g. a model), each with per-layer bars of several series (e.g. languages)."""
    fig = Figure(figsize=(WIDTH, HEIGHT * max(1, len(panels)) * 0.8), layout="constrained")
    axes = fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    for ax, (name, series) in zip(axes, panels.items()):
        width = 0.8 / max(len(series), 1)
        for i, (label, values) in enumerate(series.items()):
            ax.bar(np.arange(len(values)) + i * width - 0.4 + width / 2, values, width, label=label)
        n_layers = max((len(v) for v in series.values()), default=0)
        ax.set_xticks(np.arange(n_layers))
        ax.set(title=name, xlabel="layer", ylabel=ylabel)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def margin_histograms(panels: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str) -> Figure:
    """Per panel (model, language): score − λ of true and of wrong claims (λ of the claim's relation), so the
    decision boundary is the line at 0 for every relation."""
    fig = Figure(figsize=(WIDTH, 2.4 * max(1, len(panels))), layout="constrained")
    axes = fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    for ax, (name, (true, wrong)) in zip(axes, panels.items()):
        values = np.concatenate([np.asarray(true, float), np.asarray(wrong, float)])
        bins = np.histogram_bin_edges(values, bins=30) if values.size else 10
        ax.hist(true, bins=bins, alpha=0.6, label="true claims")
        ax.hist(wrong, bins=bins, alpha=0.6, label="wrong claims")
        ax.axvline(0.0, color="black", linestyle="--", label="accepted to the right")
        ax.set(title=name, xlabel="DKN score − λ", ylabel="claims")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig
