"""The store on each engine (``fulmen.server._sqlstore`` over SQLite and PostgreSQL): runs'
liveness, whole batches only, a batch resent after a kill, artifacts, keys and blobs, sweeps,
workspaces and reports. The engines' own rules are in test_sqlite.py and test_postgres.py;
migrations in test_migrations.py; history storage in test_series.py; the HTTP API on both engines
in test_ingest_query.py and test_ingest_validation.py."""

from __future__ import annotations

import time
from pathlib import Path
from unittest.mock import ANY

import pytest
from fastapi.testclient import TestClient

from fulmen.server._sqlstore import SqlStore
from fulmen.server.app import ServerConfig, create_app
from fulmen.server.store import HistoryQuery, NotFound, Store, open_store
from tests.server.runlogs import CLIENT_HEADERS, LogWriter

RUNS = "/api/v1/entities/local/projects/proj/runs"


@pytest.fixture
def client(store: Store, tmp_path: Path) -> TestClient:
    config = ServerConfig(data=tmp_path / "data")
    return TestClient(create_app(config, store=store), headers=CLIENT_HEADERS)


def post(client: TestClient, run_id: str, body: bytes) -> int:
    r = client.post(f"{RUNS}/{run_id}/records", content=body)
    assert r.status_code == 200, r.text
    return int(r.json()["held"])


def test_a_quiet_running_run_turns_stale_until_heard_from(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fulmen.server import _sqlstore

    monkeypatch.setattr(_sqlstore, "STALE_AFTER", 0.2)
    w = LogWriter()
    w.run("r1")
    post(client, "r1", w.body())
    assert client.get(f"{RUNS}/r1").json()["stale"] is False
    time.sleep(0.3)
    assert client.get(f"{RUNS}/r1").json()["stale"] is True
    assert client.post(f"{RUNS}/r1/heartbeat").status_code == 200
    assert client.get(f"{RUNS}/r1").json()["stale"] is False
    assert client.post(f"{RUNS}/nope/heartbeat").status_code == 404
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 1.0})
    post(client, "r1", w.body())
    time.sleep(0.3)
    assert client.get(RUNS).json()["runs"][0]["stale"] is False  # only running runs go stale


def test_a_record_that_does_not_decode_is_refused_and_the_rest_kept(store: Store) -> None:
    from fulmen.track import runlog as R

    w = LogWriter()
    w.run("r1")
    w.history(0, {"loss": 1.0})
    assert store.ingest("local", "proj", "r1", w.body()) == 3
    w.history(1, {"loss": 0.5})
    bad = R.frame(R.HISTORY, R.SEQ.pack(w.seq + 1) + b"\x07\x00")  # schema 7 was never declared
    done = store.ingest_batch("local", "proj", "r1", w.frames[-1] + bad)
    assert done.held == 5  # the refused record counts as held: the client moves on
    assert done.refused == [
        {"seq": 5, "kind": "history", "field": "history", "reason": "schema 7 was never declared"}
    ]
    assert store.run("local", "proj", "r1")["rows"] == 2  # the good record before it was kept


def test_an_empty_batch_makes_no_run(store: Store) -> None:
    assert store.ingest("local", "proj", "r1", b"") == 0
    assert store.held("local", "proj", "r1") == 0
    assert store.projects("local") == []


