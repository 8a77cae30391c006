"""Ingest and queries through the in-process ASGI client, on each store engine: idempotency,
rewinds, late values, filters, buckets, export, files and artifacts (those on both blob stores:
``blob_backend``)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from fulmen.server.app import ServerConfig, create_app
from fulmen.server.store import Store
from tests.server.optional import require
from tests.server.runlogs import CLIENT_HEADERS, LogWriter
from tests.server.s3 import BlobBackend

RUNS = "/api/v1/entities/local/projects/proj/runs"


@pytest.fixture
def client(tmp_path: Path, store: Store) -> TestClient:  # on each engine (conftest's store)
    config = ServerConfig(data=tmp_path / "data")
    return TestClient(create_app(config, store=store), headers=CLIENT_HEADERS)


@pytest.fixture
def blob_client(tmp_path: Path, blob_backend: BlobBackend) -> TestClient:
    """``client`` with its blobs in the data folder, then in an S3 bucket."""
    app = create_app(ServerConfig(data=tmp_path / "data"), blobs=blob_backend.store())
    return TestClient(app, headers=CLIENT_HEADERS)


def post(client: TestClient, run_id: str, body: bytes, **headers: str) -> int:
    r = client.post(f"{RUNS}/{run_id}/records", content=body, headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["held"])


def export(client: TestClient, run_id: str) -> list[dict[str, object]]:
    r = client.get(f"{RUNS}/{run_id}/history/export", params={"format": "jsonl"})
    return [json.loads(line) for line in r.text.splitlines()]


def simple_run(run_id: str = "r1", n: int = 50) -> LogWriter:
    w = LogWriter()
    w.run(run_id, tags=["a", "b"], group="g1")
    w.record("config", {"lr": 0.1, "opt": {"name": "sgd"}})
    for i in range(n):
        w.history(i, {"loss": 1.0 / (i + 1), "epoch": i // 10}, runtime=i * 0.5)
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 30.0})
    return w


def test_any_range_resent_changes_nothing(client: TestClient) -> None:
    w = simple_run()
    frames = w.frames
    assert post(client, "r1", b"".join(frames[:20])) == 20
    assert post(client, "r1", b"".join(frames[5:30])) == 30  # overlap: only 21..30 are new
    assert post(client, "r1", b"".join(frames[40:])) == 30  # a gap: nothing past 30 is taken
    assert post(client, "r1", w.body()) == len(frames)
    before = client.get(f"{RUNS}/r1").json()
    assert post(client, "r1", w.body()) == len(frames)
    after = client.get(f"{RUNS}/r1").json()
    assert {**before, "updated": 0} == {**after, "updated": 0}
    assert [r["loss"] for r in export(client, "r1")] == [1.0 / (i + 1) for i in range(50)]
    assert client.get(f"{RUNS}/r1/records").json() == {"held": len(frames)}


def test_compressed_bodies_are_accepted(client: TestClient) -> None:
    w = simple_run()
    assert post(client, "r1", gzip.compress(w.body()), **{"content-encoding": "gzip"}) > 0
    w2 = simple_run("r2")
    assert post(client, "r2", zlib.compress(w2.body()), **{"content-encoding": "deflate"}) > 0
    assert len(export(client, "r2")) == 50


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"\xa1\x05garbage", {}, 400),
        (b"not frames at all", {}, 400),
        (b"\x00" * 100, {"content-encoding": "gzip"}, 400),
        (b"x", {"content-encoding": "br"}, 415),
    ],
)
def test_malformed_bodies_are_4xx(
    client: TestClient, body: bytes, headers: dict[str, str], status: int
) -> None:
    r = client.post(f"{RUNS}/bad/records", content=body, headers=headers)
    assert r.status_code == status, r.text


def test_oversized_bodies_are_413(tmp_path: Path) -> None:
    small = TestClient(
        create_app(ServerConfig(data=tmp_path, max_batch=1000)), headers=CLIENT_HEADERS
    )
    w = simple_run()
    assert small.post(f"{RUNS}/r1/records", content=w.body()).status_code == 413
    bomb = gzip.compress(b"\0" * 10_000_000)  # a decompression bomb stops at the limit
    r = small.post(f"{RUNS}/r1/records", content=bomb, headers={"content-encoding": "gzip"})
    assert r.status_code == 413


def test_rewind_lower_steps_and_late_values(client: TestClient) -> None:
    w = LogWriter()
    w.run("rw")
    for i in range(10):
        w.history(i, {"x": float(i)})
    w.record("rewind", {"step": 6})  # a resumed run goes back to step 6
    for i in range(6, 8):
        w.history(i, {"x": 100.0 + i})
    w.history(3, {"x": -1.0})  # a lower step without a rewind: kept as its own row
    w.history(3, {"y": 5.0}, patch=True)  # a late value for the row at step 3
    post(client, "rw", w.body())
    rows = export(client, "rw")
    assert [(r["_step"], r.get("x")) for r in rows] == [
        *[(i, float(i)) for i in range(6)],
        (6, 106.0),
        (7, 107.0),
        (3, -1.0),
    ]
    assert rows[-1]["y"] == 5.0
    chart = client.get(
        "/api/v1/entities/local/projects/proj/history",
        params={"run": "rw", "key": "x", "buckets": 100},
    ).json()["series"][0]
    assert sum(chart["count"]) == 9  # rewound points are gone, the lower step is kept
    assert min(chart["min"]) == -1.0
    assert max(chart["max"]) == 107.0
    run = client.get(f"{RUNS}/rw").json()
    assert run["history_keys"] == {"_step": 9, "x": 9, "y": 1}
    assert run["rows"] == 9  # 12 rows logged, 3 rewound


def test_buckets_keep_spikes_and_zoom(client: TestClient) -> None:
    w = LogWriter()
    w.run("big")
    for i in range(20_000):
        w.history(i, {"v": 1000.0 if i == 12_345 else float(i % 7), "gs": i * 4})
    post(client, "big", w.body())
    q = {"run": "big", "key": "v", "buckets": 10}
    series = client.get("/api/v1/entities/local/projects/proj/history", params=q).json()
    s = series["series"][0]
    assert sum(s["count"]) == 20_000 and max(s["max"]) == 1000.0 and min(s["min"]) == 0.0  # noqa: PT018
    zoom = client.get(
        "/api/v1/entities/local/projects/proj/history",
        params={**q, "min": 12_300, "max": 12_399, "buckets": 100},
    ).json()["series"][0]
    assert zoom["x"][zoom["max"].index(1000.0)] == 12_345  # exact at this zoom
    custom = client.get(
        "/api/v1/entities/local/projects/proj/history", params={**q, "x": "gs"}
    ).json()["series"][0]
    assert custom["x"][0] == 0
    assert max(custom["max"]) == 1000.0
    wall = client.get("/api/v1/entities/local/projects/proj/history", params={**q, "x": "_runtime"})
    assert wall.status_code == 200


def test_the_binary_history_answer_holds_the_json_answer(client: TestClient) -> None:
    import numpy as np

    w = LogWriter()
    w.run("a")
    for i in range(300):  # a NaN, a spike, and a key that run b lacks
        w.history(i, {"v": float("nan") if i == 7 else 100.0 if i == 150 else i % 5, "u": i})
    post(client, "a", w.body())
    post(client, "b", simple_run("b", 40).body())
    q = {"run": ["a", "b"], "key": ["v", "loss"], "buckets": 30, "x": "_step"}
    url = "/api/v1/entities/local/projects/proj/history"
    plain = client.get(url, params=q).json()
    r = client.get(url, params={**q, "format": "binary"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.fulmen.history"
    body = r.content
    h = int.from_bytes(body[:4], "little")
    head = json.loads(body[4 : 4 + h])
    at = 4 + h + (-(4 + h) % 8)
    assert at % 8 == 0
    assert (head["x"], head["buckets"]) == (plain["x"], plain["buckets"])
    assert [(s["run"], s["key"]) for s in head["series"]] == [
        (s["run"], s["key"]) for s in plain["series"]
    ]
    for meta, want in zip(head["series"], plain["series"], strict=True):
        for field in ("x", "min", "max", "last", "count"):
            got = np.frombuffer(body, "<f8", meta["n"], at)
            at += 8 * meta["n"]
            assert [None if np.isnan(v) else v for v in got.tolist()] == want[field], field
    assert at == len(body)
    assert any(s["x"] == [] for s in plain["series"])  # run b has no "v": an empty series
    bad = client.get(url, params={**q, "format": "xml"})
    assert bad.status_code == 422
    assert "format" in bad.text


def test_runs_filter_sort_page(client: TestClient) -> None:
    for i in range(12):
        w = LogWriter()
        w.run(f"r{i}", tags=["even"] if i % 2 == 0 else [], group=f"g{i % 3}")
        w.record("config", {"lr": i / 10, "model": {"depth": i}})
        w.history(0, {"loss": float(12 - i)})
        if i < 10:
            w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 1.0})
        post(client, f"r{i}", w.body())
    page = client.get(
        RUNS,
        params={"filter": ["config.lr>=0.3", "config.model.depth<9"], "sort": "summary.loss"},
    ).json()
    assert [r["id"] for r in page["runs"]] == ["r8", "r7", "r6", "r5", "r4", "r3"]
    slim = client.get(
        RUNS, params={"field": ["config.model.depth", "summary.loss", "config.nope"], "limit": 1}
    ).json()["runs"][0]
    assert (slim["config"], slim["summary"]) == ({"model": {"depth": 11}}, {"loss": 1.0})
    bare = client.get(RUNS, params={"field": "tags", "limit": 1}).json()["runs"][0]
    assert (bare["config"], bare["summary"], bare["tags"]) == ({}, {}, [])  # run fields only
    bad_field = client.get(RUNS, params={"field": "bogus"})
    assert bad_field.status_code == 422
    assert "'bogus'" in bad_field.json()["detail"]
    assert client.get(RUNS, params={"state": "running"}).json()["total"] == 2
    assert client.get(RUNS, params={"tag": "even", "group": "g0"}).json()["total"] == 2
    paged = client.get(RUNS, params={"sort": "name", "limit": 5, "offset": 10}).json()
    assert paged["total"] == 12
    assert len(paged["runs"]) == 2
    assert client.get(RUNS, params={"sort": "bogus"}).status_code == 422
    assert client.get(RUNS, params={"filter": "config.a'b=1"}).status_code in (200, 422)
    searched = client.get(RUNS, params={"search": "R1", "sort": "run_id"}).json()["runs"]
    assert [r["id"] for r in searched] == ["r1", "r10", "r11"]
    assert client.get(RUNS, params={"search": "%"}).json()["total"] == 0  # no LIKE wildcards
    columns = client.get("/api/v1/entities/local/projects/proj/columns").json()
    assert columns["config"] == {"lr": 12, "model": 12}
    assert columns["summary"] == {"loss": 12}
    assert columns["history"] == {"_step": 12, "loss": 12}
    assert columns["paths"] == {"config": {"lr": 12, "model.depth": 12}, "summary": {"loss": 12}}
    projects = client.get("/api/v1/entities/local/projects").json()["projects"]
    assert projects[0]["name"] == "proj"
    assert projects[0]["runs"] == 12


def test_columns_list_leaf_paths(client: TestClient) -> None:
    """The column picker's paths, walked by each engine's SQL: into nested objects, not into
    lists, media values or empty objects; keys with spaces, dots and quotes kept whole."""
    image = {"_type": "image-file", "path": "media/a.png", "width": 2}
    for i, config in enumerate(
        [
            {"model": {"depth": 2, "act": {"name": "relu"}}, "sizes": [1, {"x": 2}], "empty": {}},
            {"model": 3, "key with space": {"k.d": 1, 'q"uote': {"deep": [{"no": 1}]}}},
        ]
    ):
        w = LogWriter()
        w.run(f"c{i}")
        w.record("config", config)
        w.record("summary", {"update": {"img": image, "val/loss": 0.5, "m": {"a": i, "i": image}}})
        post(client, f"c{i}", w.body())
    columns = client.get("/api/v1/entities/local/projects/proj/columns").json()
    assert columns["config"] == {"empty": 1, "key with space": 1, "model": 2, "sizes": 1}
    assert columns["paths"]["config"] == {
        "empty": 1,
        "key with space.k.d": 1,
        'key with space.q"uote.deep': 1,
        "model": 1,
        "model.act.name": 1,
        "model.depth": 1,
        "sizes": 1,
    }
    assert columns["summary"] == {"img": 2, "m": 2, "val/loss": 2}
    assert columns["paths"]["summary"] == {"img": 2, "m.a": 2, "m.i": 2, "val/loss": 2}


def test_a_runs_page_reads_its_rows_in_chunks_in_sort_order(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page sorts only the runs' ids, then reads their rows (a chunk of ids at a time): the
    runs come back in the sort's order, whatever the chunks."""
    from fulmen.server import _sqlstore

    monkeypatch.setattr(_sqlstore, "PAGE_CHUNK", 3)
    for i in range(8):
        w = LogWriter()
        w.run(f"p{i}")
        w.record("summary", {"update": {"acc": (i * 5) % 8 / 8}})
        post(client, f"p{i}", w.body())
    everything = client.get(RUNS, params={"sort": "-summary.acc"}).json()["runs"]
    order = [r["id"] for r in everything]
    assert order == sorted(order, key=lambda i: -((int(i[1:]) * 5) % 8))
    page = client.get(RUNS, params={"sort": "-summary.acc", "limit": 5, "offset": 2}).json()
    assert page["total"] == 8
    assert [r["id"] for r in page["runs"]] == order[2:7]
    assert page["runs"][0]["summary"] == everything[2]["summary"]


