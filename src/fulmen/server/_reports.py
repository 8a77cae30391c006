"""Reports: what one is, checked field by field (``check_report``), and how it is answered.

A report belongs to a project and is ``{"title", "description", "blocks": [...]}`` plus what the
server keeps (``id``, ``author``, ``created``, ``updated``). A block is one of

- ``{"kind": "markdown", "text": str}`` (answered with ``html``: ``_markdown.render``);
- ``{"kind": "image", "url": str, "caption": str | null}``: a ``data:image/...;base64,`` URL or a
  path of this server's API naming a file of the report's entity (a run's media file);
- ``{"kind": "panels", "runsets": [runset, ...], "panels": [panel, ...]}``: panels as the panel
  contract writes them (docs/reports.md), over the runs of its run sets.

A run set is ``{"id", "name", "project", "entity", "filters": ["config.lr<0.01", ...],
"groupby": ["config.optimizer" | "group"], "query": str | null, "selection": [run id, ...] | null,
"frozen": bool}``: the runs of ``project`` matching every filter and the search ``query``, only
those of ``selection`` when it is given. A run set is live (a new run appears) until frozen: the
server then keeps its run list and its panels' data as they were (``frozen_at``).

Every block and run set gets an ``id`` (kept on later saves: a frozen run set's snapshot is found
by it). Bad input is ``ReportInvalid``, naming the field (``blocks[2].panels[0].y``).
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable
from typing import Any

from fulmen.server import _markdown

BLOCK_KINDS = ("markdown", "image", "panels")
PANEL_KINDS = (
    "line",
    "scalar",
    "bar",
    "scatter",
    "parallel",
    "table",
    "media",
    "histogram",
    "markdown",
)
SMOOTHING = ("none", "exponential", "running", "gaussian")
AGGS = ("last", "min", "max", "mean")
BANDS = ("minmax", "stddev", "none")
MAX_TITLE = 200
MAX_DESCRIPTION = 5_000
MAX_TEXT = 200_000  # characters of one markdown block
MAX_BLOCKS = 200
MAX_PANELS = 48  # per panel grid
MAX_RUNSETS = 8  # per panel grid
MAX_SELECTION = 1_000
MAX_IMAGE = 8 << 20  # characters of one data: URL
_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_DATA_URL = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]+$")
_KEY_BAD = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAME_BAD = re.compile(r"[/\\\x00-\x1f\x7f]")
# what a client may send back from an answer (ignored: the server sets them)
ANSWER_ONLY = frozenset({"id", "entity", "project", "author", "created", "updated", "url"})


class ReportInvalid(ValueError):
    """A report field is not valid: ``field`` names it (``blocks[1].runsets[0].project``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def new_id() -> str:
    """A new report, block or run set id: 12 characters of [a-z0-9] (unguessable enough to
    name, not a secret: the project's auth guards the report)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_text(field: str, value: Any, limit: int, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ReportInvalid(field, f"give a string, not {type(value).__name__} {_shown(value)}")
    if len(value) > limit:
        raise ReportInvalid(field, f"at most {limit} characters, got {len(value)}")
    if not empty and not value:
        raise ReportInvalid(field, "must not be empty")
    if _SURROGATE.search(value):  # not UTF-8: it could not be stored or shown
        raise ReportInvalid(field, "contains a lone surrogate (\\ud800-\\udfff), not text")
    return value


def _key(field: str, value: Any) -> str:
    """A metric key or a ``config.``/``summary.`` path: 1 to 256 characters, no control ones."""
    text = check_text(field, value, 256, empty=False)
    if _KEY_BAD.search(text):
        raise ReportInvalid(field, f"{_shown(text)} contains a control character")
    return text


def _path(field: str, value: Any) -> str:
    text = _key(field, value)
    column, _, rest = text.partition(".")
    if column not in ("config", "summary") or not rest:
        raise ReportInvalid(field, f"{_shown(text)}: write config.<key> or summary.<key>")
    return text


def _groupby(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = _key(field, value)
    if text != "group" and not (text.startswith("config.") and len(text) > 7):
        raise ReportInvalid(field, f"{_shown(text)}: group by 'group' or 'config.<key>'")
    return text


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ReportInvalid(field, f"{_shown(value)} is not one of {', '.join(allowed)}")
    return str(value)


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ReportInvalid(field, f"give true or false, not {_shown(value)}")
    return value


def _int(field: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ReportInvalid(field, f"give a whole number from {lo} to {hi}, not {_shown(value)}")
    return value


def _number(field: str, value: Any, lo: float, hi: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not lo <= value <= hi:
        raise ReportInvalid(field, f"give a number from {lo} to {hi}, not {_shown(value)}")
    return float(value)


def _list(field: str, value: Any, limit: int, *, scalar_ok: bool = False) -> list[Any]:
    if scalar_ok and isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ReportInvalid(field, f"give a list, not {type(value).__name__} {_shown(value)}")
    if len(value) > limit:
        raise ReportInvalid(field, f"at most {limit} items, got {len(value)}")
    return value


def _object(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportInvalid(field, f"give an object, not {type(value).__name__} {_shown(value)}")
    return value


def _unknown(field: str, value: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(value) - known)
    if extra:
        raise ReportInvalid(
            f"{field}.{extra[0]}", f"unknown field; the fields are {', '.join(sorted(known))}"
        )


def _id(field: str, value: Any) -> str:
    if value is None:
        return new_id()
    if not isinstance(value, str) or not _ID.match(value):
        raise ReportInvalid(field, f"{_shown(value)}: 1 to 32 characters from A-Z a-z 0-9 _ -")
    return value


def _name(field: str, value: Any) -> str:
    text = check_text(field, value, 128, empty=False)
    if _NAME_BAD.search(text) or text in (".", ".."):
        raise ReportInvalid(field, f"{_shown(text)}: no '/', '\\' or control characters")
    return text


# --------------------------------------------------------------------------------------- panels


def _layout(field: str, value: Any) -> dict[str, int]:
    value = _object(field, value)
    _unknown(field, value, {"w", "h", "x", "y"})
    out = {}
    for name, hi in (("w", 12), ("h", 24), ("x", 11), ("y", 10_000)):
        if name in value:
            out[name] = _int(f"{field}.{name}", value[name], 0 if name in "xy" else 1, hi)
    return out


def _smoothing(field: str, value: Any) -> dict[str, Any]:
    value = _object(field, value)
    _unknown(field, value, {"type", "amount"})
    kind = _choice(f"{field}.type", value.get("type", "none"), SMOOTHING)
    amount = _number(f"{field}.amount", value.get("amount", 0), 0, 1e6)
    return {"type": kind, "amount": amount}


def _line(f: str, p: dict[str, Any]) -> None:
    p["x"] = _key(f"{f}.x", p.get("x", "_step"))
    y = _list(f"{f}.y", p.get("y"), 20, scalar_ok=True)
    if not y:
        raise ReportInvalid(f"{f}.y", "name at least one metric")
    p["y"] = [_key(f"{f}.y[{i}]", k) for i, k in enumerate(y)]
    if "smoothing" in p:
        p["smoothing"] = _smoothing(f"{f}.smoothing", p["smoothing"])
    for name in ("logx", "logy"):
        if name in p:
            p[name] = _bool(f"{f}.{name}", p[name])
    if "groupby" in p:
        p["groupby"] = _groupby(f"{f}.groupby", p["groupby"])
    if "band" in p:
        p["band"] = _choice(f"{f}.band", p["band"], BANDS)
    if "max_runs" in p:
        p["max_runs"] = _int(f"{f}.max_runs", p["max_runs"], 1, 10_000)


def _scalar(f: str, p: dict[str, Any]) -> None:
    p["metric"] = _key(f"{f}.metric", p.get("metric"))
    p["agg"] = _choice(f"{f}.agg", p.get("agg", "last"), AGGS)
    if p["kind"] == "bar" and "groupby" in p:
        p["groupby"] = _groupby(f"{f}.groupby", p["groupby"])


def _scatter(f: str, p: dict[str, Any]) -> None:
    p["x"] = _path(f"{f}.x", p.get("x"))
    p["y"] = _path(f"{f}.y", p.get("y"))
    if p.get("color") is not None:
        p["color"] = _path(f"{f}.color", p["color"])


def _parallel(f: str, p: dict[str, Any]) -> None:
    columns = _list(f"{f}.columns", p.get("columns"), 30)
    if len(columns) < 2:
        raise ReportInvalid(f"{f}.columns", "name at least two config./summary. columns")
    p["columns"] = [_path(f"{f}.columns[{i}]", c) for i, c in enumerate(columns)]


def _table(f: str, p: dict[str, Any]) -> None:
    if p.get("columns") is not None:
        columns = _list(f"{f}.columns", p["columns"], 200)
        p["columns"] = [_key(f"{f}.columns[{i}]", c) for i, c in enumerate(columns)]


def _media(f: str, p: dict[str, Any]) -> None:
    p["key"] = _key(f"{f}.key", p.get("key"))


def _markdown_panel(f: str, p: dict[str, Any]) -> None:
    p.pop("html", None)  # the server renders it
    p["text"] = check_text(f"{f}.text", p.get("text", ""), MAX_TEXT)


_PANEL_CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "line": _line,
    "scalar": _scalar,
    "bar": _scalar,
    "scatter": _scatter,
    "parallel": _parallel,
    "table": _table,
    "media": _media,
    "histogram": _media,
    "markdown": _markdown_panel,
}


def check_panel(field: str, value: Any) -> dict[str, Any]:
    """One panel spec (the panel contract), its known fields checked; fields the contract adds
    later are kept as they are."""
    panel = dict(_object(field, value))
    kind = panel.get("kind")
    if kind not in _PANEL_CHECKS:
        raise ReportInvalid(
            f"{field}.kind", f"{_shown(kind)} is not one of {', '.join(PANEL_KINDS)}"
        )
    if panel.get("title") is not None:
        panel["title"] = check_text(f"{field}.title", panel["title"], MAX_TITLE)
    if panel.get("layout") is not None:
        panel["layout"] = _layout(f"{field}.layout", panel["layout"])
    _PANEL_CHECKS[kind](field, panel)
    return panel


# --------------------------------------------------------------------------------------- blocks


def _filters(field: str, value: Any) -> list[str]:
    from fastapi import HTTPException

    from fulmen.server._api_runs import _parse_filter

    out = []
    for i, given in enumerate(_list(field, value or [], 20, scalar_ok=True)):
        text = check_text(f"{field}[{i}]", given, 300, empty=False)
        try:
            _parse_filter(text)
        except HTTPException as exc:
            raise ReportInvalid(f"{field}[{i}]", str(exc.detail)) from None
        out.append(text)
    return out


def check_runset(field: str, value: Any, entity: str, project: str) -> dict[str, Any]:
    rs = _object(field, value)
    _unknown(
        field,
        rs,
        {
            "id",
            "name",
            "project",
            "entity",
            "filters",
            "groupby",
            "query",
            "selection",
            "frozen",
            "frozen_at",
        },
    )
    if rs.get("entity") not in (None, entity):
        raise ReportInvalid(
            f"{field}.entity",
            f"{_shown(rs['entity'])}: a run set reads runs of the report's entity ({entity!r})",
        )
    selection = rs.get("selection")
    if selection is not None:
        from fastapi import HTTPException

        from fulmen.server._names import run_id

        checked = []
        for i, r in enumerate(_list(f"{field}.selection", selection, MAX_SELECTION)):
            try:
                checked.append(run_id(check_text(f"{field}.selection[{i}]", r, 64, empty=False)))
            except HTTPException as exc:
                raise ReportInvalid(f"{field}.selection[{i}]", str(exc.detail)) from None
        selection = list(dict.fromkeys(checked))
    groupby = [
        _groupby(f"{field}.groupby[{i}]", g)
        for i, g in enumerate(_list(f"{field}.groupby", rs.get("groupby") or [], 3, scalar_ok=True))
    ]
    query = rs.get("query")
    return {
        "id": _id(f"{field}.id", rs.get("id")),
        "name": check_text(f"{field}.name", rs.get("name", "Run set"), 128),
        "project": _name(f"{field}.project", rs.get("project") or project),
        "entity": entity,
        "filters": _filters(f"{field}.filters", rs.get("filters")),
        "groupby": [g for g in groupby if g],
        "query": None if not query else check_text(f"{field}.query", query, 128),
        "selection": selection,
        "frozen": _bool(f"{field}.frozen", rs.get("frozen", False)),
    }


def _image_url(field: str, value: Any, entity: str) -> str:
    url = check_text(field, value, MAX_IMAGE, empty=False)
    if url.startswith("data:"):
        if not _DATA_URL.match(url):
            raise ReportInvalid(field, "a data: URL must be data:image/(png|jpeg|gif|webp);base64,")
        return url
    prefix = f"/api/v1/entities/{entity}/projects/"
    if url.startswith(prefix) and "/runs/" in url and ".." not in url and not _KEY_BAD.search(url):
        return url
    raise ReportInvalid(
        field,
        f"{_shown(url)}: give a data:image/...;base64, URL or a run file of this server "
        f"({prefix}<project>/runs/<id>/media/files/<path>); the dashboard loads nothing from "
        "other hosts",
    )


def check_block(field: str, value: Any, entity: str, project: str) -> dict[str, Any]:
    block = _object(field, value)
    kind = block.get("kind")
    block_id = _id(f"{field}.id", block.get("id"))
    if kind == "markdown":
        _unknown(field, block, {"kind", "id", "text", "html"})
        return {
            "kind": kind,
            "id": block_id,
            "text": check_text(f"{field}.text", block.get("text", ""), MAX_TEXT),
        }
    if kind == "image":
        _unknown(field, block, {"kind", "id", "url", "caption"})
        caption = block.get("caption")
        return {
            "kind": kind,
            "id": block_id,
            "url": _image_url(f"{field}.url", block.get("url"), entity),
            "caption": None if caption is None else check_text(f"{field}.caption", caption, 500),
        }
    if kind == "panels":
        _unknown(field, block, {"kind", "id", "runsets", "panels"})
        runsets = _list(f"{field}.runsets", block.get("runsets"), MAX_RUNSETS)
        if not runsets:
            raise ReportInvalid(f"{field}.runsets", "a panel grid needs at least one run set")
        checked = [
            check_runset(f"{field}.runsets[{i}]", r, entity, project) for i, r in enumerate(runsets)
        ]
        ids = [r["id"] for r in checked]
        if len(set(ids)) != len(ids):
            raise ReportInvalid(f"{field}.runsets", "two run sets have the same id")
        panels = _list(f"{field}.panels", block.get("panels") or [], MAX_PANELS)
        return {
            "kind": kind,
            "id": block_id,
            "runsets": checked,
            "panels": [check_panel(f"{field}.panels[{i}]", p) for i, p in enumerate(panels)],
        }
    raise ReportInvalid(f"{field}.kind", f"{_shown(kind)} is not one of {', '.join(BLOCK_KINDS)}")


def _text_everywhere(field: str, value: Any, depth: int = 0) -> None:
    """Every string of ``value`` (keys too) is text: no lone surrogate, which could be neither
    stored nor answered (a panel's fields the contract adds later are kept as they come)."""
    if depth > 32:
        raise ReportInvalid(field, "nested more than 32 levels deep")
    if isinstance(value, str):
        check_text(field, value, MAX_IMAGE)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _text_everywhere(f"{field}[{i}]", item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(f"{field} (a key)", key, 256)
            _text_everywhere(f"{field}.{key}", item, depth + 1)


def check_report(body: Any, entity: str, project: str) -> dict[str, Any]:
    """The report ``body`` (a POST or PUT), checked and normalized: ``title``, ``description``
    and ``blocks``, every block and run set with an ``id``. Raises ``ReportInvalid``."""
    body = _object("body", body)
    for key, value in body.items():
        _text_everywhere(str(key), value)
    _unknown(
        "body",
        {k: v for k, v in body.items() if k not in ANSWER_ONLY},
        {"title", "description", "blocks"},
    )
    blocks = _list("blocks", body.get("blocks") or [], MAX_BLOCKS)
    checked = [check_block(f"blocks[{i}]", b, entity, project) for i, b in enumerate(blocks)]
    ids = [b["id"] for b in checked]
    if len(set(ids)) != len(ids):
        raise ReportInvalid("blocks", "two blocks have the same id")
    runset_ids = [r["id"] for b in checked if b["kind"] == "panels" for r in b["runsets"]]
    if len(set(runset_ids)) != len(runset_ids):
        raise ReportInvalid("blocks", "two run sets have the same id")
    return {
        "title": check_text("title", body.get("title", ""), MAX_TITLE),
        "description": check_text("description", body.get("description", ""), MAX_DESCRIPTION),
        "blocks": checked,
    }


def runsets(report: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(block, run set) for every run set of the report's panel grids, in order."""
    return [(b, r) for b in report["blocks"] if b["kind"] == "panels" for r in b["runsets"]]


def rendered(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` as answered: markdown blocks and panels with their ``html``, and its ``url``."""
    blocks = []
    for block in report["blocks"]:
        shown = block
        if block["kind"] == "markdown":
            shown = {**block, "html": _markdown.render(block["text"])}
        elif block["kind"] == "panels":
            panels = [
                {**p, "html": _markdown.render(str(p.get("text", "")))}
                if p.get("kind") == "markdown"
                else p
                for p in block["panels"]
            ]
            shown = {**block, "panels": panels}
        blocks.append(shown)
    return {**report, "blocks": blocks}