def test_a_batch_resent_after_a_kill_changes_nothing(
    store: SqlStore, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fulmen.server import _sqlstore

    monkeypatch.setattr(_sqlstore, "CHUNK_COST", 500)  # SQLite: many chunks, one transaction each
    w = LogWriter()
    w.run("r1")
    for step in range(40):
        w.history(step, {f"k{i}": float(step * i) for i in range(50)})
    whole = open_store(tmp_path / "whole", None)  # the same batch, never interrupted
    whole.ingest("local", "proj", "r1", w.body())
    real = store._apply  # the last transaction: "killed" before it, after every chunk

    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_apply", killed)
    with pytest.raises(KeyboardInterrupt):
        store.ingest("local", "proj", "r1", w.body())
    assert store.held("local", "proj", "r1") == 0  # the batch is not held: the client resends
    monkeypatch.setattr(store, "_apply", real)
    assert store.ingest("local", "proj", "r1", w.body()) == w.seq
    for key in ("_step", "k7", "k49"):
        [a] = store.history("local", "proj", HistoryQuery(("r1",), (key,)))
        [b] = whole.history("local", "proj", HistoryQuery(("r1",), (key,)))
        assert (a["x"].tolist(), a["last"].tolist()) == (b["x"].tolist(), b["last"].tolist())
    assert {**store.run("local", "proj", "r1"), "created": 0, "updated": 0} == {
        **whole.run("local", "proj", "r1"),
        "created": 0,
        "updated": 0,
    }
    whole.close()


def test_artifact_versions_count_per_name_and_aliases_move(store: Store) -> None:
    w = LogWriter()
    w.run("r1")
    w.record("artifact", {"name": "model", "type": "model", "digest": "d1", "aliases": ["best"]})
    w.record("artifact", {"name": "model", "type": "model", "digest": "d2"})
    w.record("artifact", {"name": "model", "type": "model", "digest": "d1"})  # v0 again
    w.record("artifact", {"name": "data", "type": "dataset", "digest": "d9"})
    store.ingest("local", "proj", "r1", w.body())
    versions = store.artifact_versions("local", "proj", "model")
    assert [(v["version"], v["digest"], v["aliases"]) for v in versions] == [
        ("v0", "d1", ["best", "latest"]),
        ("v1", "d2", []),
    ]
    assert store.artifact("local", "proj", "model", "latest")["digest"] == "d1"
    assert store.artifact("local", "proj", "model", "v1")["digest"] == "d2"
    collections = store.artifact_collections("local", "proj")
    assert [(c["name"], c["type"], c["versions"]) for c in collections] == [
        ("data", "dataset", 1),
        ("model", "model", 2),
    ]
    logged = store.run_artifacts("local", "proj", "r1")
    assert [(a["name"], a["version"]) for a in logged] == [
        ("data", "v0"),
        ("model", "v0"),
        ("model", "v1"),
    ]
    assert store.set_manifest("local", "proj", "model", "d2", {"a.txt": {}}, {"k": 1}) == "v1"
    assert store.artifact("local", "proj", "model", "v1")["entries"] == {"a.txt": {}}


def test_keys_blobs_and_anonymous_spaces(store: Store) -> None:
    assert not store.has_keys()
    key = store.create_key("team")
    assert store.has_keys()
    assert store.entity_for_key(key) == "team"
    assert store.entity_for_key(key + "x") is None
    space = store.create_anonymous()
    assert store.anonymous_exists(space)
    assert not store.anonymous_exists(space + "x")
    assert not store.anonymous_exists("team")
    store.add_blob("team", "a" * 64, 10)
    store.add_blob("team", "a" * 64, 10)  # twice: once
    store.add_blob("team", "b" * 64, 5)
    assert store.blob_bytes("team") == 15
    assert store.missing_blobs("team", ["a" * 64, "c" * 64]) == ["c" * 64]
    assert store.has_blob("team", "b" * 64)
    assert not store.has_blob("other", "b" * 64)


def test_sweeps_workspaces_and_reports_on_the_store(client: TestClient, store: Store) -> None:
    # the sweep tables through the HTTP API (fulmen.sweep._sql on the store's transactions):
    # two agents claim every grid point once, the finished values read back
    base = "/api/v1/entities/local/projects/proj/sweeps"
    grid = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"a": {"values": [1, 2]}}}
    sweep_id = client.post(base, json={"config": grid, "seed": 3}).json()["id"]
    agents = [client.post(f"{base}/{sweep_id}/agents", json={"pid": 1}).json()["id"]
              for _ in range(2)]  # fmt: skip
    claimed = []
    while True:
        body = {"agent": agents[len(claimed) % 2]}
        claim = client.post(f"{base}/{sweep_id}/next", json=body).json()
        if claim["kind"] != "trial":
            break
        trial = claim["trial"]
        claimed.append(trial["params"]["a"])
        finish = {"state": "finished", "value": float(trial["params"]["a"])}
        assert client.post(f"{base}/{sweep_id}/trials/{trial['number']}/finish",
                           json=finish).json() == {"ok": True}  # fmt: skip
    assert sorted(claimed) == [1, 2]
    page = client.get(f"{base}/{sweep_id}").json()
    assert page["state"] == "finished"
    assert page["best"]["value"] == 1.0
    # workspaces
    assert store.workspace("local", "proj", "") is None
    saved = store.put_workspace("local", "proj", "", {"panels": [{"key": "loss"}]})
    assert store.workspace("local", "proj", "") == {
        "layout": {"panels": [{"key": "loss"}]},
        "updated": saved,
    }
    store.put_workspace("local", "proj", "", {"panels": []})
    assert store.workspace("local", "proj", "") == {"layout": {"panels": []}, "updated": ANY}
    store.delete_workspace("local", "proj", "")
    assert store.workspace("local", "proj", "") is None
    # reports and their frozen run sets' snapshots
    report = {"id": "rep1", "title": "T", "description": "d", "author": None, "created": 1.0,
              "updated": 2.0, "blocks": [{"type": "markdown", "text": "hi"}]}  # fmt: skip
    store.save_report("local", "proj", report, {"rs1": {"runs": [1]}, "rs2": {"runs": [2]}})
    assert store.report_exists("local", "proj", "rep1")
    assert [r["id"] for r in store.reports("local", "proj")] == ["rep1"]
    assert store.report("local", "proj", "rep1")["blocks"] == report["blocks"]
    store.save_report("local", "proj", {**report, "title": "T2"}, {"rs1": None})
    assert store.report("local", "proj", "rep1")["title"] == "T2"
    assert store.report_snapshots("local", "proj", "rep1") == {"rs1": {"runs": [1]}}
    store.delete_report("local", "proj", "rep1")
    assert not store.report_exists("local", "proj", "rep1")
    with pytest.raises(NotFound):
        store.delete_report("local", "proj", "rep1")


