"""Routes of reports: list, create, read, replace, delete; a report's panel data; its export as
one self-contained HTML file; and the markdown preview of the report editor.

A report is checked by ``_reports.check_report`` (a bad field is a 422 naming it). Saving freezes
the run sets that ask for it: the first save with ``"frozen": true`` stores the run list and the
data of the grid's panels (``_report_data``); later saves keep that snapshot (and add the data of
panels added to the grid since, for the same runs); a save with ``"frozen": false`` drops it.
Who may read or write a report is who may read or write the project's runs (``_auth``: a key's
entity; an anonymous space by its link).
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Request
from fastapi.responses import Response

from fulmen.server import _markdown, _report_data, _reports
from fulmen.server._auth import EVERYTHING
from fulmen.server._deps import DEFAULT_ENTITY, ProjectDep, ResDep, Resources, principal
from fulmen.server._ingest import json_safe

router = APIRouter(tags=["reports"])
REPORTS = "/entities/{entity}/projects/{project}/reports"
REPORT = REPORTS + "/{report_id}"
ReportId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
ReportBody = Annotated[
    dict[str, Any], Body(description="{title, description, blocks} (docs/reports.md)")
]


def page_url(entity: str, project: str, report_id: str) -> str:
    """The report's page (its stable URL on this server)."""
    return f"/{entity}/{project}/reports/{report_id}"


def answer(entity: str, project: str, report: dict[str, Any]) -> dict[str, Any]:
    """A stored report as the API answers it (markdown rendered, its page's ``url``)."""
    return {
        **_reports.rendered(report),
        "entity": entity,
        "project": project,
        "url": page_url(entity, project, report["id"]),
    }


def _invalid(exc: _reports.ReportInvalid) -> HTTPException:
    return HTTPException(422, str(exc))


def save(
    res: Resources,
    entity: str,
    project: str,
    body: Any,
    *,
    report_id: str | None,
    author: str | None,
) -> dict[str, Any]:
    """Check ``body`` and store it as report ``report_id`` (None: a new one), freezing, keeping
    or dropping run set snapshots (module docstring); the stored report."""
    store = res.store
    try:
        report = _reports.check_report(body, entity, project)
    except _reports.ReportInvalid as exc:
        raise _invalid(exc) from None
    now = time.time()
    if report_id is None:
        old: dict[str, Any] | None = None
        stored: dict[str, Any] = {}
        report.update(id=_reports.new_id(), author=author, created=now)
    else:
        old = store.report(entity, project, report_id)  # 404 before any work
        stored = store.report_snapshots(entity, project, report_id)
        report.update(id=report_id, author=old["author"], created=old["created"])
    report["updated"] = now
    before = {r["id"]: r for _, r in _reports.runsets(old)} if old else {}
    snapshots: dict[str, Any] = {}
    for block, runset in _reports.runsets(report):
        if not runset["frozen"]:
            continue
        previous = before.get(runset["id"])
        have = stored.get(runset["id"])
        if previous is not None and previous.get("frozen") and have is not None:
            runset["frozen_at"] = previous.get("frozen_at")
            if _report_data.covers(have, block["panels"]):
                snapshots[runset["id"]] = None  # kept as stored
            else:  # panels added since: their data, for the same runs
                snapshots[runset["id"]] = json_safe(
                    _report_data.runset_data(
                        store, entity, runset["project"], have["runs"], block["panels"], have
                    )
                )
        else:
            runs = _report_data.runset_runs(store, entity, runset)
            data = _report_data.runset_data(store, entity, runset["project"], runs, block["panels"])
            snapshots[runset["id"]] = json_safe(data)
            runset["frozen_at"] = now
    store.save_report(entity, project, report, snapshots)
    return report


def _author(request: Request) -> str:
    who = principal(request)
    return DEFAULT_ENTITY if who == EVERYTHING else who


@router.get(REPORTS, summary="A project's reports (without their blocks), the last updated first")
def list_reports(res: ResDep, names: ProjectDep) -> dict[str, Any]:
    entity, project = names
    found = res.store.reports(entity, project)
    return {"reports": [{**r, "url": page_url(entity, project, r["id"])} for r in found]}


@router.post(REPORTS, status_code=201, summary="Create a report")
def create_report(
    res: ResDep, names: ProjectDep, request: Request, body: ReportBody
) -> dict[str, Any]:
    entity, project = names
    report = save(res, entity, project, body, report_id=None, author=_author(request))
    return answer(entity, project, report)


@router.get(REPORT, summary="One report: title, description, blocks (markdown rendered)")
def get_report(res: ResDep, names: ProjectDep, report_id: ReportId) -> dict[str, Any]:
    entity, project = names
    return answer(entity, project, res.store.report(entity, project, report_id))


