"""Ingest: decode a batch of run-log frames into what the store writes. No SQL here.

The client posts raw frames exactly as they sit in its run log (see ``fulmen.track.runlog``), after
the 16-byte header. Ingest is idempotent by sequence number: frames at or below the highest
contiguous sequence the server holds (``held``) are skipped, frames from ``held + 1`` on are
applied in order, and a gap ends the batch (the client resends from ``held + 1``). The answer is
the new ``held``. Decoding needs what earlier batches said (schemas, the current row, the summary):
that is ``RunState``, which the store keeps with the run and hands back on the next batch.

Validation: every record is checked before it changes anything (``_validate``): the fields the
store uses must have their types (a RUN's ``group`` a string, ``time`` a finite number, ...), JSON
may nest at most ``MAX_DEPTH`` levels, numbers must fit a float (SQLite integers: int64), and
every string and key is made text that every store engine holds (``storable``: a lone surrogate
escaped, as ``escape_surrogates`` does, and a NUL character too, which PostgreSQL's text
refuses). A record that fails is *refused*: skipped, named in ``Batch.refused`` (sequence, kind,
field, why), and still counted in ``held``, so the client moves on instead of resending it for
ever; the records around it are applied as usual. Only frames that are not frames at all (a bad
CRC, a torn length) end a batch: what came before them is kept, and a batch that starts with one
is refused whole (``BadBatch``, HTTP 400).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from fulmen.server._series import FIELDS, Array
from fulmen.track.runlog import (
    HEADER_SIZE,
    KINDS,
    LEAD_CRC,
    LEAD_MARK,
    SEQ,
    ColumnAggregate,
    Corrupt,
    Record,
    SummaryState,
    decode_history,
    escape_surrogates,
    header,
    history_head,
    read_records,
    read_uvarint,
)

RECENT_ROWS = 256  # rows a PATCH may still reach (late values arrive within moments)
ROWS = "_step"  # the series with one point per row (value: the step), whatever the row holds


MAX_DEPTH = 200  # levels of nested dicts and lists in one JSON value (the client allows 100)
INT64 = (-(2**63), 2**63 - 1)  # what an int bound to a SQLite column may be


class BadBatch(ValueError):
    """The body is not a sequence of well-formed run-log frames (answered with 400)."""


class Refused(ValueError):
    """One record the store cannot apply: ``field`` (``kind.name.key...``) and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


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

    held: int  # the highest contiguous sequence after this batch (refused records included)
    first_seq: int
    # the applied frames, verbatim, as (first seq, last seq, bytes) runs between refused records
    # (kept for export and rebuilds; a refused frame is not kept, so a rebuild never meets it)
    segments: list[tuple[int, int, bytes]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)  # {seq, kind, field, reason}
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
        """Nothing new: no record past what the store held (applied or refused)."""
        return self.held < self.first_seq


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
        self.chunks: dict[str, list[tuple[Array, Array]]] = {}  # (points, their seqs)
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
            for i, key in enumerate((ROWS, *g.keys)):
                points = np.empty((FIELDS, len(seqs)))
                points[:4] = base
                points[4] = base[1] if i == 0 else table[f"f{i - 1}"]
                if i:
                    columns.append(points[4])
                self.chunks.setdefault(key, []).append((points, seqs))
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
            both = np.array(cols, dtype=np.float64)
            self.chunks.setdefault(key, []).append((both[:FIELDS], both[FIELDS]))
        self.slow = {}
        out: dict[str, Array] = {}
        for key, parts in self.chunks.items():
            if len(parts) == 1:
                points, seqs = parts[0]
            else:
                points = np.concatenate([p for p, _ in parts], axis=1)
                seqs = np.concatenate([s for _, s in parts])
            ords = points[0]
            if len(parts) > 1 or (len(ords) > 1 and bool((ords[1:] <= ords[:-1]).any())):
                order = np.lexsort((seqs, ords))  # by row, then log order
                points = points[:, order]
                ords = points[0]
                keep = np.ones(len(ords), dtype=bool)
                keep[:-1] = ords[1:] != ords[:-1]  # the same row twice: the later value wins
                points = points[:, keep]
            out[key] = np.ascontiguousarray(points)
        self.chunks = {}
        return out