def test_runs_picked_by_id_come_in_one_answer(client: TestClient) -> None:
    """``run=`` (repeatable): those runs only, as the run comparer fetches the runs it shows."""
    for i in range(5):
        w = LogWriter()
        w.run(f"r{i}")
        w.record("config", {"lr": i / 10})
        post(client, f"r{i}", w.body())
    page = client.get(RUNS, params={"run": ["r3", "r1", "nope", "r3"], "sort": "run_id"}).json()
    assert [r["id"] for r in page["runs"]] == ["r1", "r3"]  # an unknown id is no run, not an error
    assert page["total"] == 2
    assert page["runs"][1]["config"] == {"lr": 0.3}  # whole runs
    both = client.get(RUNS, params={"run": ["r1", "r3"], "filter": "config.lr>=0.2"}).json()
    assert [r["id"] for r in both["runs"]] == ["r3"]  # and the other conditions too
    bad = client.get(RUNS, params={"run": "a/b"})
    assert bad.status_code == 422
    assert "'a/b'" in bad.json()["detail"]
    many = client.get(RUNS, params={"run": [f"x{i}" for i in range(1001)]})
    assert many.status_code == 422


def test_runs_filter_on_run_fields_contains_and_sort(client: TestClient) -> None:
    """The runs table's filter expressions become these: the run's own fields (name, state,
    tags, group, id, runtime...), ``~`` (contains), and sorting by any of them."""
    for i in range(6):
        w = LogWriter()
        tags = ["a", "big"] if i < 2 else ["b"]
        w.run(f"f{i}", name=f"exp-{i % 3}_x{i}", tags=tags, group=f"g{i % 2}")
        w.record("config", {"opt": "adam" if i % 2 else "sgd", "model": {"depth": i}})
        if i < 4:
            w.record("exit", {"exit_code": 0, "state": "finished", "runtime": float(i)})
        post(client, f"f{i}", w.body())

    def ids(*filters: str, sort: str = "id") -> list[str]:
        answer = client.get(RUNS, params={"filter": list(filters), "sort": sort})
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()["runs"]]

    assert ids('state="finished"', "runtime>=2") == ["f2", "f3"]
    assert ids("state!=finished") == ["f4", "f5"]
    assert ids("tags=a") == ["f0", "f1"]
    assert ids("tags!=a") == ["f2", "f3", "f4", "f5"]
    assert ids("tags~BI") == ["f0", "f1"]  # a tag contains, case-insensitive
    assert ids("name~exp-1") == ["f1", "f4"]
    assert ids("name~_x") == ids()  # LIKE wildcards are plain text
    assert ids("name~%") == []
    assert ids("config.opt~DA") == ["f1", "f3", "f5"]
    assert ids("group=g0", "config.model.depth>1") == ["f2", "f4"]
    assert ids("id=f3") == ["f3"]
    assert ids(sort="-config.model.depth") == ["f5", "f4", "f3", "f2", "f1", "f0"]
    assert ids(sort="group")[:3] == ["f0", "f2", "f4"]
    assert ids(sort="-id")[0] == "f5"
    bad = client.get(RUNS, params={"filter": "tags>1"})
    assert bad.status_code == 422
    assert "tags" in bad.json()["detail"]
    unknown = client.get(RUNS, params={"filter": "colour=red"})
    assert unknown.status_code == 422
    assert "'colour=red'" in unknown.json()["detail"]
    assert client.get(RUNS, params={"filter": "state<null"}).status_code == 422
    assert ids("runtime<100000000000000000000000") == ids()  # beyond int64
    assert ids("runtime>100000000000000000000000") == []


