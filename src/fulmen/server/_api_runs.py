"""Routes of entities, projects and runs: the runs table, one run, ingest (records), heartbeats,
console output and system metrics."""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from fulmen.server import _names
from fulmen.server._auth import EVERYTHING
from fulmen.server._deps import ProjectDep, ResDep, RunDep, principal, read_body
from fulmen.server._ingest import BadBatch
from fulmen.server.store import FILTER_OPS, RUN_FIELDS, Filter, RunQuery, StoreFull

log = logging.getLogger("fulmen.server")
router = APIRouter(tags=["runs"])
RUNS = "/entities/{entity}/projects/{project}/runs"
RUN = RUNS + "/{run_id}"
_RUN_FIELDS = ", ".join(RUN_FIELDS)
MAX_REFUSALS = 1000  # refused records listed in an ingest answer (a body can hold millions)
_FILTER = re.compile(
    r"^((?:config|summary)\.[^<>=!~]+?|" + "|".join(RUN_FIELDS) + r")(!=|>=|<=|=|<|>|~)(.*)$",
    re.DOTALL,
)


class Held(BaseModel):
    """The highest contiguous sequence number of a run's records that the server holds."""

    held: int


class Refusal(BaseModel):
    """A record the server skipped: its sequence number, kind, the field at fault and why."""

    seq: int
    kind: str
    field: str
    reason: str


class IngestAnswer(Held):
    """What an ingest batch did: ``held`` (refused records count as held: the client moves on)
    and the records refused."""

    refused: list[Refusal] = []  # the first MAX_REFUSALS of them
    refused_total: int = 0  # how many were refused


class CrashedBody(BaseModel):
    last_seq: int = Field(ge=0, description="the last sequence the client wrote; must equal held")


def _field(text: str) -> str:
    column, _, path = text.partition(".")
    if text in RUN_FIELDS:  # always in the answer: naming one alone asks for no config or summary
        return text
    if column not in ("config", "summary") or not path or len(text) > 300:
        raise HTTPException(
            422, f"field {text!r}: write config.<key>, summary.<key> or one of {_RUN_FIELDS}"
        )
    return text


def _parse_filter(text: str) -> Filter:
    match = _FILTER.match(text)
    if match is None:
        raise HTTPException(
            422,
            f"filter {text!r}: write <field><op><value>, field config.<key>, summary.<key> or one "
            f"of {_RUN_FIELDS}, op one of {' '.join(FILTER_OPS)}",
        )
    path, op, raw = match.groups()
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, (dict, list)):
        raise HTTPException(422, f"filter {text!r}: compare with a number, string, bool or null")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        value = float(value)  # beyond SQL's integers: compared as the number it is
    return Filter(path, op, value)


@router.get("/entities", summary="Entities and their number of projects and runs")
def entities(res: ResDep, request: Request) -> dict[str, Any]:
    who = principal(request)
    only = None if who == EVERYTHING else who
    return {"entities": res.store.entities(only)}


@router.get("/entities/{entity}/projects", summary="Projects of an entity")
def projects(res: ResDep, entity: str) -> dict[str, Any]:
    return {"projects": res.store.projects(_names.name("entity", entity))}


@router.get(RUNS, summary="Runs of a project: filter, sort, page")
def runs(
    res: ResDep,
    names: ProjectDep,
    state: Annotated[list[str] | None, Query(max_length=10)] = None,
    run: Annotated[list[str] | None, Query(max_length=1000)] = None,
    tag: Annotated[list[str] | None, Query(max_length=20)] = None,
    group: Annotated[str | None, Query(max_length=128)] = None,
    search: Annotated[str | None, Query(max_length=128)] = None,
    field: Annotated[list[str] | None, Query(max_length=200)] = None,
    filter: Annotated[list[str] | None, Query(max_length=20)] = None,
    sort: Annotated[str, Query(max_length=200)] = "-created",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    query = RunQuery(
        states=tuple(state or ()),
        ids=tuple(dict.fromkeys(_names.run_id(r) for r in run or ())),
        tags=tuple(tag or ()),
        group=group,
        search=search,
        fields=None if field is None else tuple(_field(f) for f in field),
        filters=tuple(_parse_filter(f) for f in filter or ()),
        sort=sort,
        limit=limit,
        offset=offset,
    )
    try:
        page = res.store.runs(*names, query)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"total": page.total, "limit": limit, "offset": offset, "runs": page.runs}