def decode_batch(body: bytes, held: int, state: RunState) -> Batch:  # noqa: PLR0915 (one loop)
    """Decode ``body`` (frames) against ``state`` (updated in place); see the module docstring."""
    buf = header() + body
    batch = Batch(held=held, first_seq=held + 1)
    points = _Points(state)
    run: list[int] = []  # [first seq, start offset, end offset] of the applied frames in a row

    def cut(last: int) -> None:  # the applied frames so far are one segment
        nonlocal run
        if run:
            batch.segments.append((run[0], last, buf[run[1] : run[2]]))
            run = []

    def one(item: Record | Corrupt) -> bool:
        """Apply one frame; False: the batch ends before it."""
        nonlocal run
        if isinstance(item, Corrupt):
            whole = _whole_frame(buf, item.offset)
            if whole is None:  # not a frame at all: keep what came before, resend from here
                if batch.held == held:
                    where = item.offset - len(header())
                    raise BadBatch(f"malformed frame at byte {where} of the body: {item.reason}")
                return False
            seq, kind = whole
        else:
            seq, kind = item.seq, item.kind
        if seq <= batch.held:  # already held: idempotent (and not kept twice)
            cut(batch.held)
            return True
        if seq != batch.held + 1:
            return False  # a gap: the client resends from held + 1
        batch.held = seq
        try:
            if isinstance(item, Corrupt):
                raise Refused(kind, f"the body does not decode ({item.reason})")
            _apply(item, state, batch, points)
        except Refused as exc:
            batch.refused.append(
                {"seq": seq, "kind": kind, "field": exc.field, "reason": exc.reason}
            )
            cut(seq - 1)  # the applied frames before it are one segment, those after it the next
            return True
        run = [seq, item.offset, item.end] if not run else [run[0], run[1], item.end]
        return True

    for item in _items(buf):
        if isinstance(item, _Rows):
            if item.last <= batch.held:  # all held already
                cut(batch.held)
                continue
            if item.seq <= batch.held:  # the first of them held already
                cut(batch.held)
                item = item.after(batch.held)  # noqa: PLW2901
            if item.seq == batch.held + 1 and _add_rows(buf, item, state, points):
                batch.held = item.last
                run = [item.seq, item.offset, item.end] if not run else [run[0], run[1], item.end]
                continue
            if not all(one(rec) for rec in item.records(buf)):
                break
        elif not one(item):
            break
    try:
        batch.series += points.ops()
    except (ValueError, TypeError, struct.error) as exc:  # validated before: a bug if it happens
        raise BadBatch(f"history records do not decode: {exc}") from exc
    cut(batch.held)
    return batch


# --- rows in bulk -----------------------------------------------------------------------------


class _Rows(NamedTuple):
    """``n`` consecutive HISTORY frames of one shape, read as one: the same lead byte,
    length, schema and ``seq - step`` (so the same step increment: each is a new row), their
    sequence numbers consecutive and every CRC checked. A run of ``log()`` calls of the same
    numbers is written so; ``_rows_at`` finds them, ``_add_rows`` decodes them with numpy."""

    seq: int  # the first frame's
    offset: int  # where the first frame starts in the buffer
    n: int  # frames
    stride: int  # bytes per frame
    body: int  # where a frame's body (after seq) starts, from the frame's start
    schema: int
    delta: int  # seq - step
    values: int  # where a frame's values start, from the frame's start

    @property
    def last(self) -> int:
        return self.seq + self.n - 1

    @property
    def end(self) -> int:
        return self.offset + self.n * self.stride

    def after(self, held: int) -> _Rows:
        """The frames past ``held`` (some are)."""
        skip = held + 1 - self.seq
        return self._replace(
            seq=self.seq + skip, offset=self.offset + skip * self.stride, n=self.n - skip
        )

    def records(self, buf: bytes) -> Iterator[Record]:
        """One ``Record`` per frame, as ``read_records`` gives them (for the per-record path)."""
        for i in range(self.n):
            start = self.offset + i * self.stride
            data = buf[start + self.body : start + self.stride]
            yield Record(self.seq + i, "history", start, start + self.stride, data)


MIN_ROWS = 8  # frames worth reading as one (fewer: one at a time costs less than finding them)
_HISTORY_LEAD = LEAD_MARK | 3