def test_console_system_files_and_exports(blob_client: TestClient) -> None:
    client = blob_client
    w = simple_run()
    w.console("hello\n")
    w.record("stats", {"cpu": 12.5})
    w.record("file", {"path": "notes/a.txt", "type": "user", "size": 5})
    post(client, "r1", w.body())
    assert client.get(f"{RUNS}/r1/console").json()["lines"][0]["text"] == "hello\n"
    assert client.get(f"{RUNS}/r1/system").json()["stats"][0]["cpu"] == 12.5
    content = b"hello"
    digest = hashlib.sha256(content).hexdigest()
    put = client.put(f"{RUNS}/r1/files/notes/a.txt", content=content, params={"digest": digest})
    assert put.status_code == 200
    wrong = client.put(f"{RUNS}/r1/files/notes/a.txt", content=b"x", params={"digest": digest})
    assert wrong.status_code == 400
    assert client.get(f"{RUNS}/r1/files/notes/a.txt").content == content
    assert client.get(f"{RUNS}/r1/files").json()["files"][0]["uploaded"] is True
    w2 = LogWriter(seq=w.seq)
    w2.history(50, {"hist": {"_type": "histogram", "bins": [0, 1], "values": [3]}})
    post(client, "r1", w2.body())
    w3 = LogWriter(seq=w2.seq)
    w3.record("rewind", {"step": 51})  # nothing to drop at 51
    w3.history(51, {"hist": {"_type": "histogram", "values": [float("nan")]}, "t": "x"})
    w3.history(51, {"hist": {"_type": "histogram", "values": [4]}}, patch=True)  # late: replaces
    post(client, "r1", w3.body())
    got = client.get(f"{RUNS}/r1/history/values", params={"key": "hist"}).json()["values"]
    assert [(v["_step"], v["value"]["values"]) for v in got] == [(50, [3]), (51, [4])]
    nan = client.get(f"{RUNS}/r1/history/values", params={"key": "t", "min": 51}).json()
    assert nan["values"][0]["value"] == "x"
    w4 = LogWriter(seq=w3.seq)
    w4.record("rewind", {"step": 51})  # drops the row at 51 and its values
    post(client, "r1", w4.body())
    got = client.get(f"{RUNS}/r1/history/values", params={"key": "hist"}).json()["values"]
    assert [v["_step"] for v in got] == [50]
    picked = client.get(
        f"{RUNS}/r1/history/export", params={"format": "jsonl", "key": "hist"}
    ).text.splitlines()
    assert [json.loads(line)["hist"]["values"] for line in picked] == [[3]]
    assert set(json.loads(picked[0])) == {"_step", "_runtime", "_timestamp", "hist"}
    csv = client.get(f"{RUNS}/r1/history/export").text.splitlines()
    assert csv[0] == "_step,_runtime,_timestamp,loss,epoch,hist,t"
    assert len(csv) == 52
    pq = require("pyarrow.parquet")
    table = pq.read_table(
        io.BytesIO(client.get(f"{RUNS}/r1/history/export?format=parquet").content)
    )
    assert table.column("loss").to_pylist() == [*(1.0 / (i + 1) for i in range(50)), None]


