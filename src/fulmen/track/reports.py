"""``fulmen.track.reports``: reports written in Python, with the names of W&B's
``wandb_workspaces.reports.v2``::

    import fulmen.track.reports as wr

    report = wr.Report(
        project="mnist",
        title="Adam or SGD?",
        blocks=[
            wr.H1("Loss"),
            wr.PanelGrid(
                runsets=[wr.Runset(project="mnist", groupby=["config.optimizer"])],
                panels=[wr.LinePlot(x="trainer/global_step", y=["train/loss"],
                                    groupby="config.optimizer", groupby_rangefunc="minmax")],
            ),
            wr.P("Adam gets there first."),
        ],
    )
    url = report.save()          # the report's page on the server
    same = wr.Report.from_url(url)

Every block and panel serializes to the JSON the server stores (``to_spec()``; the panel contract
of docs/reports.md) and back (``from_spec``). ``save()`` talks to the server named by the tracker's
settings (``FULMEN_BASE_URL``, ``FULMEN_API_KEY``, ``fulmen login``) through its HTTP client: no
torch, numpy, PIL or server code is imported.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "H1",
    "H2",
    "H3",
    "BarPlot",
    "CodeBlock",
    "Config",
    "Image",
    "Layout",
    "LinePlot",
    "Markdown",
    "MarkdownBlock",
    "MarkdownPanel",
    "MediaBrowser",
    "P",
    "PanelGrid",
    "ParallelCoordinatesPlot",
    "ParallelCoordinatesPlotColumn",
    "Report",
    "RunComparer",
    "RunTable",
    "Runset",
    "ScalarChart",
    "ScatterPlot",
    "SummaryMetric",
]

# W&B's x-axis names -> fulmen's
_X_NAMES = {
    "Step": "_step",
    "step": "_step",
    "Relative Time (Wall)": "_runtime",
    "Relative Time (Process)": "_runtime",
    "Wall Time": "_timestamp",
}
# W&B's smoothing types -> the panel contract's
_SMOOTHING = {
    "none": "none",
    "exponential": "exponential",
    "exponentialTimeWeighted": "exponential",
    "running": "running",
    "average": "running",
    "gaussian": "gaussian",
}
_AGGS = ("last", "min", "max", "mean")
_BANDS = ("minmax", "stddev", "none")
_IMAGE_TYPES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".webp": "webp"}


def _bad(where: str, what: str, value: Any, allowed: str) -> TypeError | ValueError:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    kind = TypeError if allowed.startswith("give") else ValueError
    return kind(f"{where}({what}=...): {shown} is not valid; {allowed}")


def _text(where: str, what: str, value: Any, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(where, what, value, "give a string")
    return value


# ---------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Config:
    """A config value of the runs, as a column or axis: ``Config("lr")`` is ``config.lr``."""

    name: str

    @property
    def path(self) -> str:
        return f"config.{self.name}"


@dataclass(frozen=True)
class SummaryMetric:
    """A summary value of the runs (the last logged, or as ``define_metric`` says):
    ``SummaryMetric("val/acc")`` is ``summary.val/acc``."""

    name: str

    @property
    def path(self) -> str:
        return f"summary.{self.name}"


def _path(where: str, what: str, value: Any) -> str:
    """A ``config.``/``summary.`` path; a bare name is the summary value of that metric."""
    if isinstance(value, (Config, SummaryMetric)):
        return value.path
    if not isinstance(value, str) or not value:
        raise _bad(
            where, what, value, "give 'config.<key>', 'summary.<key>', Config() or SummaryMetric()"
        )
    return value if value.startswith(("config.", "summary.")) else f"summary.{value}"


def _groupby(where: str, what: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, Config):
        return value.path
    if value in ("group", "run.group"):
        return "group"
    if isinstance(value, str) and value.startswith("config.") and len(value) > 7:
        return value
    raise _bad(where, what, value, "group by 'group', 'config.<key>' or Config('<key>')")


def _metrics(where: str, what: str, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise _bad(where, what, value, "give a metric name or a non-empty list of them")
    for item in items:
        if not isinstance(item, str) or not item:
            raise _bad(where, what, value, "give metric names (non-empty strings)")
    return list(items)


def _choice(where: str, what: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _bad(where, what, value, f"use one of {', '.join(allowed)}")
    return str(value)


# ----------------------------------------------------------------------------------- panels


@dataclass
class Layout:
    """A panel's size in a grid of 12 columns: ``w`` columns wide, ``h`` rows high."""

    w: int | None = None
    h: int | None = None

    def __post_init__(self) -> None:
        for what, value, hi in (("w", self.w, 12), ("h", self.h, 24)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi
            ):
                raise _bad("Layout", what, value, f"a whole number from 1 to {hi}")

    def to_spec(self) -> dict[str, int]:
        return {k: v for k, v in (("w", self.w), ("h", self.h)) if v is not None}