def _rows_at(buf: bytes, rec: Record) -> _Rows | None:
    """The run of frames shaped as ``rec`` (a HISTORY record, checked) starting with it, when it
    is at least ``MIN_ROWS`` long; the checks run on growing windows, so a short run costs
    little."""
    p, stride = rec.offset, rec.end - rec.offset
    body = stride - len(rec.data)  # lead, length, crc, seq
    total = (len(buf) - p) // stride
    if total < MIN_ROWS or buf[rec.end] != _HISTORY_LEAD:
        return None
    head = body - 8  # lead and length
    if buf[rec.end : rec.end + head] != buf[p : p + head]:
        return None  # the next frame is not the same shape (the usual case when it is not)
    try:
        schema, delta, hpos = history_head(rec.data)
    except (IndexError, ValueError):
        return None  # refused by the per-record path, which says why
    first = np.frombuffer(buf, np.uint8, stride, p)
    count, window = 1, 64
    view = memoryview(buf)
    lead_crc = LEAD_CRC[3]
    while count < total:
        k = min(total - count, window)
        at = p + count * stride
        rows = np.frombuffer(buf, np.uint8, k * stride, at).reshape(k, stride)
        ok = (rows[:, :head] == first[:head]).all(axis=1)
        ok &= (rows[:, body : body + hpos] == first[body : body + hpos]).all(axis=1)
        seqs = rows[:, head + 4 : body].copy().view("<u4").ravel()
        ok &= seqs == np.arange(rec.seq + count, rec.seq + count + k, dtype=np.uint32)
        bad = np.flatnonzero(~ok)
        good = int(bad[0]) if len(bad) else k
        crcs = rows[:good, head : head + 4].copy().view("<u4").ravel().tolist()
        starts = range(at + head + 4, at + head + 4 + good * stride, stride)
        size = stride - head - 4
        found = [zlib.crc32(view[s : s + size], lead_crc) for s in starts]
        if found != crcs:
            good = next(i for i, (a, b) in enumerate(zip(found, crcs, strict=True)) if a != b)
        count += good
        if good < k:
            break
        window *= 8
    if count < MIN_ROWS:
        return None
    return _Rows(rec.seq, p, count, stride, body, schema, delta, body + hpos)


def _add_rows(buf: bytes, rows: _Rows, state: RunState, points: _Points) -> bool:
    """Add ``rows`` to their schema's fast group, as ``_apply`` adds each; False (nothing done)
    when they are not for it (an unknown schema, strings or media, a wrong size): the
    per-record path then applies or refuses each."""
    if rows.schema not in state.schemas:
        return False
    group = points.group(rows.schema)
    if group is None or rows.stride - rows.values != group.size:
        return False
    table = np.frombuffer(buf, np.uint8, rows.n * rows.stride, rows.offset)
    values = table.reshape(rows.n, rows.stride)[:, rows.values :]
    step = rows.seq - rows.delta
    first = _ordinal(state, step, patch=False)
    # every frame after the first is a new row: its step is one more than the one before
    ords = range(state.next_ordinal, state.next_ordinal + rows.n - 1)
    state.next_ordinal += rows.n - 1
    state.last_step = step + rows.n - 1
    _remember(state, range(step + 1, step + rows.n), ords)
    group.ords.append(first)
    group.ords.extend(ords)
    group.steps.extend(range(step, step + rows.n))
    group.seqs.extend(range(rows.seq, rows.seq + rows.n))
    group.raw.append(values.tobytes())
    return True


def _remember(state: RunState, steps: range, ords: range) -> None:
    """``state.recent`` as ``_ordinal`` leaves it after a new row for each of ``steps``: the
    list grows to ``2 * RECENT_ROWS`` and then drops its first ``RECENT_ROWS``."""
    if len(steps) == 0:
        return
    total = len(state.recent) + len(steps)
    if total <= 2 * RECENT_ROWS:
        state.recent.extend(zip(steps, ords, strict=True))
        return
    keep = RECENT_ROWS + 1 + (total - 2 * RECENT_ROWS - 1) % RECENT_ROWS
    tail = min(keep, len(steps))
    older = state.recent[len(state.recent) - (keep - tail) :] if keep > tail else []
    state.recent = older + list(zip(steps[-tail:], ords[-tail:], strict=True))


MAX_RESTARTS = 4  # frames too deep to parse, read past in one batch (each costs a copy of it)


def _items(buf: bytes) -> Iterator[Record | Corrupt | _Rows]:
    """``read_records(buf)``, with runs of same-shaped HISTORY frames as one ``_Rows``, and
    surviving a frame whose JSON nests too deep for Python's parser (a RecursionError, which
    ends that generator): it is reported as a ``Corrupt`` whose reason starts with "nested", and
    reading resumes after it, ``MAX_RESTARTS`` times per batch; after that nothing more is read
    (the client resends the rest in its next batch)."""
    pos = HEADER_SIZE
    restarts = 0
    while True:
        try:
            for item in read_records(buf, pos):
                pos = item.end
                if isinstance(item, Record) and item.kind == "history":
                    rows = _rows_at(buf, item)
                    if rows is not None:
                        pos = rows.end
                        yield rows
                        break  # read on after them
                yield item
            else:
                return
            continue
        except (RecursionError, struct.error) as exc:  # struct.error: too short for a seq
            why = type(exc).__name__
        end = _frame_end(buf, pos)
        yield Corrupt(pos, end or len(buf), f"nested too deep to parse, or too short ({why})")
        if end is None or restarts == MAX_RESTARTS:
            return
        restarts += 1
        pos = end


