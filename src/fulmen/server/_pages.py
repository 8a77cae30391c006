"""The dashboard: server-rendered pages over the same store queries as the API.

Every page is built in two steps: a ``view_*`` function asks the store (the same calls the
``/api/v1`` handlers make) and returns a plain dict; the page renders that dict as HTML, and the
same path with ``.json`` answers the dict itself (the page's JSON twin). What changes while a page
is open (the runs table, chart data, console, files) is fetched by the page's script from the
``/api/v1`` routes, so the UI never has a query path of its own.

All user text goes through ``html.escape`` (names, tags, notes, config and summary values); data
handed to the script is JSON inside ``<script type="application/json">`` with ``<``, ``>`` and
``&`` escaped, and the script writes it into the DOM with ``textContent`` only. No network at
runtime: the panels (``static/panels.js``) draw with uPlot, vendored with its licence into
``static/vendor/`` and served from the package like every other static file.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from fulmen.__about__ import __version__
from fulmen.server import _names
from fulmen.server._api_sweeps import project_sweeps, sweep_answer
from fulmen.server._auth import EVERYTHING
from fulmen.server._deps import ResDep
from fulmen.server._ingest import json_safe
from fulmen.server._workspaces import HIDDEN_PREFIXES, owner_of, workspace_view
from fulmen.server.store import NotFound, RunQuery, Store

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}


def _static_files() -> tuple[str, ...]:
    """The files under ``static/`` (and ``static/vendor/``) that ``GET /static/{name}`` serves:
    listed once from the package, so a request names one of them or gets a 404 (no path from
    a request is ever joined onto the folder)."""
    root = resources.files("fulmen.server").joinpath("static")
    found = []
    for folder, prefix in ((root, ""), (root.joinpath("vendor"), "vendor/")):
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if item.is_file() and any(item.name.endswith(suffix) for suffix in _TYPES):
                found.append(prefix + item.name)
    return tuple(sorted(found))


STATIC = _static_files()
# the scripts every page loads, in order (runtable.js, the runs table component, when present)
SCRIPTS = tuple(
    name
    for name in ("vendor/uPlot.iife.min.js", "media.js", "runtable.js", "panels.js", "dashboard.js")
    if name in STATIC
)
STYLES = ("vendor/uPlot.min.css", "dashboard.css", "panels.css")


def static_text(name: str) -> str:
    """The text of static file ``name`` (one of ``STATIC``; the HTML export inlines them)."""
    if name not in STATIC:
        raise KeyError(f"no static file {name!r}; there are {list(STATIC)}")
    folder = resources.files("fulmen.server").joinpath("static")
    for part in name.split("/"):
        folder = folder.joinpath(part)
    return folder.read_text("utf-8")


# history keys that are not charted on the project page (system keys, histograms logged by watch)
_HIDDEN_PREFIXES = HIDDEN_PREFIXES
MAX_PANELS = 24  # chart panels on a project page (every key is still in the run page)
# runs rendered with the project page itself, so the table paints before the whole list arrives
FIRST_PAGE = 100


def esc(value: Any) -> str:
    """Any value as escaped HTML text (strings as they are, the rest as JSON)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return html.escape(text, quote=True)


def json_text(data: Any) -> str:
    """``data`` as strict JSON (NaN and infinities, which JSON lacks, as null)."""
    try:
        return json.dumps(data, default=str, allow_nan=False)
    except ValueError:  # the store reads values JSON-safe; this is the page's own guard
        return json.dumps(json_safe(data), default=str, allow_nan=False)


