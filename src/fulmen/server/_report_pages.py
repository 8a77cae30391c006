"""The report pages: a project's reports, one report, its editor; each with its JSON twin.

    /{entity}/{project}/reports              the list (.json: its twin)
    /{entity}/{project}/reports/new          the editor on a new report (?run=ID... picks runs)
    /{entity}/{project}/reports/{id}         the report (.json: its twin)
    /{entity}/{project}/reports/{id}/edit    the editor

The server renders the report's text (markdown as HTML, ``_markdown``), its images and a place
for each panel grid; ``static/reports.js`` mounts the grids with ``FulmenPanels.mountGrid`` over a
source per grid: a frozen run set's snapshot (in the page data) or the live API. The same body
is what an export embeds (``_report_export``), so a report reads the same on the server and from
a file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from fulmen.__about__ import __version__
from fulmen.server import _names
from fulmen.server._api_reports import answer
from fulmen.server._pages import (
    STATIC,
    _answer,
    _check_entity,
    _strip,
    _when,
    default_x,
    esc,
    script_json,
)
from fulmen.server.store import RunQuery, Store

# what a report page loads, in order (runtable.js, the runs table component, when present)
SCRIPTS = tuple(
    name
    for name in ("vendor/uPlot.iife.min.js", "media.js", "runtable.js", "panels.js", "reports.js")
    if name in STATIC
)
STYLES = ("vendor/uPlot.min.css", "dashboard.css", "panels.css", "reports.css")
DEFAULT_PANELS = 6  # line panels of a new panel grid (one per chart key)


def shell(
    title: str,
    crumbs: list[tuple[str, str]],
    body: str,
    data: Any,
    kind: str,
    *,
    head: str = "",
    styles: str | None = None,
    scripts: str | None = None,
) -> str:
    """A report page: ``body`` in the dashboard's frame, the page data as JSON, then the
    scripts (``scripts``/``styles``: the export inlines them instead)."""
    v = esc(__version__)
    nav = " / ".join(
        f'<a href="{esc(href)}">{esc(text)}</a>' if href else f"<span>{esc(text)}</span>"
        for text, href in crumbs
    )
    if styles is None:
        styles = "".join(f'<link rel="stylesheet" href="/static/{esc(s)}?v={v}">\n' for s in STYLES)
    if scripts is None:
        scripts = "".join(f'<script src="/static/{esc(s)}?v={v}"></script>\n' for s in SCRIPTS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{head}<title>{esc(title)} - fulmen</title>
{styles}</head><body data-page="{esc(kind)}">
<header><a class="brand" href="/">fulmen</a> <nav>{nav}</nav></header>
<main>{body}</main>
<script type="application/json" id="page-data">{script_json(data)}</script>
{scripts}</body></html>"""


def report_title(report: dict[str, Any]) -> str:
    return str(report.get("title") or "Untitled report")


def _runset_line(runset: dict[str, Any]) -> str:
    bits = [f"project {esc(runset['project'])}"]
    if runset.get("filters"):
        bits.append("where " + esc("; ".join(runset["filters"])))
    if runset.get("query"):
        bits.append(f"matching {esc(runset['query'])!s}")
    if runset.get("selection") is not None:
        bits.append(f"{len(runset['selection'])} chosen runs")
    if runset.get("groupby"):
        bits.append("grouped by " + esc(", ".join(runset["groupby"])))
    frozen = ""
    if runset.get("frozen"):
        frozen = f' <span class="frozen" title="the runs and data as they were">frozen {_when(runset.get("frozen_at"))}</span>'  # noqa: E501
    return (
        f'<li class="runset" data-runset="{esc(runset["id"])}"><b>{esc(runset["name"])}</b> '
        f'<span class="muted">{", ".join(bits)}</span>{frozen} '
        '<span class="runset-count muted"></span></li>'
    )


def report_body(report: dict[str, Any]) -> str:
    """The report's title, description and blocks as HTML (markdown already rendered, safe);
    panel grids are an empty ``.report-grid`` for the script to fill."""
    parts = [f'<h1 id="report-title">{esc(report_title(report))}</h1>']
    if report.get("description"):
        parts.append(f'<p class="report-description">{esc(report["description"])}</p>')
    meta = []
    if report.get("author"):
        meta.append(f"by {esc(report['author'])}")
    if report.get("updated"):
        meta.append(f"updated {_when(report['updated'])}")
    if meta:
        parts.append(f'<p class="report-meta muted">{" · ".join(meta)}</p>')
    for block in report["blocks"]:
        bid = esc(block["id"])
        if block["kind"] == "markdown":
            parts.append(
                f'<section class="block block-markdown markdown" data-block="{bid}">'
                f"{block['html']}</section>"
            )
        elif block["kind"] == "image":
            caption = block.get("caption")
            figcaption = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
            parts.append(
                f'<figure class="block block-image" data-block="{bid}">'
                f'<img src="{esc(block["url"])}" alt="{esc(caption or "")}">{figcaption}</figure>'
            )
        elif block["kind"] == "panels":
            runsets = "".join(_runset_line(r) for r in block["runsets"])
            parts.append(
                f'<section class="block block-panels" data-block="{bid}">'
                f'<ul class="runsets">{runsets}</ul>'
                f'<div class="report-grid" data-block="{bid}"></div></section>'
            )
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ views


