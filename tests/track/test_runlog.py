"""The run log format: frames, sequence numbers, torn tails, corrupt records, resync."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from fulmen import track
from fulmen.track import runlog
from fulmen.track.runlog import Corrupt, Record, decode_history, read_records


def small_log(tmp_path: Path) -> Path:
    run = track.init(project="p", config={"lr": 0.1})
    for i in range(4):
        run.log({"loss": 1.0 / (i + 1), "name": f"r{i}"})
    run.finish()
    return run.log_path


def records(source: bytes | Path) -> list[Record]:
    return [r for r in read_records(source) if isinstance(r, Record)]


def test_header_and_kinds_in_order(tmp_path: Path) -> None:
    path = small_log(tmp_path)
    data = path.read_bytes()
    assert data[:8] == runlog.MAGIC
    items = list(read_records(path))
    assert all(isinstance(r, Record) for r in items)
    kinds = [r.kind for r in items]
    assert kinds[0] == "run"
    assert kinds[1] == "config"
    assert kinds[-2:] == ["summary", "exit"]
    assert kinds.count("history") == 4
    assert [r.seq for r in items] == list(range(1, len(items) + 1))
    # offsets tile the file: each frame starts where the previous ended
    assert items[0].offset == runlog.HEADER_SIZE
    assert all(a.end == b.offset for a, b in itertools.pairwise(items))
    assert items[-1].end == len(data)


def test_history_rows_decode_with_their_schema(tmp_path: Path) -> None:
    path = small_log(tmp_path)
    schemas: dict[int, list[tuple[str, str]]] = {}
    rows = []
    for rec in records(path):
        if rec.kind == "schema":
            schemas[rec.data["id"]] = [tuple(c) for c in rec.data["columns"]]
        elif rec.kind == "history":
            rows.append(decode_history(rec.data, rec.seq, schemas))
    assert [step for step, _, _ in rows] == [0, 1, 2, 3]
    assert rows[2][2] == {"loss": 1.0 / 3, "name": "r2"}
    assert all(runtime >= 0 for _, runtime, _ in rows)


def test_torn_tail_at_every_offset(tmp_path: Path) -> None:
    data = small_log(tmp_path).read_bytes()
    full = records(data)
    for cut in range(len(data)):
        items = list(read_records(data[:cut]))
        good = [r for r in items if isinstance(r, Record)]
        bad = [c for c in items if isinstance(c, Corrupt)]
        # every frame wholly before the cut is read back, nothing else
        assert good == [r for r in full if r.end <= cut], cut
        if cut < runlog.HEADER_SIZE:
            assert len(bad) == 1
            assert bad[0].torn
        elif any(r.offset < cut < r.end for r in full):
            assert len(bad) == 1, cut
            assert bad[0].torn, cut
        else:
            assert bad == []


def test_flipped_byte_is_reported_and_reading_resumes(tmp_path: Path) -> None:
    data = small_log(tmp_path).read_bytes()
    full = records(data)
    victim = next(r for r in full if r.kind == "history")
    for position in range(victim.offset, victim.end):
        broken = bytearray(data)
        broken[position] ^= 0x5A
        items = list(read_records(bytes(broken)))
        good = [r for r in items if isinstance(r, Record)]
        bad = [c for c in items if isinstance(c, Corrupt)]
        assert len(bad) == 1, position
        assert not bad[0].torn
        assert bad[0].offset == victim.offset
        assert [r.seq for r in good] == [r.seq for r in full if r is not victim], position


def test_garbage_between_frames_is_skipped(tmp_path: Path) -> None:
    data = small_log(tmp_path).read_bytes()
    full = records(data)
    cut = full[3].offset
    spliced = data[:cut] + bytes([0xA3, 0x05, 0xA3, 0xFF, 0x00]) * 3 + data[cut:]
    items = list(read_records(spliced))
    assert [r.seq for r in items if isinstance(r, Record)] == [r.seq for r in full]
    (bad,) = [c for c in items if isinstance(c, Corrupt)]
    assert (bad.offset, bad.end) == (cut, cut + 15)


def test_not_a_run_log(tmp_path: Path) -> None:
    (bad,) = read_records(b"hello world, this is not a run log")
    assert isinstance(bad, Corrupt)
    assert "magic" in bad.reason


def test_newer_version_is_refused(tmp_path: Path) -> None:
    header = runlog.HEADER.pack(runlog.MAGIC, runlog.FORMAT_VERSION + 1, 0, 0)
    (bad,) = read_records(header)
    assert isinstance(bad, Corrupt)
    assert "newer" in bad.reason


@pytest.mark.parametrize("value", [0, 1, 127, 128, 16383, 16384, 2**21, 2**40])
def test_varints_round_trip(value: int) -> None:
    assert runlog.read_uvarint(runlog.uvarint(value), 0)[0] == value
    assert runlog.read_svarint(runlog.svarint(-value), 0)[0] == -value


def test_special_floats_survive(tmp_path: Path) -> None:
    run = track.init()
    run.log({"nan": math.nan, "inf": math.inf, "ninf": -math.inf})
    run.finish()
    (row,) = track.Api().run(run.id).history(pandas=False)
    assert math.isnan(row["nan"])
    assert row["inf"] == math.inf
    assert row["ninf"] == -math.inf


def _rows_log(n: int) -> bytes:
    schema = runlog.frame(runlog.SCHEMA, runlog.json_payload(1, {"id": 0, "columns": [["x", "d"]]}))
    fixed = runlog.fixed_struct("d")
    rows = [
        runlog.frame(
            runlog.HISTORY,
            runlog.SEQ.pack(seq) + runlog.uvarint(0) + runlog.svarint(2) + fixed.pack(seq, seq / 3),
        )
        for seq in range(2, n + 2)
    ]
    return runlog.header() + schema + b"".join(rows)


def test_history_run_counts_rows_of_one_size_and_read_records_reads_them_alike() -> None:
    buf = bytearray(_rows_log(300))
    first = next(r for r in read_records(bytes(buf)) if r.kind == "history")
    assert runlog.history_run(bytes(buf), first) == 299
    assert runlog.history_run(bytes(buf), first, limit=10) == 10
    stride = first.end - first.offset
    buf[first.end + 100 * stride + 12] ^= 0x01  # seq 103's value: its CRC fails
    assert runlog.history_run(bytes(buf), first) == 100
    records = list(read_records(bytes(buf)))
    assert [r.seq for r in records if isinstance(r, Record)] == [
        1,
        *range(2, 103),
        *range(104, 302),
    ]
    assert [c.reason for c in records if isinstance(c, Corrupt)] == ["CRC mismatch"]
    rows = [r for r in records if isinstance(r, Record) and r.kind == "history"]
    assert [decode_history(r.data, r.seq, {0: [("x", "d")]})[2]["x"] for r in rows[:3]] == [
        2 / 3,
        1.0,
        4 / 3,
    ]
    assert next(iter(read_records(bytes(buf), rows[50].offset))) == rows[50]  # resumed