def script_json(data: Any) -> str:
    """JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json_text(data)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _check_entity(request: Request, entity: str) -> str:
    if entity == "api":  # /api/... is the API's: an unknown API path stays a plain 404
        raise HTTPException(404, "Not Found")
    entity = _names.name("entity", entity)
    principal = str(request.state.principal)
    if principal not in (EVERYTHING, entity):
        raise HTTPException(403, f"this key belongs to entity {principal!r}, not {entity!r}")
    return entity


def view_projects(store: Store, only: str | None) -> dict[str, Any]:
    """The projects list: every entity (those of the key) with its projects."""
    entities = store.entities(only)
    return {
        "entities": [{**e, "projects": store.projects(e["name"])} for e in entities],
    }


def chart_keys(history: dict[str, int]) -> list[str]:
    """The history keys that get a chart panel, in name order."""
    return sorted(k for k in history if not k.startswith(_HIDDEN_PREFIXES))[:MAX_PANELS]


def default_x(history: dict[str, int]) -> str:
    """``trainer/global_step`` for Lightning runs (the step users mean), else ``_step``."""
    return "trainer/global_step" if "trainer/global_step" in history else "_step"


def view_project(
    store: Store,
    entity: str,
    project: str,
    owner: str = "",
    sweeps: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The project page's setup: columns to choose from, the default columns, charts and x-axis,
    the workspace (the saved panel layout of ``owner``, else the default one) and the project's
    ``sweeps`` (as ``GET .../sweeps`` answers them). The runs themselves come from
    ``GET /api/v1/.../runs`` (sorted, filtered, paged there); the first page comes with the page,
    so the table paints before any request."""
    columns = store.columns(entity, project)
    paths = columns.get("paths") or columns  # leaf paths: config.model.depth, not config.model
    summary = [k for k in sorted(paths["summary"]) if not k.startswith(_HIDDEN_PREFIXES)]
    chosen = [f"summary.{k}" for k in summary[:4]] + [
        f"config.{k}" for k in sorted(paths["config"])[:3]
    ]
    first = store.runs(entity, project, RunQuery(fields=tuple(chosen), limit=FIRST_PAGE))
    if first.total == 0:
        raise HTTPException(404, f"project {entity}/{project} has no runs")
    return {
        "entity": entity,
        "project": project,
        "columns": columns,
        "default_columns": chosen,
        # the first runs in the table's default order (-created), as GET .../runs answers them
        "first": {"total": first.total, "runs": first.runs},
        "charts": chart_keys(columns["history"]),
        "x": default_x(columns["history"]),
        "x_choices": _x_choices(columns["history"]),
        "workspace": workspace_view(store, entity, project, owner),
        "sweeps": [_sweep_brief(sw) for sw in sweeps or []],
    }


def _sweep_brief(sweep: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "method", "metric", "state", "created", "progress")
    return {k: sweep.get(k) for k in keys}