@pytest.mark.parametrize("x", ["_step", "trainer/global_step"])
def test_a_chart_of_many_runs_is_each_runs_chart(store: SqlStore, x: str) -> None:
    # runs of different lengths (so different levels), two keys, one run lacking one of them:
    # over one range, the chart of all of them at once is the chart of each alone
    import numpy as np

    lengths = {"r0": 5, "r1": 700, "r2": 5_000, "r3": 20_000}
    for r, rows in lengths.items():
        w = LogWriter()
        w.run(r)
        for i in range(rows):
            row = {"loss": np.sin(i / 50.0) + rows, "trainer/global_step": 2 * i}
            if r != "r1":
                row["acc"] = i / rows
            w.history(i, row)
        store.ingest("local", "proj", r, w.body())
    runs = ("r3", "r0", "r2", "r1")
    keys = ("loss", "acc")
    together = store.history("local", "proj", HistoryQuery(runs, keys, 50, x, 100.0, 900.0))
    assert [(s["run"], s["key"]) for s in together] == [(r, k) for r in runs for k in keys]
    for s in together:
        query = HistoryQuery((s["run"],), (s["key"],), 50, x, 100.0, 900.0)
        [alone] = store.history("local", "proj", query)
        for field in ("x", "min", "max", "last", "count"):
            assert s[field].tolist() == alone[field].tolist(), (s["run"], s["key"], field)
    everything = store.history("local", "proj", HistoryQuery(runs, keys, 50, x))
    for s in everything:  # the whole range: every point counted, the extremes kept
        rows = 0 if (s["run"], s["key"]) == ("r1", "acc") else lengths[s["run"]]
        assert int(sum(s["count"])) == rows
        if rows and s["key"] == "loss":
            assert float(np.nanmax(s["max"])) == max(np.sin(i / 50.0) + rows for i in range(rows))
    with pytest.raises(NotFound, match="r9"):
        store.history("local", "proj", HistoryQuery(("r0", "r9"), ("loss",)))


def test_columns_are_kept_until_a_run_of_the_project_changes(store: Store) -> None:
    """The columns() answer is kept per project, and read again once a run of it changes: a new
    run, a new batch of an existing one (a config key, a tag), a run gone; another project's
    changes leave it kept."""
    assert isinstance(store, SqlStore)
    w = LogWriter()
    w.run("r1")
    w.record("config", {"lr": 0.1})
    store.ingest("local", "proj", "r1", w.body())
    first = store.columns("local", "proj")
    assert first["config"] == {"lr": 1}
    first["config"]["lr"] = 99  # a caller's copy: what is kept is not changed
    calls: list[str] = []
    read = store._read_columns

    def counted(con: object, entity: str, project: str) -> dict[str, object]:
        calls.append(project)
        return read(con, entity, project)  # type: ignore[arg-type]

    store._read_columns = counted  # type: ignore[method-assign]
    assert store.columns("local", "proj")["config"] == {"lr": 1}
    assert calls == []  # kept
    other = LogWriter()
    other.run("o1", "other")
    store.ingest("local", "other", "o1", other.body())
    assert store.columns("local", "proj")["config"] == {"lr": 1}
    assert calls == []  # another project changed, not this one
    w.record("config", {"model": {"depth": 3}})
    store.ingest("local", "proj", "r1", w.frames[-1])
    assert store.columns("local", "proj")["paths"]["config"] == {"lr": 1, "model.depth": 1}
    assert calls == ["proj"]
    w.run("r1", tags=["new"])  # a tags edit: a run record of the same run
    store.ingest("local", "proj", "r1", w.frames[-1])
    store.columns("local", "proj")
    assert calls == ["proj", "proj"]
    two = LogWriter()
    two.run("r2")
    two.record("config", {"lr": 0.2})
    store.ingest("local", "proj", "r2", two.body())
    assert store.columns("local", "proj")["config"] == {"lr": 2, "model": 1}
    with store.engine.write() as con:  # a run gone (no route deletes runs yet)
        con.execute("DELETE FROM runs WHERE run_id=?", ("r2",))
    assert store.columns("local", "proj")["config"] == {"lr": 1, "model": 1}
    assert calls == ["proj", "proj", "proj", "proj"]
