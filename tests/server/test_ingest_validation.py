"""Ingest validation (issue 18): a crafted or broken value in one record is refused, by sequence
number and field, while the records around it are stored and ``held`` moves past it; no stored
value, however it got into the database, makes a page or an API answer fail."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fulmen.server._sqlstore import SqlStore
from fulmen.server.app import ServerConfig, create_app
from fulmen.server.store import Store
from fulmen.track import runlog as R
from tests.server.runlogs import CLIENT_HEADERS, KIND, LogWriter

RUNS = "/api/v1/entities/local/projects/proj/runs"


@pytest.fixture
def client(store: Store, tmp_path: Path) -> TestClient:  # on each engine (conftest's store)
    return TestClient(
        create_app(ServerConfig(data=tmp_path / "data"), store=store), headers=CLIENT_HEADERS
    )


def raw(w: LogWriter, kind: str, text: str) -> int:
    """A JSON record whose body is ``text`` exactly (what json.dumps would refuse to write)."""
    w.seq += 1
    return w._emit(kind, R.SEQ.pack(w.seq) + text.encode())


def json_row(w: LogWriter, step: int, key: str, text: str) -> int:
    """A HISTORY record with one ``j`` column holding the JSON text ``text``."""
    schema = raw(w, "schema", json.dumps({"id": 90 + w.seq, "columns": [[key, "j"]]}))
    schema_id = 90 + schema - 1
    w.seq += 1
    body = R.SEQ.pack(w.seq) + R.uvarint(schema_id) + R.svarint(w.seq - step)
    body += R.fixed_struct("j").pack(0) + R.uvarint(len(text.encode())) + text.encode()
    return w._emit("history", body)


def pages_answer(client: TestClient, run_id: str = "r1") -> None:
    """Every page and API answer that shows the run: none may fail."""
    for path in (
        "/",
        "/index.json",
        "/local/proj",
        "/local/proj.json",
        f"/local/proj/runs/{run_id}",
        f"/local/proj/runs/{run_id}.json",
        f"/local/proj/compare?run={run_id}",
        f"/local/proj/compare.json?run={run_id}",
        RUNS,
        f"{RUNS}?sort=-runtime",
        f"{RUNS}/{run_id}",
        "/api/v1/entities/local/projects/proj/columns",
        f"{RUNS}/{run_id}/history/export?format=jsonl",
        f"{RUNS}/{run_id}/history/export?format=csv",
        f"{RUNS}/{run_id}/system",
        f"{RUNS}/{run_id}/files",
        f"{RUNS}/{run_id}/artifacts",
    ):
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])


# (what to write as the bad record, the field its refusal names)
HOSTILE: list[tuple[str, Any, str]] = [
    ("exit", '{"exit_code":0,"state":"finished","runtime":1e999}', "exit.runtime"),
    ("run", '{"id":"r1","name":"r1","project":"proj","time":1e999}', "run.time"),
    ("run", '{"id":"r1","name":"r1","project":"proj","time":NaN}', "run.time"),
    ("run", '{"id":"r1","name":"r1","group":{"a":1}}', "run.group"),
    ("run", '{"id":"r1","name":"r1","notes":["a"]}', "run.notes"),
    ("run", '{"id":{"a":1},"name":"r1"}', "run.id"),
    ("run", '{"id":"r1","tags":[1,{"x":2}]}', "run.tags"),
    ("config", '{"a":' * 2000 + "1" + "}" * 2000, "config"),
    ("config", '{"deep":' + '{"a":' * 300 + "1" + "}" * 301, "config.deep." + "a." * 10),
    ("config", '{"big":1' + "0" * 400 + "}", "config.big"),
    ("config", '{"big":1' + "0" * 5000 + "}", "config"),
    ("summary", '{"update":{"x":[1' + "0" * 400 + "]}}", "summary.update.x.0"),
    ("summary", '{"update":[1,2]}', "summary.update"),
    ("artifact", '{"name":"m","version":{"a":1},"digest":"d"}', "artifact.version"),
    ("artifact", '{"name":"m","version":"v0","type":{"t":1},"digest":"d"}', "artifact.type"),
    ("artifact", '{"name":{"a":1},"digest":"d"}', "artifact.name"),
    ("file", '{"path":"a.txt","size":1' + "0" * 30 + "}", "file.size"),
    ("file", '{"path":["a"]}', "file.path"),
    ("metric", '{"name":"loss","summary":"min"}', "metric.summary"),
    ("rewind", '{"step":"3"}', "rewind.step"),
    ("schema", '{"id":5,"columns":[["k","zz"]]}', "schema.columns"),
    ("stats", "[1,2,3]", "stats"),
    ("config", "not json at all", "config"),
]


@pytest.mark.parametrize(
    ("kind", "text", "field"), HOSTILE, ids=[h[2] + "-" + h[1][:24] for h in HOSTILE]
)
def test_a_hostile_record_is_refused_by_seq_and_field_and_the_rest_is_stored(
    client: TestClient, kind: str, text: str, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    w = LogWriter()
    w.run("r1", group="g")
    w.record("config", {"lr": 0.1})
    w.history(0, {"loss": 1.0})
    bad = raw(w, kind, text)
    w.history(1, {"loss": 0.5})
    w.record("config", {"after": True})
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 3.0})
    with caplog.at_level(logging.WARNING, logger="fulmen.server"):
        r = client.post(f"{RUNS}/r1/records", content=w.body())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["held"] == w.seq  # past the refused record: the client does not resend it
    assert [(x["seq"], x["kind"]) for x in answer["refused"]] == [(bad, kind)]
    assert answer["refused"][0]["field"].startswith(field), answer["refused"]
    assert f"record {bad} ({kind})" in caplog.text
    run = client.get(f"{RUNS}/r1").json()
    assert run["config"] == {"lr": 0.1, "after": True}
    assert run["rows"] == 2
    assert run["state"] == "finished"
    assert run["group"] == "g"
    assert run["runtime"] == 3.0
    pages_answer(client)
    # the refused frame is not kept for export: a rebuild or export never meets it again
    kinds = [rec.kind for rec in R.read_records(R.header() + b"".join(_frames(client)))]
    assert len(kinds) == w.seq - 1


def _frames(client: TestClient) -> list[bytes]:
    store = client.app.state.resources.store  # type: ignore[attr-defined]
    return list(store.frames("local", "proj", "r1"))


def test_a_history_value_beyond_the_float_range_is_refused_by_key(client: TestClient) -> None:
    w = LogWriter()
    w.run("r1")
    w.history(0, {"loss": 1.0})
    bad = json_row(w, 1, "huge", "1" + "0" * 400)
    deep = json_row(w, 2, "deep", "[" * 300 + "]" * 300)
    w.history(3, {"loss": 0.25})
    r = client.post(f"{RUNS}/r1/records", content=w.body())
    assert r.status_code == 200, r.text
    refused = {x["seq"]: x["field"] for x in r.json()["refused"]}
    assert refused[bad] == "history.huge"
    assert refused[deep].startswith("history.deep.0.0.0")  # the path to the culprit (cut short)
    assert set(refused) == {bad, deep}
    assert r.json()["held"] == w.seq
    assert client.get(f"{RUNS}/r1").json()["summary"] == {"loss": 0.25}
    pages_answer(client)


def test_a_record_whose_body_does_not_decode_is_refused_not_the_batch(client: TestClient) -> None:
    w = LogWriter()
    w.run("r1")
    w.seq += 1
    bad = w._emit("history", R.SEQ.pack(w.seq) + b"\x07\x00")  # schema 7 was never declared
    w.seq += 1
    broken = w._emit("config", R.SEQ.pack(w.seq) + b"\xff\xfe{")  # not UTF-8, not JSON
    w.history(0, {"loss": 1.0})
    r = client.post(f"{RUNS}/r1/records", content=w.body())
    assert r.status_code == 200, r.text
    assert [x["seq"] for x in r.json()["refused"]] == [bad, broken]
    assert client.get(f"{RUNS}/r1").json()["rows"] == 1


def test_frames_that_are_not_frames_keep_what_came_before_and_refuse_a_batch_starting_there(
    client: TestClient,
) -> None:
    w = LogWriter()
    w.run("r1")
    w.record("config", {"lr": 0.1})
    garbage = b"\xa2\x05garbage"
    r = client.post(f"{RUNS}/r1/records", content=w.body() + garbage)
    assert r.status_code == 200, r.text
    assert r.json() == {"held": 2, "refused": [], "refused_total": 0}
    r = client.post(f"{RUNS}/r1/records", content=garbage)
    assert r.status_code == 400
    assert "malformed frame" in r.json()["detail"]
    short = R.frame(KIND["config"], b"\x03\x00")  # a whole frame too short to hold a sequence
    assert client.post(f"{RUNS}/r1/records", content=short).status_code == 400


def test_json_nested_past_the_parser_is_refused_and_reading_goes_on(client: TestClient) -> None:
    from fulmen.server._ingest import MAX_RESTARTS

    w = LogWriter()
    w.run("r1")
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000  # Python's parser gives up (RecursionError)
    bad = [raw(w, "config", deep) for _ in range(MAX_RESTARTS + 2)]
    w.record("config", {"after": 1})
    r = client.post(f"{RUNS}/r1/records", content=w.body())
    assert r.status_code == 200, r.text
    # the run log reader reports each such record as undecodable and goes on (no restart)
    assert r.json()["held"] == w.seq
    assert [x["seq"] for x in r.json()["refused"]] == bad
    assert client.get(f"{RUNS}/r1").json()["config"] == {"after": 1}


def test_lone_surrogates_as_the_client_escapes_them_are_stored_escaped(client: TestClient) -> None:
    name = "img_\udcff.png"  # os.fsdecode(b"img_\xff.png")
    w = LogWriter()
    w.run("r1", name=name, tags=[name], notes=name, group=name)
    w.record("config", {name: name, "nested": {"k": [name]}})
    w.history(0, {"loss": 1.0})
    json_row(w, 1, "sample", json.dumps(name))  # the client writes such a string as JSON
    w.record("summary", {"update": {name: name}})
    w.record("file", {"path": name, "type": "user", "size": 3})
    w.record("artifact", {"name": "model", "type": name, "digest": "d1", "aliases": [name]})
    w.seq += 1  # console text as an older writer encoded it (decoded with "replace")
    w._emit("console", R.SEQ.pack(w.seq) + b"\x01" + name.encode("utf-8", "surrogatepass"))
    r = client.post(f"{RUNS}/r1/records", content=w.body())
    assert r.status_code == 200, r.text
    assert r.json() == {"held": w.seq, "refused": [], "refused_total": 0}
    run = client.get(f"{RUNS}/r1").json()
    shown = "img_\\xff.png"
    assert (run["name"], run["group"], run["notes"], run["tags"]) == (shown, shown, shown, [shown])
    assert run["config"] == {shown: shown, "nested": {"k": [shown]}}
    assert run["summary"][shown] == shown
    assert run["summary"]["sample"] == shown
    files = client.get(f"{RUNS}/r1/files").json()["files"]
    assert [f["path"] for f in files] == [shown]
    values = client.get(f"{RUNS}/r1/history/values", params={"key": "sample"}).json()["values"]
    assert [v["value"] for v in values] == [shown]
    pages_answer(client)


def test_no_stored_value_breaks_a_page(client: TestClient, store: SqlStore) -> None:
    w = LogWriter()
    w.run("r1")
    w.history(0, {"loss": 1.0})
    w.record("artifact", {"name": "model", "type": "model", "digest": "d1"})
    w.record("stats", {"cpu": 1.0})
    w.record("file", {"path": "a.txt", "size": 1})
    assert store.ingest("local", "proj", "r1", w.body()) == w.seq
    # values no ingest writes, as an older server, a bug or a hand edit could have left them:
    # in SQLite anything (its columns take any type), in PostgreSQL what the column's type takes
    sqlite = store.engine.name == "sqlite"
    with store.engine.write() as con:
        con.execute(
            "UPDATE runs SET runtime=?, created=?, updated=?, name=?, grp=?, notes=?, tags=?, "
            "config=?, summary=?, meta=?, exit=?, metrics=?"
            + (", held=?" if sqlite else "")
            + " WHERE run_id='r1'",
            (
                math.inf,
                1e300,
                -math.inf,
                b"\xff\x00 blob" if sqlite else "\ufffd\\x00 blob",
                7 if sqlite else "7",
                3.5 if sqlite else "3.5",
                '{"not": "a list"}',
                '{"a": NaN, "b": Infinity, "c": [1e999]}' if sqlite else '[{"a": null}]',
                "not json" if sqlite else '"a string"',
                "[1, 2]",
                '"a string"',
                "{}",
                *(["x"] if sqlite else []),
            ),
        )
        con.execute("UPDATE stats SET data='{\"cpu\": NaN, '")
        if sqlite:
            con.execute("UPDATE files SET size=?, type=?", (math.nan, b"\x00"))
            con.execute("UPDATE artifacts SET metadata='[', entries='7', type=x'00ff'")
        else:
            con.execute("UPDATE files SET size=?, type=?", (-(2**62), "?"))
            con.execute("UPDATE artifacts SET metadata='[', entries='7', created='NaN'")
    pages_answer(client)
    run = client.get(f"{RUNS}/r1").json()
    assert run["runtime"] is None
    assert run["config"] == ({"a": None, "b": None, "c": [None]} if sqlite else {})
    assert run["summary"] == {}
    assert run["tags"] == []
    assert run["name"] == ("\ufffd\x00 blob" if sqlite else "\ufffd\\x00 blob")
    assert client.get("/local/proj/runs/r1").text.count("Internal Server Error") == 0


def test_a_frame_sent_twice_in_one_batch_is_applied_and_kept_once(client: TestClient) -> None:
    w = LogWriter()
    w.run("r1")
    w.history(0, {"loss": 1.0})
    w.history(1, {"loss": 0.5})
    frames = w.frames
    body = b"".join([*frames, frames[1], frames[2]])  # the schema and first row again
    w.history(2, {"loss": 0.25})
    body += w.frames[-1]
    r = client.post(f"{RUNS}/r1/records", content=body)
    assert r.json() == {"held": w.seq, "refused": [], "refused_total": 0}
    assert [rec.seq for rec in R.read_records(R.header() + b"".join(_frames(client)))] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert client.get(f"{RUNS}/r1").json()["rows"] == 3


def test_an_answer_lists_at_most_max_refusals_and_counts_them_all(client: TestClient) -> None:
    from fulmen.server._api_runs import MAX_REFUSALS

    w = LogWriter()
    w.run("r1")
    for _ in range(MAX_REFUSALS + 5):
        raw(w, "exit", '{"runtime":"x"}')
    w.record("config", {"after": 1})
    r = client.post(f"{RUNS}/r1/records", content=w.body())
    answer = r.json()
    assert answer["held"] == w.seq
    assert answer["refused_total"] == MAX_REFUSALS + 5
    assert [x["seq"] for x in answer["refused"]] == list(range(2, MAX_REFUSALS + 2))
    assert client.get(f"{RUNS}/r1").json()["config"] == {"after": 1}
