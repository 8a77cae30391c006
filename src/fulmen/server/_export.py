"""Unsampled export of a run's history (CSV, Parquet, JSON lines), streamed from the stored frames.

Two passes over the frames, so nothing but row numbers is held in memory: the first finds the
columns (from SCHEMA records) and which rows survive (REWIND supersedes rows at or past its step);
the second decodes again and writes the surviving rows, each once its late values (PATCH) can no
longer arrive, i.e. ``_ingest.RECENT_ROWS`` rows later.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fulmen.server._ingest import RECENT_ROWS, Refused, clean
from fulmen.track.runlog import (
    Record,
    decode_history,
    escape_surrogates,
    header,
    history_head,
    read_records,
)

BUILTIN = ("_step", "_runtime", "_timestamp")
ROWS_PER_GROUP = 65536


def _records(frames: Callable[[], Iterable[bytes]]) -> Iterator[Record]:
    head = header()
    for segment in frames():
        for item in read_records(head + segment):
            if isinstance(item, Record):
                yield item


def _plan(frames: Callable[[], Iterable[bytes]]) -> tuple[dict[str, str], set[int]]:
    """Columns ({key: schema code}) and the ordinals of rows that survive every REWIND."""
    columns: dict[str, str] = {}
    rows: list[tuple[int, int]] = []  # (ordinal, step) of live rows, a stack
    ordinal, last_step = -1, None
    for rec in _records(frames):
        if rec.kind == "schema":
            for raw_key, code in rec.data["columns"]:
                key = escape_surrogates(raw_key)
                old = columns.get(key)
                columns[key] = code if old in (None, code) else "s"
        elif rec.kind in ("history", "patch"):
            step = rec.seq - history_head(rec.data)[1]
            if rec.kind == "patch":
                if not any(s == step for _, s in rows[-RECENT_ROWS:]):
                    ordinal += 1
                    rows.append((ordinal, step))
            elif step != last_step or ordinal < 0:
                ordinal += 1
                rows.append((ordinal, step))
                last_step = step
        elif rec.kind == "rewind":
            while rows and rows[-1][1] >= rec.data["step"]:
                rows.pop()
            last_step = rows[-1][1] if rows else None
    return columns, {o for o, _ in rows}


def rows(frames: Callable[[], Iterable[bytes]]) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The column names and an iterator over the surviving rows, in order."""
    columns, alive = _plan(frames)
    names = [*BUILTIN, *columns]

    def generate() -> Iterator[dict[str, Any]]:  # noqa: PLR0912
        schemas: dict[int, list[tuple[str, str]]] = {}
        window: OrderedDict[int, dict[str, Any]] = OrderedDict()
        ordinal, last_step = -1, None
        seg_time = seg_rt = 0.0
        for rec in _records(frames):
            if rec.kind == "schema":
                schemas[rec.data["id"]] = [
                    (escape_surrogates(k), c) for k, c in rec.data["columns"]
                ]
            elif rec.kind == "run":
                seg_time = _number(rec.data.get("time"))
                seg_rt = _number(rec.data.get("runtime"))
            elif rec.kind in ("history", "patch"):
                try:  # ingest refuses rows that do not decode; a store from before it may hold one
                    step, runtime, values = decode_history(rec.data, rec.seq, schemas)
                    values = clean(values)  # lone surrogates escaped, as everywhere in the store
                except (KeyError, ValueError, IndexError, RecursionError, struct.error, Refused):
                    continue
                if rec.kind == "patch":
                    target = next(
                        (r for r in reversed(window.values()) if r["_step"] == step), None
                    )
                    if target is not None:
                        target.update(values)
                        continue
                if rec.kind == "history" and step == last_step and ordinal >= 0:
                    if ordinal in window:
                        window[ordinal].update(values)
                    continue
                ordinal += 1
                last_step = step
                if ordinal in alive:
                    row = {"_step": step, "_runtime": runtime}
                    row["_timestamp"] = seg_time + (runtime - seg_rt)
                    row.update(values)
                    window[ordinal] = row
                    if len(window) > RECENT_ROWS:
                        yield window.popitem(last=False)[1]
            elif rec.kind == "rewind":
                last_step = None
                for o in [o for o, r in window.items() if r["_step"] >= rec.data["step"]]:
                    del window[o]
        yield from window.values()

    return names, generate()


def _number(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else 0.0


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def csv_stream(names: list[str], data: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(names)
    for i, row in enumerate(data):
        writer.writerow([_cell(row.get(n)) for n in names])
        if i % 4096 == 4095:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def jsonl_stream(names: list[str], data: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """One JSON object per line with the ``names`` the row has; NaN and infinities as Python
    writes them (the client reads them back)."""
    chunk: list[str] = []
    for row in data:
        picked = {n: row[n] for n in names if n in row}
        chunk.append(json.dumps(picked, separators=(",", ":"), default=str))
        if len(chunk) >= 4096:
            yield ("\n".join(chunk) + "\n").encode()
            chunk = []
    if chunk:
        yield ("\n".join(chunk) + "\n").encode()


def parquet_stream(
    names: list[str], codes: dict[str, str], data: Iterator[dict[str, Any]]
) -> Iterator[bytes]:
    """Parquet, one row group per ``ROWS_PER_GROUP`` rows, each sent as soon as it is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"_step": pa.int64(), "_runtime": pa.float64(), "_timestamp": pa.float64()}
    for key, code in codes.items():
        types[key] = {"d": pa.float64(), "f": pa.float64(), "q": pa.int64(), "?": pa.bool_()}.get(
            code, pa.string()
        )
    schema = pa.schema([(n, types.get(n, pa.string())) for n in names])
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema)

    def convert(name: str, value: Any) -> Any:
        if value is None:
            return None
        if types.get(name) == pa.string():
            return value if isinstance(value, str) else json.dumps(value)
        if types.get(name) == pa.int64() and isinstance(value, float):
            return None if not math.isfinite(value) else int(value)
        return value

    def flush(batch: list[dict[str, Any]]) -> bytes:
        table = pa.table(
            {n: pa.array([convert(n, r.get(n)) for r in batch], type=types.get(n)) for n in names},
            schema=schema,
        )
        writer.write_table(table)
        return sink.take()

    batch: list[dict[str, Any]] = []
    for row in data:
        batch.append(row)
        if len(batch) >= ROWS_PER_GROUP:
            yield flush(batch)
            batch = []
    if batch:
        yield flush(batch)
    writer.close()
    yield sink.take()


class _Sink(io.RawIOBase):
    """A write-only file that hands over what was written so far, while ``tell()`` keeps counting
    (Parquet's footer records absolute offsets)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts = []
        return out


def column_codes(frames: Callable[[], Iterable[bytes]]) -> dict[str, str]:
    return _plan(frames)[0]
