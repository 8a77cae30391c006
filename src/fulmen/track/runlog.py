"""The run log: the append-only file that is the durable record of one run, and its reader.

This docstring is the format's definition (docs/run-log-format.md says the same at more length).
The server ingests exactly what is described here; nothing in this module imports torch or numpy.

Grammar (all integers little-endian; ``uvarint`` is LEB128, ``svarint`` is zigzag then LEB128)::

    file    := header frame*
    header  := "FULMENRL" u16:version(=1) u16:flags(=0) u32:reserved(=0)          16 bytes
    frame   := u8:lead uvarint:n u32:crc payload[n]
    lead    := 0xA0 | kind                   (high nibble 0xA is the resync marker, kind 1..15)
    crc     := CRC-32 (zlib.crc32) of lead byte followed by payload
    payload := u32:seq body                  (seq starts at 1 and increases by 1 per frame)

    body of HISTORY (kind 3), binary:
        uvarint:schema  svarint:(seq - step)  u32:runtime_ms  values
        values := the row's columns, in the schema's order: fixed-size columns packed first as
                  one struct (d: f64, f: f32, q: i64, ?: u8 bool), then each variable column as
                  uvarint:len bytes (s: UTF-8 string, j: JSON text)
        runtime_ms and the fixed-size columns are one struct ("<I" + codes): one pack per row
    body of CONSOLE (kind 8): u8:stream (1 stdout, 2 stderr) then UTF-8 text
    body of every other kind: one UTF-8 JSON object (NaN and Infinity allowed, as Python writes)

Kinds and their JSON fields:

    1 RUN       run start or resume: id, name, project, entity, group, job_type, tags, notes,
                resumed (bool), time (wall clock, s), runtime (s of runtime already recorded
                before this segment), mode, host, user, program, args, python, pid, fulmen
                (the writer's version); git state is a FILE (git.json) written a moment later
    2 CONFIG    update: {key: value, ...} merged into the config (nested dicts kept)
    3 HISTORY   one history record (binary, above); _step = seq - (seq - step)
    4 SUMMARY   update: {key: value}, remove: [key, ...]; applied after rows seen so far
    5 METRIC    define_metric: name, step_metric, summary (list), goal, step_sync, hidden
    6 FILE      path (relative to the run's files/ folder), type ("console", "requirements",
                "git", "diff", "topology", "user", ...), size
    7 ARTIFACT  name, type, version, digest, aliases, used (bool: use_artifact), entries
    8 CONSOLE   binary, above
    9 STATS     system metrics: {"cpu": %, "rss_mb": ..., "gpu.0.util": ..., ...}
    10 EXIT     exit_code, state ("finished", "failed", "killed"), runtime (s)
    11 SCHEMA   id, columns: [[key, code], ...] with code one of d f q ? s j; declared before the
                first HISTORY that uses it; ids are per file
    12 REWIND   step: rows with _step >= step recorded earlier are superseded (resumed runs)
    13 PATCH    binary, as HISTORY: values that arrived late (a CUDA scalar copied to the host
                after log() returned) merged into the latest row with that step

Rows: consecutive HISTORY records with the same step are one row (``commit=False`` and explicit
``step=`` append parts of a row as separate records, so each ``log()`` is durable on return). A
HISTORY record whose step is lower than an earlier one, without a REWIND before it, is kept as a row
of its own (an ordinary run that logged a lower step). _runtime is runtime_ms / 1000 (it saturates
at 2**32 - 1 ms, 49.7 days); _timestamp is the segment's RUN.time + (_runtime - RUN.runtime).

Strings: UTF-8. A string value holding a lone surrogate (``os.fsdecode`` of a non-UTF-8 file name)
is written as a ``j`` column, whose JSON text escapes it (``"\\udcff"``) and reads back as the same
str; ``s`` columns are decoded with ``surrogatepass`` (older writers wrote them so).
``escape_surrogates``/``unicode_safe`` give the valid-Unicode form a database needs (``\\xff``).

Reading: frames are checked by CRC. A frame that does not check is reported as a ``Corrupt`` and
the reader resumes at the next offset holding a lead byte whose frame checks. A frame cut off by the
end of the file with no good frame after it is a torn tail (a crash mid-write); it is reported by
``Corrupt.torn`` and ends the iteration. Every frame before it is intact, by construction: the
writer hands each whole frame to the OS in one ``os.write`` before ``log()`` returns.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "MAGIC",
    "Corrupt",
    "Record",
    "SummaryState",
    "decode_history",
    "escape_surrogates",
    "history_head",
    "history_run",
    "read_records",
    "read_svarint",
    "read_uvarint",
    "summary_of",
    "unicode_safe",
]

MAGIC = b"FULMENRL"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sHHI")
HEADER_SIZE = HEADER.size

RUN, CONFIG, HISTORY, SUMMARY, METRIC, FILE, ARTIFACT, CONSOLE = 1, 2, 3, 4, 5, 6, 7, 8
STATS, EXIT, SCHEMA, REWIND, PATCH = 9, 10, 11, 12, 13
KINDS: dict[int, str] = {
    RUN: "run",
    CONFIG: "config",
    HISTORY: "history",
    SUMMARY: "summary",
    METRIC: "metric",
    FILE: "file",
    ARTIFACT: "artifact",
    CONSOLE: "console",
    STATS: "stats",
    EXIT: "exit",
    SCHEMA: "schema",
    REWIND: "rewind",
    PATCH: "patch",
}
LEAD_MARK = 0xA0
_CRC = struct.Struct("<I")
FIXED_CODES = frozenset("dfq?")
MAX_FRAME = 1 << 30


def header() -> bytes:
    """The 16 bytes every run log starts with."""
    return HEADER.pack(MAGIC, FORMAT_VERSION, 0, 0)


# --- encoding (the writer side; kept here so the format lives in one file) ----------------------

_SMALL = [bytes((i,)) for i in range(128)]
LEAD_CRC = [zlib.crc32(bytes((LEAD_MARK | k,))) for k in range(16)]
LEAD_BYTE = [bytes((LEAD_MARK | k,)) for k in range(16)]


def uvarint(n: int) -> bytes:
    """LEB128 of a non-negative int (fast paths for the sizes a run log mostly holds)."""
    if n < 0x80:
        return _SMALL[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def svarint(n: int) -> bytes:
    """Zigzag LEB128 of any int."""
    return uvarint(n << 1 if n >= 0 else ((-n) << 1) - 1)


def frame(kind: int, payload: bytes) -> bytes:
    """One whole frame: lead, length, CRC, payload."""
    crc = zlib.crc32(payload, LEAD_CRC[kind])
    return LEAD_BYTE[kind] + uvarint(len(payload)) + _CRC.pack(crc) + payload


SEQ = struct.Struct("<I")


def json_payload(seq: int, obj: Any) -> bytes:
    return SEQ.pack(seq) + json.dumps(obj, separators=(",", ":"), default=str).encode()


# --- decoding ------------------------------------------------------------------------------------


class Record(NamedTuple):
    """One decoded frame: its sequence number, kind, byte offsets in the file and body.

    ``offset`` is where the frame starts and ``end`` just past it (ingest can be made idempotent
    by either the sequence number or the offset).

    ``data`` is the parsed JSON object for JSON kinds, the raw body bytes for HISTORY and PATCH
    (decode it with :func:`decode_history` and the SCHEMA records seen before it), and
    ``{"stream": "stdout" | "stderr", "text": str}`` for CONSOLE. A kind this reader does not know
    (from a newer writer) is named ``"kind-<n>"`` with its raw body.
    """

    seq: int
    kind: str
    offset: int
    end: int
    data: Any


class Corrupt(NamedTuple):
    """A stretch of the file that did not decode: ``offset`` to ``end`` (bytes), and why.

    ``torn`` is True for an incomplete frame at the end of the file (a crash mid-write).
    """

    offset: int
    end: int
    reason: str
    torn: bool = False


def read_uvarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(value, position after it) of the LEB128 ``uvarint`` at ``buf[pos]``.

    Raises IndexError when ``buf`` ends inside it, ValueError when it is longer than 64 bits."""
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def read_svarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(value, position after it) of the zigzag ``svarint`` at ``buf[pos]``."""
    z, pos = read_uvarint(buf, pos)
    return (z >> 1) ^ -(z & 1), pos


def history_head(body: bytes | memoryview) -> tuple[int, int, int]:
    """(schema id, ``seq - step``, where the values start) of a HISTORY or PATCH body: what a
    reader needs to place a record (its step is the record's seq minus the second) before, or
    without, decoding its values."""
    schema_id, pos = read_uvarint(body, 0)
    delta, pos = read_svarint(body, pos)
    return schema_id, delta, pos


def _try_frame(buf: bytes, pos: int) -> tuple[int, int, int] | str:
    """(kind, payload start, payload end) of a good frame at ``pos``, or why there is none."""
    lead = buf[pos]
    kind = lead & 0x0F
    if lead & 0xF0 != LEAD_MARK or kind == 0:
        return "bad lead byte"
    try:
        n, start = read_uvarint(buf, pos + 1)
    except (IndexError, ValueError):
        return "torn" if len(buf) - pos < 11 else "bad length"
    if n > MAX_FRAME:
        return "bad length"
    end = start + 4 + n
    if end > len(buf):
        return "torn"
    (crc,) = _CRC.unpack_from(buf, start)
    if zlib.crc32(memoryview(buf)[start + 4 : end], LEAD_CRC[kind]) != crc:
        return "CRC mismatch"
    return kind, start + 4, end


def _decode_body(kind: int, body: bytes) -> tuple[int, Any]:
    (seq,) = SEQ.unpack_from(body, 0)
    pos = SEQ.size
    if kind in (HISTORY, PATCH):
        return seq, body[pos:]
    if kind not in KINDS:  # a kind from a newer writer: passed on undecoded
        return seq, body[pos:]
    if kind == CONSOLE:
        stream = "stderr" if body[pos] == 2 else "stdout"
        return seq, {"stream": stream, "text": body[pos + 1 :].decode("utf-8", "replace")}
    return seq, json.loads(body[pos:])


def read_records(
    source: str | Path | bytes | BinaryIO, start: int = HEADER_SIZE
) -> Iterator[Record | Corrupt]:
    """Every record of a run log in file order, with a ``Corrupt`` for each bad stretch.

    ``source`` is a path, the file's bytes, or a binary file object read from its start. A bad
    header yields one ``Corrupt`` and nothing else. ``start``: where to begin reading (a frame's
    offset, as a ``Record`` gives it; the header is still checked), to resume a reading without
    copying the bytes.
    """
    if isinstance(source, (str, Path)):
        source = Path(source).read_bytes()
    buf = source if isinstance(source, bytes) else source.read()
    if len(buf) < HEADER_SIZE:
        yield Corrupt(0, len(buf), "incomplete header", torn=True)
        return
    magic, version, _, _ = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        yield Corrupt(0, HEADER_SIZE, "not a fulmen run log (bad magic)")
        return
    if version > FORMAT_VERSION:
        yield Corrupt(0, HEADER_SIZE, f"format version {version} is newer than {FORMAT_VERSION}")
        return
    pos, size = max(start, HEADER_SIZE), len(buf)
    while pos < size:
        found = _try_frame(buf, pos)
        if isinstance(found, tuple):
            kind, start, end = found
            try:
                seq, data = _decode_body(kind, buf[start:end])
            except (ValueError, IndexError, RecursionError) as exc:  # Unicode errors too
                # CRC-valid but undecodable: a writer bug, not a torn write; report and skip
                yield Corrupt(pos, end, f"undecodable {_name(kind)} body: {exc}")
            else:
                yield Record(seq, _name(kind), pos, end, data)
            if kind == HISTORY and isinstance(data, bytes):  # rows of its size: a quick read
                for rec in _rows_after(buf, Record(seq, "history", pos, end, data)):
                    end = rec.end
                    yield rec
            pos = end
            continue
        reason = found
        nxt = _resync(buf, pos + 1)
        if nxt is None:
            yield Corrupt(pos, size, "incomplete frame at end of file", torn=True)
            return
        yield Corrupt(pos, nxt, reason if reason != "torn" else "frame runs past the next frame")
        pos = nxt


def history_run(buf: bytes, rec: Record, limit: int = MAX_FRAME) -> int:
    """How many frames right after ``rec`` (a HISTORY record read from ``buf``) are HISTORY
    frames of its length, whole, with good CRCs: what ``read_records`` would read as records,
    found without decoding them. Frame ``i`` of them starts at ``rec.end + i * stride``
    (``stride = rec.end - rec.offset``) and holds its seq ``stride - len(rec.data) - 4`` bytes in.
    A run of ``log()`` calls with the same numeric keys writes such frames (a bulk reader's
    fast path: the server's ingest, the uploader). At most ``limit`` of them."""
    stride = rec.end - rec.offset
    at = stride - len(rec.data) - 8  # the lead and length bytes, the same in each
    lead = buf[rec.offset : rec.offset + at]
    view, init, crc_of, unpack = memoryview(buf), LEAD_CRC[HISTORY], zlib.crc32, _CRC.unpack_from
    pos, last, n = rec.end, min(len(buf), rec.end + limit * stride) - stride, 0
    while pos <= last and buf[pos : pos + at] == lead:
        if crc_of(view[pos + at + 4 : pos + stride], init) != unpack(buf, pos + at)[0]:
            break
        n += 1
        pos += stride
    return n


def _rows_after(buf: bytes, rec: Record) -> Iterator[Record]:
    """The records of ``history_run(buf, rec)``'s frames."""
    stride, at = rec.end - rec.offset, rec.end - rec.offset - len(rec.data) - 8
    for start in range(rec.end, rec.end + history_run(buf, rec) * stride, stride):
        (seq,) = SEQ.unpack_from(buf, start + at + 4)
        yield Record(seq, "history", start, start + stride, buf[start + at + 8 : start + stride])


def _name(kind: int) -> str:
    return KINDS.get(kind) or f"kind-{kind}"


def _resync(buf: bytes, pos: int) -> int | None:
    """The offset of the next good frame at or after ``pos``, or None."""
    size = len(buf)
    while pos < size:
        if buf[pos] & 0xF0 == LEAD_MARK and isinstance(_try_frame(buf, pos), tuple):
            return pos
        pos += 1
    return None


def good_end(path: str | Path) -> int:
    """The byte offset just past the last good frame (where a resumed writer appends)."""
    end = HEADER_SIZE
    for item in read_records(path):
        if isinstance(item, Record) or not item.torn:
            end = item.end
    return end


_STRUCTS: dict[str, struct.Struct] = {}
# id(columns) -> (columns, struct, keys of fixed-size columns, codes): decode_history's cache
_COMPILED: dict[int, tuple[Any, struct.Struct, tuple[str, ...], str]] = {}


def fixed_struct(codes: str) -> struct.Struct:
    """The struct that packs runtime_ms and a schema's fixed-size columns (cached)."""
    fmt = "<I" + "".join(c for c in codes if c in FIXED_CODES)
    s = _STRUCTS.get(fmt)
    if s is None:
        s = _STRUCTS[fmt] = struct.Struct(fmt)
    return s


def decode_history(
    body: bytes, seq: int, schemas: dict[int, list[tuple[str, str]]]
) -> tuple[int, float, dict[str, Any]]:
    """(step, runtime in seconds, {key: value}) of a HISTORY record's body.

    ``schemas`` maps schema id to its columns, from the SCHEMA records read before this one.
    Strings decode to ``str``, JSON columns to their Python value (media and histograms are dicts
    with a ``"_type"`` key).
    """
    schema_id, delta, pos = history_head(body)
    columns = schemas[schema_id]
    cached = _COMPILED.get(id(columns))
    if cached is None or cached[0] is not columns:  # compile once per schema
        if len(_COMPILED) > 4096:
            _COMPILED.clear()
        codes = "".join(c for _, c in columns)
        fixed_keys = tuple(k for k, c in columns if c in FIXED_CODES)
        cached = _COMPILED[id(columns)] = (columns, fixed_struct(codes), fixed_keys, codes)
    _, fixed, fixed_keys, codes = cached
    values = fixed.unpack_from(body, pos)
    if len(fixed_keys) == len(codes):  # all fixed-size: the common case
        return seq - delta, values[0] / 1e3, dict(zip(fixed_keys, values[1:], strict=True))
    pos += fixed.size
    rest = iter(values[1:])
    row: dict[str, Any] = {}
    for key, code in columns:
        if code in FIXED_CODES:
            row[key] = next(rest)
            continue
        n, pos = read_uvarint(body, pos)
        text = body[pos : pos + n].decode("utf-8", "surrogatepass")  # older writers: see "Strings"
        pos += n
        row[key] = text if code == "s" else json.loads(text)
    return seq - delta, values[0] / 1e3, row


def escape_surrogates(text: str) -> str:
    """``text`` as valid Unicode: each lone surrogate (what ``os.fsdecode`` gives for a byte that
    is not UTF-8: U+DC80..U+DCFF for bytes 0x80..0xFF) becomes the four characters ``\\xNN`` of
    its byte, any other lone surrogate ``\\udNNN``. For readers that need valid Unicode (a
    database, a UTF-8 HTTP answer); the run log itself keeps the string as given."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")  # valid already: the usual non-ASCII text costs one encode
    except UnicodeEncodeError:
        return "".join(
            (f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}")
            if 0xD800 <= ord(c) <= 0xDFFF
            else c
            for c in text
        )
    return text


def unicode_safe(value: Any, depth: int = 0) -> Any:
    """``value`` (parsed JSON, a decoded row) with every string and key through
    :func:`escape_surrogates`. ValueError past 200 levels of nesting."""
    if isinstance(value, str):
        return escape_surrogates(value)
    if depth > 200:
        raise ValueError("nested more than 200 levels deep")
    if isinstance(value, list):
        return [unicode_safe(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {
            escape_surrogates(k) if isinstance(k, str) else k: unicode_safe(v, depth + 1)
            for k, v in value.items()
        }
    return value


def summary_of(
    last: dict[str, Any],
    aggregates: dict[str, dict[str, float]],
    modes_of: Callable[[str], list[str] | None] | None,
    removed: Collection[str],
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """A run's summary from what its rows and SUMMARY records said, as the writer, the local reader
    and the server all compute it: each key's last value, unless METRIC records asked for other
    modes (then ``{"min": ..., "max": ..., "mean": ..., "first": ..., "last": ...}`` as asked, from
    ``aggregates[key]`` holding first/min/max/sum/n); keys set directly win; removed keys go."""
    out: dict[str, Any] = {}
    for key, value in last.items():
        if key in removed:
            continue
        modes = modes_of(key) if modes_of is not None else None
        if modes is None or modes == ["last"]:
            out[key] = value
            continue
        agg = aggregates.get(key, {})
        entry: dict[str, Any] = {}
        for mode in modes:
            if mode == "last":
                entry["last"] = value
            elif mode == "mean" and agg.get("n"):
                entry["mean"] = agg["sum"] / agg["n"]
            elif mode in ("min", "max", "first") and mode in agg:
                entry[mode] = agg[mode]
        if entry:
            out[key] = entry
    for key, value in overrides.items():
        if key not in removed:
            out[key] = value
    return out


# (first value or None, min, max, sum, count) of one key's non-NaN values over many rows
ColumnAggregate = tuple[float | None, float, float, float, int]


class SummaryState:
    """The summary as rows and SUMMARY/METRIC records build it: the last value of each metric, or
    the aggregates ``define_metric`` asked for; :meth:`result` applies :func:`summary_of`.

    One class for the writer (``Run.summary``), the local reader (a replayed run log) and the
    server (which keeps it between batches with :meth:`to_dict` / :meth:`from_dict`)."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}  # the writer's log() fast path updates this dict directly
        self.overrides: dict[str, Any] = {}  # keys set by the user
        self.removed: set[str] = set()
        self._modes: dict[str, list[str]] = {}  # exact names
        self._prefixes: list[tuple[str, list[str]]] = []  # "train/*" -> ("train/", modes)
        self._agg: dict[str, dict[str, Any]] = {}
        self._resolved: dict[str, list[str] | None] = {}

    @property
    def aggregating(self) -> bool:
        """True when some metric needs more than its last value (log() then skips its fast path)."""
        return bool(self._modes or self._prefixes)

    def define(self, name: str, modes: list[str]) -> None:
        """A METRIC record's summary modes for ``name`` (``"train/*"`` names a prefix)."""
        if not modes:
            return
        if name.endswith("*"):
            self._prefixes.append((name[:-1], list(modes)))
        else:
            self._modes[name] = list(modes)
        self._resolved.clear()

    def modes_of(self, key: str) -> list[str] | None:
        """The modes defined for ``key`` (the exact name, else the last prefix that matches)."""
        if key in self._resolved:
            return self._resolved[key]
        modes = self._modes.get(key)
        if modes is None:
            for prefix, prefix_modes in self._prefixes:
                if key.startswith(prefix):
                    modes = prefix_modes
        self._resolved[key] = modes
        return modes

    def observe(self, row: dict[str, Any]) -> None:
        """One row: its keys' last values, and the aggregates of the keys that have modes."""
        self.last.update(row)
        if self.overrides or self.removed:
            for key in row:
                self.overrides.pop(key, None)
                self.removed.discard(key)
        if not self.aggregating:
            return
        for key, value in row.items():
            modes = self.modes_of(key)
            if modes is None or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            agg = self._agg.setdefault(key, {})
            if "first" not in agg:
                agg["first"] = value
            if not (isinstance(value, float) and math.isnan(value)):
                agg["min"] = min(agg.get("min", value), value)
                agg["max"] = max(agg.get("max", value), value)
                agg["sum"] = agg.get("sum", 0.0) + value
                agg["n"] = agg.get("n", 0) + 1

    def observe_columns(self, last: dict[str, Any], aggregates: dict[str, ColumnAggregate]) -> None:
        """Many rows at once, as the server decodes them (by column): ``last`` is the last row as
        logged; ``aggregates[key]`` is (first value or None, min, max, sum, count) of the key's
        non-NaN values over the rows (for keys with modes). The same result as ``observe`` for
        each row in turn."""
        self.last.update(last)
        if self.overrides or self.removed:
            for key in last:
                self.overrides.pop(key, None)
                self.removed.discard(key)
        for key, (first, lo, hi, total, n) in aggregates.items():
            if self.modes_of(key) is None:
                continue
            agg = self._agg.setdefault(key, {})
            if "first" not in agg and first is not None:
                agg["first"] = first
            if n:
                agg["min"] = min(agg.get("min", lo), lo)
                agg["max"] = max(agg.get("max", hi), hi)
                agg["sum"] = agg.get("sum", 0.0) + total
                agg["n"] = agg.get("n", 0) + n

    def set(self, key: str, value: Any) -> None:
        """A key set directly (``run.summary[key] = value``, a SUMMARY record's update)."""
        self.overrides[key] = value
        self.removed.discard(key)

    def remove(self, key: str) -> None:
        """A key removed (``del run.summary[key]``, a SUMMARY record's remove)."""
        self.overrides.pop(key, None)
        self.removed.add(key)

    def result(self) -> dict[str, Any]:
        """The summary now."""
        modes_of = self.modes_of if self.aggregating else None
        return summary_of(self.last, self._agg, modes_of, self.removed, self.overrides)

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready data (prefixes as ``"name*"`` keys of ``modes``)."""
        modes = dict(self._modes)
        for prefix, prefix_modes in self._prefixes:
            modes[prefix + "*"] = prefix_modes
        return {
            "last": self.last,
            "overrides": self.overrides,
            "removed": sorted(self.removed),
            "modes": modes,
            "agg": self._agg,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SummaryState:
        """The state :meth:`to_dict` gave (missing keys: empty)."""
        state = cls()
        state.last = dict(data.get("last") or {})
        state.overrides = dict(data.get("overrides") or {})
        state.removed = set(data.get("removed") or ())
        for name, modes in (data.get("modes") or {}).items():
            state.define(name, modes)
        state._agg = {k: dict(v) for k, v in (data.get("agg") or {}).items()}
        return state
