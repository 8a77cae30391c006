"""Ingest: decode a batch of run-log frames into what the store writes. No SQL here.

The client posts raw frames exactly as they sit in its run log (see ``fulmen.track.runlog``), after
the 16-byte header. Ingest is idempotent by sequence number: frames at or below the highest
contiguous sequence the server holds (``held``) are skipped, frames from ``held + 1`` on are
applied in order, and a gap ends the batch (the client resends from ``held + 1``). The answer is
the new ``held``. Decoding needs what earlier batches said (schemas, the current row, the summary):
that is ``RunState``, which the store keeps with the run and hands back on the next batch.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fulmen.server._series import FIELDS, Array
from fulmen.track.runlog import (
    ColumnAggregate,
    Corrupt,
    Record,
    SummaryState,
    decode_history,
    header,
    history_head,
    read_records,
    unicode_safe,
)

RECENT_ROWS = 256  # rows a PATCH may still reach (late values arrive within moments)
ROWS = "_step"  # the series with one point per row (value: the step), whatever the row holds


class BadBatch(ValueError):
    """The body is not a sequence of well-formed run-log frames (answered with 400)."""


_SUMMARY_KEYS = ("last", "overrides", "removed", "modes", "agg")  # SummaryState.to_dict's


@dataclass
class RunState:
    """What decoding a run's next batch needs from the batches before it (JSON in the store).

    The summary is the writer's own ``SummaryState`` (``fulmen.track.runlog``), so the server
    computes the summary the run computed; its fields sit at the top level of the JSON."""

    schemas: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    segment_time: float = 0.0
    segment_runtime: float = 0.0
    next_ordinal: int = 0
    last_step: int | None = None
    recent: list[tuple[int, int]] = field(default_factory=list)  # (step, ordinal), newest last
    runtime: float = 0.0
    summary: SummaryState = field(default_factory=SummaryState)

    def to_json(self) -> str:
        data = {k: v for k, v in self.__dict__.items() if k != "summary"}
        data["schemas"] = {str(k): v for k, v in self.schemas.items()}
        data.update(self.summary.to_dict())
        return json.dumps(data, default=str)

    @classmethod
    def from_json(cls, text: str | None) -> RunState:
        if not text:
            return cls()
        data = json.loads(text)
        data["schemas"] = {int(k): [tuple(c) for c in v] for k, v in data["schemas"].items()}
        data["recent"] = [tuple(r) for r in data["recent"]]
        summary = SummaryState.from_dict({k: data.pop(k, None) for k in _SUMMARY_KEYS})
        return cls(**data, summary=summary)

    def observe_many(self, keys: list[str], columns: list[Array], last: list[Any]) -> None:
        """The summary's ``observe`` for many rows at once: ``columns[i]`` holds every value of
        ``keys[i]`` (as floats), ``last`` the last row's values as logged."""
        aggregates: dict[str, ColumnAggregate] = {}
        if self.summary.aggregating:
            for key, values in zip(keys, columns, strict=True):
                if self.summary.modes_of(key) is None:
                    continue
                first = float(values[0]) if len(values) else None
                finite = values[~np.isnan(values)]
                if len(finite):
                    lo, hi, total = float(finite.min()), float(finite.max()), float(finite.sum())
                    aggregates[key] = (first, lo, hi, total, len(finite))
                else:
                    aggregates[key] = (first, 0.0, 0.0, 0.0, 0)
        self.summary.observe_columns(dict(zip(keys, last, strict=True)), aggregates)


@dataclass
class Batch:
    """What one batch adds, in the order the store must apply it."""

    held: int  # the highest contiguous sequence after this batch
    frames: bytes  # the accepted frames, verbatim (kept for export and rebuilds)
    first_seq: int
    starts: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    # ("points", {key: (FIELDS, n) array}), ("values", [(key, ordinal, step, runtime,
    # timestamp, JSON text), ...]) for strings, media and histograms, and ("rewind", step), in
    # log order
    series: list[tuple[str, Any]] = field(default_factory=list)
    console: list[tuple[int, str, str]] = field(default_factory=list)
    stats: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    exit: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return not self.frames


_DTYPES = {"d": "<f8", "f": "<f4", "q": "<i8", "?": "?"}


class _Group:
    """HISTORY records of one schema whose columns are all fixed-size, decoded together by numpy
    when flushed (the common case: a row of numbers costs a few varint reads and list appends)."""

    def __init__(self, columns: list[tuple[str, str]]) -> None:
        self.keys = [k for k, _ in columns]
        fields = [("runtime_ms", "<u4")]  # the struct's first member (see runlog's grammar)
        fields += [(f"f{i}", _DTYPES[c]) for i, (_, c) in enumerate(columns)]
        self.dtype = np.dtype(fields)
        self.size = self.dtype.itemsize
        self.ords: list[int] = []
        self.steps: list[int] = []
        self.seqs: list[int] = []
        self.raw: list[bytes] = []


