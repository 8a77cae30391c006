"""The unsampled export (``fulmen.server._export``) straight from run-log frames: rows merged,
rewound and patched as the reader does, and the CSV, JSON lines and Parquet streams."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

from fulmen.server import _export
from fulmen.server._ingest import RECENT_ROWS
from tests.server.optional import require
from tests.server.runlogs import LogWriter


def _frames(w: LogWriter, cut: int | None = None) -> Callable[[], Iterator[bytes]]:
    """The frames as the store hands them back: one or two segments."""
    body = w.body()
    parts = [body] if cut is None else [b"".join(w.frames[:cut]), b"".join(w.frames[cut:])]

    def frames() -> Iterator[bytes]:
        return iter(parts)

    return frames


def _log() -> LogWriter:
    w = LogWriter()
    w.run("r1", time=1000.0, runtime=0.0)
    for i in range(5):
        w.history(i, {"loss": float(i)}, runtime=i * 0.5)
    w.history(4, {"acc": 0.5}, runtime=2.0)  # commit=False: another part of the row at step 4
    w.record("rewind", {"step": 3})  # steps 3 and 4 are superseded
    w.history(3, {"loss": 30.0, "note": "after the rewind"}, runtime=3.0)
    w.history(3, {"loss": 31.0}, runtime=3.0, patch=True)  # a late value for that row
    return w


def test_rows_follow_parts_rewinds_and_late_values() -> None:
    for cut in (None, 4, 9):  # segment boundaries change nothing
        names, rows = _export.rows(_frames(_log(), cut))
        assert names == ["_step", "_runtime", "_timestamp", "loss", "acc", "note"]
        got = list(rows)
        assert [r["_step"] for r in got] == [0, 1, 2, 3]
        assert got[3] == {
            "_step": 3,
            "_runtime": 3.0,
            "_timestamp": 1003.0,
            "loss": 31.0,
            "note": "after the rewind",
        }
        assert [r["loss"] for r in got[:3]] == [0.0, 1.0, 2.0]


def test_a_row_is_held_back_only_while_late_values_can_reach_it() -> None:
    w = LogWriter()
    w.run("r1")
    for i in range(RECENT_ROWS + 10):
        w.history(i, {"x": i})
    _, rows = _export.rows(_frames(w))
    first = next(rows)  # yielded once RECENT_ROWS later rows are in the window
    assert first["_step"] == 0
    assert len(list(rows)) == RECENT_ROWS + 9


def test_csv_and_json_lines() -> None:
    names, rows = _export.rows(_frames(_log()))
    text = b"".join(_export.csv_stream(names, rows)).decode().splitlines()
    assert text[0] == "_step,_runtime,_timestamp,loss,acc,note"
    assert text[-1] == "3,3.0,1003.0,31.0,,after the rewind"
    names, rows = _export.rows(_frames(_log()))
    lines = [json.loads(line) for line in b"".join(_export.jsonl_stream(names, rows)).splitlines()]
    assert [set(r) for r in lines[:1]] == [{"_step", "_runtime", "_timestamp", "loss"}]
    assert lines[-1]["note"] == "after the rewind"


def test_parquet_keeps_the_column_types() -> None:
    pq = require("pyarrow.parquet")
    frames = _frames(_log())
    names, rows = _export.rows(frames)
    data = b"".join(_export.parquet_stream(names, _export.column_codes(frames), rows))
    table = pq.read_table(io.BytesIO(data))
    assert table.column_names == names
    assert str(table.schema.field("_step").type) == "int64"
    assert str(table.schema.field("note").type) == "string"
    assert table.column("loss").to_pylist() == [0.0, 1.0, 2.0, 31.0]