def test_artifacts_upload_only_missing_blobs(blob_client: TestClient) -> None:
    client = blob_client
    blob = b"weights"
    digest = hashlib.sha256(blob).hexdigest()
    entries = {"model.pt": {"digest": digest, "size": len(blob)}}
    manifest_digest = hashlib.sha256(json.dumps(sorted(entries.items())).encode()).hexdigest()
    w = simple_run()
    w.record(
        "artifact",
        {"name": "model-r1", "type": "model", "version": "v0", "digest": manifest_digest,
         "aliases": ["best"], "used": False, "entries": 1},
    )  # fmt: skip
    post(client, "r1", w.body())
    missing = client.post("/api/v1/entities/local/blobs/missing", json={"digests": [digest]})
    assert missing.json() == {"missing": [digest]}
    base = "/api/v1/entities/local/projects/proj/artifacts/model-r1"
    body = {"digest": manifest_digest, "entries": entries}
    assert client.put(f"{base}/manifest", json=body).status_code == 409  # blob first
    assert client.put(f"/api/v1/entities/local/blobs/{digest}", content=blob).status_code == 200
    assert client.post(
        "/api/v1/entities/local/blobs/missing", json={"digests": [digest]}
    ).json() == {"missing": []}
    assert client.put(f"{base}/manifest", json=body).status_code == 200
    assert client.get(base).json()["versions"][0]["aliases"] == ["best", "latest"]
    assert client.get(f"{base}/best").json()["entries"] == entries
    assert client.get(f"{base}/v0/files/model.pt").content == blob
    logged = client.get(f"{RUNS}/r1/artifacts").json()["artifacts"]
    assert [(a["name"], a["version"], a["aliases"]) for a in logged] == [
        ("model-r1", "v0", ["best", "latest"])
    ]
    listing = client.get("/api/v1/entities/local/projects/proj/artifacts").json()
    assert listing["artifacts"][0]["name"] == "model-r1"