def view_reports(store: Store, entity: str, project: str) -> dict[str, Any]:
    found = store.reports(entity, project)
    return {
        "entity": entity,
        "project": project,
        "reports": [{**r, "url": f"/{entity}/{project}/reports/{r['id']}"} for r in found],
    }


def view_report(store: Store, entity: str, project: str, report_id: str) -> dict[str, Any]:
    """The report as the API answers it, and the data of its frozen run sets."""
    report = store.report(entity, project, report_id)
    frozen = {
        r["id"]
        for b in report["blocks"]
        if b["kind"] == "panels"
        for r in b["runsets"]
        if r.get("frozen")
    }
    snapshots = store.report_snapshots(entity, project, report_id)
    return {
        "entity": entity,
        "project": project,
        "report": answer(entity, project, report),
        "snapshots": {k: v for k, v in snapshots.items() if k in frozen},
    }


def default_grid(
    store: Store, entity: str, project: str, runs: list[str], owner: str
) -> dict[str, Any]:
    """The panel grid the editor adds: the chosen runs (all the project's, live, when none) and
    the panels of the project's workspace (the saved one of this key, or the default: a line
    plot per metric, by key prefix), with the workspace's x-axis and smoothing, and a run
    table."""
    from fulmen.server._reports import MAX_PANELS
    from fulmen.server._workspaces import workspace_view

    layout = workspace_view(store, entity, project, owner)["layout"]
    settings = layout.get("settings") or {}
    columns = store.columns(entity, project)
    x = settings.get("x") or default_x(columns["history"])
    panels: list[dict[str, Any]] = []
    for section in layout.get("sections") or []:
        for saved in section.get("panels") or []:
            panel = dict(saved)
            if panel.get("kind") == "line":
                panel.setdefault("x", x)
                if settings.get("smoothing") and "smoothing" not in panel:
                    panel["smoothing"] = settings["smoothing"]
            panels.append(panel)
    panels = panels[: MAX_PANELS - 1]
    summary = [k for k in sorted(columns["summary"]) if not k.startswith("_")][:4]
    config = sorted(columns["config"])[:3]
    panels.append(
        {
            "kind": "table",
            "columns": [
                "name",
                "state",
                *(f"config.{k}" for k in config),
                *(f"summary.{k}" for k in summary),
            ],
            "layout": {"w": 12},
        }
    )
    runset = {
        "name": "Run set",
        "project": project,
        "filters": [],
        "groupby": [],
        "query": None,
        "selection": runs or None,
        "frozen": False,
    }
    return {"kind": "panels", "runsets": [runset], "panels": panels}


def view_editor(
    store: Store, entity: str, project: str, report_id: str | None, runs: list[str], owner: str
) -> dict[str, Any]:
    if report_id is None:
        report: dict[str, Any] = {"title": "", "description": "", "blocks": []}
    else:
        report = answer(entity, project, store.report(entity, project, report_id))
    columns = store.columns(entity, project)
    total = store.runs(entity, project, RunQuery(limit=1)).total
    return {
        "entity": entity,
        "project": project,
        "report": report,
        "new": report_id is None,
        "default_grid": default_grid(store, entity, project, runs, owner),
        "metrics": sorted(columns["history"]),
        "config": sorted(columns["config"]),
        "summary": sorted(columns["summary"]),
        "runs": total,
    }


# ------------------------------------------------------------------------------------- HTML


def _crumbs(entity: str, project: str, *more: tuple[str, str]) -> list[tuple[str, str]]:
    return [
        ("projects", "/"),
        (entity, ""),
        (project, f"/{entity}/{project}"),
        ("reports", f"/{entity}/{project}/reports"),
        *more,
    ]


