"""Scalar history storage: pieces, overview blocks, levels, and their maintenance on append,
rewind and late values (straight through the store, on each engine: big series, no HTTP)."""

from __future__ import annotations

import numpy as np
import pytest

from fulmen.server import _series as S
from fulmen.server._sqlstore import BLOCK, SqlStore
from fulmen.server.store import HistoryQuery


def _points(first: int, n: int) -> S.Array:
    ords = np.arange(first, first + n, dtype=np.float64)
    values = np.sin(ords / 1000.0)
    return np.stack([ords, ords, ords * 0.01, 1e9 + ords * 0.01, values])


@pytest.fixture
def store(store: SqlStore) -> SqlStore:
    store.load_series("e", "p", "r", "other", _points(0, 1))  # creates the run, rid 1
    return store


def _add(store: SqlStore, points: S.Array) -> None:
    with store.engine.write() as con:
        store._add_points(con, 1, "v", points)


def _chart(store: SqlStore, buckets: int, **kw: float) -> dict[str, object]:
    q = HistoryQuery(runs=("r",), keys=("v",), buckets=buckets, **kw)  # type: ignore[arg-type]
    return store.history("e", "p", q)[0]


def test_level_follows_points_per_bucket() -> None:
    assert S.level_for(1_000_000, 1000) == 4  # groups of 512: 1,953 entries, not 3,906 of 256
    assert S.level_for(500_000, 1000) == 2
    assert S.level_for(1000, 1000) == 0
    assert S.level_for(20_000, 1000) == 1
    assert S.level_for(100_000_000, 1000) == 3


def test_coarser_entries_are_those_of_the_points() -> None:
    pts = _points(0, 5000)
    pts[S.VALUE, 700] = np.nan  # skipped by min and max, as entries_of skips it
    for size, factor in ((256, 2), (16, 32)):
        paired = S.coarser(S.entries_of(pts, size), factor)
        assert np.array_equal(paired, S.entries_of(pts, size * factor), equal_nan=True)


def test_level_4_answers_as_level_2_and_a_store_from_before_it_is_upgraded(
    store: SqlStore,
) -> None:
    total = 2 * BLOCK * S.PIECE + 3000  # two full blocks and a partial piece
    pts = _points(0, total)
    pts[S.VALUE, 400_000] = 99.0
    _add(store, pts)
    buckets = total // 600  # 600 points per bucket: level 4
    assert S.level_for(total, buckets) == 4
    with store.engine.read() as con:
        four = store._entries_of(con, [(1, "v")], 4, None, 0, 0)[(1, "v")]
        two = store._entries_of(con, [(1, "v")], 2, None, 0, 0)[(1, "v")]
    assert np.array_equal(four, S.coarser(two, 2))
    assert np.array_equal(four, S.entries_of(pts, 512))
    chart = _chart(store, buckets)
    assert int(np.sum(chart["count"])) == total  # type: ignore[call-overload]
    assert float(np.max(chart["max"])) == 99.0  # type: ignore[call-overload]
    # a store written before level 4: its overview has levels 2 and 3 only
    with store.engine.write() as con:
        con.execute("DELETE FROM overview WHERE level=4")
    old = _chart(store, buckets)  # read at level 2: every point, the spike, the same range
    assert int(np.sum(old["count"])) == total  # type: ignore[call-overload]
    assert float(np.max(old["max"])) == 99.0  # type: ignore[call-overload]
    assert old["x"][0] == chart["x"][0]  # type: ignore[index]
    _add(store, _points(total, S.PIECE))  # a piece fills: the whole overview is made again
    with store.engine.read() as con:
        (blocks,) = con.execute("SELECT count(*) FROM overview WHERE level=4").fetchone()
    assert blocks == 3
    assert int(np.sum(_chart(store, buckets)["count"])) == total + S.PIECE  # type: ignore[call-overload]


