"""Scalar history as numpy arrays: pieces, their precomputed buckets, and chart bucketing.

No SQL here (the store keeps the bytes); this module turns points into bytes and back.

A series is the history of one metric of one run, in row order. Each point has five float64 fields:
the row's ordinal (its position in the run's history, shared by every metric logged in that row),
``_step``, ``_runtime``, ``_timestamp`` and the value. Points are kept in pieces of ``PIECE``
points;
piece ``k`` holds points ``k*PIECE`` to ``(k+1)*PIECE - 1``. Next to each piece the store keeps its
precomputed buckets at three resolutions: groups of 16 points (level 1), of 256 (level 2) and the
whole piece (level 3). A bucket (an "entry") is ``ENTRY_FIELDS`` float64s. The store's overview
(blocks of many full pieces) holds levels 2 and 3 and level 4, groups of 512 points (pairs of
level-2 entries, ``coarser``): the level a chart of 1,000 buckets over 1M points reads, half the
bytes of level 2. (Level numbers name a group size, ``LEVEL_SIZES``; 4 came last.)

A chart query for ``n`` buckets picks, per series, the coarsest level whose groups hold at most the
points one requested bucket would hold, so it reads about ``n`` to ``16 n`` entries whatever the
number of points: its cost follows the buckets, not the points. A narrower step range (a zoom) reads
only the pieces that overlap it, at a finer level. Entries are placed in the requested bucket of
their first point, so a bucket edge is exact to within one precomputed group (which holds at most
the
points of one requested bucket); min and max of every point are kept, so no spike is lost.

Stored points (``pack_points``): a piece used to be its ``(FIELDS, n)`` float64s as they are (40
bytes a point, the "raw" format, still read). It is now the dense format: ``POINTS_MAGIC`` (8
bytes that read as a NaN float64, which no raw piece starts with: its first ordinal), ``n`` (uint32
little-endian), one code per field (uint8), 3 bytes of padding, then each field's data in field
order, coded as the first of these that gives back its exact bits:

- ``PROGRESSION``: first value and difference (2 float64s): ordinals and steps, usually;
- ``PLUS_RUNTIME`` (the timestamp only): one float64 ``c``, each timestamp ``c + runtime``, as
  ingest computes it (``segment time + (runtime - segment runtime)``, one segment);
- ``MILLIS``: uint32 milliseconds, the value ``ms / 1000`` (the run log's ``_runtime``);
- ``FLOAT32``: float32s that widen to the same float64 (a float32 tensor's values);
- ``RAW``: float64s.

So a point of a run logged row by row is 8 to 12 bytes (runtime and value), not 40. Every code is
checked bit for bit against the field when written (NaN, infinities and -0.0 included), so
unpacking gives back exactly what was packed.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PIECE = 4096
LEVEL_SIZES = (1, 16, 256, PIECE, 512)  # points per entry at levels 0 (raw) .. 4
FIELDS = 5  # ordinal, step, runtime, timestamp, value
ORD, STEP, RUNTIME, TIMESTAMP, VALUE = range(FIELDS)
# entry fields
(
    E_STEP,
    E_RUNTIME,
    E_TIMESTAMP,
    E_ORD_FIRST,
    E_ORD_LAST,
    E_FIRST,
    E_MIN,
    E_MAX,
    E_LAST,
    E_COUNT,
) = range(10)
ENTRY_FIELDS = 10
AXES = {"_step": E_STEP, "_runtime": E_RUNTIME, "_timestamp": E_TIMESTAMP}

Array = npt.NDArray[np.float64]


POINTS_MAGIC = b"FLMNpt\xf2\xff"  # as a little-endian float64: a NaN (never a first ordinal)
RAW, PROGRESSION, PLUS_RUNTIME, MILLIS, FLOAT32 = range(5)  # a field's code in the dense format
_HEADER = struct.Struct(f"<8sI{FIELDS}B3x")


def _same(a: Array, b: Array) -> bool:
    """Bit for bit (NaN equal to the same NaN, -0.0 not equal to 0.0)."""
    return bool(np.array_equal(a.view(np.int64), b.view(np.int64)))


def _encode(field: int, x: Array, runtime: Array) -> tuple[int, bytes]:
    n = len(x)
    with np.errstate(all="ignore"):  # an inf or NaN makes a code fail its check, not warn
        first = x[0] if n else 0.0
        delta = x[1] - x[0] if n > 1 else 0.0
        if _same(first + delta * np.arange(n, dtype=np.float64), x):
            return PROGRESSION, struct.pack("<2d", first, delta)
        if field == TIMESTAMP:
            c = x[0] - runtime[0]
            if _same(c + runtime, x):
                return PLUS_RUNTIME, struct.pack("<d", c)
        ms = np.rint(x * 1000.0)
        if bool(((ms >= 0) & (ms < 2**32)).all()):
            ms32 = ms.astype("<u4")
            if _same(ms32 / 1000.0, x):
                return MILLIS, ms32.tobytes()
        f32 = x.astype("<f4")
        if _same(f32.astype(np.float64), x):
            return FLOAT32, f32.tobytes()
    return RAW, x.astype("<f8").tobytes()


def pack_points(points: Array) -> bytes:
    """(FIELDS, n) -> bytes, in the dense format (module docstring)."""
    points = np.asarray(points, dtype=np.float64)
    n = points.shape[1]
    codes, parts = [], []
    for field in range(FIELDS):
        code, data = _encode(field, np.ascontiguousarray(points[field]), points[RUNTIME])
        codes.append(code)
        parts.append(data)
    return _HEADER.pack(POINTS_MAGIC, n, *codes) + b"".join(parts)


def unpack_points(data: bytes) -> Array:
    """bytes (the dense format, or the raw one of older stores) -> (FIELDS, n)."""
    if data[:8] != POINTS_MAGIC:
        return np.frombuffer(data, dtype="<f8").reshape(FIELDS, -1)
    _, n, *codes = _HEADER.unpack_from(data)
    out = np.empty((FIELDS, n))
    at = _HEADER.size
    # in field order: the runtime is decoded before the timestamp that may be coded from it
    for field, code in enumerate(codes):
        if code == PROGRESSION:
            first, delta = struct.unpack_from("<2d", data, at)
            out[field] = first + delta * np.arange(n, dtype=np.float64)
            at += 16
        elif code == PLUS_RUNTIME:
            (c,) = struct.unpack_from("<d", data, at)
            out[field] = c + out[RUNTIME]
            at += 8
        elif code == MILLIS:
            out[field] = np.frombuffer(data, "<u4", n, at) / 1000.0
            at += 4 * n
        elif code == FLOAT32:
            out[field] = np.frombuffer(data, "<f4", n, at)
            at += 4 * n
        elif code == RAW:
            out[field] = np.frombuffer(data, "<f8", n, at)
            at += 8 * n
        else:
            raise ValueError(f"stored points: field {field} has code {code}, not one of 0-4")
    if at != len(data):
        raise ValueError(f"stored points: {len(data)} bytes, the header describes {at}")
    return out


def pack_entries(entries: Array) -> bytes:
    return np.ascontiguousarray(entries, dtype="<f8").tobytes()


def unpack_entries(data: bytes) -> Array:
    return np.frombuffer(data, dtype="<f8").reshape(-1, ENTRY_FIELDS)


def entries_of(points: Array, group: int) -> Array:
    """Aggregate consecutive groups of ``group`` points into entries, shape (groups, ENTRY_FIELDS)."""  # noqa: E501
    n = points.shape[1]
    if n == 0:
        return np.empty((0, ENTRY_FIELDS))
    starts = np.arange(0, n, group)
    ends = np.minimum(starts + group, n) - 1
    values = points[VALUE]
    out = np.empty((len(starts), ENTRY_FIELDS))
    out[:, E_STEP] = points[STEP, starts]
    out[:, E_RUNTIME] = points[RUNTIME, starts]
    out[:, E_TIMESTAMP] = points[TIMESTAMP, starts]
    out[:, E_ORD_FIRST] = points[ORD, starts]
    out[:, E_ORD_LAST] = points[ORD, ends]
    out[:, E_FIRST] = values[starts]
    out[:, E_LAST] = values[ends]
    if group == 1:
        out[:, E_MIN] = values
        out[:, E_MAX] = values
        out[:, E_COUNT] = 1.0
    else:
        # fmin/fmax skip NaN, so one NaN does not hide a group's range
        out[:, E_MIN] = np.fmin.reduceat(values, starts)
        out[:, E_MAX] = np.fmax.reduceat(values, starts)
        out[:, E_COUNT] = (ends - starts + 1).astype(np.float64)
    return out


@dataclass(frozen=True)
class PieceSummary:
    """What the store keeps next to one piece's points."""

    n: int
    ord_first: float
    step_min: float
    step_max: float
    runtime_min: float
    runtime_max: float
    time_min: float
    time_max: float
    levels: tuple[bytes, bytes, bytes]  # packed entries at levels 1, 2, 3