def html_reports(view: dict[str, Any]) -> str:
    entity, project = view["entity"], view["project"]
    rows = "".join(
        f'<tr><td><a href="{esc(r["url"])}">{esc(report_title(r))}</a></td>'
        f"<td>{esc(r.get('description') or '')}</td><td>{esc(r.get('author') or '')}</td>"
        f"<td>{_when(r.get('updated'))}</td></tr>"
        for r in view["reports"]
    )
    table = (
        '<table class="plain" id="reports"><thead><tr><th>title</th><th>description</th>'
        f"<th>author</th><th>updated</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p class="empty">No reports yet.</p>'
    )
    new = f"/{entity}/{project}/reports/new"
    body = (
        f'<h1>Reports of {esc(project)}</h1><p><a class="button" id="new-report" '
        f'href="{esc(new)}">new report</a></p>{table}'
    )
    crumbs = [*_crumbs(entity, project)[:-1], ("reports", "")]
    return shell(f"reports of {project}", crumbs, body, view, "reports", scripts="", styles=None)


def html_report(view: dict[str, Any]) -> str:
    entity, project, report = view["entity"], view["project"], view["report"]
    base = f"/{entity}/{project}/reports/{report['id']}"
    api = f"/api/v1/entities/{entity}/projects/{project}/reports/{report['id']}"
    actions = (
        f'<div class="report-actions"><a class="button" id="edit-report" href="{esc(base)}/edit">'
        f'edit</a> <a class="button" id="export-report" href="{esc(api)}/export.html" download>'
        'export HTML</a> <button type="button" id="delete-report">delete</button></div>'
    )
    body = actions + f'<article class="report">{report_body(report)}</article>'
    title = report_title(report)
    return shell(title, _crumbs(entity, project, (title, "")), body, view, "report")


def html_editor(view: dict[str, Any]) -> str:
    entity, project, report = view["entity"], view["project"], view["report"]
    title = "new report" if view["new"] else f"edit {report_title(report)}"
    body = f"""<h1>{esc(title)}</h1>
<div class="report-editor">
<label class="field">title <input type="text" id="report-title-input" maxlength="200"
 value="{esc(report.get("title") or "")}"></label>
<label class="field">description <textarea id="report-description-input" rows="2"
 maxlength="5000">{esc(report.get("description") or "")}</textarea></label>
<div id="blocks"></div>
<div class="controls" id="add-blocks">
<button type="button" id="add-markdown">add text</button>
<button type="button" id="add-image">add image</button>
<button type="button" id="add-grid">add panel grid</button>
</div>
<div class="controls"><button type="button" id="save-report" class="primary">save</button>
<span id="save-status" class="muted"></span></div>
</div>"""
    crumbs = _crumbs(entity, project, (title, ""))
    return shell(title, crumbs, body, view, "report-edit")


def report_pages_router(store: Callable[[], Store]) -> APIRouter:
    """The report pages' routes (outside ``/api/v1``; docs/dashboard.md lists them)."""
    router = APIRouter(include_in_schema=False)

    from fulmen.server._workspaces import owner_of

    def names(request: Request, entity: str, project: str) -> tuple[str, str]:
        return _check_entity(request, entity), _names.name("project", project)

    @router.get("/{entity}/{project}/reports")
    @router.get("/{entity}/{project}/reports.json")
    def reports(request: Request, entity: str, project: str) -> Response:
        e, p = names(request, entity, project)
        return _answer(request, view_reports(store(), e, p), html_reports)

    @router.get("/{entity}/{project}/reports/new")
    def new(
        request: Request,
        entity: str,
        project: str,
        run: list[str] = Query(default=[]),  # noqa: B008
    ) -> Response:
        e, p = names(request, entity, project)
        ids = [_names.run_id(r) for r in run[:1000]]
        view = view_editor(store(), e, p, None, ids, owner_of(request))
        return _answer(request, view, html_editor)

    @router.get("/{entity}/{project}/reports/{report_id}/edit")
    def edit(request: Request, entity: str, project: str, report_id: str) -> Response:
        e, p = names(request, entity, project)
        rid = _report_id(report_id)
        view = view_editor(store(), e, p, rid, [], owner_of(request))
        return _answer(request, view, html_editor)

    @router.get("/{entity}/{project}/reports/{report_id}")
    def report(request: Request, entity: str, project: str, report_id: str) -> Response:
        e, p = names(request, entity, project)
        view = view_report(store(), e, p, _report_id(_strip(report_id)))
        return _answer(request, view, html_report)

    return router


def _report_id(value: str) -> str:
    from fulmen.server._names import bad
    from fulmen.server._reports import _ID

    if not _ID.match(value):
        raise bad("report id", value, "1 to 32 characters from A-Z a-z 0-9 _ -")
    return value
