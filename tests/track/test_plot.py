"""fulmen.track.plot: each preset is a table plus a chart descriptor, checked and logged."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fulmen import track
from fulmen.track import Api, Table, plot


def _log(chart: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    run = track.init(project="plots")
    run.log({"chart": chart})
    run.finish()
    api_run = Api().runs()[-1]
    ref = api_run.history(pandas=False)[0]["chart"]
    return ref, json.loads(api_run.file(ref["table"]["path"]).read())


def test_line_scatter_bar_histogram_descriptors() -> None:
    table = Table(columns=["x", "y", "name"], data=[[0, 1.0, "a"], [1, 2.0, "b"]])
    ref, content = _log(plot.line(table, "x", "y", title="Loss"))
    assert ref["_type"] == "chart"
    assert (ref["preset"], ref["fields"], ref["title"]) == ("line", {"x": "x", "y": "y"}, "Loss")
    assert ref["table"]["_type"] == "table-file"
    assert content["data"] == table.data
    assert plot.scatter(table, "x", "y").fields == {"x": "x", "y": "y"}
    assert plot.bar(table, "name", "y").fields == {"label": "name", "value": "y"}
    assert plot.histogram(table, "y").preset == "histogram"


def test_unknown_column_is_refused() -> None:
    table = Table(columns=["x", "y"])
    with pytest.raises(ValueError, match="y='loss' is not a column of the table"):
        plot.line(table, "x", "loss")


def test_line_series() -> None:
    chart = plot.line_series([0, 1, 2], [[1, 2, 3], [3, 2, 1]], keys=["up", "down"], xname="step")
    assert chart.table.columns == ["lineKey", "lineVal", "step"]
    assert chart.table.data[:3] == [["up", 1, 0], ["up", 2, 1], ["up", 3, 2]]
    assert chart.labels == {"xname": "step"}
    with pytest.raises(ValueError, match="2 keys for 1 lines"):
        plot.line_series([0], [[1]], keys=["a", "b"])


def test_confusion_matrix_counts_pairs() -> None:
    chart = plot.confusion_matrix(
        y_true=[0, 1, 1, 2], preds=[0, 1, 2, 2], class_names=["a", "b", "c"]
    )
    ref, content = _log(chart)
    counts = {(a, p): n for a, p, n in content["data"]}
    assert counts[("b", "c")] == 1
    assert counts[("c", "c")] == 1
    assert counts[("a", "b")] == 0
    assert sum(counts.values()) == 4
    assert ref["preset"] == "confusion_matrix"
    probs = np.eye(3)[[0, 1, 2, 2]]
    from_probs = plot.confusion_matrix(probs=probs, y_true=[0, 1, 1, 2])
    assert from_probs.table.data == [
        [a, p, n]
        for (a, p, n) in plot.confusion_matrix(y_true=[0, 1, 1, 2], preds=[0, 1, 2, 2]).table.data
    ]
    with pytest.raises(ValueError, match="exactly one of probs and preds"):
        plot.confusion_matrix(y_true=[0])


def test_pr_and_roc_curves_of_a_perfect_classifier() -> None:
    y = [0, 0, 1, 1]
    probas = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]]
    pr = plot.pr_curve(y, probas, labels=["neg", "pos"])
    pos = [(r, p) for c, r, p in pr.table.data if c == "pos"]
    assert (1.0, 1.0) in pos  # full recall at full precision: the classes separate
    assert pos[0] == (0.0, 1.0)
    roc = plot.roc_curve(y, probas)
    points = [(f, t) for c, f, t in roc.table.data if c == "1"]
    assert (0.0, 1.0) in points
    assert roc.fields == {"x": "fpr", "y": "tpr", "stroke": "class"}
    with pytest.raises(ValueError, match="y_probas must be n x classes"):
        plot.roc_curve([0, 1], [[0.5, 0.5]])


def test_curves_are_thinned_to_200_points_per_class() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    scores = rng.random(5000)
    chart = plot.roc_curve(y, np.stack([1 - scores, scores], 1), classes_to_plot=[1])
    assert len(chart.table.data) <= plot.CURVE_POINTS