def summarize(points: Array) -> PieceSummary:
    return PieceSummary(
        n=points.shape[1],
        ord_first=float(points[ORD, 0]),
        step_min=float(points[STEP].min()),
        step_max=float(points[STEP].max()),
        runtime_min=float(points[RUNTIME].min()),
        runtime_max=float(points[RUNTIME].max()),
        time_min=float(points[TIMESTAMP].min()),
        time_max=float(points[TIMESTAMP].max()),
        levels=(
            pack_entries(entries_of(points, LEVEL_SIZES[1])),
            pack_entries(entries_of(points, LEVEL_SIZES[2])),
            pack_entries(entries_of(points, LEVEL_SIZES[3])),
        ),
    )


def level_for(points: int, buckets: int) -> int:
    """The coarsest level whose entries hold no more points than one requested bucket."""
    per_bucket = points / max(buckets, 1)
    fitting = [level for level, size in enumerate(LEVEL_SIZES) if size <= per_bucket]
    return max(fitting, key=lambda level: LEVEL_SIZES[level], default=0)


def coarser(entries: Array, factor: int) -> Array:
    """Entries of ``factor`` consecutive ``entries`` each (the last: what is left), as
    ``entries_of`` makes them from the points: the first's x and first value, the last's last
    ordinal and value, min and max of all (NaN skipped), the counts added."""
    n = len(entries)
    if n == 0:
        return np.empty((0, ENTRY_FIELDS))
    starts = np.arange(0, n, factor)
    ends = np.minimum(starts + factor, n) - 1
    out: Array = entries[starts].copy()
    out[:, E_ORD_LAST] = entries[ends, E_ORD_LAST]
    out[:, E_LAST] = entries[ends, E_LAST]
    out[:, E_MIN] = np.fmin.reduceat(entries[:, E_MIN], starts)
    out[:, E_MAX] = np.fmax.reduceat(entries[:, E_MAX], starts)
    out[:, E_COUNT] = np.add.reduceat(entries[:, E_COUNT], starts)
    return out