def view_sweeps(entity: str, project: str, sweeps: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweeps list of a project (``sweeps``: as ``GET .../sweeps`` answers them)."""
    return {"entity": entity, "project": project, "sweeps": [_sweep_brief(s) for s in sweeps]}


def view_sweep(entity: str, project: str, sweep: dict[str, Any]) -> dict[str, Any]:
    """The sweep page: ``sweep`` as ``GET .../sweeps/{id}`` answers it (config, state, progress,
    trials, best so far, importance, correlation) and the names of its searched parameters, in
    the config's order (the table's columns and the parallel-coordinates axes)."""
    config = sweep.get("config") or {}
    params = [k for k, v in (config.get("parameters") or {}).items()
              if not (isinstance(v, dict) and set(v) == {"value"})]  # fmt: skip
    return {"entity": entity, "project": project, "sweep": sweep, "parameters": params}


def _x_choices(history: dict[str, int]) -> list[str]:
    found = [k for k in ("trainer/global_step", "epoch") if k in history]
    return [*found, "_step", "_runtime", "_timestamp"]


def view_run(store: Store, entity: str, project: str, run_id: str) -> dict[str, Any]:
    """The run page: the run (overview, config, summary, metadata), its charts, files and
    artifacts. Console, system metrics and histograms are fetched by the page."""
    run = store.run(entity, project, run_id)
    summary = run.get("summary") or {}
    histograms = sorted(
        k for k, v in summary.items() if isinstance(v, dict) and v.get("_type") == "histogram"
    )
    history = run.get("history_keys") or {}
    artifacts = store.run_artifacts(entity, project, run_id)
    for art in artifacts:  # metadata and aliases of each logged version
        try:
            full = store.artifact(entity, project, art["name"], _version(art["version"]))
        except NotFound:  # a version the run logged whose manifest never arrived
            full = {}
        art["metadata"] = full.get("metadata") or {}
        entries = full.get("entries") or {}
        art["entries"] = sorted(entries) if isinstance(entries, dict) else []
    return {
        "entity": entity,
        "project": project,
        "run": run,
        "charts": chart_keys(history),
        "x": default_x(history),
        "x_choices": _x_choices(history),
        "histograms": histograms,
        "files": store.files(entity, project, run_id),
        "artifacts": artifacts,
    }


def view_compare(store: Store, entity: str, project: str, run_ids: list[str]) -> dict[str, Any]:
    """The compare page: the chosen runs, the union of their chart keys and a config diff."""
    runs = [store.run(entity, project, r) for r in run_ids]
    keys: set[str] = set()
    for run in runs:
        keys |= set(run.get("history_keys") or {})
    flat = [_flatten(r.get("config") or {}) for r in runs]
    names = sorted(set().union(*flat)) if flat else []
    diff = [
        {"key": k, "values": [f.get(k) for f in flat]}
        for k in names
        if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1
    ]
    same = [k for k in names if k not in {d["key"] for d in diff}]
    history = dict.fromkeys(keys, 1)
    return {
        "entity": entity,
        "project": project,
        "runs": [_brief(r) for r in runs],
        "charts": chart_keys(history),
        "x": default_x(history),
        "x_choices": _x_choices(history),
        "diff": diff,
        "same": same,
    }


def _version(version: Any) -> str:
    text = str(version)
    return text if text.startswith("v") else f"v{text}"


def _brief(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in ("id", "name", "state", "group", "tags", "created", "runtime")}


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value and "_type" not in value:  # not into media
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---------------------------------------------------------------------------- HTML


def _page(title: str, crumbs: list[tuple[str, str]], body: str, data: Any, kind: str) -> str:
    nav = " / ".join(
        f'<a href="{esc(href)}">{esc(text)}</a>' if href else f"<span>{esc(text)}</span>"
        for text, href in crumbs
    )
    v = esc(__version__)
    styles = "\n".join(f'<link rel="stylesheet" href="/static/{n}?v={v}">' for n in STYLES)
    scripts = "\n".join(f'<script src="/static/{n}?v={v}"></script>' for n in SCRIPTS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} - fulmen</title>
{styles}
</head><body data-page="{esc(kind)}">
<header><a class="brand" href="/">fulmen</a> <nav>{nav}</nav></header>
<main>{body}</main>
<script type="application/json" id="page-data">{script_json(data)}</script>
{scripts}
</body></html>"""


_UNITS = ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"), (86400, "day"),
          (3600, "hour"), (60, "minute"))  # fmt: skip