def test_appends_across_blocks_keep_every_point_and_the_extremes(store: SqlStore) -> None:
    total = BLOCK * S.PIECE + 5000  # two overview blocks
    spike = 123_456
    for start in range(0, total, 70_000):  # batches that cut pieces and blocks anywhere
        pts = _points(start, min(70_000, total - start))
        pts[S.VALUE, pts[S.ORD] == spike] = 50.0
        _add(store, pts)
    chart = _chart(store, 100)
    assert int(np.sum(chart["count"])) == total  # type: ignore[call-overload]
    assert float(np.max(chart["max"])) == 50.0  # type: ignore[call-overload]
    with store.engine.read() as con:
        assert len(store._entries(con, 1, "v", 3, None, 0, 0)) == total // S.PIECE + 1  # per piece
    zoom = _chart(store, 50, lo=spike - 25, hi=spike + 24)
    assert list(zoom["x"]).index(spike) == int(np.argmax(zoom["max"]))  # type: ignore[arg-type]


def test_rewind_and_late_values_rebuild_the_overview(store: SqlStore) -> None:
    _add(store, _points(0, 300_000))
    with store.engine.write() as con:
        store._rewind(con, 1, 100_000.0)
    chart = _chart(store, 10)
    assert int(np.sum(chart["count"])) == 100_000  # type: ignore[call-overload]
    late = _points(50_000, 1)
    late[S.VALUE] = -7.0
    _add(store, late)  # the same row again: replaced, not added
    chart = _chart(store, 10)
    assert int(np.sum(chart["count"])) == 100_000  # type: ignore[call-overload]
    assert float(np.min(chart["min"])) == -7.0  # type: ignore[call-overload]


def test_live_appends_rewrite_only_the_partial_piece(store: SqlStore) -> None:
    _add(store, _points(0, 300_000))
    where = "ctid" if store.engine.name == "postgresql" else "rowid"  # moves when rewritten
    overview = f"SELECT {where}, level, block, length(data) FROM overview ORDER BY {where}"

    def rows() -> list[object]:
        with store.engine.read() as con:
            return [tuple(r) for r in con.execute(overview).fetchall()]

    before = rows()
    for start in range(300_000, 300_050, 10):  # a live run: small batches
        _add(store, _points(start, 10))
    assert rows() == before  # untouched until a piece fills
    chart = _chart(store, 100)
    assert int(np.sum(chart["count"])) == 300_050  # type: ignore[call-overload]
    _add(store, _points(300_050, S.PIECE))  # fills a piece
    assert rows() != before
    assert int(np.sum(_chart(store, 100)["count"])) == 300_050 + S.PIECE  # type: ignore[call-overload]


@pytest.mark.parametrize("n", [100, S.PIECE + 100])
def test_zoom_reaches_the_partial_last_piece(store: SqlStore, n: int) -> None:
    _add(store, _points(0, n))
    for lo, hi in ((n - 50, n - 1), (n - 5, n - 5)):
        chart = _chart(store, 10, lo=lo, hi=hi)
        assert int(np.sum(chart["count"])) == hi - lo + 1  # type: ignore[call-overload]
        assert chart["x"][0] == lo  # type: ignore[index]


def test_bucketing_many_series_at_once_is_each_alone() -> None:
    rng = np.random.default_rng(3)
    series = []
    for n in (0, 1, 37, 200, 5):
        e = rng.standard_normal((n, S.ENTRY_FIELDS))
        e[:, S.E_COUNT] = rng.integers(1, 16, n)
        x = rng.uniform(-2.0, 12.0, n)  # some outside [0, 10], not in order
        series.append((e, x))
    series[3][0][4, S.E_MIN] = np.nan  # fmin skips it
    together = S.bucketize_many(series, 0.0, 10.0, 16)
    assert len(together) == len(series)
    for (e, x), got in zip(series, together, strict=True):
        alone = S.bucketize_many([(e, x)], 0.0, 10.0, 16)[0]
        for field in ("x", "min", "max", "last", "count"):
            assert np.array_equal(getattr(got, field), getattr(alone, field), equal_nan=True)
        inside = e[(x >= 0) & (x <= 10)]
        assert got.count.sum() == inside[:, S.E_COUNT].sum()
        if len(inside):
            assert got.max.max() == inside[:, S.E_MAX].max()
    assert [len(b.x) for b in S.bucketize_many([], 0.0, 1.0, 4)] == []


