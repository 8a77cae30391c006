"""The dashboard's pages through the in-process ASGI client: each page and its JSON twin come from
the same view, user text is escaped, and a key sees only its entity's pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fulmen.server import API_PREFIX, create_app
from fulmen.server._pages import SCRIPTS, STATIC, ago, chart_keys, default_x, esc, script_json
from fulmen.server.app import ServerConfig
from tests.server.runlogs import CLIENT_HEADERS, LogWriter

RUNS = f"{API_PREFIX}/entities/local/projects/p/runs"
EVIL = '<script>alert(1)</script>"&'


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    c = TestClient(create_app(ServerConfig(data=tmp_path / "data")), headers=CLIENT_HEADERS)
    w = LogWriter()
    w.run("r1", "p", name=EVIL, tags=[EVIL], notes=EVIL, group="g")
    w.record("config", {"lr": 0.1, "html": EVIL, "opt": {"name": "sgd"}})
    for i in range(20):
        w.history(i, {"loss": 1.0 / (i + 1), "trainer/global_step": 2 * i})
    w.console(EVIL + "\n")
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 3.0})
    assert c.post(f"{RUNS}/r1/records", content=w.body()).status_code == 200
    w2 = LogWriter()
    w2.run("r2", "p", name="second")
    w2.record("config", {"lr": 0.2, "html": "x", "opt": {"name": "sgd"}})
    w2.history(0, {"loss": 2.0})
    assert c.post(f"{RUNS}/r2/records", content=w2.body()).status_code == 200
    return c


def test_every_page_renders_and_has_its_json_twin(client: TestClient) -> None:
    for path in ("/", "/local/p", "/local/p/runs/r1", "/local/p/compare?run=r1&run=r2"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        base, _, query = path.partition("?")
        twin = client.get(
            ("/index" if base == "/" else base) + ".json" + (f"?{query}" if query else "")
        )
        assert twin.status_code == 200, path
        assert twin.headers["content-type"] == "application/json"
    project = client.get("/local/p.json").json()
    assert project["x"] == "trainer/global_step"  # a Lightning run: its step is the default axis
    assert project["charts"] == ["loss"]
    assert "config.lr" in project["default_columns"]
    compare = client.get("/local/p/compare.json?run=r1&run=r2").json()
    assert {d["key"] for d in compare["diff"]} == {"lr", "html"}
    assert compare["same"] == ["opt.name"]
    assert client.get("/index.json").json()["entities"][0]["projects"][0]["runs"] == 2


def test_user_text_is_escaped_everywhere(client: TestClient) -> None:
    for path in ("/", "/local/p", "/local/p/runs/r1", "/local/p/compare?run=r1&run=r2"):
        text = client.get(path).text
        assert "<script>alert" not in text, path
        # the page data and the static scripts, nothing else
        assert text.count("<script") == 1 + len(SCRIPTS)
    run = client.get("/local/p/runs/r1").text
    assert esc(EVIL) in run
    assert f"{RUNS}/r1/history/export?format=csv" in run
    assert "\\u003cscript\\u003e" in run  # in the page data, as JSON that cannot end the element


def test_unknown_pages_are_404(client: TestClient) -> None:
    assert client.get("/local/nope").status_code == 404
    assert client.get("/local/p/runs/nope").status_code == 404
    assert client.get("/static/nope.js").status_code == 404
    assert client.get(f"{API_PREFIX}/x").json() == {"detail": "Not Found"}


def test_static_files_are_served(client: TestClient) -> None:
    assert {"panels.js", "panels.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.LICENSE"} <= set(
        STATIC
    )
    for name in STATIC:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200
        assert len(r.text) > 100
        # nothing from the network (uPlot names its home page in its banner comment only)
        assert "http://" not in r.text, name
    assert "MIT License" in client.get("/static/vendor/uPlot.LICENSE").text
    for bad in ("vendor%2f..%2fpanels.js", "vendor/nope.js", "%2e%2e%2fapp.py", "..%2f_pages.py"):
        assert client.get(f"/static/{bad}").status_code == 404, bad


def test_pages_are_scoped_to_the_key_entity(tmp_path: Path) -> None:
    app = create_app(ServerConfig(data=tmp_path / "data", require_auth=True))
    client = TestClient(app, headers=CLIENT_HEADERS)
    key = app.state.resources.store.create_key("alice")
    alice = {"Authorization": f"Bearer {key}"}
    refused = client.get("/")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")  # a browser asks for the key
    assert client.get("/", headers=alice).status_code == 200
    assert client.get("/", auth=("anyone", key)).status_code == 200
    assert client.get(f"{API_PREFIX}/entities").headers["www-authenticate"].startswith("Bearer")
    assert client.get("/bob/p", headers=alice).status_code == 403
    assert client.get("/bob/p.json", headers=alice).status_code == 403


def test_helpers() -> None:
    assert script_json({"a": "</script>&"}) == '{"a": "\\u003c/script\\u003e\\u0026"}'
    assert chart_keys({"_step": 1, "loss": 1, "gradients/w": 1, "trainer/global_step": 1}) == [
        "loss"
    ]
    assert default_x({"_step": 1}) == "_step"


def _embedded(page: str) -> object:
    start = page.index('<script type="application/json" id="page-data">') + len(
        '<script type="application/json" id="page-data">'
    )
    return json.loads(page[start : page.index("</script>", start)])


@pytest.mark.parametrize(
    ("page", "twin"),
    [
        ("/", "/index.json"),
        ("/local/p", "/local/p.json"),
        ("/local/p/runs/r1", "/local/p/runs/r1.json"),
        ("/local/p/compare?run=r1&run=r2", "/local/p/compare.json?run=r1&run=r2"),
    ],
)
def test_each_page_embeds_exactly_its_json_twin(client: TestClient, page: str, twin: str) -> None:
    html_page = client.get(page, headers={"accept": "text/html,*/*;q=0.8"})
    assert html_page.headers["content-type"].startswith("text/html")
    by_suffix = client.get(twin)
    by_accept = client.get(page, headers={"accept": "application/json"})
    assert by_suffix.headers["content-type"] == by_accept.headers["content-type"]
    assert by_accept.headers["content-type"] == "application/json"
    assert _embedded(html_page.text) == by_suffix.json() == by_accept.json()
    assert html_page.headers["vary"] == by_suffix.headers["vary"] == "accept"


def test_times_read_relative_with_the_date_on_hover(client: TestClient) -> None:
    now = 1_700_000_000.0
    assert ago(now - 30, now) == "just now"
    assert ago(now - 180, now) == "3 minutes ago"
    assert ago(now - 3600, now) == "1 hour ago"
    assert ago(now - 2 * 86400 - 5, now) == "2 days ago"
    assert ago(now + 7200, now) == "in 2 hours"
    assert ago(None, now) == ago(True, now) == ""
    when = re.compile(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d">([^<]+)</time>')
    for page in ("/", "/local/p/runs/r1"):
        match = when.search(client.get(page).text)
        assert match is not None, page
        assert match.group(1) == "just now"  # the run was logged a moment ago


def test_a_run_page_lists_an_artifact_whose_manifest_never_arrived(tmp_path: Path) -> None:
    # logged by the run (an ARTIFACT record) but no manifest PUT yet: listed without metadata
    # or files (view_run catches only NotFound from the lookup; any other error is a bug)
    c = TestClient(create_app(ServerConfig(data=tmp_path / "data")), headers=CLIENT_HEADERS)
    w = LogWriter()
    w.run("r1", "p")
    w.record("artifact", {"name": "model", "type": "model", "version": 0, "digest": None,
                          "aliases": ["latest"], "used": False, "entries": 1})  # fmt: skip
    assert c.post(f"{RUNS}/r1/records", content=w.body()).status_code == 200
    view = c.get("/local/p/runs/r1.json").json()
    [art] = view["artifacts"]
    assert (art["name"], art["metadata"], art["entries"]) == ("model", {}, [])
    assert c.get("/local/p/runs/r1").status_code == 200
