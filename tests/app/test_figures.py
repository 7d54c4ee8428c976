"""The figures are pure functions of their inputs: binning keeps the strongest neuron, hover names the right
neuron, user text is escaped, the gauge's colour follows the verdict."""
from __future__ import annotations

import numpy as np
import pytest

from kn_core.app import figures


@pytest.mark.parametrize("d_ff,max_columns", [(37, 400), (1001, 400), (8192, 400), (5, 1)])
def test_binning_keeps_the_value_of_largest_magnitude_and_names_its_neuron(d_ff, max_columns):
    rng = np.random.default_rng(d_ff)
    scores = rng.normal(size=(3, d_ff)).astype(np.float32)
    values, index, width = figures.bin_columns(scores, max_columns)
    assert values.shape[1] <= max_columns and values.shape == index.shape
    for layer in range(3):
        for b in range(values.shape[1]):
            block = scores[layer, b * width:(b + 1) * width]
            assert values[layer, b] == block[np.abs(block).argmax()]
            assert scores[layer, index[layer, b]] == values[layer, b]  # the hover names the neuron shown


def test_heatmap_marks_the_knowledge_neurons_and_escapes_the_title():
    scores = np.zeros((4, 50), dtype=np.float32)
    scores[2, 17] = 1.0
    fig = figures.neuron_heatmap(scores, "<script>alert(1)</script>", marked=[(2, 17)])
    heat, markers = fig.data
    assert heat.z.shape == (4, 50) and heat.zmax == 1.0 and heat.zmin == -1.0
    assert list(markers.x) == [17] and list(markers.y) == [2]
    assert "<script>" not in fig.layout.title.text and "&lt;script&gt;" in fig.layout.title.text


def test_layer_histogram_has_one_bar_group_per_set():
    fig = figures.layer_histogram({"en": [1, 0, 2], "zh": [0, 3, 0]})
    assert [trace.name for trace in fig.data] == ["en", "zh"]
    assert list(fig.data[1].y) == [0, 3, 0]


def test_prompt_scores_escape_labels():
    fig = figures.prompt_scores(["<b>x</b>", "y"], [0.5, -0.1], "t")
    assert list(fig.data[0].x) == ["&lt;b&gt;x&lt;/b&gt;", "y"] and list(fig.data[0].y) == [0.5, -0.1]


@pytest.mark.parametrize("correct,colour", [(True, "seagreen"), (False, "firebrick")])
def test_verdict_gauge_shows_the_threshold_and_the_verdict(correct, colour):
    fig = figures.verdict_gauge(2e-3, 1e-3, correct)
    gauge = fig.data[0]
    assert gauge.value == 2e-3 and gauge.gauge.threshold.value == 1e-3 and gauge.gauge.bar.color == colour


def test_venn_labels_its_counts():
    fig = figures.venn((3, 1, 5), ("en", "<zh>"))
    assert list(fig.data[0].text) == ["3", "1", "5", "en", "&lt;zh&gt;"]
    assert len(fig.layout.shapes) == 2