def merge_points(old: Array, new: Array) -> Array:
    """``old`` then ``new`` ordered by row ordinal; where both have a row, ``new`` wins."""
    both = np.concatenate([old, new], axis=1)
    order = np.argsort(both[ORD], kind="stable")
    both = both[:, order]
    ords = both[ORD]
    keep = np.ones(len(ords), dtype=bool)
    keep[:-1] = ords[1:] != ords[:-1]  # the later of two equal ordinals is the newer value
    return np.ascontiguousarray(both[:, keep])


def rewind_cut(steps: Array, step: float) -> int:
    """How many leading points survive a REWIND to ``step`` (trailing points >= step go)."""
    below = np.flatnonzero(steps < step)
    return 0 if len(below) == 0 else int(below[-1]) + 1


def x_from_step_metric(entries: Array, x_entries: Array) -> Array:
    """The x of each entry on a custom axis: the step metric's value at (or before) its first row.

    ``x_entries`` are the step metric's own entries; each gives its value at its first and last
    row. Entries before the metric's first row get NaN (and are left out of the chart).
    """
    if len(x_entries) == 0:
        return np.full(len(entries), np.nan)
    ords = np.concatenate([x_entries[:, E_ORD_FIRST], x_entries[:, E_ORD_LAST]])
    vals = np.concatenate([x_entries[:, E_FIRST], x_entries[:, E_LAST]])
    order = np.argsort(ords, kind="stable")
    ords, vals = ords[order], vals[order]
    pos = np.searchsorted(ords, entries[:, E_ORD_FIRST], side="right") - 1
    x = np.where(pos >= 0, vals[np.maximum(pos, 0)], np.nan)
    return np.asarray(x, dtype=np.float64)


