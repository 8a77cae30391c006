"""Routes of history: chart data (bucketed, many runs by many keys), one key's non-scalar values,
and the unsampled export (CSV, JSON lines, Parquet)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response, StreamingResponse

from fulmen.server import _names
from fulmen.server._api_runs import RUN
from fulmen.server._deps import ProjectDep, ResDep, RunDep
from fulmen.server.store import HistoryQuery

router = APIRouter(tags=["runs"])


@router.get(RUN + "/history/export", summary="A run's whole history, unsampled")
def export(
    res: ResDep,
    ref: RunDep,
    format: Annotated[str, Query(pattern="^(csv|parquet|jsonl)$")] = "csv",
    key: Annotated[list[str] | None, Query(max_length=100)] = None,
) -> StreamingResponse:
    from fulmen.server import _export

    res.store.run(ref.entity, ref.project, ref.run_id)  # 404 before streaming starts

    def frames() -> Iterator[bytes]:
        return res.store.frames(ref.entity, ref.project, ref.run_id)

    names, rows = _export.rows(frames)
    if key:  # only rows that have every one of these keys, and only these columns
        wanted = [_names.key(k) for k in key]
        names = [*_export.BUILTIN, *(k for k in wanted if k not in _export.BUILTIN)]
        rows = (r for r in rows if all(k in r for k in wanted))
    filename = f"{ref.run_id}-history.{format}"
    headers = {"content-disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        return StreamingResponse(_export.csv_stream(names, rows), 200, headers, "text/csv")
    if format == "jsonl":
        return StreamingResponse(
            _export.jsonl_stream(names, rows), 200, headers, "application/x-ndjson"
        )
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise HTTPException(
            501, "Parquet export needs pyarrow on the server: pip install 'fulmen[parquet]'"
        ) from exc
    codes = _export.column_codes(frames)
    return StreamingResponse(
        _export.parquet_stream(names, codes, rows), 200, headers, "application/octet-stream"
    )


@router.get(
    RUN + "/history/values",
    summary="One key's strings, media or histograms by step (no sampling)",
)
def values(
    res: ResDep,
    ref: RunDep,
    key: Annotated[str, Query(max_length=256)],
    min: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    max: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    found = res.store.values(
        ref.entity,
        ref.project,
        ref.run_id,
        _names.key(key),
        -float("inf") if min is None else min,
        float("inf") if max is None else max,
        limit,
    )
    # orjson: NaN inside a logged value becomes null instead of failing the answer
    return Response(orjson.dumps({"key": key, "values": found}), media_type="application/json")


@router.get(
    "/entities/{entity}/projects/{project}/history",
    summary="Chart data: many runs x many keys, bucketed (min, max, last)",
)
def history(
    res: ResDep,
    names: ProjectDep,
    run: Annotated[list[str], Query(min_length=1, max_length=1000)],
    key: Annotated[list[str], Query(min_length=1, max_length=100)],
    buckets: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    x: Annotated[str, Query(max_length=256)] = "_step",
    min: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    max: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    format: Annotated[str, Query(pattern="^(json|binary)$")] = "json",
) -> Response:
    if min is not None and max is not None and min > max:
        raise HTTPException(422, f"min ({min}) is larger than max ({max})")
    query = HistoryQuery(
        runs=tuple(_names.run_id(r) for r in run),
        keys=tuple(_names.key(k) for k in key),
        buckets=buckets,
        x=_names.key(x),
        lo=min,
        hi=max,
    )
    series = res.store.history(*names, query)
    if format == "binary":
        return Response(binary_answer(x, buckets, series), 200, media_type=BINARY)
    # orjson writes the bucket arrays straight from numpy (NaN as null): 10x json's speed
    payload = {"x": x, "buckets": buckets, "series": series}
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), 200,
                    media_type="application/json")  # fmt: skip


BINARY = "application/vnd.fulmen.history"
BINARY_FIELDS = ("x", "min", "max", "last", "count")


def binary_answer(x: str, buckets: int, series: list[dict[str, Any]]) -> bytes:
    """The history answer for a chart (``format=binary``, docs/http-api.md): the JSON answer's
    content, its numbers as float64 arrays the browser reads in place (no parsing: a project page
    of 6 panels x 100 runs is 15 MB of JSON otherwise).

    A little-endian uint32 ``h``, ``h`` bytes of UTF-8 JSON ``{"x", "buckets", "series": [{"run",
    "key", "n"}]}``, zero bytes up to a multiple of 8, then for each series in that order its
    ``x``, ``min``, ``max``, ``last`` and ``count`` as ``n`` little-endian float64 each (NaN
    where the JSON answer has null).
    """
    head = orjson.dumps(
        {
            "x": x,
            "buckets": buckets,
            "series": [{"run": s["run"], "key": s["key"], "n": len(s["x"])} for s in series],
        }
    )
    pad = -(4 + len(head)) % 8
    parts = [struct.pack("<I", len(head)), head, b"\0" * pad]
    parts += [np.asarray(s[f], dtype="<f8").tobytes() for s in series for f in BINARY_FIELDS]
    return b"".join(parts)