def _dense_cases() -> dict[str, S.Array]:
    n = S.PIECE
    ords = np.arange(n, dtype=np.float64)
    runtime = np.cumsum(np.arange(n) % 3) / 1000.0  # the run log's milliseconds
    values = np.random.default_rng(1).standard_normal(n)
    regular = np.stack([ords, ords, runtime, 1.7e9 + 0.125 + runtime, values])
    irregular = regular.copy()
    irregular[S.ORD] = np.cumsum(1 + np.arange(n) % 5)  # gaps between rows
    irregular[S.STEP] = np.cumsum(np.arange(n) % 4)  # steps that repeat and jump
    irregular[S.RUNTIME] = np.cumsum(np.abs(values)) * 0.37  # not whole milliseconds
    irregular[S.TIMESTAMP] = 1.7e9 + np.sqrt(ords)
    special = regular.copy()
    special[S.VALUE, :6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e300]
    special[S.STEP, 5] = np.nan
    huge = regular[:, :50].copy()
    huge[S.ORD] = 2.0**62 + np.arange(50) * 2.0**10  # beyond 2**53: progressions inexact
    huge[S.STEP] = 2.0**53 + np.arange(50)
    return {
        "regular": regular,
        "float32 values": np.vstack([regular[:4], values.astype(np.float32).astype(np.float64)]),
        "irregular": irregular,
        "nan, inf, -0.0": special,
        "one point": regular[:, 7:8].copy(),
        "no point": regular[:, :0].copy(),
        "huge ordinals": huge,
    }


@pytest.mark.parametrize("case", list(_dense_cases()))
def test_dense_points_round_trip_bit_for_bit(case: str) -> None:
    points = _dense_cases()[case]
    back = S.unpack_points(S.pack_points(points))
    assert back.shape == points.shape
    assert back.tobytes() == np.ascontiguousarray(points).tobytes()


def test_dense_points_are_small_for_rows_logged_one_by_one() -> None:
    regular = _dense_cases()["regular"]
    assert len(S.pack_points(regular)) <= 12 * regular.shape[1] + 64  # ms runtime, f8 value
    f32 = _dense_cases()["float32 values"]
    assert len(S.pack_points(f32)) <= 8 * f32.shape[1] + 64


def test_raw_pieces_of_older_stores_still_read(store: SqlStore) -> None:
    """A store written before the dense format holds raw float64 pieces: they read, and a new
    batch after them (which rewrites the partial piece densely) keeps every point."""
    old = _points(0, S.PIECE + 100)
    _add(store, old)
    with store.engine.write() as con:
        rows = con.execute("SELECT rid, key, piece, data FROM points").fetchall()
        for rid, key, piece, data in rows:
            raw = np.ascontiguousarray(S.unpack_points(bytes(data)), dtype="<f8").tobytes()
            con.execute(
                "UPDATE points SET data=? WHERE rid=? AND key=? AND piece=?",
                (raw, rid, key, piece),
            )
    with store.engine.read() as con:
        (data,) = con.execute("SELECT data FROM points WHERE key='v' AND piece=0").fetchone()
    assert bytes(data)[:8] != S.POINTS_MAGIC
    assert len(bytes(data)) == 40 * S.PIECE
    assert int(_chart(store, 10**6)["count"].sum()) == S.PIECE + 100  # type: ignore[attr-defined]
    _add(store, _points(S.PIECE + 100, 50))
    with store.engine.read() as con:
        points = SqlStore._load_points(con, 1, "v", 0)
    assert points.tobytes() == _points(0, S.PIECE + 150).tobytes()
