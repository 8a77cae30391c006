"""The runs table (``static/runtable.js``) in a real browser: Debian's chromium driven by
Playwright against a real ``fulmen server`` on loopback. Config columns with nested keys, the
column picker, server-side sort and filter expressions (and their errors), pinned columns on
horizontal scroll, selection, the view kept in the URL, a table over a source without a server,
and a project of 10,000 runs paged through the server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import browser_or_skip

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIG = 10_000
# name, lr, depth, opt, state, tags, loss
RUNS = [
    ("alpha", 0.1, 2, "adam", "finished", ["base"], 0.50),
    ("beta", 0.03, 4, "sgd", "finished", [], 0.40),
    ("gamma", 0.01, 8, "adam", "crashed", ["base"], 0.90),
    ("delta", 0.003, 16, "sgd", "finished", [], 0.30),
    ("epsilon", 0.3, 32, "adam", "running", [], 0.70),
]


def build_small(db: Path) -> None:
    from fulmen.server._sqlite import SqliteStore
    from tests.server.runlogs import LogWriter

    store = SqliteStore(db)
    for i, (name, lr, depth, opt, state, tags, loss) in enumerate(RUNS):
        w = LogWriter()
        w.run(f"run{i}", "small", name=name, tags=tags, time=1_700_000_000 + i)
        w.record("config", {"lr": lr, "model": {"depth": depth, "width": 64}, "opt": opt})
        w.history(0, {"loss": loss * 2})
        w.history(1, {"loss": loss})
        if state != "running":
            w.record("exit", {"exit_code": 0 if state == "finished" else 1, "state": state,
                              "runtime": 10.0 + i})  # fmt: skip
        store.ingest("local", "small", f"run{i}", w.body())
    store.close()


def build_big(db: str) -> None:
    """10,000 runs, created one second apart: run-09999 is the newest (the table's first row by
    default), run-00000 the oldest (its last)."""
    from fulmen.server._sqlite import SqliteStore
    from fulmen.track import runlog as rl

    store = SqliteStore(Path(db))
    for r in range(BIG):
        meta = {"id": f"b{r:05d}", "name": f"run-{r:05d}", "project": "big", "time": 1e9 + r}
        body = rl.frame(rl.RUN, rl.json_payload(1, meta))
        body += rl.frame(rl.CONFIG, rl.json_payload(2, {"i": r, "lr": (r % 100) / 1000}))
        store.ingest("local", "big", f"b{r:05d}", body)
    store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``fulmen server`` over one SQLite file, in a subprocess on loopback."""

    def __init__(self, data: Path, db: Path) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(port), "--data", str(data)]
        self.proc = subprocess.Popen([*cmd, "--db", f"sqlite:///{db}"])
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=1):
                    return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("fulmen server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The small project's server now; the 10,000 runs are written meanwhile by another process
    (the last test waits for them), so building them overlaps the other tests."""
    browser_or_skip()
    root = tmp_path_factory.mktemp("runtable")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    big_db = str(root / "big.db")
    code = f"from tests.e2e.test_runtable_browser import build_big; build_big({big_db!r})"
    builder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)
    build_small(root / "small.db")
    small = Server(root / "small-data", root / "small.db")
    made: dict[str, Any] = {"small": small.url, "builder": builder, "root": root}
    try:
        yield made
    finally:
        small.stop()
        if "big" in made:
            made["big"].stop()
        builder.kill()
        builder.wait(30)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert errors == []


def _open(page: Any, url: str) -> None:
    """The project page at ``url`` in its default view: the page saves the table's view in the
    project's workspace, so the one a former test left is forgotten first."""
    parts = urllib.parse.urlparse(url)
    entity, project = parts.path.strip("/").split("/")[:2]
    api = f"{parts.scheme}://{parts.netloc}/api/v1/entities/{entity}/projects/{project}/workspace"
    forget = urllib.request.Request(api, method="DELETE", headers={"X-Fulmen-Client": "test"})
    with urllib.request.urlopen(forget, timeout=30) as answer:
        assert json.loads(answer.read())["saved"] is False
    page.goto(url)
    page.wait_for_selector("#runs-table[data-painted] .rt-body .rt-row[data-run]")


def _names(page: Any) -> list[str]:
    """The names in the table's rows, top to bottom."""
    names: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('#runs-table .rt-body .rt-row[data-run]')]
            .sort((a, b) => a.dataset.index - b.dataset.index)
            .map(r => r.querySelector('.col-name').textContent)"""
    )
    return names


def _wait_names(page: Any, expected: list[str]) -> None:
    page.wait_for_function(
        """expected => JSON.stringify(
            [...document.querySelectorAll('#runs-table .rt-body .rt-row[data-run]')]
            .sort((a, b) => a.dataset.index - b.dataset.index)
            .map(r => r.querySelector('.col-name').textContent)) === JSON.stringify(expected)""",
        arg=expected,
    )


def _cell(page: Any, name: str, column: str) -> Any:
    row = page.locator("#runs-table .rt-body .rt-row", has=page.locator(".col-name", has_text=name))
    return row.locator(f".col-{column}")


def _query(page: Any) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)


def test_config_columns_show_values_including_nested_keys(
    servers: dict[str, Any], page: Any
) -> None:
    _open(page, servers["small"] + "/local/small")
    by_created = [r[0] for r in reversed(RUNS)]  # newest first
    assert _names(page) == by_created
    for name, lr, depth, *_ in RUNS:
        assert _cell(page, name, "config_lr").inner_text() == str(lr)
        assert _cell(page, name, "config_model_depth").inner_text() == str(depth)
    assert _cell(page, "alpha", "summary_loss").inner_text() == "0.5"
    # the values are on screen, under their headers (the old table drew its headers over empty
    # space: its body scrolled sideways on its own, the header did not)
    cell = _cell(page, "alpha", "config_model_width")
    cell.scroll_into_view_if_needed()
    head = page.locator('#runs-table .rt-head [data-col="config.model.width"]')
    cell_box, head_box = cell.bounding_box(), head.bounding_box()
    assert abs(cell_box["x"] - head_box["x"]) < 1
    hit = page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y).closest('.rt-cell').textContent",
        [cell_box["x"] + cell_box["width"] / 2, cell_box["y"] + cell_box["height"] / 2],
    )
    assert hit == "64"


def test_column_picker_adds_a_column_kept_in_the_url(servers: dict[str, Any], page: Any) -> None:
    _open(page, servers["small"] + "/local/small")
    assert page.locator('#runs-table .rt-head [data-col="config.opt"]').count() == 0
    page.click("#runs-table .rt-picker summary")
    box = page.locator('#runs-table .rt-picker-list input[value="config.opt"]')
    box.wait_for()
    assert "config.model.depth" in page.locator("#runs-table .rt-picker-list").inner_text()
    box.check()
    page.wait_for_selector('#runs-table .rt-head [data-col="config.opt"]')
    _cell(page, "beta", "config_opt").wait_for()
    assert _cell(page, "beta", "config_opt").inner_text() == "sgd"
    assert "config.opt" in _query(page)["col"]
    page.reload()  # the link reproduces the view
    page.wait_for_selector('#runs-table .rt-head [data-col="config.opt"]')
    _wait_names(page, [r[0] for r in reversed(RUNS)])
    assert _cell(page, "alpha", "config_opt").inner_text() == "adam"


def test_sort_and_filter_expressions_change_the_rows(servers: dict[str, Any], page: Any) -> None:
    _open(page, servers["small"] + "/local/small")
    lr_head = page.locator('#runs-table .rt-head [data-col="config.lr"] .rt-label')
    lr_head.click()
    by_lr = [r[0] for r in sorted(RUNS, key=lambda r: -r[1])]
    _wait_names(page, by_lr)
    lr_head.click()
    _wait_names(page, by_lr[::-1])
    assert _query(page)["sort"] == ["config.lr"]

    box = page.locator("#runs-table .rt-filter")
    box.fill("config.lr > 0.005 and state = finished")
    box.press("Enter")
    wanted = [r[0] for r in sorted(RUNS, key=lambda r: r[1]) if r[1] > 0.005 and r[4] == "finished"]
    _wait_names(page, wanted)
    assert page.locator("#runs-table").get_attribute("data-total") == str(len(wanted))
    assert _query(page)["filter"] == ["config.lr > 0.005 and state = finished"]
    # bare keys are config (or summary) keys; nested ones too; ~ is contains; tags
    for expression, names in [
        ("lr >= 0.01 and opt = adam", ["gamma", "alpha", "epsilon"]),
        ("model.depth < 8 and tags = base", ["alpha"]),
        ("name ~ ETA", ["beta"]),
        ("summary.loss <= 0.4", ["delta", "beta"]),
        ("state != finished", ["gamma", "epsilon"]),
    ]:
        box.fill(expression)
        box.press("Enter")
        _wait_names(page, sorted(names, key=lambda n: next(r[1] for r in RUNS if r[0] == n)))
    # a bad expression: an error naming it, the rows as they were
    box.fill("config.lr >> 1")
    box.press("Enter")
    error = page.locator("#runs-table .rt-error")
    error.wait_for(state="visible")
    assert 'filter "config.lr >> 1"' in error.inner_text()
    assert "expected a value after '>'" in error.inner_text()
    assert _names(page) == ["gamma", "epsilon"]
    box.fill("colour = red")
    box.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#runs-table .rt-error').textContent.includes('colour')"
    )
    assert "unknown field" in error.inner_text()
    box.fill("")
    box.press("Enter")
    error.wait_for(state="hidden")
    _wait_names(page, by_lr[::-1])


def test_pinned_column_stays_in_view_and_selection_drives_compare(
    servers: dict[str, Any], page: Any
) -> None:
    page.set_viewport_size({"width": 800, "height": 800})
    _open(page, servers["small"] + "/local/small")
    scroller = page.locator("#runs-table .rt-scroll")
    width = page.evaluate(
        "() => { const s = document.querySelector('#runs-table .rt-scroll');"
        " return s.scrollWidth - s.clientWidth; }"
    )
    assert width > 300  # the columns do not fit: the table scrolls sideways

    def on_screen(name: str, column: str) -> bool:
        box = _cell(page, name, column).bounding_box()
        found: bool = page.evaluate(
            """([x, y, col]) => {
                const e = document.elementFromPoint(x, y);
                return !!e && !!e.closest('.col-' + col);
            }""",
            [box["x"] + 5, box["y"] + box["height"] / 2, column],
        )
        return found

    scroller.evaluate("s => { s.scrollLeft = s.scrollWidth; }")
    page.wait_for_timeout(100)
    assert on_screen("alpha", "name")  # pinned by default
    assert not on_screen("alpha", "state")  # scrolled away, under the pinned name
    page.locator('#runs-table .rt-head [data-col="config.lr"] .rt-pin').click()
    assert _query(page)["pin"] == ["name", "config.lr"]
    scroller.evaluate("s => { s.scrollLeft = s.scrollWidth; }")
    page.wait_for_timeout(100)
    assert on_screen("alpha", "config_lr")
    assert on_screen("beta", "name")

    for name in ("alpha", "delta"):
        page.locator("#runs-table .rt-body .rt-row", has_text=name).locator(".rt-sel input").check()
    compare = page.locator("#compare")
    assert compare.inner_text() == "compare selected (2)"
    assert "2 selected" in page.locator("#runs-table .rt-count").inner_text()
    compare.click()
    page.wait_for_url("**/compare?*")
    assert sorted(_query(page)["run"]) == ["run0", "run3"]


def test_a_source_without_a_server_sorts_and_filters_in_the_page(
    servers: dict[str, Any], page: Any
) -> None:
    """A report's embedded source answers runs() only: the same expressions, in the browser."""
    _open(page, servers["small"] + "/local/small")
    runs = [
        {"id": "a", "name": "one", "state": "finished", "tags": ["x"], "created": 3,
         "config": {"lr": 0.1, "m": {"d": 2}}, "summary": {"acc": 0.5}},
        {"id": "b", "name": "two", "state": "crashed", "tags": [], "created": 2,
         "config": {"lr": 0.01, "m": {"d": 4}}, "summary": {"acc": 0.9}},
        {"id": "c", "name": "three", "state": "finished", "tags": [], "created": 1,
         "config": {"lr": 0.2}, "summary": {}},
    ]  # fmt: skip
    result = page.evaluate(
        """async (runs) => {
            const box = document.createElement("div");
            document.body.append(box);
            const seen = [];
            const t = FulmenRunTable.mount(box, {
                source: {runs: async () => runs},
                columns: ["name", "config.m.d", "summary.acc"], sort: "-summary.acc",
                onHighlight: (id) => seen.push(id),
            });
            await new Promise(r => setTimeout(r, 50));
            const names = () => t.rows().map(r => r.name);
            const out = {sorted: names()};
            await t.update({filters: "m.d >= 2 and state = finished"});
            out.filtered = names();
            await t.update({filters: "tw", sort: "name"});
            out.searched = names();
            await t.update({filters: "", sort: "config.lr"});
            out.byLr = names();
            out.cell = box.querySelector('.rt-row[data-run="b"] .col-config_m_d').textContent;
            box.querySelector('.rt-row[data-run="a"]').dispatchEvent(new MouseEvent("mouseenter"));
            out.highlighted = seen;
            return out;
        }""",
        runs,
    )
    assert result["sorted"] == ["two", "one", "three"]  # no value: last
    assert result["filtered"] == ["one"]
    assert result["searched"] == ["two"]
    assert result["byLr"] == ["two", "one", "three"]
    assert result["cell"] == "4"
    assert result["highlighted"] == ["a"]