def _frame_end(buf: bytes, offset: int) -> int | None:
    """Where the frame at ``offset`` ends, when it is whole."""
    try:
        n, start = read_uvarint(buf, offset + 1)
    except (IndexError, ValueError):
        return None
    end = start + 4 + n
    return end if end <= len(buf) else None


def _whole_frame(buf: bytes, offset: int) -> tuple[int, str] | None:
    """(seq, kind name) of the frame at ``offset`` when it is whole and its CRC checks (its body
    is what does not decode), else None."""
    try:
        lead = buf[offset]
        n, start = read_uvarint(buf, offset + 1)
        (crc,) = struct.unpack_from("<I", buf, start)
        body = memoryview(buf)[start + 4 : start + 4 + n]
        if lead & 0xF0 != LEAD_MARK or len(body) != n or n < SEQ.size:
            return None
        if zlib.crc32(body, LEAD_CRC[lead & 0x0F]) != crc:
            return None
        (seq,) = SEQ.unpack_from(body, 0)
    except (IndexError, ValueError, struct.error):
        return None
    return int(seq), KINDS.get(lead & 0x0F, f"kind-{lead & 0x0F}")


# --- validation -------------------------------------------------------------------------------

_NUM, _INT, _STR, _BOOL = "a number", "an integer", "a string", "true or false"
_LIST, _DICT, _STRS = "a list", "an object", "a list of strings"
_VERSION = "a string or an integer"
# JSON kinds: the fields the store relies on and what each must be (every one may be absent or null)
_FIELDS: dict[str, dict[str, str]] = {
    "run": {"id": _STR, "name": _STR, "group": _STR, "job_type": _STR, "notes": _STR,
            "tags": _STRS, "resumed": _BOOL, "time": _NUM, "runtime": _NUM},
    "exit": {"state": _STR, "runtime": _NUM, "exit_code": _INT},
    "file": {"path": _STR, "type": _STR, "size": _INT},
    "artifact": {"name": _STR, "type": _STR, "version": _VERSION, "digest": _STR, "aliases": _STRS,
                 "used": _BOOL, "metadata": _DICT},
    "metric": {"name": _STR, "summary": _STRS, "step_metric": _STR},
    "summary": {"update": _DICT, "remove": _STRS},
    "rewind": {"step": _INT},
    "schema": {"id": _INT, "columns": _LIST},
}  # fmt: skip
_REQUIRED = {"file": ("path",), "artifact": ("name",), "metric": ("name",), "rewind": ("step",),
             "schema": ("id", "columns")}  # fmt: skip
_CODES = frozenset("dfq?sj")


