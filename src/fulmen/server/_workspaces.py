"""Workspaces: a project's panel layout (sections of panels and their settings), saved on the
server and restored on the next visit.

A layout is the JSON that ``static/panels.js`` draws (docs/dashboard.md, "The layout JSON")::

    {"version": 1, "sections": [{"name": "train", "panels": [{"kind": "line", "y": ["train/loss"]}],
                                 "collapsed": false}],
     "settings": {"x": "_step", "smoothing": {"type": "exponential", "amount": 0.6}}}

``validate`` checks every field the panels read (a clear 422 naming the field otherwise) and lets
other fields through (the contract grows by optional fields); the whole layout is capped at
``MAX_BYTES``. A saved layout belongs to a project and an owner: the key the request carries (its
hash: each key, each user, has its own) or, without a key, the project itself (``""``). Reading
answers the owner's layout, else the project's, else ``default_layout`` of the metrics present:
one section per key prefix (``train/``, ``val/``, ...), the keys without one in "charts".
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from fulmen.server._auth import key_from_header
from fulmen.server._deps import ProjectDep, ResDep
from fulmen.server.store import Store

MAX_BYTES = 256 << 10  # bytes of one layout's JSON
MAX_SECTIONS = 50
MAX_PANELS = 200  # panels in one section
MAX_DEFAULT_PANELS = 24  # panels of a default layout (every key is still in the run page)
HIDDEN_PREFIXES = ("_", "gradients/", "parameters/", "system/", "trainer/global_step")
KINDS = ("line", "scalar", "bar", "scatter", "parallel", "table", "media", "histogram", "markdown")
SMOOTHING = ("none", "exponential", "running", "gaussian")
AGGS = ("last", "min", "max", "mean")
BANDS = ("minmax", "stddev", "none")
WORKSPACE = "/entities/{entity}/projects/{project}/workspace"

router = APIRouter(tags=["workspaces"])


class BadLayout(ValueError):
    """A layout field is wrong: ``field`` names it (``sections[0].panels[2].smoothing.type``)."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"layout.{field}: {why}")
        self.field = field


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: Any, where: str, limit: int = 256, *, empty: bool = True) -> str:
    if not isinstance(value, str) or len(value) > limit or (not empty and not value):
        need = f"a string of {'0' if empty else '1'} to {limit} characters"
        raise BadLayout(where, f"{_shown(value)} is not {need}")
    return value


