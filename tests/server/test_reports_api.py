"""Reports through the in-process ASGI client: create, read, replace, delete; every bad field a
422 naming it; the project's auth; a frozen run set unchanged by a new run; the pages and their
JSON twins; markdown rendered safe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fulmen.server import API_PREFIX, create_app
from fulmen.server.app import ServerConfig
from tests.server.runlogs import CLIENT_HEADERS, LogWriter

PROJECT = f"{API_PREFIX}/entities/local/projects/p"
REPORTS = f"{PROJECT}/reports"
EVIL = '<script>alert(1)</script>"&'


def log_run(client: TestClient, run_id: str, opt: str, scale: float, project: str = "p") -> None:
    w = LogWriter()
    w.run(run_id, project, name=f"run-{run_id}")
    w.record("config", {"opt": opt, "lr": scale})
    for i in range(30):
        w.history(i, {"loss": scale / (i + 1), "acc": 1 - scale / (i + 2)})
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 1.0})
    runs = f"{API_PREFIX}/entities/local/projects/{project}/runs"
    assert client.post(f"{runs}/{run_id}/records", content=w.body()).status_code == 200


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    data = tmp_path_factory.mktemp("reports") / "data"
    c = TestClient(create_app(ServerConfig(data=data)), headers=CLIENT_HEADERS)
    log_run(c, "a1", "adam", 1.0)
    log_run(c, "s1", "sgd", 2.0)
    return c


def grid(**runset: Any) -> dict[str, Any]:
    return {
        "kind": "panels",
        "runsets": [{"name": "all", **runset}],
        "panels": [
            {
                "kind": "line",
                "x": "_step",
                "y": ["loss"],
                "groupby": "config.opt",
                "band": "minmax",
            },
            {"kind": "bar", "metric": "acc", "agg": "max", "groupby": "config.opt"},
            {"kind": "table", "columns": ["name", "config.opt", "summary.acc"]},
        ],
    }


def test_a_report_is_created_read_replaced_listed_and_deleted(client: TestClient) -> None:
    body = {
        "title": "Adam vs SGD",
        "description": "two optimizers",
        "blocks": [
            {"kind": "markdown", "text": "# Results\n\nThe loss $L = \\frac{1}{n}$ falls."},
            grid(),
        ],
    }
    made = client.post(REPORTS, json=body)
    assert made.status_code == 201, made.text
    report = made.json()
    rid = report["id"]
    assert report["url"] == f"/local/p/reports/{rid}"
    assert report["author"] == "local"
    md, panels = report["blocks"]
    assert md["html"].startswith("<h1>Results</h1>")
    assert "<math" in md["html"]
    assert "<mfrac>" in md["html"]
    assert panels["runsets"][0]["id"]
    assert panels["runsets"][0]["project"] == "p"
    assert panels["runsets"][0]["frozen"] is False
    assert client.get(f"{REPORTS}/{rid}").json() == report

    again = {**report, "title": "Adam vs SGD, again", "blocks": report["blocks"][::-1]}
    put = client.put(f"{REPORTS}/{rid}", json=again)  # an answer, sent back as it came
    assert put.status_code == 200, put.text
    replaced = put.json()
    assert replaced["title"] == "Adam vs SGD, again"
    assert [b["kind"] for b in replaced["blocks"]] == ["panels", "markdown"]
    assert [b["id"] for b in replaced["blocks"]] == [b["id"] for b in report["blocks"][::-1]]
    assert replaced["created"] == report["created"]
    assert replaced["updated"] >= report["updated"]

    listed = client.get(REPORTS).json()["reports"]
    assert [r["id"] for r in listed if r["id"] == rid] == [rid]
    assert "blocks" not in listed[0]

    data = client.get(f"{REPORTS}/{rid}/data").json()
    (snapshot,) = data["data"].values()
    assert {r["id"] for r in snapshot["runs"]} == {"a1", "s1"}
    (line,) = [h["answer"] for h in snapshot["history"] if h["x"] == "_step"]
    loss = {s["run"]: s for s in line["series"] if s["key"] == "loss"}
    assert {s["key"] for s in line["series"]} == {"loss", "acc"}  # the line's and the bar's
    assert loss["a1"]["last"] == pytest.approx([1.0 / (i + 1) for i in range(30)], rel=1e-5)

    assert client.delete(f"{REPORTS}/{rid}").json() == {"deleted": rid}
    assert client.get(f"{REPORTS}/{rid}").status_code == 404
    assert client.put(f"{REPORTS}/{rid}", json=body).status_code == 404
    assert client.delete(f"{REPORTS}/{rid}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": 3}, "title"),
        ({"blokcs": []}, "body.blokcs"),
        ({"blocks": [{"kind": "video"}]}, "blocks[0].kind"),
        ({"blocks": [{"kind": "markdown", "text": None}]}, "blocks[0].text"),
        ({"blocks": [{"kind": "image", "url": "https://example.com/x.png"}]}, "blocks[0].url"),
        ({"blocks": [{"kind": "panels", "runsets": []}]}, "blocks[0].runsets"),
        ({"blocks": [{**grid(), "panels": [{"kind": "pie"}]}]}, "blocks[0].panels[0].kind"),
        ({"blocks": [{**grid(), "panels": [{"kind": "line", "y": []}]}]}, "blocks[0].panels[0].y"),
        (
            {
                "blocks": [
                    {
                        **grid(),
                        "panels": [{"kind": "line", "y": ["loss"], "smoothing": {"type": "fancy"}}],
                    }
                ]
            },
            "blocks[0].panels[0].smoothing.type",
        ),
        (
            {"blocks": [{**grid(), "panels": [{"kind": "scatter", "x": "lr", "y": "summary.a"}]}]},
            "blocks[0].panels[0].x",
        ),
        ({"blocks": [grid(filters=["lr<1"])]}, "blocks[0].runsets[0].filters[0]"),
        ({"blocks": [grid(entity="someone-else")]}, "blocks[0].runsets[0].entity"),
        ({"blocks": [grid(selection=["../x"])]}, "blocks[0].runsets[0].selection[0]"),
        ({"blocks": [grid(frozen="yes")]}, "blocks[0].runsets[0].frozen"),
        (b'{"blocks": [{"kind": "markdown", "text": "a \\ud800 b"}]}', "blocks[0].text"),
        (
            b'{"blocks": [{"kind": "panels", "runsets": [{}], "panels": [{"kind": "table", '
            b'"future": ["\\udc00"]}]}]}',
            "blocks[0].panels[0].future[0]",
        ),
    ],
)
def test_a_bad_field_is_a_422_naming_it(client: TestClient, body: Any, field: str) -> None:
    if isinstance(body, bytes):  # JSON the client library would not write (a lone surrogate)
        answer = client.post(REPORTS, content=body, headers={"content-type": "application/json"})
    else:
        answer = client.post(REPORTS, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(f"{field}: "), answer.json()


def test_a_frozen_run_set_keeps_its_runs_and_data_when_a_run_is_added(client: TestClient) -> None:
    body = {"title": "frozen", "blocks": [grid(frozen=True), grid()]}
    report = client.post(REPORTS, json=body).json()
    frozen, live = (b["runsets"][0] for b in report["blocks"])
    assert frozen["frozen"] is True
    assert frozen["frozen_at"] > 0
    before = client.get(f"{REPORTS}/{report['id']}/data").json()["data"]

    log_run(client, "n1", "adam", 3.0)
    after = client.get(f"{REPORTS}/{report['id']}/data").json()["data"]
    assert after[frozen["id"]] == before[frozen["id"]]  # the same runs and the same numbers
    assert {r["id"] for r in after[frozen["id"]]["runs"]} == {"a1", "s1"}
    assert "n1" in {r["id"] for r in after[live["id"]]["runs"]}  # a live run set has it

    # saved again as it is: still frozen, same snapshot; a panel added: its data, same runs
    blocks = report["blocks"]
    blocks[0]["panels"].append({"kind": "line", "x": "_runtime", "y": ["acc"]})
    saved = client.put(f"{REPORTS}/{report['id']}", json={**report, "blocks": blocks}).json()
    assert saved["blocks"][0]["runsets"][0]["frozen_at"] == frozen["frozen_at"]
    kept = client.get(f"{REPORTS}/{report['id']}/data").json()["data"][frozen["id"]]
    assert {r["id"] for r in kept["runs"]} == {"a1", "s1"}
    keys = {(h["x"], s["key"], s["run"]) for h in kept["history"] for s in h["answer"]["series"]}
    assert ("_runtime", "acc", "a1") in keys
    assert ("_runtime", "acc", "n1") not in keys
    # unfrozen: live again, with the new run
    blocks[0]["runsets"][0]["frozen"] = False
    client.put(f"{REPORTS}/{report['id']}", json={**report, "blocks": blocks})
    now = client.get(f"{REPORTS}/{report['id']}/data").json()["data"][frozen["id"]]
    assert "n1" in {r["id"] for r in now["runs"]}
    store = client.app.state.resources.store  # type: ignore[attr-defined]
    assert store.report_snapshots("local", "p", report["id"]) == {}


def test_markdown_is_rendered_safe(client: TestClient) -> None:
    text = f"{EVIL} [x](javascript:alert(1)) $\\text{{<img src=x onerror=alert(1)>}}$"
    html = client.post(f"{API_PREFIX}/markdown", json={"text": text}).json()["html"]
    assert "<script" not in html
    assert "<img" not in html
    assert 'href="javascript' not in html
    assert "&lt;script&gt;" in html
    assert "<math" in html
    lone = b'{"text": "a \\ud800 b"}'  # no text: a 422 naming it
    answer = client.post(
        f"{API_PREFIX}/markdown", content=lone, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("text: ")


def test_pages_render_the_reports_with_their_json_twins(client: TestClient) -> None:
    report = client.post(REPORTS, json={"title": EVIL, "blocks": [grid()]}).json()
    rid = report["id"]
    for path in (
        "/local/p/reports",
        f"/local/p/reports/{rid}",
        f"/local/p/reports/{rid}/edit",
        "/local/p/reports/new?run=a1",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text, path
    assert client.get(f"/local/p/reports/{rid}").text.count("<h1") == 1
    twin = client.get(f"/local/p/reports/{rid}.json").json()
    assert twin["report"]["title"] == EVIL
    assert twin["snapshots"] == {}
    listed = client.get("/local/p/reports.json").json()
    assert rid in {r["id"] for r in listed["reports"]}
    new = client.get("/local/p/reports/new?run=a1", headers={"accept": "application/json"}).json()
    grid_ = new["default_grid"]
    assert grid_["runsets"][0]["selection"] == ["a1"]
    # the project's workspace (none saved: the default, a line plot per metric)
    assert [p["y"] for p in grid_["panels"] if p["kind"] == "line"] == [["acc"], ["loss"]]
    assert grid_["panels"][-1]["kind"] == "table"
    assert client.get("/local/p/reports/nope").status_code == 404
    assert client.get("/local/p").text.count('href="/local/p/reports"') == 1


def test_reports_follow_the_projects_auth(tmp_path: Path) -> None:
    app = create_app(ServerConfig(data=tmp_path / "data", require_auth=True))
    store = app.state.resources.store
    alice, bob = store.create_key("alice"), store.create_key("bob")
    c = TestClient(app, headers=CLIENT_HEADERS)
    as_alice = {"authorization": f"Bearer {alice}"}
    base = f"{API_PREFIX}/entities/alice/projects/p/reports"
    made = c.post(base, json={"title": "mine"}, headers=as_alice)
    assert made.status_code == 201
    assert made.json()["author"] == "alice"
    rid = made.json()["id"]
    assert c.get(f"{base}/{rid}", headers=as_alice).status_code == 200
    as_bob = {"authorization": f"Bearer {bob}"}
    for method in ("get", "delete"):
        assert getattr(c, method)(f"{base}/{rid}", headers=as_bob).status_code == 403
    assert c.put(f"{base}/{rid}", json={}, headers=as_bob).status_code == 403
    assert c.post(base, json={}, headers=as_bob).status_code == 403
    assert c.get(f"{base}/{rid}").status_code == 401  # no key
    assert c.get(f"/alice/p/reports/{rid}", headers=as_bob).status_code == 403  # the page too