def test_ten_thousand_runs_show_at_once_and_scroll_to_the_last(
    servers: dict[str, Any], page: Any
) -> None:
    assert servers["builder"].wait(600) == 0
    servers["big"] = big = Server(servers["root"] / "big-data", servers["root"] / "big.db")
    _open(page, big.url + "/local/big")
    table = page.locator("#runs-table")
    assert table.get_attribute("data-total") == str(BIG)
    assert _names(page)[0] == "run-09999"  # the newest first
    scroller = page.locator("#runs-table .rt-scroll")
    scroller.evaluate("s => { s.scrollTop = s.scrollHeight; }")
    last = page.locator("#runs-table .rt-body .col-name", has_text="run-00000")
    last.wait_for(state="visible")
    box, view = last.bounding_box(), scroller.bounding_box()
    assert view["y"] <= box["y"]
    assert box["y"] + box["height"] <= view["y"] + view["height"] + 1
    assert int(table.get_attribute("data-rows") or 0) < BIG  # paged: not every run was loaded
    # sorted by the server, over all 10,000: the largest lr, then the newest of those
    page.locator('#runs-table .rt-head [data-col="config.lr"] .rt-label').click()
    page.wait_for_selector('#runs-table[data-sort="-config.lr"]')
    scroller.evaluate("s => { s.scrollTop = 0; }")
    _cell(page, "run-09999", "config_lr").wait_for()
    assert _cell(page, "run-09999", "config_lr").inner_text() == "0.099"
    answer = json.loads(
        urllib.request.urlopen(big.url + "/api/v1/entities/local/projects/big/columns").read()
    )
    assert answer["paths"]["config"] == {"i": BIG, "lr": BIG}