def _one_of(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise BadLayout(where, f"{_shown(value)} is not one of {', '.join(allowed)}")
    return str(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadLayout(where, f"{_shown(value)} is not true or false")
    return value


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadLayout(where, f"{_shown(value)} is not a whole number from {lo} to {hi}")
    return value


def _texts(value: Any, where: str, most: int, *, fewest: int = 0) -> list[str]:
    if not isinstance(value, list) or not fewest <= len(value) <= most:
        raise BadLayout(where, f"{_shown(value)} is not a list of {fewest} to {most} strings")
    return [_text(v, f"{where}[{i}]", empty=False) for i, v in enumerate(value)]


def _column(value: Any, where: str) -> str:
    """A run field: name, state, group, ... or config.<key> / summary.<key>."""
    return _text(value, where, empty=False)


def _groupby(value: Any, where: str) -> None:
    if value is None or value == "group":
        return
    if not isinstance(value, str) or not value.startswith("config.") or len(value) <= 7:
        raise BadLayout(where, f'{_shown(value)} is not null, "group" or "config.<key>"')
    _text(value, where)


def _smoothing(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise BadLayout(where, f"{_shown(value)} is not an object {{type, amount}}")
    _one_of(value.get("type", "none"), f"{where}.type", SMOOTHING)
    amount = value.get("amount", 0)
    if (
        isinstance(amount, bool)
        or not isinstance(amount, (int, float))
        or not math.isfinite(amount)
        or not 0 <= amount <= 10_000
    ):
        raise BadLayout(f"{where}.amount", f"{_shown(amount)} is not a number from 0 to 10000")


# the fields of the line settings, shared by a line panel and the layout's settings
def _line_fields(spec: dict[str, Any], where: str) -> None:
    if "x" in spec:
        _text(spec["x"], f"{where}.x", empty=False)
    if "smoothing" in spec:
        _smoothing(spec["smoothing"], f"{where}.smoothing")
    for flag in ("logx", "logy"):
        if flag in spec:
            _bool(spec[flag], f"{where}.{flag}")
    if "groupby" in spec:
        _groupby(spec["groupby"], f"{where}.groupby")
    if "band" in spec:
        _one_of(spec["band"], f"{where}.band", BANDS)
    if "max_runs" in spec:
        _int(spec["max_runs"], f"{where}.max_runs", 1, 1000)


def _panel(spec: Any, where: str) -> None:  # noqa: PLR0912 - one branch per kind
    if not isinstance(spec, dict):
        raise BadLayout(where, f"{_shown(spec)} is not a panel object")
    kind = _one_of(spec.get("kind"), f"{where}.kind", KINDS)
    if "title" in spec:
        _text(spec["title"], f"{where}.title")
    if "layout" in spec:
        box = spec["layout"]
        if not isinstance(box, dict):
            raise BadLayout(f"{where}.layout", f"{_shown(box)} is not an object {{w, h}}")
        if "w" in box:
            _int(box["w"], f"{where}.layout.w", 1, 12)
        if "h" in box:
            _int(box["h"], f"{where}.layout.h", 1, 24)
    if kind == "line":
        _texts(spec.get("y"), f"{where}.y", 20, fewest=1)
        _line_fields(spec, where)
    elif kind in ("scalar", "bar"):
        _text(spec.get("metric"), f"{where}.metric", empty=False)
        if "agg" in spec:
            _one_of(spec["agg"], f"{where}.agg", AGGS)
        if kind == "bar" and "groupby" in spec:
            _groupby(spec["groupby"], f"{where}.groupby")
    elif kind == "scatter":
        _column(spec.get("x"), f"{where}.x")
        _column(spec.get("y"), f"{where}.y")
        if spec.get("color") is not None:
            _column(spec["color"], f"{where}.color")
    elif kind in ("parallel", "table"):
        if kind == "parallel" or "columns" in spec:
            _texts(spec.get("columns"), f"{where}.columns", 100)
    elif kind in ("media", "histogram"):
        _text(spec.get("key"), f"{where}.key", empty=False)
    else:  # markdown: text only; its HTML is rendered by the server, never taken from a client
        _text(spec.get("text", ""), f"{where}.text", 100_000)
        if "html" in spec:
            raise BadLayout(f"{where}.html", "is not accepted: send the markdown as text")


def validate(layout: Any) -> dict[str, Any]:
    """``layout`` checked (``BadLayout`` names the first wrong field); answered as it is."""
    if not isinstance(layout, dict):
        raise BadLayout("", f"{_shown(layout)} is not a layout object")
    size = len(json.dumps(layout, default=str))
    if size > MAX_BYTES:
        raise BadLayout("", f"is {size} bytes of JSON, over the limit of {MAX_BYTES}")
    if layout.get("version", 1) != 1:
        raise BadLayout("version", f"{_shown(layout.get('version'))} is not 1")
    sections = layout.get("sections")
    if not isinstance(sections, list) or len(sections) > MAX_SECTIONS:
        raise BadLayout("sections", f"{_shown(sections)} is not a list of 0 to {MAX_SECTIONS}")
    for i, section in enumerate(sections):
        where = f"sections[{i}]"
        if not isinstance(section, dict):
            raise BadLayout(where, f"{_shown(section)} is not a section object")
        _text(section.get("name"), f"{where}.name", 128, empty=False)
        if "collapsed" in section:
            _bool(section["collapsed"], f"{where}.collapsed")
        panels = section.get("panels", [])
        if not isinstance(panels, list) or len(panels) > MAX_PANELS:
            raise BadLayout(f"{where}.panels", f"is not a list of 0 to {MAX_PANELS} panels")
        for j, panel in enumerate(panels):
            _panel(panel, f"{where}.panels[{j}]")
    settings = layout.get("settings", {})
    if not isinstance(settings, dict):
        raise BadLayout("settings", f"{_shown(settings)} is not an object")
    _line_fields(settings, "settings")
    return {"version": 1, **layout, "settings": settings}


def default_layout(history: dict[str, int]) -> dict[str, Any]:
    """One section per key prefix (``train/loss`` -> "train"), the keys without one in
    "charts" (last); a line panel per key, at most ``MAX_DEFAULT_PANELS`` in all."""
    keys = sorted(k for k in history if not k.startswith(HIDDEN_PREFIXES))[:MAX_DEFAULT_PANELS]
    sections: dict[str, list[dict[str, Any]]] = {}
    for key in keys:
        prefix, slash, _ = key.partition("/")
        name = prefix if slash and prefix else "charts"
        sections.setdefault(name, []).append({"kind": "line", "title": key, "y": [key]})
    names = sorted(sections, key=lambda n: (n == "charts", n))
    return {
        "version": 1,
        "sections": [{"name": n, "panels": sections[n], "collapsed": False} for n in names],
        "settings": {},
    }


def owner_of(request: Request) -> str:
    """Whose workspace a request reads and writes: its key's (a hash, never the key), or the
    project's own (``""``) for a request without a key."""
    raw = request.headers.get("authorization")
    key = key_from_header(raw) if raw else None
    return "" if key is None else "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def workspace_view(store: Store, entity: str, project: str, owner: str) -> dict[str, Any]:
    """What ``GET .../workspace`` answers (and the project page's twin holds as ``workspace``)."""
    saved = store.workspace(entity, project, owner)
    scope = "key" if owner else "project"
    if saved is None and owner:
        saved = store.workspace(entity, project, "")
        scope = "project"
    if saved is None:
        history = store.columns(entity, project)["history"]
        return {"layout": default_layout(history), "saved": False, "scope": "default",
                "updated": None}  # fmt: skip
    return {"layout": saved["layout"], "saved": True, "scope": scope, "updated": saved["updated"]}


@router.get(WORKSPACE, summary="A project's saved panel layout (or the default one)")
def get_workspace(res: ResDep, names: ProjectDep, request: Request) -> dict[str, Any]:
    return workspace_view(res.store, *names, owner_of(request))


@router.put(WORKSPACE, summary="Save a project's panel layout")
async def put_workspace(
    res: ResDep,
    names: ProjectDep,
    request: Request,
    body: Annotated[dict[str, Any], Body(description='{"layout": {...}}')],
) -> dict[str, Any]:
    if set(body) - {"layout"} or "layout" not in body:
        fields = sorted(body)
        raise HTTPException(422, f'the body is {{"layout": {{...}}}}; got the fields {fields}')
    try:
        layout = validate(body["layout"])
    except BadLayout as exc:
        raise HTTPException(422, str(exc)) from exc
    owner = owner_of(request)
    updated = await run_in_threadpool(res.store.put_workspace, *names, owner, layout)
    return {"layout": layout, "saved": True, "scope": "key" if owner else "project",
            "updated": updated}  # fmt: skip


@router.delete(WORKSPACE, summary="Forget a saved panel layout (back to the default)")
async def delete_workspace(res: ResDep, names: ProjectDep, request: Request) -> dict[str, Any]:
    owner = owner_of(request)
    await run_in_threadpool(res.store.delete_workspace, *names, owner)
    return workspace_view(res.store, *names, owner)