@router.get(
    "/entities/{entity}/projects/{project}/columns",
    summary="Config, summary and history keys of a project's runs (table columns)",
)
def columns(res: ResDep, names: ProjectDep) -> dict[str, Any]:
    return res.store.columns(*names)


@router.get(RUN, summary="One run: config, summary, metadata, state")
def run(res: ResDep, ref: RunDep) -> dict[str, Any]:
    return res.store.run(ref.entity, ref.project, ref.run_id)


@router.get(RUN + "/records", response_model=Held, summary="Highest sequence held")
def held(res: ResDep, ref: RunDep) -> Held:
    return Held(held=res.store.held(ref.entity, ref.project, ref.run_id))


@router.post(
    RUN + "/records",
    response_model=IngestAnswer,
    summary="Ingest a batch of run-log frames (idempotent by sequence)",
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "required": True,
        }
    },
)
async def ingest(res: ResDep, ref: RunDep, request: Request) -> IngestAnswer:
    body = await read_body(request, res.config.max_batch)
    store = res.store
    try:
        done = await run_in_threadpool(
            store.ingest_batch, ref.entity, ref.project, ref.run_id, body
        )
    except BadBatch as exc:
        log.warning(
            "ingest refused for run %s/%s/%s (%d bytes): %s",
            ref.entity,
            ref.project,
            ref.run_id,
            len(body),
            exc,
        )
        raise HTTPException(400, str(exc)) from exc
    except StoreFull as exc:  # 503, not 507: the uploader retries a 503 (and 507 it does not)
        log.error("ingest of run %s/%s/%s: %s", ref.entity, ref.project, ref.run_id, exc)
        raise HTTPException(503, str(exc), headers={"retry-after": "60"}) from exc
    if done.refused:
        log.warning(
            "ingest of run %s/%s/%s refused %d record(s), stored the rest: %s",
            ref.entity,
            ref.project,
            ref.run_id,
            len(done.refused),
            "; ".join(f"record {r['seq']} ({r['kind']}) {r['field']}: {r['reason']}"
                      for r in done.refused[:20]),
        )  # fmt: skip
    return IngestAnswer(
        held=done.held,
        refused=[Refusal(**r) for r in done.refused[:MAX_REFUSALS]],
        refused_total=len(done.refused),
    )


@router.post(RUN + "/heartbeat", summary="The run's client is alive, with nothing new")
def heartbeat(res: ResDep, ref: RunDep) -> dict[str, Any]:
    res.store.heartbeat(ref.entity, ref.project, ref.run_id)
    return {"ok": True}


@router.post(RUN + "/crashed", summary="Mark a dead run crashed once all is held")
def crashed(res: ResDep, ref: RunDep, body: CrashedBody) -> dict[str, Any]:
    state = res.store.mark_crashed(ref.entity, ref.project, ref.run_id, body.last_seq)
    return {"state": state}


@router.get(RUN + "/console", summary="Console output, in order")
def console(
    res: ResDep,
    ref: RunDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    lines = res.store.console(ref.entity, ref.project, ref.run_id, after, limit)
    return {"lines": lines}


@router.get(RUN + "/system", summary="System metrics (STATS records)")
def system(res: ResDep, ref: RunDep) -> dict[str, Any]:
    return {"stats": res.store.system(ref.entity, ref.project, ref.run_id)}
