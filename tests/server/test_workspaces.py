"""Saved workspaces through the in-process ASGI client: the default layout from the metrics
present, a layout saved and read back (per key when keys are used), validation that names the
field, the size cap, auth, and the project page's twin holding the workspace."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fulmen.server import API_PREFIX, create_app
from fulmen.server._sqlite import SqliteStore
from fulmen.server._workspaces import MAX_BYTES, BadLayout, default_layout, validate
from fulmen.server.app import ServerConfig
from tests.server.runlogs import CLIENT_HEADERS, LogWriter

PROJECT = f"{API_PREFIX}/entities/local/projects/p"
WORKSPACE = f"{PROJECT}/workspace"

LAYOUT: dict[str, Any] = {
    "version": 1,
    "sections": [
        {
            "name": "mine",
            "collapsed": False,
            "panels": [
                {"kind": "line", "title": "loss", "y": ["train/loss", "val/loss"], "x": "_step",
                 "smoothing": {"type": "gaussian", "amount": 2}, "logy": True,
                 "groupby": "config.lr", "band": "stddev", "max_runs": 50,
                 "layout": {"w": 6, "h": 4}},
                {"kind": "scalar", "metric": "val/acc", "agg": "max"},
                {"kind": "bar", "metric": "val/acc", "groupby": "group"},
                {"kind": "scatter", "x": "config.lr", "y": "summary.val/acc", "color": None},
                {"kind": "parallel", "columns": ["config.lr", "summary.val/acc"]},
                {"kind": "table", "columns": ["name", "state", "config.lr"]},
                {"kind": "media", "key": "frames"},
                {"kind": "histogram", "key": "gradients/w"},
                {"kind": "markdown", "text": "# notes"},
            ],
        }
    ],
    "settings": {"x": "trainer/global_step", "smoothing": {"type": "exponential", "amount": 0.6}},
}  # fmt: skip


def _client(tmp_path: Path, **config: Any) -> TestClient:
    app = create_app(ServerConfig(data=tmp_path / "data", **config))
    return TestClient(app, headers=CLIENT_HEADERS)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    c = _client(tmp_path)
    w = LogWriter()
    w.run("r1", "p")
    for i in range(5):
        w.history(i, {"train/loss": 1.0 / (i + 1), "train/acc": 0.1 * i, "val/loss": 2.0,
                      "lr": 0.1, "gradients/w": 0.0, "trainer/global_step": i})  # fmt: skip
    assert c.post(f"{PROJECT}/runs/r1/records", content=w.body()).status_code == 200
    return c


def test_the_default_layout_has_a_section_per_key_prefix(client: TestClient) -> None:
    answer = client.get(WORKSPACE).json()
    assert (answer["saved"], answer["scope"], answer["updated"]) == (False, "default", None)
    sections = answer["layout"]["sections"]
    assert [s["name"] for s in sections] == ["train", "val", "charts"]  # the rest in "charts"
    assert [p["y"] for p in sections[0]["panels"]] == [["train/acc"], ["train/loss"]]
    assert sections[2]["panels"] == [{"kind": "line", "title": "lr", "y": ["lr"]}]
    shown = {k for s in sections for p in s["panels"] for k in p["y"]}
    assert "gradients/w" not in shown  # watch's histograms and the step are not line panels
    assert "trainer/global_step" not in shown
    assert default_layout({}) == {"version": 1, "sections": [], "settings": {}}


def test_a_saved_layout_is_answered_and_replaced(client: TestClient) -> None:
    saved = client.put(WORKSPACE, json={"layout": LAYOUT})
    assert saved.status_code == 200, saved.text
    assert saved.json()["saved"] is True
    answer = client.get(WORKSPACE).json()
    assert answer["layout"] == LAYOUT
    assert (answer["saved"], answer["scope"]) == (True, "project")
    assert answer["updated"] == saved.json()["updated"]
    twin = client.get("/local/p.json").json()["workspace"]
    assert twin == answer  # the project page's JSON twin holds the same
    smaller = {"version": 1, "sections": [], "settings": {}}
    assert client.put(WORKSPACE, json={"layout": smaller}).status_code == 200
    assert client.get(WORKSPACE).json()["layout"] == smaller
    assert client.delete(WORKSPACE).json()["saved"] is False  # back to the default
    assert client.get(WORKSPACE).json()["layout"]["sections"][0]["name"] == "train"


def test_unknown_fields_are_kept(client: TestClient) -> None:
    layout = copy.deepcopy(LAYOUT)
    layout["sections"][0]["panels"][0]["future"] = {"colour": "red"}
    assert client.put(WORKSPACE, json={"layout": layout}).status_code == 200
    assert client.get(WORKSPACE).json()["layout"] == layout


def _with(path: str, value: Any) -> dict[str, Any]:
    """LAYOUT with the field at ``path`` (dots, [i]) set to ``value`` (``...``: removed)."""
    layout = copy.deepcopy(LAYOUT)
    parts = path.replace("[", ".").replace("]", "").split(".")
    target: Any = layout
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return layout


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("version", 2, "layout.version: 2 is not 1"),
        ("sections", {}, "layout.sections: {} is not a list"),
        ("sections[0].name", "", "layout.sections[0].name"),
        ("sections[0].collapsed", "yes", "layout.sections[0].collapsed: \"yes\" is not true or"),
        ("sections[0].panels[0].kind", "pie", "layout.sections[0].panels[0].kind: \"pie\" is "
         "not one of line, scalar, bar, scatter, parallel, table, media, histogram, markdown"),
        ("sections[0].panels[0].y", [], "layout.sections[0].panels[0].y: [] is not a list of 1"),
        ("sections[0].panels[0].y", ..., "layout.sections[0].panels[0].y: null is not a list"),
        ("sections[0].panels[0].smoothing.type", "median",
         "layout.sections[0].panels[0].smoothing.type: \"median\" is not one of none, exponential"),
        ("sections[0].panels[0].smoothing.amount", -1,
         "layout.sections[0].panels[0].smoothing.amount: -1 is not a number from 0"),
        ("sections[0].panels[0].logy", 1, "layout.sections[0].panels[0].logy: 1 is not true"),
        ("sections[0].panels[0].groupby", "lr",
         "layout.sections[0].panels[0].groupby: \"lr\" is not null, \"group\" or \"config.<key>\""),
        ("sections[0].panels[0].band", "iqr", "layout.sections[0].panels[0].band"),
        ("sections[0].panels[0].max_runs", 0, "layout.sections[0].panels[0].max_runs: 0 is not"),
        ("sections[0].panels[0].layout.w", 13, "layout.sections[0].panels[0].layout.w: 13 is not"
         " a whole number from 1 to 12"),
        ("sections[0].panels[1].agg", "median", "layout.sections[0].panels[1].agg"),
        ("sections[0].panels[1].metric", ..., "layout.sections[0].panels[1].metric"),
        ("sections[0].panels[3].x", 3, "layout.sections[0].panels[3].x: 3 is not a string"),
        ("sections[0].panels[4].columns", "config.lr", "layout.sections[0].panels[4].columns"),
        ("sections[0].panels[6].key", "", "layout.sections[0].panels[6].key"),
        ("sections[0].panels[8].html", "<img src=x onerror=alert(1)>",
         "layout.sections[0].panels[8].html: is not accepted"),
        ("settings.x", "", "layout.settings.x"),
        ("settings.smoothing", 0.5, "layout.settings.smoothing: 0.5 is not an object"),
    ],
)  # fmt: skip
def test_a_bad_layout_is_a_422_naming_the_field(
    client: TestClient, path: str, value: Any, named: str
) -> None:
    answer = client.put(WORKSPACE, json={"layout": _with(path, value)})
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["detail"]
    assert client.get(WORKSPACE).json()["saved"] is False  # nothing was saved


def test_the_body_and_the_size_are_checked(client: TestClient) -> None:
    assert "the body is" in client.put(WORKSPACE, json=LAYOUT).json()["detail"]
    assert client.put(WORKSPACE, json={"layout": LAYOUT, "x": 1}).status_code == 422
    assert client.put(WORKSPACE, json={"layout": []}).status_code == 422
    big = _with("sections[0].panels[8].text", "x" * 99_000)
    big["sections"] = [copy.deepcopy(big["sections"][0]) for _ in range(3)]
    answer = client.put(WORKSPACE, json={"layout": big})
    assert answer.status_code == 422
    assert f"over the limit of {MAX_BYTES}" in answer.json()["detail"]
    with pytest.raises(BadLayout, match=r"layout\.sections\[0\]\.panels\[0\]\.kind"):
        validate(_with("sections[0].panels[0].kind", None))


def test_each_key_has_its_own_workspace(tmp_path: Path) -> None:
    app = create_app(ServerConfig(data=tmp_path / "data", require_auth=True))
    client = TestClient(app, headers=CLIENT_HEADERS)
    store = app.state.resources.store
    alice = {"Authorization": f"Bearer {store.create_key('alice')}"}
    alice2 = {"Authorization": f"Bearer {store.create_key('alice')}"}
    bob = {"Authorization": f"Bearer {store.create_key('bob')}"}
    url = f"{API_PREFIX}/entities/alice/projects/p/workspace"
    assert client.get(url).status_code == 401  # no key
    assert client.put(url, json={"layout": LAYOUT}).status_code == 401
    assert client.get(url, headers=bob).status_code == 403  # another entity's project
    assert client.put(url, json={"layout": LAYOUT}, headers=bob).status_code == 403
    answer = client.put(url, json={"layout": LAYOUT}, headers=alice)
    assert answer.json()["scope"] == "key"
    assert client.get(url, headers=alice).json()["layout"] == LAYOUT
    other = client.get(url, headers=alice2).json()  # the entity's other key: its own (none yet)
    assert (other["saved"], other["scope"]) == (False, "default")
    with sqlite3.connect(tmp_path / "data" / "fulmen.db") as con:
        owners = [row[0] for row in con.execute("SELECT owner FROM workspaces")]
    assert len(owners) == 1
    assert owners[0].startswith("key:")
    assert alice["Authorization"].split()[1] not in owners[0]  # a hash, never the key


def test_a_key_without_its_own_reads_the_project_layout(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.put_workspace("local", "p", "", LAYOUT)
    client = TestClient(
        create_app(ServerConfig(data=tmp_path), store=store), headers=CLIENT_HEADERS
    )
    key = store.create_key("local")
    answer = client.get(WORKSPACE, headers={"Authorization": f"Bearer {key}"}).json()
    assert (answer["layout"], answer["scope"]) == (LAYOUT, "project")
    store.close()


def test_a_stored_layout_that_is_not_json_reads_as_none_saved(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.put_workspace("local", "p", "", LAYOUT)
    with sqlite3.connect(tmp_path / "db") as con:
        con.execute("UPDATE workspaces SET layout = '{broken'")
    assert store.workspace("local", "p", "") is None
    store.close()