@router.put(REPORT, summary="Replace a report (run sets frozen, kept or unfrozen as they say)")
def put_report(
    res: ResDep, names: ProjectDep, request: Request, report_id: ReportId, body: ReportBody
) -> dict[str, Any]:
    entity, project = names
    report = save(res, entity, project, body, report_id=report_id, author=_author(request))
    return answer(entity, project, report)


@router.delete(REPORT, summary="Delete a report and its snapshots")
def delete_report(res: ResDep, names: ProjectDep, report_id: ReportId) -> dict[str, Any]:
    entity, project = names
    res.store.delete_report(entity, project, report_id)
    return {"deleted": report_id}


def report_data(
    res: Resources, entity: str, project: str, report: dict[str, Any], *, files: bool = False
) -> dict[str, Any]:
    """Every run set's data, by run set id: a frozen one's snapshot, a live one's now; with the
    media files inlined when ``files`` (an export)."""
    store = res.store
    stored = store.report_snapshots(entity, project, report["id"])
    out: dict[str, Any] = {}
    budget = [_report_data.MAX_FILES]
    for block, runset in _reports.runsets(report):
        data = stored.get(runset["id"]) if runset["frozen"] else None
        if data is None:
            runs = _report_data.runset_runs(store, entity, runset)
            data = _report_data.runset_data(store, entity, runset["project"], runs, block["panels"])
        if files:

            def read_blob(digest: str, limit: int) -> bytes | None:
                blob = res.blobs.open(digest)
                if blob.size > limit:
                    close = getattr(blob.chunks, "close", None)
                    if close is not None:
                        close()  # the file (or the S3 body) it holds open
                    return None
                return b"".join(blob.chunks)

            _report_data.embed_files(store, read_blob, entity, runset["project"], data, budget)
        out[runset["id"]] = json_safe(data)
    return out


@router.get(
    REPORT + "/data", summary="A report with the data of every panel (run sets' runs, history)"
)
def get_report_data(res: ResDep, names: ProjectDep, report_id: ReportId) -> Response:
    import orjson

    entity, project = names
    report = res.store.report(entity, project, report_id)
    payload = {
        "report": answer(entity, project, report),
        "data": report_data(res, entity, project, report),
    }
    return Response(orjson.dumps(payload), media_type="application/json")


@router.get(REPORT + "/export.html", summary="The report as one self-contained HTML file")
def export_report(res: ResDep, names: ProjectDep, report_id: ReportId) -> Response:
    from fulmen.server import _report_export

    entity, project = names
    report = res.store.report(entity, project, report_id)
    shown = answer(entity, project, report)
    _report_export.inline_images(shown, lambda url: _run_file(res, entity, url))
    text = _report_export.html_file(shown, report_data(res, entity, project, report, files=True))
    name = _report_export.filename(report)
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    return Response(text, media_type="text/html; charset=utf-8", headers=headers)


_RUN_FILE = re.compile(
    r"^/api/v1/entities/([^/]+)/projects/([^/]+)/runs/([^/]+)/(?:media/)?files/(.+)$"
)


def _run_file(res: Resources, entity: str, url: str) -> tuple[bytes, str] | None:
    """The bytes and type of the run file an image block names (a path of this server)."""
    from urllib.parse import unquote

    from fulmen.server._api_media import CONTENT_TYPES

    match = _RUN_FILE.match(url.split("?", maxsplit=1)[0])
    if match is None or unquote(match[1]) != entity:
        return None
    project, run_id, path = unquote(match[2]), unquote(match[3]), unquote(match[4])
    suffix = path[path.rfind(".") :].lower() if "." in path else ""
    if suffix not in CONTENT_TYPES or ".." in path.split("/"):
        return None
    try:
        digest = res.store.file_digest(entity, project, run_id, path)
        blob = res.blobs.open(digest)
        return b"".join(blob.chunks), CONTENT_TYPES[suffix].split(";")[0]
    except (LookupError, OSError):  # NotFound, BlobMissing
        return None


@router.post("/markdown", summary="Markdown (with $math$) rendered as the report pages show it")
def markdown(
    body: Annotated[dict[str, Any], Body(description='{"text": "..."}')],
) -> dict[str, Any]:
    # checked here, not by a pydantic model: its 422 for a lone surrogate would echo the input,
    # which no JSON encoder can write (a 500)
    try:
        if set(body) != {"text"}:
            raise _reports.ReportInvalid(
                "body", f'give {{"text": ...}}, not the fields {sorted(body)}'
            )
        text = _reports.check_text("text", body["text"], _reports.MAX_TEXT)
    except _reports.ReportInvalid as exc:
        raise _invalid(exc) from None
    return {"html": _markdown.render(text)}