class _Panel:
    """What every panel has: ``title``, ``layout``, and the spec fields it does not know
    (kept as they came, for a panel made by a newer dashboard)."""

    kind: ClassVar[str]
    title: str | None
    layout: Layout | None
    extra: dict[str, Any]

    def _base(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": self.kind}
        if self.title is not None:
            spec["title"] = self.title
        if self.layout is not None and self.layout.to_spec():
            spec["layout"] = self.layout.to_spec()
        return spec

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_spec(self) -> dict[str, Any]:
        """The panel as the server stores it (the panel contract's JSON)."""
        return {**self.extra, **self._base(), **self._fields()}


def _layout(spec: dict[str, Any]) -> Layout | None:
    layout = spec.get("layout")
    return Layout(layout.get("w"), layout.get("h")) if isinstance(layout, dict) else None


def _rest(spec: dict[str, Any], known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in known | {"kind", "title", "layout", "html"}}


@dataclass
class LinePlot(_Panel):
    """Metrics over an x-axis, one line per run (or per group, with a band).

    ``x``: ``"_step"`` (W&B's ``"Step"``), ``"_runtime"``, ``"_timestamp"``,
    ``"trainer/global_step"`` or any metric; ``y``: one metric or a list. ``smoothing_type``
    (``"exponential"``, ``"running"`` or W&B's ``"average"``, ``"gaussian"``, ``"none"``) with
    ``smoothing_factor``; ``smoothing=0.6`` is exponential smoothing of 0.6. ``groupby``
    (``"config.<key>"`` or ``"group"``) draws each group's mean with a ``groupby_rangefunc`` band
    (``"minmax"``, ``"stddev"``, ``"none"``)."""

    kind: ClassVar[str] = "line"
    x: str = "_step"
    y: str | list[str] = field(default_factory=list)
    title: str | None = None
    smoothing_factor: float | None = None
    smoothing_type: str | None = None
    smoothing: float | None = None
    log_x: bool = False
    log_y: bool = False
    groupby: str | Config | None = None
    groupby_rangefunc: str | None = None
    max_runs_to_show: int | None = None
    layout: Layout | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.x = _X_NAMES.get(_text("LinePlot", "x", self.x), self.x)
        self.y = _metrics("LinePlot", "y", self.y)
        if self.smoothing is not None:
            self.smoothing_type = self.smoothing_type or "exponential"
            self.smoothing_factor = self.smoothing
            self.smoothing = None
        if self.smoothing_type is not None:
            self.smoothing_type = _SMOOTHING[
                _choice("LinePlot", "smoothing_type", self.smoothing_type, tuple(_SMOOTHING))
            ]
        if self.smoothing_factor is not None:
            ok = isinstance(self.smoothing_factor, (int, float)) and self.smoothing_factor >= 0
            if not ok or isinstance(self.smoothing_factor, bool):
                raise _bad(
                    "LinePlot",
                    "smoothing_factor",
                    self.smoothing_factor,
                    "a number >= 0 (0.6: exponential weight; running: points)",
                )
        self.groupby = _groupby("LinePlot", "groupby", self.groupby)
        if self.groupby_rangefunc is not None:
            _choice("LinePlot", "groupby_rangefunc", self.groupby_rangefunc, _BANDS)
        if self.max_runs_to_show is not None and (
            not isinstance(self.max_runs_to_show, int) or self.max_runs_to_show < 1
        ):
            raise _bad("LinePlot", "max_runs_to_show", self.max_runs_to_show, "a whole number >= 1")

    def _fields(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"x": self.x, "y": list(self.y)}
        if self.smoothing_type is not None or self.smoothing_factor is not None:
            spec["smoothing"] = {
                "type": self.smoothing_type or "exponential",
                "amount": float(self.smoothing_factor or 0),
            }
        if self.log_x:
            spec["logx"] = True
        if self.log_y:
            spec["logy"] = True
        if self.groupby:
            spec["groupby"] = self.groupby
        if self.groupby_rangefunc:
            spec["band"] = self.groupby_rangefunc
        if self.max_runs_to_show is not None:
            spec["max_runs"] = self.max_runs_to_show
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LinePlot:
        smoothing = spec.get("smoothing") or {}
        return cls(
            x=spec.get("x", "_step"),
            y=spec.get("y") or [],
            title=spec.get("title"),
            smoothing_type=smoothing.get("type"),
            smoothing_factor=smoothing.get("amount") if smoothing else None,
            log_x=bool(spec.get("logx")),
            log_y=bool(spec.get("logy")),
            groupby=spec.get("groupby"),
            groupby_rangefunc=spec.get("band"),
            max_runs_to_show=spec.get("max_runs"),
            layout=_layout(spec),
            extra=_rest(
                spec, {"x", "y", "smoothing", "logx", "logy", "groupby", "band", "max_runs"}
            ),
        )


@dataclass
class ScalarChart(_Panel):
    """One number: ``metric`` of the runs, by ``agg`` (``"last"``, ``"min"``, ``"max"``,
    ``"mean"``)."""

    kind: ClassVar[str] = "scalar"
    metric: str = ""
    title: str | None = None
    agg: str = "last"
    layout: Layout | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise _bad("ScalarChart", "metric", self.metric, "give a metric name")
        _choice("ScalarChart", "agg", self.agg, _AGGS)

    def _fields(self) -> dict[str, Any]:
        return {"metric": self.metric, "agg": self.agg}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ScalarChart:
        return cls(
            metric=spec.get("metric", ""),
            title=spec.get("title"),
            agg=spec.get("agg", "last"),
            layout=_layout(spec),
            extra=_rest(spec, {"metric", "agg"}),
        )


@dataclass
class BarPlot(_Panel):
    """A bar per run (or per ``groupby`` group: their mean) of one metric, by ``agg``
    (``"last"``, ``"min"``, ``"max"``, ``"mean"`` over each run's history).
    ``metrics`` is W&B's name: give one metric (or a list of one)."""

    kind: ClassVar[str] = "bar"
    metrics: str | list[str] = field(default_factory=list)
    title: str | None = None
    agg: str = "last"
    groupby: str | Config | None = None
    layout: Layout | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.metrics = _metrics("BarPlot", "metrics", self.metrics)
        if len(self.metrics) != 1:
            raise _bad(
                "BarPlot",
                "metrics",
                self.metrics,
                "give one metric per BarPlot (add a BarPlot for each)",
            )
        _choice("BarPlot", "agg", self.agg, _AGGS)
        self.groupby = _groupby("BarPlot", "groupby", self.groupby)

    def _fields(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"metric": self.metrics[0], "agg": self.agg}
        if self.groupby:
            spec["groupby"] = self.groupby
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> BarPlot:
        return cls(
            metrics=[spec.get("metric", "")],
            title=spec.get("title"),
            agg=spec.get("agg", "last"),
            groupby=spec.get("groupby"),
            layout=_layout(spec),
            extra=_rest(spec, {"metric", "agg", "groupby"}),
        )


@dataclass
class ScatterPlot(_Panel):
    """One point per run at (``x``, ``y``), coloured by ``color``: ``"config.<key>"``,
    ``"summary.<key>"``, ``Config(...)``, ``SummaryMetric(...)``; a bare name is the metric's
    summary value."""

    kind: ClassVar[str] = "scatter"
    x: Any = None
    y: Any = None
    title: str | None = None
    color: Any = None
    layout: Layout | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.x = _path("ScatterPlot", "x", self.x)
        self.y = _path("ScatterPlot", "y", self.y)
        if self.color is not None:
            self.color = _path("ScatterPlot", "color", self.color)

    def _fields(self) -> dict[str, Any]:
        spec = {"x": self.x, "y": self.y}
        if self.color is not None:
            spec["color"] = self.color
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ScatterPlot:
        return cls(
            x=spec.get("x"),
            y=spec.get("y"),
            title=spec.get("title"),
            color=spec.get("color"),
            layout=_layout(spec),
            extra=_rest(spec, {"x", "y", "color"}),
        )


@dataclass(frozen=True)
class ParallelCoordinatesPlotColumn:
    """One axis of a ``ParallelCoordinatesPlot``: a config or summary value."""

    metric: Any

    @property
    def path(self) -> str:
        return _path("ParallelCoordinatesPlotColumn", "metric", self.metric)


@dataclass
class ParallelCoordinatesPlot(_Panel):
    """One line per run through an axis per column (two or more): config values (the inputs)
    then summary values (the outcomes)."""

    kind: ClassVar[str] = "parallel"
    columns: list[Any] = field(default_factory=list)
    title: str | None = None
    layout: Layout | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.columns, (list, tuple)) or len(self.columns) < 2:
            raise _bad(
                "ParallelCoordinatesPlot",
                "columns",
                self.columns,
                "give two or more columns ('config.lr', 'summary.val/loss', ...)",
            )
        self.columns = [
            c.path
            if isinstance(c, ParallelCoordinatesPlotColumn)
            else _path("ParallelCoordinatesPlot", "columns", c)
            for c in self.columns
        ]

    def _fields(self) -> dict[str, Any]:
        return {"columns": list(self.columns)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ParallelCoordinatesPlot:
        return cls(
            columns=spec.get("columns") or [],
            title=spec.get("title"),
            layout=_layout(spec),
            extra=_rest(spec, {"columns"}),
        )


@dataclass
class RunTable(_Panel):
    """The runs as a table: ``columns`` such as ``"name"``, ``"state"``, ``"config.lr"``,
    ``"summary.val/loss"`` (None: the dashboard's default columns)."""

    kind: ClassVar[str] = "table"
    columns: list[Any] | None = None
    title: str | None = None
    layout: Layout | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.columns is not None:
            if not isinstance(self.columns, (list, tuple)):
                raise _bad("RunTable", "columns", self.columns, "give a list of column names")
            self.columns = [
                c.path
                if isinstance(c, (Config, SummaryMetric))
                else _text("RunTable", "columns", c)
                for c in self.columns
            ]

    def _fields(self) -> dict[str, Any]:
        return {} if self.columns is None else {"columns": list(self.columns)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> RunTable:
        return cls(
            columns=spec.get("columns"),
            title=spec.get("title"),
            layout=_layout(spec),
            extra=_rest(spec, {"columns"}),
        )


@dataclass
class RunComparer(_Panel):
    """The runs side by side, a row per config and summary key (``diff_only``: only the keys
    whose values differ). A run table with ``"compare": true`` in the panel contract."""

    kind: ClassVar[str] = "table"
    diff_only: bool | None = None
    title: str | None = None
    layout: Layout | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def _fields(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"compare": True}
        if self.diff_only:
            spec["diff_only"] = True
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> RunComparer:
        return cls(
            diff_only=spec.get("diff_only"),
            title=spec.get("title"),
            layout=_layout(spec),
            extra=_rest(spec, {"compare", "diff_only"}),
        )


@dataclass
class MediaBrowser(_Panel):
    """The media logged under one key (images, masks, tables, audio, video, HTML) with a step
    slider: ``MediaBrowser("val/predictions")`` or W&B's ``media_keys=["val/predictions"]``."""

    kind: ClassVar[str] = "media"
    media_keys: str | list[str] = field(default_factory=list)
    title: str | None = None
    num_columns: int | None = None
    layout: Layout | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.media_keys = _metrics("MediaBrowser", "media_keys", self.media_keys)
        if len(self.media_keys) != 1:
            raise _bad(
                "MediaBrowser",
                "media_keys",
                self.media_keys,
                "give one media key per MediaBrowser (add one for each)",
            )

    def _fields(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"key": self.media_keys[0]}
        if self.num_columns is not None:
            spec["columns"] = self.num_columns
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> MediaBrowser:
        return cls(
            media_keys=[spec.get("key", "")],
            title=spec.get("title"),
            num_columns=spec.get("columns"),
            layout=_layout(spec),
            extra=_rest(spec, {"key", "columns"}),
        )


@dataclass
class MarkdownPanel(_Panel):
    """Text among the panels of a grid (markdown, ``$math$``)."""

    kind: ClassVar[str] = "markdown"
    markdown: str = ""
    title: str | None = None
    layout: Layout | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _text("MarkdownPanel", "markdown", self.markdown)

    def _fields(self) -> dict[str, Any]:
        return {"text": self.markdown}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> MarkdownPanel:
        return cls(
            markdown=spec.get("text", ""),
            title=spec.get("title"),
            layout=_layout(spec),
            extra=_rest(spec, {"text"}),
        )


_PANELS: dict[str, Any] = {
    "line": LinePlot,
    "scalar": ScalarChart,
    "bar": BarPlot,
    "scatter": ScatterPlot,
    "parallel": ParallelCoordinatesPlot,
    "media": MediaBrowser,
    "markdown": MarkdownPanel,
}


def _panel_from_spec(spec: dict[str, Any]) -> Any:
    kind = spec.get("kind")
    if kind == "table":
        return RunComparer.from_spec(spec) if spec.get("compare") else RunTable.from_spec(spec)
    if kind in _PANELS:
        return _PANELS[kind].from_spec(spec)
    return {k: v for k, v in spec.items() if k != "html"}  # a kind this module has no class for


# ----------------------------------------------------------------------------------- blocks


@dataclass
class Markdown:
    """A block of markdown: headings, lists, code, links, tables and LaTeX math (``$x^2$``,
    ``$$...$$``), rendered by the server (raw HTML is shown as text). W&B's name:
    ``MarkdownBlock``."""

    text: str = ""
    id: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        _text("Markdown", "text", self.text)

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": "markdown", "text": self.text}
        if self.id:
            spec["id"] = self.id
        return spec


MarkdownBlock = Markdown


def H1(text: str = "") -> Markdown:
    """A top-level heading (a ``Markdown`` block ``# text``)."""
    return Markdown("# " + _text("H1", "text", text))


def H2(text: str = "") -> Markdown:
    """A second-level heading (``## text``)."""
    return Markdown("## " + _text("H2", "text", text))


def H3(text: str = "") -> Markdown:
    """A third-level heading (``### text``)."""
    return Markdown("### " + _text("H3", "text", text))


def P(text: str = "") -> Markdown:
    """A paragraph (markdown's inline syntax works in it: ``**bold**``, ``$x$``, links)."""
    return Markdown(_text("P", "text", text))


def CodeBlock(code: str, language: str = "python") -> Markdown:
    """A block of code (a fenced ``Markdown`` block)."""
    _text("CodeBlock", "code", code)
    fence = "```"
    while fence in code:
        fence += "`"
    return Markdown(f"{fence}{_text('CodeBlock', 'language', language)}\n{code}\n{fence}")


@dataclass
class Image:
    """An image: a local file (PNG, JPEG, GIF, WebP; sent inside the report), a
    ``data:image/...;base64,`` URL, or a run's media file on the server (its
    ``/api/v1/.../media/files/...`` path). The dashboard loads nothing from other hosts."""

    url: str | os.PathLike[str] = ""
    caption: str | None = None
    id: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        url = self.url
        if isinstance(url, os.PathLike) or (
            isinstance(url, str) and not url.startswith(("data:", "/api/")) and Path(url).is_file()
        ):
            path = Path(url)
            kind = _IMAGE_TYPES.get(path.suffix.lower())
            if kind is None:
                raise _bad("Image", "url", str(url), f"an image file ({', '.join(_IMAGE_TYPES)})")
            data = base64.b64encode(path.read_bytes()).decode()
            self.url = f"data:image/{kind};base64,{data}"
        elif not isinstance(url, str) or not url.startswith(("data:image/", "/api/v1/")):
            raise _bad(
                "Image",
                "url",
                url,
                "give an image file, a data:image/ URL or a /api/v1/... path of a run's media file",
            )
        _text("Image", "caption", self.caption, optional=True)

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": "image", "url": str(self.url), "caption": self.caption}
        if self.id:
            spec["id"] = self.id
        return spec


_OPS = ("!=", ">=", "<=", "==", "=", "<", ">")
_WANDB_FILTER = re.compile(
    r"""^\s*(Config|SummaryMetric|Summary)\(\s*['"]([^'"]+)['"]\s*\)\s*(!=|>=|<=|==|=|<|>)\s*(.+?)\s*$"""
)
_PLAIN_FILTER = re.compile(r"^\s*((?:config|summary)\.[^<>=!]+?)\s*(!=|>=|<=|==|=|<|>)\s*(.+?)\s*$")


def _filter_value(text: str) -> str:
    try:
        return json.dumps(json.loads(text))
    except ValueError:
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return json.dumps(text[1:-1])
        return text


def _filters(value: Any) -> list[str]:
    """Run set filters as the server writes them (``config.lr<0.01``). Accepted: that form, W&B's
    ``"Config('lr') < 0.01 and SummaryMetric('acc') > 0.9"``, a list of either, or a dict of
    equalities ``{"config.optimizer": "adam"}``."""
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        return [f"{_path('Runset', 'filters', k)}={json.dumps(v)}" for k, v in value.items()]
    parts = value if isinstance(value, (list, tuple)) else re.split(r"\s+and\s+|;", str(value))
    out = []
    for part in parts:
        if not isinstance(part, str):
            raise _bad("Runset", "filters", value, "give filter strings, a list or a dict")
        if not part.strip():
            continue
        wandb = _WANDB_FILTER.match(part)
        plain = _PLAIN_FILTER.match(part)
        if wandb:
            column = "config" if wandb[1] == "Config" else "summary"
            path, op, raw = f"{column}.{wandb[2]}", wandb[3], wandb[4]
        elif plain:
            path, op, raw = plain[1], plain[2], plain[3]
        else:
            raise _bad(
                "Runset",
                "filters",
                part,
                "write config.<key><op><value> or Config('<key>') <op> <value>, "
                "op one of = != < <= > >=, joined by 'and'",
            )
        out.append(f"{path}{'=' if op == '==' else op}{_filter_value(raw)}")
    return out


@dataclass
class Runset:
    """The runs a panel grid draws: those of ``project`` matching every one of ``filters`` (see
    ``_filters``) and the search ``query`` (a part of the name or id), only the run ids in
    ``selection`` when given, grouped by ``groupby`` (``"config.<key>"`` or ``"group"``).
    Live (new runs appear) unless ``frozen``: the server then keeps the runs and their data as
    they were when the report was saved."""

    project: str | None = None
    entity: str | None = None
    name: str = "Run set"
    filters: Any = None
    groupby: Any = None
    query: str = ""
    selection: list[str] | None = None
    frozen: bool = False
    id: str | None = field(default=None, repr=False, compare=False)
    frozen_at: float | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        _text("Runset", "project", self.project, optional=True)
        _text("Runset", "name", self.name)
        self.filters = _filters(self.filters)
        groups = self.groupby if isinstance(self.groupby, (list, tuple)) else [self.groupby]
        self.groupby = [g for g in (_groupby("Runset", "groupby", g) for g in groups) if g]
        if self.selection is not None:
            chosen: Any = self.selection  # a str would pass the loop below, one character each
            if isinstance(chosen, str) or not all(isinstance(r, str) for r in chosen):
                raise _bad("Runset", "selection", self.selection, "give a list of run ids")
            self.selection = list(self.selection)
        if not isinstance(self.frozen, bool):
            raise _bad("Runset", "frozen", self.frozen, "give True or False")

    def to_spec(self, project: str, entity: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": self.name,
            "project": self.project or project,
            "filters": list(self.filters),
            "groupby": list(self.groupby),
            "query": self.query or None,
            "selection": self.selection,
            "frozen": self.frozen,
        }
        if self.entity or entity:
            spec["entity"] = self.entity or entity
        if self.id:
            spec["id"] = self.id
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Runset:
        return cls(
            project=spec.get("project"),
            entity=spec.get("entity"),
            name=spec.get("name", "Run set"),
            filters=spec.get("filters"),
            groupby=spec.get("groupby"),
            query=spec.get("query") or "",
            selection=spec.get("selection"),
            frozen=bool(spec.get("frozen")),
            id=spec.get("id"),
            frozen_at=spec.get("frozen_at"),
        )


@dataclass
class PanelGrid:
    """Panels over the runs of one or more run sets (default: every run of the report's
    project, live). ``panels`` holds ``LinePlot``, ``ScalarChart``, ``BarPlot``, ...; a dict is
    taken as a panel spec of the panel contract as it is."""

    runsets: list[Runset] = field(default_factory=lambda: [Runset()])
    panels: list[Any] = field(default_factory=list)
    id: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.runsets, (list, tuple)) or not self.runsets:
            raise _bad("PanelGrid", "runsets", self.runsets, "give a list of one or more Runset")
        for r in self.runsets:
            if not isinstance(r, Runset):
                raise _bad("PanelGrid", "runsets", r, "give Runset objects")
        self.runsets = list(self.runsets)
        if not isinstance(self.panels, (list, tuple)):
            raise _bad("PanelGrid", "panels", self.panels, "give a list of panels")
        for p in self.panels:
            if not isinstance(p, (_Panel, dict)):
                raise _bad(
                    "PanelGrid",
                    "panels",
                    p,
                    "give panels (LinePlot, BarPlot, ...) or panel spec dicts",
                )
        self.panels = list(self.panels)

    def to_spec(self, project: str, entity: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "kind": "panels",
            "runsets": [r.to_spec(project, entity) for r in self.runsets],
            "panels": [p if isinstance(p, dict) else p.to_spec() for p in self.panels],
        }
        if self.id:
            spec["id"] = self.id
        return spec


def _block_from_spec(spec: dict[str, Any]) -> Any:
    kind = spec.get("kind")
    if kind == "markdown":
        return Markdown(spec.get("text", ""), id=spec.get("id"))
    if kind == "image":
        return Image(spec["url"], spec.get("caption"), id=spec.get("id"))
    if kind == "panels":
        return PanelGrid(
            runsets=[Runset.from_spec(r) for r in spec.get("runsets") or []] or [Runset()],
            panels=[_panel_from_spec(p) for p in spec.get("panels") or []],
            id=spec.get("id"),
        )
    raise ValueError(f"the server sent a block of kind {kind!r}, which this fulmen does not know")


# ----------------------------------------------------------------------------------- report


def _setting(name: str, given: str | None) -> str | None:
    """A tracker setting by its one precedence: argument, FULMEN_*, WANDB_*, settings file."""
    from fulmen.track._settings import SETTINGS, settings_file

    if given:
        return given
    fulmen_var, wandb_var, _ = SETTINGS[name]
    found = os.environ.get(fulmen_var) or (os.environ.get(wandb_var) if wandb_var else None)
    return found or settings_file().get(name) or None


def _client(base_url: str | None, api_key: str | None) -> Any:
    from fulmen.track._upload import Client

    base = _setting("base_url", base_url)
    if base is None:
        raise ValueError(
            "no server to save the report to: pass base_url=, set FULMEN_BASE_URL or run "
            "`fulmen login --host URL`"
        )
    return Client(base, _setting("api_key", api_key))


def _call(client: Any, method: str, path: str, payload: Any = None) -> Any:
    from fulmen.track._upload import ServerError

    try:
        return client.json(method, path, payload)
    except ServerError as exc:
        raise ValueError(f"the server refused the report ({method} {path}): {exc}") from None


@dataclass
class Report:
    """A report of ``project``: a ``title``, a ``description`` and ``blocks`` (``Markdown`` and
    its ``H1``/``H2``/``H3``/``P``/``CodeBlock`` helpers, ``Image``, ``PanelGrid``). ``entity``
    defaults to the one of the server's key. ``save()`` stores it and answers its URL;
    ``Report.from_url(url)`` loads one."""

    project: str
    title: str = ""
    description: str = ""
    blocks: list[Any] = field(default_factory=list)
    entity: str | None = None
    id: str | None = field(default=None, repr=False, compare=False)
    base_url: str | None = field(default=None, repr=False, compare=False)
    api_key: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.project, str) or not self.project or "/" in self.project:
            raise _bad("Report", "project", self.project, "give the project's name")
        _text("Report", "title", self.title)
        _text("Report", "description", self.description)
        _text("Report", "entity", self.entity, optional=True)
        if not isinstance(self.blocks, (list, tuple)):
            raise _bad("Report", "blocks", self.blocks, "give a list of blocks")
        for b in self.blocks:
            if not isinstance(b, (Markdown, Image, PanelGrid)):
                raise _bad(
                    "Report", "blocks", b, "give Markdown (H1, P, ...), Image or PanelGrid blocks"
                )
        self.blocks = list(self.blocks)

    def to_spec(self) -> dict[str, Any]:
        """The report as the server stores it (``POST .../reports``'s body)."""
        return {
            "title": self.title,
            "description": self.description,
            "blocks": [
                b.to_spec(self.project, self.entity) if isinstance(b, PanelGrid) else b.to_spec()
                for b in self.blocks
            ],
        }

    @property
    def url(self) -> str:
        """The report's page (after ``save()`` or ``from_url``)."""
        if self.id is None or self.entity is None:
            raise AttributeError("the report has no URL until it is saved (report.save())")
        base = (_setting("base_url", self.base_url) or "").rstrip("/")
        return (
            f"{base}/{quote(self.entity, safe='')}/{quote(self.project, safe='')}/reports/{self.id}"
        )

    def _api(self) -> str:
        assert self.entity is not None
        entity, project = quote(self.entity, safe=""), quote(self.project, safe="")
        return f"/entities/{entity}/projects/{project}/reports"

    def save(self, *, base_url: str | None = None, api_key: str | None = None) -> str:
        """Create the report on the server (or replace it, once saved) and answer its URL. The
        server comes from ``base_url``/``api_key``, else the tracker's settings."""
        if base_url:
            self.base_url = base_url
        if api_key:
            self.api_key = api_key
        client = _client(self.base_url, self.api_key)
        self.base_url = client.base_url
        if self.entity is None:
            self.entity = str(_call(client, "GET", "/viewer")["entity"])
        spec = self.to_spec()
        if self.id is None:
            answer = _call(client, "POST", self._api(), spec)
        else:
            answer = _call(client, "PUT", f"{self._api()}/{self.id}", spec)
        self._take_ids(answer)
        return self.url

    def _take_ids(self, answer: dict[str, Any]) -> None:
        """The ids the server gave the report, its blocks and run sets (a frozen run set keeps
        its snapshot by its id on the next save)."""
        self.id = answer["id"]
        for block, spec in zip(self.blocks, answer["blocks"], strict=True):
            block.id = spec.get("id")
            if isinstance(block, PanelGrid):
                for runset, rs in zip(block.runsets, spec["runsets"], strict=True):
                    runset.id, runset.frozen_at = rs.get("id"), rs.get("frozen_at")
                    runset.entity = runset.entity or rs.get("entity")

    def delete(self) -> None:
        """Delete the saved report from the server."""
        if self.id is None:
            raise AttributeError("the report was never saved")
        _call(_client(self.base_url, self.api_key), "DELETE", f"{self._api()}/{self.id}")
        self.id = None

    @classmethod
    def from_url(cls, url: str, *, api_key: str | None = None) -> Report:
        """Load the report whose page is ``url`` (``http://host/<entity>/<project>/reports/<id>``;
        ``/edit`` and ``.json`` are fine too)."""
        parts = urlsplit(url)
        path = [unquote(p) for p in parts.path.split("/") if p]
        if parts.scheme not in ("http", "https") or len(path) < 4 or path[2] != "reports":
            raise ValueError(
                f"Report.from_url({url!r}): give a report's page, "
                "http(s)://HOST/<entity>/<project>/reports/<id>"
            )
        entity, project, report_id = path[0], path[1], path[3].removesuffix(".json")
        base = f"{parts.scheme}://{parts.netloc}"
        client = _client(base, api_key)
        api = f"/entities/{quote(entity, safe='')}/projects/{quote(project, safe='')}/reports"
        answer = _call(client, "GET", f"{api}/{quote(report_id, safe='')}")
        report = cls(
            project=project,
            title=answer.get("title", ""),
            description=answer.get("description", ""),
            blocks=[_block_from_spec(b) for b in answer.get("blocks") or []],
            entity=entity,
            base_url=base,
            api_key=api_key,
        )
        report.id = answer["id"]
        return report