class _Points:
    """The points of a batch's rows, per metric: fast groups and a slow path (PATCH, rows with
    strings or media), combined in log order when flushed."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.groups: dict[int, _Group] = {}
        self.slow: dict[str, list[list[float]]] = {}
        self.chunks: dict[str, list[Array]] = {}
        self.other: list[tuple[str, int, int, float, float, str]] = []

    def group(self, schema_id: int) -> _Group | None:
        g = self.groups.get(schema_id)
        if g is None:
            columns = self.state.schemas[schema_id]
            if any(c not in _DTYPES for _, c in columns):
                return None
            g = self.groups[schema_id] = _Group(columns)
        return g

    def add(self, key: str, row: tuple[int, int, float, float, float, int]) -> None:
        """One point (ordinal, step, runtime, timestamp, value, seq) on the slow path."""
        cols = self.slow.get(key)
        if cols is None:
            cols = self.slow[key] = [[], [], [], [], [], []]
        for col, v in zip(cols, row, strict=True):
            col.append(v)

    def flush_groups(self) -> None:
        """Decode the fast groups into arrays and update the summary, in log order."""
        state = self.state
        for g in sorted(self.groups.values(), key=lambda g: g.seqs[-1] if g.seqs else 0):
            if not g.seqs:
                continue
            table = np.frombuffer(b"".join(g.raw), dtype=g.dtype)
            runtime = table["runtime_ms"].astype(np.float64) / 1e3
            base = np.stack(
                [
                    np.array(g.ords, dtype=np.float64),
                    np.array(g.steps, dtype=np.float64),
                    runtime,
                    state.segment_time + (runtime - state.segment_runtime),
                ]
            )
            seqs = np.array(g.seqs, dtype=np.float64)
            state.runtime = max(state.runtime, float(runtime.max()))
            columns = []
            self.chunks.setdefault(ROWS, []).append(np.vstack([base, base[1], seqs]))
            for i, key in enumerate(g.keys):
                values = table[f"f{i}"].astype(np.float64)
                columns.append(values)
                self.chunks.setdefault(key, []).append(np.vstack([base, values, seqs]))
            state.observe_many(g.keys, columns, table[-1].tolist()[1:])
        self.groups = {}

    def ops(self) -> list[tuple[str, Any]]:
        """What was collected since the last call, as ``Batch.series`` operations."""
        out: list[tuple[str, Any]] = []
        points = self.flush()
        if points:
            out.append(("points", points))
        if self.other:
            out.append(("values", self.other))
            self.other = []
        return out

    def flush(self) -> dict[str, Array]:
        self.flush_groups()
        for key, cols in self.slow.items():
            self.chunks.setdefault(key, []).append(np.array(cols, dtype=np.float64))
        self.slow = {}
        out: dict[str, Array] = {}
        for key, parts in self.chunks.items():
            both = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            ords = both[0]
            if len(parts) > 1 or (len(ords) > 1 and bool((ords[1:] <= ords[:-1]).any())):
                both = both[:, np.lexsort((both[5], ords))]  # by row, then log order
                ords = both[0]
                keep = np.ones(len(ords), dtype=bool)
                keep[:-1] = ords[1:] != ords[:-1]  # the same row twice: the later value wins
                both = both[:, keep]
            out[key] = np.ascontiguousarray(both[:FIELDS])
        self.chunks = {}
        return out


def decode_batch(body: bytes, held: int, state: RunState) -> Batch:
    """Decode ``body`` (frames) against ``state`` (updated in place); see the module docstring."""
    buf = header() + body
    first = held + 1
    start_offset: int | None = None
    end_offset = 0
    batch = Batch(held=held, frames=b"", first_seq=first)
    points = _Points(state)
    for item in read_records(buf):
        if isinstance(item, Corrupt):
            raise BadBatch(
                f"malformed frame at byte {item.offset - len(header())} of the body: {item.reason}"
            )
        rec: Record = item
        if rec.seq <= batch.held:
            continue  # already held: idempotent
        if rec.seq != batch.held + 1:
            break  # a gap: the client resends from held + 1
        if start_offset is None:
            start_offset = rec.offset
        end_offset = rec.end
        batch.held = rec.seq
        try:
            _apply(rec, state, batch, points)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, struct.error) as exc:
            raise BadBatch(f"record {rec.seq} ({rec.kind}) does not decode: {exc}") from exc
    try:
        batch.series += points.ops()
    except (ValueError, TypeError, struct.error) as exc:
        raise BadBatch(f"history records do not decode: {exc}") from exc
    if start_offset is not None:
        batch.frames = buf[start_offset:end_offset]
    return batch


# JSON kinds: the fields the store relies on, and the types they must have (None: may be absent)
_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "run": {"time": (int, float, type(None)), "runtime": (int, float, type(None)),
            "tags": (list, tuple, type(None)), "name": (str, type(None))},
    "exit": {"state": (str, type(None)), "runtime": (int, float, type(None))},
    "file": {"path": (str,), "size": (int, type(None))},
    "artifact": {"name": (str,), "digest": (str, type(None)), "aliases": (list, type(None))},
    "metric": {"name": (str,)},
    "summary": {"update": (dict, type(None)), "remove": (list, type(None))},
    "rewind": {"step": (int,)},
    "schema": {"id": (int,), "columns": (list,)},
}  # fmt: skip


def _check(kind: str, data: Any) -> None:
    """A JSON record the store can apply, or a ValueError that names what is wrong."""
    if kind in ("history", "patch", "console") or kind.startswith("kind-"):
        return
    if not isinstance(data, dict):
        raise ValueError(f"a {kind} record must be a JSON object")
    for name, types in _FIELDS.get(kind, {}).items():
        value = data.get(name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"{kind}.{name} is {type(value).__name__}")


def _apply(rec: Record, state: RunState, batch: Batch, points: _Points) -> None:  # noqa: PLR0915, PLR0912
    kind, data = rec.kind, rec.data
    if isinstance(data, (dict, list)):
        data = unicode_safe(data)  # lone surrogates escaped: the store needs valid Unicode
    _check(kind, data)
    if kind == "history":
        schema_id, delta, pos = history_head(data)
        group = points.group(schema_id)
        if group is not None:
            if len(data) != pos + group.size:
                raise ValueError(f"{len(data) - pos} value bytes, the schema has {group.size}")
            step = rec.seq - delta
            group.ords.append(_ordinal(state, step, patch=False))
            group.steps.append(step)
            group.seqs.append(rec.seq)
            group.raw.append(data[pos : pos + group.size])
            return
    if kind in ("history", "patch"):  # PATCH, or a row with strings or media: one at a time
        points.flush_groups()
        step, runtime, values = decode_history(data, rec.seq, state.schemas)
        values = unicode_safe(values)
        timestamp = state.segment_time + (runtime - state.segment_runtime)
        state.runtime = max(state.runtime, runtime)
        ordinal = _ordinal(state, step, patch=kind == "patch")
        points.add(ROWS, (ordinal, step, runtime, timestamp, float(step), rec.seq))
        for key, value in values.items():
            if isinstance(value, (int, float)):  # bool too: charts show it as 0/1
                points.add(key, (ordinal, step, runtime, timestamp, float(value), rec.seq))
            else:  # a string, media, a histogram: kept whole, by row
                text = json.dumps(value, separators=(",", ":"), default=str)
                points.other.append((key, ordinal, step, runtime, timestamp, text))
        state.summary.observe(values)
        return
    if kind in ("schema", "rewind", "run", "summary", "metric"):
        points.flush_groups()  # these change how the rows before and after them are read
    if kind == "schema":
        state.schemas[int(data["id"])] = [(str(k), str(c)) for k, c in data["columns"]]
    elif kind == "rewind":
        batch.series += points.ops()
        step = int(data["step"])
        batch.series.append(("rewind", step))
        state.recent = [(s, o) for s, o in state.recent if s < step]
        state.last_step = state.recent[-1][0] if state.recent else None
    elif kind == "run":
        state.segment_time = float(data.get("time", 0.0))
        state.segment_runtime = float(data.get("runtime", 0.0))
        batch.starts.append(data)
        batch.exit = None
    elif kind == "config":
        batch.config.update(data)
    elif kind == "summary":
        for key, value in data.get("update", {}).items():
            state.summary.set(key, value)
        for key in data.get("remove", []):
            state.summary.remove(key)
    elif kind == "metric":
        batch.metrics.append(data)
        state.summary.define(str(data["name"]), list(data.get("summary") or []))
    elif kind == "file":
        batch.files.append(data)
    elif kind == "artifact":
        batch.artifacts.append(data)
    elif kind == "console":
        batch.console.append((rec.seq, data["stream"], data["text"]))
    elif kind == "stats":
        batch.stats.append((rec.seq, data))
    elif kind == "exit":
        batch.exit = data


def _ordinal(state: RunState, step: int, *, patch: bool) -> int:
    """The row a HISTORY (or PATCH) record at ``step`` belongs to; a new row when none."""
    if patch:
        for s, o in reversed(state.recent):
            if s == step:
                return o
    elif state.last_step == step and state.next_ordinal > 0:
        return state.next_ordinal - 1  # another part of the same row (commit=False, step=)
    ordinal = state.next_ordinal
    state.next_ordinal += 1
    state.last_step = step
    state.recent.append((step, ordinal))
    if len(state.recent) > RECENT_ROWS * 2:
        del state.recent[:RECENT_ROWS]
    return ordinal


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON (and SQLite's JSON functions) have neither."""  # noqa: E501
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