def test_names_follow_the_clients_rules(client: TestClient) -> None:
    w = LogWriter()
    w.run("r1", project="my project (v2) ü")
    project = quote("my project (v2) ü", safe="")
    url = f"/api/v1/entities/local/projects/{project}/runs"
    assert client.post(f"{url}/r1/records", content=w.body()).status_code == 200
    assert client.get(url).json()["total"] == 1
    for bad in ("%2e%2e", "a%5cb", "a%01b", "x" * 129):
        assert client.get(f"/api/v1/entities/local/projects/{bad}/runs").status_code == 422
    assert client.get("/api/v1/entities/local/projects/p/runs/bad%20id").status_code == 422


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("exit", {"state": "finished", "runtime": "soon"}),
        ("file", {"size": 3}),
        ("artifact", {"name": 5}),
        ("run", {"id": "r1", "time": "now"}),
        ("config", ["not", "an", "object"]),
        ("rewind", {"step": "x"}),
    ],
)
def test_records_with_wrong_fields_are_refused_alone(
    client: TestClient, kind: str, body: object
) -> None:
    w = LogWriter()
    w.run("r1")
    w.record(kind, body)
    r = client.post(f"{RUNS}/r1/records", content=w.body())
    assert r.status_code == 200, r.text  # never a 400 for the whole batch (issue 18)
    [refusal] = r.json()["refused"]
    assert (refusal["seq"], refusal["kind"]) == (2, kind)
    assert refusal["field"].startswith(kind)
    assert client.get(f"{RUNS}/r1/records").json() == {"held": 2}  # the RUN before it is kept
    assert client.get(f"{RUNS}/r1").json()["state"] == "running"