def storable(text: str) -> str:
    """``text`` as every store engine holds it: valid Unicode (``escape_surrogates``) without NUL
    (PostgreSQL's text has none), each NUL written as the four characters ``\\x00``, as a
    surrogate of a byte is."""
    text = escape_surrogates(text)
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def clean(value: Any, depth: int = 0) -> Any:
    """A JSON value the store can hold: strings and keys ``storable``; ``Refused``
    (its field the path of keys to the culprit) for nesting past ``MAX_DEPTH`` or an int beyond
    the float range. NaN and infinities stay (``json_safe`` writes them as null)."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 1023:  # float(value) would overflow
            raise Refused("", f"an integer of {value.bit_length()} bits, beyond the float range")
        return value
    if not isinstance(value, (dict, list)):
        return value  # float, bool, None: what JSON parses to
    if depth >= MAX_DEPTH:
        raise Refused("", f"nests more than {MAX_DEPTH} levels deep (the limit)")
    key: Any = None
    try:
        if isinstance(value, list):
            out: Any = []
            for key, item in enumerate(value):  # noqa: B007 (key: named on failure)
                out.append(clean(item, depth + 1))
            return out
        out = {}
        for key, item in value.items():
            out[storable(str(key))] = clean(item, depth + 1)
        return out
    except Refused as exc:
        inner = f"{key}.{exc.field}" if exc.field else str(key)
        raise Refused(storable(inner)[:200], exc.reason) from None


def _is(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind == _NUM:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (math.isfinite(value))
        )
    if kind == _INT:
        return type(value) is int and INT64[0] <= value <= INT64[1]
    if kind == _STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == _VERSION:
        return isinstance(value, str) or _is(value, _INT)
    expected = {_STR: str, _BOOL: bool, _LIST: list, _DICT: dict}[kind]
    return isinstance(value, expected)


def _validate(kind: str, data: Any) -> Any:
    """The JSON record ``data`` as the store applies it (``clean``), or ``Refused`` naming the
    field that is wrong."""
    if not isinstance(data, dict):
        raise Refused(kind, f"the record is {type(data).__name__}, not a JSON object")
    try:
        data = clean(data)
    except Refused as exc:
        raise Refused(f"{kind}.{exc.field}", exc.reason) from None
    for name, expected in _FIELDS.get(kind, {}).items():
        value = data.get(name)
        if value is None and name in _REQUIRED.get(kind, ()):
            raise Refused(f"{kind}.{name}", "missing")
        if not _is(value, expected):
            shown = json.dumps(value, default=str)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise Refused(f"{kind}.{name}", f"must be {expected}, not {shown}")
    if kind == "schema":
        columns = data["columns"]
        ok = all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and c[1] in _CODES
            for c in columns
        )
        if not ok or not 0 <= data["id"] < 2**32:
            raise Refused("schema.columns", "must be [[key, code], ...] with code one of dfq?sj")
    if kind == "file" and (data["size"] or 0) < 0:
        raise Refused("file.size", f"must be at least 0, not {data['size']}")
    return data


def _row_values(values: dict[str, Any]) -> dict[str, Any]:
    """A decoded row's values as the store keeps them (``clean``), or ``Refused`` naming the key."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        try:
            out[key] = clean(value, 1)
        except Refused as exc:
            field = f"{key}.{exc.field}" if exc.field else key
            raise Refused(f"history.{field}", exc.reason) from None
    return out


def _apply(rec: Record, state: RunState, batch: Batch, points: _Points) -> None:  # noqa: PLR0915, PLR0912
    kind, data = rec.kind, rec.data
    if kind.startswith("kind-"):
        return  # a kind from a newer writer: kept (in the segment), not applied
    if kind not in ("history", "patch", "console"):
        data = _validate(kind, data)
    if kind == "history":
        try:
            schema_id, delta, pos = history_head(data)
        except (IndexError, ValueError) as exc:
            raise Refused("history", f"the record's head does not decode ({exc})") from None
        if schema_id not in state.schemas:
            raise Refused("history", f"schema {schema_id} was never declared")
        group = points.group(schema_id)
        if group is not None:
            if len(data) != pos + group.size:
                raise Refused(
                    "history", f"{len(data) - pos} value bytes, the schema has {group.size}"
                )
            step = rec.seq - delta
            group.ords.append(_ordinal(state, step, patch=False))
            group.steps.append(step)
            group.seqs.append(rec.seq)
            group.raw.append(data[pos : pos + group.size])
            return
    if kind in ("history", "patch"):  # PATCH, or a row with strings or media: one at a time
        try:
            step, runtime, values = decode_history(data, rec.seq, state.schemas)
        except (KeyError, ValueError, IndexError, struct.error, RecursionError) as exc:
            raise Refused(kind, f"the row does not decode ({type(exc).__name__}: {exc})") from None
        values = _row_values(values)
        points.flush_groups()
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
        state.schemas[int(data["id"])] = [(k, c) for k, c in data["columns"]]
    elif kind == "rewind":
        batch.series += points.ops()
        step = int(data["step"])
        batch.series.append(("rewind", step))
        state.recent = [(s, o) for s, o in state.recent if s < step]
        state.last_step = state.recent[-1][0] if state.recent else None
    elif kind == "run":
        state.segment_time = float(data.get("time") or 0.0)
        state.segment_runtime = float(data.get("runtime") or 0.0)
        batch.starts.append(data)
        batch.exit = None
    elif kind == "config":
        batch.config.update(data)
    elif kind == "summary":
        for key, value in (data.get("update") or {}).items():
            state.summary.set(key, value)
        for key in data.get("remove") or []:
            state.summary.remove(key)
    elif kind == "metric":
        batch.metrics.append(data)
        state.summary.define(str(data["name"]), list(data.get("summary") or []))
    elif kind == "file":
        batch.files.append(data)
    elif kind == "artifact":
        batch.artifacts.append(data)
    elif kind == "console":
        batch.console.append((rec.seq, storable(data["stream"]), storable(data["text"])))
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