def ago(ts: Any, now: float | None = None) -> str:
    """``ts`` (a UNIX time) relative to ``now``: "just now", "3 minutes ago", "in 2 hours"."""
    if not _finite(ts):
        return ""
    delta = (time.time() if now is None else now) - float(ts)
    seconds = abs(delta)
    if seconds < 60:
        return "just now"
    count, unit = next((int(seconds // size), name) for size, name in _UNITS if seconds >= size)
    text = f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{text} ago" if delta > 0 else f"in {text}"


def _finite(value: Any) -> bool:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and math.isfinite(value)


def _when(ts: Any) -> str:
    """A time as HTML: relative text, the absolute local date in its title (hover)."""
    if not _finite(ts):
        return ""
    try:
        local = time.localtime(ts)
    except (OverflowError, ValueError, OSError):  # a year the platform's time_t cannot hold
        return esc(ts)
    absolute = time.strftime("%Y-%m-%d %H:%M", local)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S%z", local)
    return f'<time datetime="{esc(iso)}" title="{esc(absolute)}">{esc(ago(ts))}</time>'


def html_projects(view: dict[str, Any]) -> str:
    rows = []
    for ent in view["entities"]:
        for proj in ent["projects"]:
            href = f"/{ent['name']}/{proj['name']}"
            rows.append(
                f'<tr><td>{esc(ent["name"])}</td><td><a href="{esc(href)}">{esc(proj["name"])}</a>'
                f'</td><td class="num">{esc(proj["runs"])}</td><td>{_when(proj.get("updated"))}'
                "</td></tr>"
            )
    table = (
        '<table class="plain" id="projects"><thead><tr><th>entity</th><th>project</th>'
        '<th class="num">runs</th><th>updated</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="empty">No runs yet. Log one with <code>fulmen.track</code> or run '
        "<code>fulmen demo</code>.</p>"
    )
    return _page("projects", [("projects", "")], f"<h1>Projects</h1>{table}", view, "projects")


# the same media key of the runs side by side at one step (project and compare pages; media.js)
_MEDIA_SIDE = """<section id="media" class="media-section"><h2>Media</h2>
<div class="controls"><label>key <select id="media-key"></select></label></div>
<div id="media-compare"></div></section>"""

_CHART_CONTROLS = """<div class="controls" id="chart-controls">
<label>x-axis <select id="x-axis"></select></label>
<label>smoothing <select id="smoothing-type"><option value="exponential">exponential</option>
<option value="running">running average</option><option value="gaussian">gaussian</option></select>
<input type="range" id="smoothing" min="0" max="0.99" step="0.01" value="0">
<output id="smoothing-value">0</output></label>
<label><input type="checkbox" id="log-scale"> log scale</label>
{group}
<button type="button" id="reset-zoom">reset zoom</button>
<span class="hint">drag on a chart to zoom; double-click to reset; click a line or a legend entry
to highlight its run</span>
</div>"""


def html_project(view: dict[str, Any]) -> str:
    entity, project = view["entity"], view["project"]
    group = (
        '<label>group by <select id="group-by"><option value="">none</option>'
        '<option value="group">run group</option></select></label>'
    )
    saved = "saved" if view["workspace"]["saved"] else "default (not saved yet)"
    sweeps = ""
    if view.get("sweeps"):
        listed = _sweeps_table(entity, project, view["sweeps"])
        sweeps = f"""<section id="sweeps"><h2>Sweeps</h2>{listed}
<p><a href="{esc(f"/{entity}/{project}/sweeps")}">all sweeps</a></p></section>"""
    reports = f"/{entity}/{project}/reports"
    body = f"""<h1>{esc(project)} <a class="project-reports" href="{esc(reports)}">reports</a></h1>
{sweeps}
<section class="runs">
<div id="runs-table"></div>
<div class="controls"><button type="button" id="compare" disabled>compare selected</button></div>
</section>
<section class="charts">
{_CHART_CONTROLS.format(group=group)}
<div class="controls"><span class="muted">workspace:</span>
<span id="workspace-status">{saved}</span>
<button type="button" id="workspace-reset">reset to default</button></div>
<div id="charts"></div>
</section>
{_MEDIA_SIDE}"""
    crumbs = [("projects", "/"), (entity, ""), (project, "")]
    return _page(project, crumbs, body, view, "project")


def _cell(value: Any) -> Any:
    """A media value (histogram, image, ...) is named by its type, not dumped."""
    if isinstance(value, dict) and "_type" in value:
        return f"({value['_type']})"
    return value


def _kv_table(
    values: dict[str, Any], table_id: str, render: dict[str, Callable[[Any], str]] | None = None
) -> str:
    """A key/value table; ``render`` gives the HTML of some keys' values (the rest is escaped)."""
    render = render or {}
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{render[k](v) if k in render else esc(_cell(v))}</td></tr>"
        for k, v in _flatten(values).items()
    )
    return f'<table class="kv" id="{table_id}"><tbody>{rows}</tbody></table>'


def html_run(view: dict[str, Any]) -> str:
    entity, project, run = view["entity"], view["project"], view["run"]
    meta = run.get("metadata") or {}
    overview = {
        "state": run.get("state"),
        "id": run.get("id"),
        "created": run.get("created"),
        "duration": f"{run['runtime']:.1f} s" if _finite(run.get("runtime")) else None,
        "group": run.get("group"),
        "job type": run.get("job_type"),
        "tags": ", ".join(str(t) for t in run.get("tags") or []),
        "notes": run.get("notes"),
        "command": " ".join(str(a) for a in [meta.get("program") or "", *(meta.get("args") or [])]),
        "git": meta.get("git"),
        "host": meta.get("host"),
        "user": meta.get("user"),
        "python": meta.get("python"),
        "fulmen": meta.get("fulmen"),
        "exit": (run.get("exit") or {}).get("exit_code"),
    }
    overview = {k: v for k, v in overview.items() if v not in (None, "", [])}
    summary = {k: v for k, v in (run.get("summary") or {}).items() if not k.startswith("_")}
    base = f"/api/v1/entities/{entity}/projects/{project}/runs/{run['id']}"

    def file_item(f: dict[str, Any]) -> str:
        return (
            f'<li><a href="{esc(base + "/files/" + f["path"])}" download>{esc(f["path"])}</a> '
            f'<span class="muted">{esc(f.get("type") or "")} {esc(f.get("size") or "")} B'
            f"{'' if f.get('uploaded') or f.get('digest') else ' (not uploaded)'}</span></li>"
        )

    # media files (one per logged image, mask, table...) are folded away: the Media section
    # shows them; the list keeps the run's other files in sight
    media = [f for f in view["files"] if str(f["path"]).startswith("media/")]
    files = "".join(file_item(f) for f in view["files"] if f not in media)
    if media:
        files += (
            f'<li><details id="media-files"><summary>{len(media)} media files</summary>'
            f"<ul>{''.join(file_item(f) for f in media)}</ul></details></li>"
        )
    arts = []
    for a in view["artifacts"]:
        version = _version(a["version"])
        art_base = f"/api/v1/entities/{entity}/projects/{project}/artifacts/{a['name']}/{version}"
        links = "".join(
            f'<a href="{esc(art_base + "/files/" + p)}" download>{esc(p)}</a> '
            for p in a["entries"]
        )
        arts.append(
            f"<tr><td>{esc(a['name'])}:{esc(version)}</td><td>{esc(a.get('type'))}</td>"
            f"<td>{esc(', '.join(a.get('aliases') or []))}</td><td>{esc(a['metadata'])}</td>"
            f"<td>{links}</td></tr>"
        )
    artifacts = (
        '<table class="plain" id="artifacts"><thead><tr><th>version</th><th>type</th>'
        f"<th>aliases</th><th>metadata</th><th>files</th></tr></thead><tbody>{''.join(arts)}"
        "</tbody></table>"
        if arts
        else '<p class="muted">none</p>'
    )
    exports = " ".join(
        f'<a href="{esc(base)}/history/export?format={fmt}" download>{fmt.upper()}</a>'
        for fmt in ("csv", "jsonl", "parquet")
    )
    title = str(run.get("name") or run["id"])
    config = run.get("config") or {}
    state = esc(run.get("state"))
    body = f"""<h1 id="run-name">{esc(title)} <span class="state state-{state}">{state}</span></h1>
<div class="grid2">
<section><h2>Overview</h2>{_kv_table(overview, "overview", {"created": _when})}</section>
<section><h2>Config</h2>{_kv_table(config, "config")}</section>
<section><h2>Summary</h2>{_kv_table(summary, "summary")}</section>
<section><h2>Files</h2><ul id="files">{files}</ul>
<p id="export">history: {exports}</p>
<h2>Artifacts</h2>{artifacts}</section>
</div>
<section class="charts"><h2>Charts</h2>{_CHART_CONTROLS.format(group="")}
<div id="charts"></div></section>
<section><h2>Media</h2><div id="media" class="media-panels"></div></section>
<section><h2>System metrics</h2><div id="system"></div></section>
<section><h2>Gradients and parameters</h2><div id="histograms"></div></section>
<section><h2>Model topology</h2><pre id="topology" class="muted">none recorded</pre></section>
<section><h2>Console</h2><pre id="console" class="console"></pre></section>"""
    crumbs = [("projects", "/"), (entity, ""), (project, f"/{entity}/{project}"), (title, "")]
    return _page(title, crumbs, body, view, "run")


def html_compare(view: dict[str, Any]) -> str:
    entity, project = view["entity"], view["project"]
    head = "".join(
        '<th><a href="{}">{}</a></th>'.format(
            esc(f"/{entity}/{project}/runs/{r['id']}"), esc(r.get("name") or r["id"])
        )
        for r in view["runs"]
    )
    rows = "".join(
        f"<tr><th>{esc(d['key'])}</th>{''.join(f'<td>{esc(v)}</td>' for v in d['values'])}</tr>"
        for d in view["diff"]
    )
    n_runs, n_same = len(view["runs"]), len(view["same"])
    body = f"""<h1>Compare {n_runs} runs</h1>
<section><h2>Config differences</h2>
<table class="plain" id="config-diff"><thead><tr><th>key</th>{head}</tr></thead>
<tbody>{rows}</tbody></table>
<p class="muted">{n_same} keys are equal in every run.</p></section>
<section class="charts">{_CHART_CONTROLS.format(group="")}
<div id="charts"></div></section>
{_MEDIA_SIDE}"""
    crumbs = [("projects", "/"), (entity, ""), (project, f"/{entity}/{project}"), ("compare", "")]
    return _page("compare", crumbs, body, view, "compare")


def _sweeps_table(entity: str, project: str, sweeps: list[dict[str, Any]]) -> str:
    rows = []
    for sw in sweeps:
        href = f"/{entity}/{project}/sweeps/{sw['id']}"
        metric = sw.get("metric") or {}
        progress = sw.get("progress") or {}
        cap = progress.get("run_cap") or progress.get("size")
        count = f"{progress.get('trials', 0)}" + (f" / {cap}" if cap else "")
        rows.append(
            f'<tr><td><a href="{esc(href)}">{esc(sw.get("name") or sw["id"])}</a></td>'
            f"<td>{esc(sw.get('method'))}</td><td>{esc(metric.get('name') or '')} "
            f"{esc(metric.get('goal') or '')}</td><td>{_state(sw.get('state'))}</td>"
            f'<td class="num">{esc(count)}</td><td>{_when(sw.get("created"))}</td></tr>'
        )
    return (
        '<table class="plain sweeps"><thead><tr><th>sweep</th><th>method</th><th>metric</th>'
        '<th>state</th><th class="num">trials</th><th>created</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _state(state: Any) -> str:
    return f'<span class="state state-{esc(state)}">{esc(state)}</span>'


def html_sweeps(view: dict[str, Any]) -> str:
    entity, project = view["entity"], view["project"]
    table = (
        _sweeps_table(entity, project, view["sweeps"])
        if view["sweeps"]
        else '<p class="empty">No sweeps yet. Start one with <code>fulmen sweep</code>.</p>'
    )
    crumbs = [("projects", "/"), (entity, ""), (project, f"/{entity}/{project}"), ("sweeps", "")]
    return _page("sweeps", crumbs, f"<h1>Sweeps of {esc(project)}</h1>{table}", view, "sweeps")


IMPORTANCE_METHODS = {
    "fanova": "fANOVA (Optuna's FanovaImportanceEvaluator)",
    "ped_anova": "PED-ANOVA (Optuna's PedAnovaImportanceEvaluator)",
}


def html_sweep(view: dict[str, Any]) -> str:
    entity, project, sweep = view["entity"], view["project"], view["sweep"]
    params = view["parameters"]
    metric = (sweep.get("metric") or {}).get("name")
    head = "".join(f"<th>{esc(p)}</th>" for p in params)
    rows = []
    for t in sweep.get("trials") or []:
        run = f"/{entity}/{project}/runs/{t['run_id']}"
        cells = "".join(f"<td>{esc(_short((t.get('params') or {}).get(p)))}</td>" for p in params)
        value = t.get("value")
        rows.append(
            f'<tr data-trial="{esc(t["number"])}"><td class="num">{esc(t["number"])}</td>'
            f"<td>{_state(t.get('state'))}</td>{cells}"
            f'<td class="num metric">{"" if value is None else esc(_short(value))}</td>'
            f'<td><a href="{esc(run)}">{esc(t["run_id"])}</a></td></tr>'
        )
    trials = (
        f'<table class="plain" id="trials"><thead><tr><th class="num">trial</th><th>state</th>'
        f'{head}<th class="num">{esc(metric or "metric")}</th><th>run</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    importance = sweep.get("importance") or {}
    correlation = sweep.get("correlation") or {}
    method = str(importance.get("method") or "")
    imp, cor = importance.get("values") or {}, correlation.get("values") or {}
    facts = "".join(
        f'<tr><th>{esc(p)}</th><td class="num">{esc(_num(imp.get(p)))}</td>'
        f'<td class="num">{esc(_num(cor.get(p)))}</td></tr>'
        for p in params
    )
    note = f'<p class="muted" id="importance-note">{esc(importance["note"])}</p>' if (
        importance.get("note")) else ""  # fmt: skip
    progress = sweep.get("progress") or {}
    best = sweep.get("best") or {}
    overview = {
        "state": sweep.get("state"),
        "method": sweep.get("method"),
        "metric": f"{metric} ({(sweep.get('metric') or {}).get('goal')})" if metric else None,
        "trials": progress.get("trials"),
        "of": progress.get("run_cap") or progress.get("size"),
        "by state": ", ".join(
            f"{k} {v}" for k, v in sorted((progress.get("states") or {}).items())
        ),
        "best": f"{best.get('value')} (trial {best.get('number')})" if best else None,
        "created": sweep.get("created"),
    }
    overview = {k: v for k, v in overview.items() if v not in (None, "")}
    title = str(sweep.get("name") or sweep["id"])
    body = f"""<h1>Sweep {esc(title)} {_state(sweep.get("state"))}</h1>
<div class="grid2">
<section><h2>Overview</h2>{_kv_table(overview, "overview", {"created": _when})}</section>
<section><h2>Config</h2>
<pre id="sweep-config">{esc(_yaml(sweep.get("config")))}</pre></section>
</div>
<section><h2>Trials</h2>{trials}</section>
<section class="charts"><h2>Parameters against the metric</h2>
<div id="parallel" class="panels"></div>
<h2>{esc(metric or "metric")} by trial, best so far</h2><div id="best-so-far"></div></section>
<section><h2>Parameter importance and correlation</h2>
<p id="importance-method">importance: {esc(IMPORTANCE_METHODS.get(method, method))};
correlation: Spearman's rank correlation with {esc(metric or "the metric")}</p>{note}
<table class="plain" id="importance"><thead><tr><th>parameter</th><th class="num">importance</th>
<th class="num">correlation</th></tr></thead><tbody>{facts}</tbody></table>
<div id="importance-bars" class="panels"></div></section>"""
    crumbs = [
        ("projects", "/"), (entity, ""), (project, f"/{entity}/{project}"),
        ("sweeps", f"/{entity}/{project}/sweeps"), (title, ""),
    ]  # fmt: skip
    return _page(f"sweep {title}", crumbs, body, view, "sweep")


def _short(value: Any) -> Any:
    """A float with 6 significant digits (a sampled learning rate's 17 say nothing more)."""
    return f"{value:.6g}" if isinstance(value, float) and math.isfinite(value) else _cell(value)


def _yaml(config: Any) -> str:
    """A sweep config as YAML, in its own key order (as users write sweep.yaml)."""
    import yaml  # type: ignore[import-untyped, unused-ignore]

    text: str = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    return text


def _num(value: Any) -> str:
    return "" if not _finite(value) else f"{value:.3g}"


JSON_SUFFIX = ".json"


def wants_json(request: Request) -> bool:
    """The JSON twin is asked for: a path ending in ``.json``, or ``Accept: application/json``
    (and not HTML, which browsers always list)."""
    if request.url.path.endswith(JSON_SUFFIX):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _answer(
    request: Request, view: dict[str, Any], render: Callable[[dict[str, Any]], str]
) -> Response:
    """The page ``render(view)``, or its JSON twin ``view`` itself: one view, two forms."""
    headers = {"vary": "accept"}
    if wants_json(request):
        text = json_text(view)
        return Response(text, media_type="application/json", headers=headers)
    return HTMLResponse(render(view), headers=headers)


def _strip(name: str) -> str:
    """The last path segment without its ``.json`` (the twin's suffix)."""
    return name.removesuffix(JSON_SUFFIX)


def pages_router(store: Any) -> APIRouter:
    """The dashboard's routes (outside ``/api/v1``, not in the OpenAPI schema; docs/dashboard.md
    lists them). Each page is one route answering its HTML or, with a ``.json`` suffix or
    ``Accept: application/json``, its JSON twin (as Datasette does). ``store`` is a callable
    answering the store (opened on first use)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/static/{name:path}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        text = static_text(name)
        suffix = name[name.rfind(".") :]
        return Response(text, media_type=_TYPES[suffix], headers={"cache-control": "max-age=3600"})

    def _only(request: Request) -> str | None:
        principal = str(request.state.principal)
        return None if principal == EVERYTHING else principal

    @router.get("/")
    @router.get("/index.json")
    def projects(request: Request) -> Response:
        return _answer(request, view_projects(store(), _only(request)), html_projects)

    @router.get("/{entity}/{project}/runs/{run_id}")
    def run(request: Request, entity: str, project: str, run_id: str) -> Response:
        e = _check_entity(request, entity)
        p, r = _names.name("project", project), _names.run_id(_strip(run_id))
        return _answer(request, view_run(store(), e, p, r), html_run)

    @router.get("/{entity}/{project}/compare")
    @router.get("/{entity}/{project}/compare.json")
    def compare(
        request: Request,
        entity: str,
        project: str,
        run: list[str] = Query(default=[]),  # noqa: B008
    ) -> Response:
        e = _check_entity(request, entity)
        ids = [_names.run_id(r) for r in run[:20]]
        view = view_compare(store(), e, _names.name("project", project), ids)
        return _answer(request, view, html_compare)

    @router.get("/{entity}/{project}/sweeps")
    @router.get("/{entity}/{project}/sweeps.json")
    def sweeps_page(request: Request, res: ResDep, entity: str, project: str) -> Response:
        names = (_check_entity(request, entity), _names.name("project", project))
        found = project_sweeps(res.sweeps, names)["sweeps"]
        return _answer(request, view_sweeps(*names, found), html_sweeps)

    @router.get("/{entity}/{project}/sweeps/{sweep_id}")
    def sweep_page(
        request: Request, res: ResDep, entity: str, project: str, sweep_id: str
    ) -> Response:
        names = (_check_entity(request, entity), _names.name("project", project))
        sweep = sweep_answer(res.sweeps, names, _strip(sweep_id))
        return _answer(request, view_sweep(*names, sweep), html_sweep)

    @router.get("/{entity}/{project}")
    def project_page(request: Request, res: ResDep, entity: str, project: str) -> Response:
        e = _check_entity(request, entity)
        p = _names.name("project", _strip(project))
        sweeps = project_sweeps(res.sweeps, (e, p))["sweeps"]
        view = view_project(store(), e, p, owner_of(request), sweeps)
        return _answer(request, view, html_project)

    return router
