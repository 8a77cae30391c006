"""``fulmen.track.plot``: W&B's chart presets, each a ``Table`` plus what the dashboard draws.

``run.log({"pr": plot.pr_curve(y_true, y_probas)})`` stores the table (as any logged table) and
puts ``{"_type": "chart", "preset": "pr_curve", "fields": {...}, "title": ..., "table": <table
reference>}`` in the history row (docs/run-log-format.md, "Charts").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fulmen.track._media_store import MediaSink
from fulmen.track._table import Table

__all__ = [
    "Chart",
    "bar",
    "confusion_matrix",
    "histogram",
    "line",
    "line_series",
    "pr_curve",
    "roc_curve",
    "scatter",
]

CURVE_POINTS = 200  # points per class kept for PR and ROC curves


class Chart:
    """A chart preset over a table: ``preset`` names it, ``fields`` maps its roles to columns."""

    def __init__(
        self,
        preset: str,
        table: Table,
        fields: dict[str, Any],
        title: str | None = None,
        **labels: str,
    ) -> None:
        if not isinstance(table, Table):
            raise TypeError(f"plot.{preset}: table must be a fulmen.track.Table, got {table!r}")
        for role, column in fields.items():
            if column is not None and column not in table.columns:
                raise ValueError(
                    f"plot.{preset}: {role}={column!r} is not a column of the table "
                    f"({', '.join(table.columns)})"
                )
        self.preset, self.table, self.fields, self.title = preset, table, fields, title
        self.labels = labels  # axis names (line_series: xname)

    def _media_ref(self, sink: MediaSink) -> dict[str, Any]:
        return {
            "_type": "chart",
            "preset": self.preset,
            "fields": {k: v for k, v in self.fields.items() if v is not None},
            "title": self.title or "",
            **({"labels": self.labels} if self.labels else {}),
            "table": self.table._media_ref(sink),
        }

    def __repr__(self) -> str:
        return f"<Chart {self.preset} {self.fields}>"


def line(table: Table, x: str, y: str, stroke: str | None = None, title: str = "") -> Chart:
    """A line of ``y`` against ``x`` (one line per value of ``stroke``)."""
    return Chart("line", table, {"x": x, "y": y, "stroke": stroke}, title)


def scatter(table: Table, x: str, y: str, title: str = "") -> Chart:
    """Points ``(x, y)``."""
    return Chart("scatter", table, {"x": x, "y": y}, title)


def bar(table: Table, label: str, value: str, title: str = "") -> Chart:
    """One bar per row: ``label`` and its ``value``."""
    return Chart("bar", table, {"label": label, "value": value}, title)


def histogram(table: Table, value: str, title: str = "") -> Chart:
    """The distribution of column ``value`` (the dashboard bins it)."""
    return Chart("histogram", table, {"value": value}, title)


def line_series(
    xs: Sequence[Any],
    ys: Sequence[Sequence[Any]],
    keys: Sequence[str] | None = None,
    title: str = "",
    xname: str = "x",
) -> Chart:
    """Several lines: ``ys[i]`` against ``xs`` (or ``xs[i]`` when ``xs`` is a list of lists)."""
    names = list(keys) if keys is not None else [f"key_{i}" for i in range(len(ys))]
    if len(names) != len(ys):
        raise ValueError(f"plot.line_series: {len(names)} keys for {len(ys)} lines")
    shared = not xs or not hasattr(xs[0], "__len__")
    table = Table(columns=["lineKey", "lineVal", "step"])
    for i, (name, line_ys) in enumerate(zip(names, ys, strict=True)):
        line_xs = xs if shared else xs[i]
        if len(line_xs) != len(line_ys):
            raise ValueError(
                f"plot.line_series: line {name!r} has {len(line_ys)} y values for "
                f"{len(line_xs)} x values"
            )
        for x, y in zip(line_xs, line_ys, strict=True):
            table.add_data(name, _num(y), _num(x))
    fields = {"x": "step", "y": "lineVal", "stroke": "lineKey"}
    return Chart("line_series", table, fields, title, xname=xname)


def _num(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _labels(n: int, labels: Sequence[Any] | None, what: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    if len(labels) < n:
        raise ValueError(f"plot.{what}: {len(labels)} labels for {n} classes")
    return [str(label) for label in labels]


def confusion_matrix(
    probs: Sequence[Sequence[float]] | None = None,
    y_true: Sequence[int] | None = None,
    preds: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Confusion Matrix",
) -> Chart:
    """Counts of (actual, predicted) class pairs, from ``preds`` or the argmax of ``probs``."""
    import numpy as np

    if (probs is None) == (preds is None):
        raise ValueError("plot.confusion_matrix: give exactly one of probs and preds")
    if y_true is None:
        raise ValueError("plot.confusion_matrix: y_true is required")
    truth = np.asarray(y_true).astype(np.int64).ravel()
    guess = (
        (np.asarray(probs).argmax(axis=-1) if probs is not None else np.asarray(preds))
        .astype(np.int64)
        .ravel()
    )
    if truth.shape != guess.shape:
        raise ValueError(
            f"plot.confusion_matrix: {truth.size} labels in y_true but {guess.size} predictions"
        )
    n = int(max(truth.max(initial=-1), guess.max(initial=-1)) + 1)
    if class_names is not None:
        if len(class_names) < n:
            raise ValueError(
                f"plot.confusion_matrix: {len(class_names)} class_names but class ids up to {n - 1}"
            )
        n = len(class_names)
    names = _labels(n, class_names, "confusion_matrix")
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (truth, guess), 1)
    table = Table(columns=["Actual", "Predicted", "nPredictions"])
    for i in range(n):
        for j in range(n):
            table.add_data(names[i], names[j], int(counts[i, j]))
    fields = {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"}
    return Chart("confusion_matrix", table, fields, title)


def _one_vs_rest(y_true: Any, y_probas: Any, what: str) -> tuple[Any, Any]:
    import numpy as np

    truth = np.asarray(y_true).ravel()
    scores = np.asarray(y_probas, dtype=np.float64)
    if scores.ndim == 1:
        scores = np.stack([1 - scores, scores], axis=1)
    if scores.ndim != 2 or scores.shape[0] != truth.size:
        raise ValueError(
            f"plot.{what}: y_probas must be n x classes for the {truth.size} labels of y_true, "
            f"got shape {scores.shape}"
        )
    return truth, scores


def _curve_points(truth: Any, score: Any) -> tuple[Any, Any, Any]:
    """Cumulative true and false positives at each distinct threshold, high to low."""
    import numpy as np

    order = np.argsort(-score, kind="stable")
    score, truth = score[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(score)), truth.size - 1]
    tp = np.cumsum(truth)[last]
    fp = (last + 1) - tp
    return tp, fp, score[last]


def _thin(*columns: Any) -> list[Any]:
    import numpy as np

    n = len(columns[0])
    if n <= CURVE_POINTS:
        return list(columns)
    keep = np.unique(np.linspace(0, n - 1, CURVE_POINTS).round().astype(int))
    return [c[keep] for c in columns]


def pr_curve(
    y_true: Sequence[Any],
    y_probas: Sequence[Any],
    labels: Sequence[Any] | None = None,
    classes_to_plot: Sequence[int] | None = None,
    title: str = "Precision v. Recall",
) -> Chart:
    """Precision against recall per class (one vs rest), at most 200 points per class."""
    import numpy as np

    truth, scores = _one_vs_rest(y_true, y_probas, "pr_curve")
    names = _labels(scores.shape[1], labels, "pr_curve")
    table = Table(columns=["class", "recall", "precision"])
    for c in classes_to_plot if classes_to_plot is not None else range(scores.shape[1]):
        positive = (truth == c).astype(np.int64)
        total = int(positive.sum())
        if total == 0:
            continue
        tp, fp, _ = _curve_points(positive, scores[:, c])
        recall, precision = _thin(np.r_[0.0, tp / total], np.r_[1.0, tp / (tp + fp)])
        for r, p in zip(recall, precision, strict=True):
            table.add_data(names[c], round(float(r), 6), round(float(p), 6))
    return Chart("pr_curve", table, {"x": "recall", "y": "precision", "stroke": "class"}, title)


def roc_curve(
    y_true: Sequence[Any],
    y_probas: Sequence[Any],
    labels: Sequence[Any] | None = None,
    classes_to_plot: Sequence[int] | None = None,
    title: str = "ROC",
) -> Chart:
    """True positive rate against false positive rate per class (one vs rest)."""
    import numpy as np

    truth, scores = _one_vs_rest(y_true, y_probas, "roc_curve")
    names = _labels(scores.shape[1], labels, "roc_curve")
    table = Table(columns=["class", "fpr", "tpr"])
    for c in classes_to_plot if classes_to_plot is not None else range(scores.shape[1]):
        positive = (truth == c).astype(np.int64)
        pos, neg = int(positive.sum()), int(positive.size - positive.sum())
        if pos == 0 or neg == 0:
            continue
        tp, fp, _ = _curve_points(positive, scores[:, c])
        fpr, tpr = _thin(np.r_[0.0, fp / neg], np.r_[0.0, tp / pos])
        for f, t in zip(fpr, tpr, strict=True):
            table.add_data(names[c], round(float(f), 6), round(float(t), 6))
    return Chart("roc_curve", table, {"x": "fpr", "y": "tpr", "stroke": "class"}, title)