def test_corrupted_records_with_valid_checksums_never_500(client: TestClient) -> None:
    import random

    from fulmen.track import runlog as R

    w = LogWriter()
    w.run("r1")
    w.record("config", {"a": 1})
    for i in range(5):
        w.history(i, {"x": float(i), "s": "text", "m": {"_type": "image"}})
    w.history(5, {"y": 1.0}, patch=True)
    w.console("out\n")
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 1.0})
    rng = random.Random(0)
    for trial in range(300):
        i = rng.randrange(len(w.frames))
        raw = w.frames[i]
        _, pos = R.read_uvarint(raw, 1)
        payload = bytearray(raw[pos + 4 :])  # after lead, length and CRC
        for _ in range(rng.randint(1, 4)):  # damage the body, keep the sequence number
            payload[rng.randrange(4, len(payload))] = rng.randrange(256)
        mutated = [*w.frames[:i], R.frame(raw[0] & 0x0F, bytes(payload)), *w.frames[i + 1 :]]
        r = client.post(f"{RUNS}/m{trial}/records", content=b"".join(mutated))
        assert r.status_code in (200, 400), (trial, r.status_code, r.text)


def test_the_summary_is_the_writers_summary(client: TestClient, tmp_path: Path) -> None:
    # the server keeps the writer's own SummaryState between batches: the same summary as the
    # local reader replaying the same run log, over fast (numeric) rows, slow rows and two batches
    from fulmen.track._replay import replay

    path = tmp_path / "run.fulmen"
    w = LogWriter(path)
    w.run("sum1")
    w.record("metric", {"name": "loss", "summary": ["min", "max", "mean", "first", "last"]})
    w.record("metric", {"name": "acc*", "summary": ["max"]})
    for i in range(40):
        w.history(i, {"loss": float(40 - i) if i != 7 else float("nan"), "acc/top1": i / 40})
    w.history(40, {"loss": 0.5, "note": "a string keeps this row on the slow path"})
    w.record("summary", {"update": {"best": 3, "gone": 1}, "remove": []})
    w.record("summary", {"update": {}, "remove": ["gone"]})
    w.history(41, {"loss": 0.25, "acc/top1": 0.0})
    frames = w.frames
    post(client, "sum1", b"".join(frames[:25]))
    post(client, "sum1", b"".join(frames[25:]))
    expected = replay(path).summary.result()
    assert expected["loss"] == {
        "min": 0.25,
        "max": 40.0,
        "mean": pytest.approx((sum(40 - i for i in range(40) if i != 7) + 0.75) / 41),
        "first": 40.0,
        "last": 0.25,
    }
    assert client.get(f"{RUNS}/sum1").json()["summary"] == expected


def test_a_refused_batch_is_logged_to_fulmen_server(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="fulmen.server"):
        r = client.post(f"{RUNS}/bad1/records", content=b"\xa3\x05garbage")
    assert r.status_code == 400
    [record] = [r for r in caplog.records if r.name == "fulmen.server"]
    assert record.levelname == "WARNING"
    assert "ingest refused for run local/proj/bad1" in record.getMessage()
    assert r.json()["detail"] in record.getMessage()
