"""Ingest's bulk path (``_ingest._rows_at``/``_add_rows``): runs of same-shaped HISTORY frames
decode to exactly what the one-record-at-a-time path gives (points, state, held, segments,
refusals), whatever breaks the run: a bad CRC, a resend from the middle, an unknown schema, rows
in parts, strings."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fulmen.server import _ingest
from fulmen.server._ingest import RECENT_ROWS, Batch, RunState, decode_batch
from fulmen.track import runlog as R
from tests.server.runlogs import LogWriter


def _decode(body: bytes, held: int = 0, state: RunState | None = None) -> tuple[Batch, RunState]:
    state = state if state is not None else RunState()
    return decode_batch(body, held, state), state


def _one_at_a_time(
    monkeypatch: pytest.MonkeyPatch, body: bytes, held: int = 0, state_json: str | None = None
) -> tuple[Batch, RunState]:
    with monkeypatch.context() as m:
        m.setattr(_ingest, "MIN_ROWS", 10**9)  # never a run: every record on its own
        return _decode(body, held, RunState.from_json(state_json))


def _same(a: tuple[Batch, RunState], b: tuple[Batch, RunState]) -> None:
    (batch, state), (other, other_state) = a, b
    assert batch.held == other.held
    assert batch.segments == other.segments
    assert batch.refused == other.refused
    assert state.to_json() == other_state.to_json()
    assert [op for op, _ in batch.series] == [op for op, _ in other.series]
    for (op, arg), (_, arg2) in zip(batch.series, other.series, strict=True):
        if op == "points":
            assert arg.keys() == arg2.keys()
            for key in arg:
                assert np.array_equal(arg[key], arg2[key], equal_nan=True), key
        else:
            assert arg == arg2


def _rows(w: LogWriter, first: int, n: int, **extra: Any) -> None:
    for step in range(first, first + n):
        w.history(step, {"loss": step * 0.5, "acc": float(step % 7), **extra}, step * 0.01)


def _runs_found(body: bytes) -> list[int]:
    buf = _ingest.header() + body
    return [item.n for item in _ingest._items(buf) if isinstance(item, _ingest._Rows)]


def test_a_run_of_rows_is_one_read_and_decodes_as_each_row_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = LogWriter()
    w.run("r")
    _rows(w, 0, 700)
    w.console("between the rows")
    _rows(w, 700, 300)
    w.record("exit", {"state": "finished", "exit_code": 0})
    body = w.body()
    assert _runs_found(body) == [700, 300]
    bulk = _decode(body)
    _same(bulk, _one_at_a_time(monkeypatch, body))
    batch, state = bulk
    points = dict(batch.series)["points"]
    assert points["loss"].shape == (5, 1000)
    assert np.array_equal(points["loss"][4], np.arange(1000) * 0.5)
    assert np.array_equal(points["_step"][1], np.arange(1000))
    assert len(state.recent) <= 2 * RECENT_ROWS
    assert state.recent[-1] == (999, 999)


def test_a_bad_crc_inside_a_run_ends_it_and_reading_resyncs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = LogWriter()
    w.run("r")
    _rows(w, 0, 200)
    body = bytearray(w.body())
    stride = len(w.frames[-1])
    body[len(body) - 50 * stride - 3] ^= 0xFF  # a value byte of row 149 (seq 152): bad CRC
    bulk = _decode(bytes(body))
    _same(bulk, _one_at_a_time(monkeypatch, bytes(body)))
    assert bulk[0].held == 151  # not a frame: the batch ends before it (the client resends)
    assert dict(bulk[0].series)["points"]["loss"].shape == (5, 149)
    again = _decode(w.body(), 151, bulk[1])  # the good frame, resent
    assert again[0].held == w.seq
    assert dict(again[0].series)["points"]["loss"].shape == (5, 51)


@pytest.mark.parametrize("held", [1, 2, 3, 40, 150, 201, 202])
def test_a_resend_from_inside_a_run_skips_what_is_held(
    monkeypatch: pytest.MonkeyPatch, held: int
) -> None:
    w = LogWriter()
    w.run("r")
    _rows(w, 0, 200)
    first = _decode(b"".join(w.frames[:held]))  # what an earlier batch stored
    assert first[0].held == held
    state = first[1].to_json()
    again = _decode(w.body(), held, RunState.from_json(state))
    _same(again, _one_at_a_time(monkeypatch, w.body(), held, state))


def test_rows_of_an_unknown_schema_or_with_strings_are_applied_or_refused_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = LogWriter()
    w.run("r")
    _rows(w, 0, 50, note="text")  # a string column: not the numeric group
    _rows(w, 50, 50)
    body = w.body()
    schema_frame = next(i for i, f in enumerate(w.frames) if f[0] == 0xA0 | 11 and i > 1)
    config = R.frame(R.CONFIG, R.json_payload(schema_frame + 1, {"x": 1}))  # in its place
    without = b"".join(config if i == schema_frame else f for i, f in enumerate(w.frames))
    for case in (body, without):
        _same(_decode(case), _one_at_a_time(monkeypatch, case))
    refused = _decode(without)[0].refused
    assert len(refused) == 50  # every row of the undeclared schema, each named
    assert {r["reason"] for r in refused} == {"schema 1 was never declared"}


def test_rows_logged_in_parts_and_a_run_of_the_same_step(monkeypatch: pytest.MonkeyPatch) -> None:
    w = LogWriter()
    w.run("r")
    for step in range(40):  # commit=False: two records per row
        w.history(step, {"a": float(step)})
        w.history(step, {"b": float(-step)})
    for _ in range(30):  # the same step again and again: one row, the last value wins
        w.history(40, {"a": 1.0})
    body = w.body()
    bulk = _decode(body)
    _same(bulk, _one_at_a_time(monkeypatch, body))
    points = dict(bulk[0].series)["points"]
    assert points["_step"].shape[1] == 41


def test_recent_rows_are_remembered_as_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    for before, n in ((0, 10), (3, 2 * RECENT_ROWS), (RECENT_ROWS, 3 * RECENT_ROWS + 7)):
        w = LogWriter()
        w.run("r")
        _rows(w, 0, before + 1)
        first = _one_at_a_time(monkeypatch, w.body())
        start = len(w.frames)
        _rows(w, before + 1, n)
        rest = b"".join(w.frames[start:])
        state = first[1].to_json()
        bulk = _decode(rest, first[0].held, RunState.from_json(state))
        _same(bulk, _one_at_a_time(monkeypatch, rest, first[0].held, state))
        assert json.loads(bulk[1].to_json())["recent"][-1] == [before + n, before + n]