@dataclass
class Buckets:
    """Chart data of one series: per non-empty bucket, its first x, and min, max, last, count
    (numpy arrays; the API writes them with orjson, NaN as null)."""

    x: Array
    min: Array
    max: Array
    last: Array
    count: npt.NDArray[np.int64]


def bucketize(entries: Array, x: Array, lo: float, hi: float, buckets: int) -> Buckets:
    """Group entries (with their x) into ``buckets`` equal-width buckets over ``[lo, hi]``."""
    return bucketize_many([(entries, x)], lo, hi, buckets)[0]


def bucketize_many(
    series: list[tuple[Array, Array]], lo: float, hi: float, buckets: int
) -> list[Buckets]:
    """``bucketize`` of each (entries, x) at once: one pass of numpy over all of them (a chart of
    100 runs is otherwise 100 passes of a dozen small numpy calls, 30 ms of the answer)."""
    sizes = [len(e) for e, _ in series]
    empty = np.empty(0)
    nothing = [Buckets(empty, empty, empty, empty, np.empty(0, dtype=np.int64)) for _ in series]
    if not sum(sizes):
        return nothing
    x = np.concatenate([xs for _, xs in series])
    # min, max, last and count: the fields a chart needs (adjacent: one slice, 40 of the 80 bytes)
    stats = np.concatenate([e[:, E_MIN : E_COUNT + 1] for e, _ in series])
    which = np.repeat(np.arange(len(series), dtype=np.int64), sizes)
    inside = (x >= lo) & (x <= hi)
    if not inside.all():  # a zoom, or NaN x (a copy of all of them otherwise: 8 ms of 100 runs)
        stats, x, which = stats[inside], x[inside], which[inside]
    if len(x) == 0:
        return nothing
    width = (hi - lo) / buckets if hi > lo else 1.0
    index = np.minimum(((x - lo) / width).astype(np.int64), buckets - 1)
    key = which * buckets + index  # series by series, each by bucket
    if len(key) > 1 and bool((key[1:] < key[:-1]).any()):
        order = np.argsort(key, kind="stable")  # stable: row order within a bucket
        key, stats, x, which = key[order], stats[order], x[order], which[order]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    ends = np.concatenate([starts[1:], [len(key)]]) - 1
    xs = x[starts]
    low, high, last, count = stats.T
    mins = np.fmin.reduceat(low, starts)
    maxs = np.fmax.reduceat(high, starts)
    lasts = last[ends]
    counts = np.add.reduceat(count, starts).astype(np.int64)
    cuts = np.searchsorted(which[starts], np.arange(len(series) + 1))
    return [
        Buckets(xs[a:b], mins[a:b], maxs[a:b], lasts[a:b], counts[a:b])
        for a, b in itertools.pairwise(cuts)
    ]
