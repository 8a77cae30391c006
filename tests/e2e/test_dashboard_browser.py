"""The dashboard in a real browser: Debian's chromium driven by Playwright, against ``fulmen ui``
serving real run folders from a subprocess on loopback. Screenshots go to test-artifacts/."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import ARTIFACTS, browser_or_skip
from tests.server.runlogs import LogWriter

pytestmark = [pytest.mark.browser, pytest.mark.slow]

XSS = "<script>alert(1)</script>"
STEPS = 60

LOGGER = f"""
import sys
import fulmen.track as wandb
name, lr, group = sys.argv[1], float(sys.argv[2]), sys.argv[3]
config = {{"lr": lr, "layers": 2, "optimizer": "sgd", "width": 64}}
run = wandb.init(project="dash", name=name, group=group, config=config, tags=["t1"],
                 mode="offline")
for i in range({STEPS}):
    loss = lr * 10 / (i + 1) + (5.0 if i == 37 else 0.0) + (0.1 if name in ("beta", "delta") else 0)
    run.log({{"loss": loss, "acc": i / {STEPS}, "trainer/global_step": i * 4}})
run.finish()
"""


def logged_loss(lr: float, i: int, name: str = "alpha") -> float:
    return lr * 10 / (i + 1) + (5.0 if i == 37 else 0.0) + (0.1 if name in ("beta", "delta") else 0)


RUNS = [("alpha", 0.1, "g1"), ("beta", 0.1, "g1"), ("gamma", 0.01, "g2"), ("delta", 0.01, "g2")]


def _write_xss_run(root: Path) -> None:
    """A run with HTML everywhere, written straight from the log grammar (the client refuses such
    a name, a hostile client or server may not)."""
    run_dir = root / "fulmen" / "run-20260101_000000-xss00001"
    writer = LogWriter(run_dir / "run-xss00001.fulmen")
    writer.run(
        "xss00001",
        "dash",
        name=XSS,
        tags=['<img src=x onerror="window.__xss=1">'],
        notes="<b onmouseover=alert(2)>notes</b>",
    )
    writer.record("config", {"lr": 0.5, "html": '<img src=x onerror="window.__xss=1">'})
    writer.history(0, {"loss": 1.0, "trainer/global_step": 0})
    writer.console("<script>window.__xss=1</script> console\n")
    writer.record("exit", {"exit_code": 0, "runtime": 1.0})


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    browser_or_skip()  # before any work: skip (or fail in CI) at once without chromium
    root = tmp_path_factory.mktemp("dash")
    env = {**os.environ, "FULMEN_DIR": str(root), "FULMEN_MODE": "offline"}
    env.pop("FULMEN_BASE_URL", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", LOGGER, name, str(lr), group], env=env)
        for name, lr, group in RUNS
    ]
    assert all(p.wait(120) == 0 for p in procs)
    _write_xss_run(root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "ui", str(root), "--poll", "0.5"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the runs are in
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert match, line
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _run_ids(ui: str) -> dict[str, str]:
    runs = _get(ui + "/api/v1/entities/local/projects/dash/runs?limit=100")["runs"]
    return {r["name"]: r["id"] for r in runs}


def _chart(page: Any, key: str) -> dict[str, Any]:
    """What the line panel of ``key`` drew (panels.js keeps it on the panel as ``el.fulmen``)."""
    data: dict[str, Any] = page.evaluate(
        """key => {
            const c = document.querySelector(`.fp-panel[data-key="${key}"]`).fulmen;
            const arr = (a) => a && Array.from(a, (v) => Number.isFinite(v) ? v : null);
            return {points: c.points, log: c.log, groupby: c.groupby, series: c.series.map(s => ({
                id: s.id, label: s.label, color: s.color, x: arr(s.x), y: arr(s.y),
                raw: arr(s.raw), lo: arr(s.lo), hi: arr(s.hi)}))};
        }""",
        key,
    )
    return data


def _errors(page: Any) -> list[str]:
    """Script errors and CSP refusals the page has met (collected since it was opened)."""
    return list(page.problems)


def test_projects_page_lists_the_project(ui: str, page: Any) -> None:
    page.goto(ui + "/")
    link = page.locator("#projects a", has_text="dash")
    assert link.count() == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-projects.png"), full_page=True)
    link.click()
    page.wait_for_selector("#runs-table[data-rows]")


def test_project_page_lists_runs_and_charts_the_logged_values(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('#runs-table[data-rows="5"]')
    names = page.locator("#runs-table .rt-body .col-name").all_inner_texts()
    assert {"alpha", "beta", "gamma", "delta", XSS} <= set(names)
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    chart = _chart(page, "loss")
    lrs = {name: lr for name, lr, _ in RUNS}
    ids = _run_ids(ui)
    for s in chart["series"]:
        name = next(n for n, i in ids.items() if i == s["id"])
        if name == XSS:
            continue
        # x is trainer/global_step (the default for Lightning runs); one bucket per point here
        assert s["x"] == [i * 4 for i in range(STEPS)]
        assert s["y"] == pytest.approx([logged_loss(lrs[name], i, name) for i in range(STEPS)])
        assert max(s["y"]) == pytest.approx(logged_loss(lrs[name], 37, name))  # the spike is there
    assert _errors(page) == []
    page.screenshot(path=str(ARTIFACTS / "dashboard-project.png"), full_page=True)


def test_buckets_keep_spikes_as_a_min_max_band(ui: str, page: Any) -> None:
    # a panel narrower than the run has points: 50 buckets for 60 points, so some buckets hold
    # two points; the line goes through each bucket's last value, the band spans min to max
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    alpha = _run_ids(ui)["alpha"]
    drawn = page.evaluate(
        """async (id) => {
            const box = document.createElement("div");
            box.style.width = "40px"; // 50 buckets (the fewest)
            document.querySelector("main").append(box);
            const src = FulmenPanels.apiSource({entity: "local", project: "dash", runs: [id]});
            const p = FulmenPanels.mountPanel(box, {kind: "line", y: ["loss"], x: "_step"}, src);
            await p.ready;
            const s = box.fulmen.series[0];
            return {x: Array.from(s.x), y: Array.from(s.y), lo: s.lo && Array.from(s.lo),
                    hi: s.hi && Array.from(s.hi), bands: box.dataset.bands};
        }""",
        alpha,
    )
    assert len(drawn["x"]) < STEPS
    assert drawn["bands"] == "1"
    spike = logged_loss(0.1, 37)
    assert max(drawn["hi"]) == pytest.approx(spike)  # kept, whichever bucket holds step 37
    # buckets of two points: the line at the later one, the band from one to the other
    two = [j for j, (a, b) in enumerate(zip(drawn["lo"], drawn["hi"], strict=True)) if a < b]
    assert two
    assert all(drawn["lo"][j] <= drawn["y"][j] <= drawn["hi"][j] for j in two)


def test_line_plots_read_the_binary_history_answer_which_holds_the_json_one(
    ui: str, page: Any
) -> None:
    with page.expect_request(lambda r: "/history?" in r.url and "format=binary" in r.url):
        page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    got = page.evaluate(
        """async () => {
            const page = await (await fetch("/api/v1/entities/local/projects/dash/runs")).json();
            const src = FulmenPanels.apiSource({entity: "local", project: "dash"});
            const q = {runs: page.runs.map((r) => r.id), keys: ["loss", "acc"], buckets: 20};
            const plain = await src.history(q), bin = await src.history({...q, binary: true});
            const arr = (a) => Array.from(a, (v) => (Number.isNaN(v) ? null : v));
            const fields = ["x", "min", "max", "last", "count"];
            const typed = (s) => fields.every((f) => s[f] instanceof Float64Array);
            return {
                plain, typed: bin.series.every(typed),
                bin: {...bin, series: bin.series.map((s) => ({run: s.run, key: s.key,
                      ...Object.fromEntries(fields.map((f) => [f, arr(s[f])]))}))},
            };
        }"""
    )
    assert got["typed"]
    assert len(got["plain"]["series"]) == 10  # 5 runs x 2 keys (the xss run has no acc: empty)
    assert got["bin"] == got["plain"]


def test_zoom_refetches_the_range(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    box = page.locator('.panel[data-key="loss"] .u-over').bounding_box()
    y = box["y"] + box["height"] / 2
    with page.expect_request(lambda r: "/history?" in r.url and "min=" in r.url) as req:
        page.mouse.move(box["x"] + box["width"] * 0.3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
        page.mouse.up()
    query = req.value.url
    lo = float(re.search(r"min=([-\d.e]+)", query).group(1))  # type: ignore[union-attr]
    hi = float(re.search(r"max=([-\d.e]+)", query).group(1))  # type: ignore[union-attr]
    assert 0 < lo < hi < (STEPS - 1) * 4
    page.wait_for_function(
        "() => document.querySelector('.panel[data-key=\"loss\"]').dataset.zoom !== ''"
    )
    page.wait_for_timeout(200)
    for s in _chart(page, "loss")["series"]:
        assert all(lo - 4 <= x <= hi + 4 for x in s["x"])
    page.screenshot(path=str(ARTIFACTS / "dashboard-zoomed.png"), full_page=True)
    with page.expect_request(lambda r: "/history?" in r.url and "min=" not in r.url):
        page.mouse.dblclick(box["x"] + box["width"] * 0.5, y)  # back to the whole range
    page.wait_for_function(
        "() => document.querySelector('.panel[data-key=\"loss\"]').dataset.zoom === ''"
    )


def test_grouping_draws_mean_and_band(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    assert page.get_attribute('.panel[data-key="loss"]', "data-bands") == "0"  # a bucket a point
    page.select_option("#group-by", "config.lr")
    page.wait_for_selector('.panel[data-key="loss"][data-series="3"][data-bands="3"]')
    groups = {s["label"]: s for s in _chart(page, "loss")["series"]}
    g = groups["0.1 (2 runs)"]
    # the mean of alpha and beta, and a band from one to the other
    assert g["y"][0] == pytest.approx(logged_loss(0.1, 0) + 0.05)
    assert g["lo"][0] == pytest.approx(logged_loss(0.1, 0, "alpha"))
    assert g["hi"][0] == pytest.approx(logged_loss(0.1, 0, "beta"))
    assert "0.01 (2 runs)" in groups
    page.select_option("#group-by", "group")
    page.wait_for_selector('.panel[data-key="loss"][data-series="3"]')
    g1 = {s["label"]: s for s in _chart(page, "loss")["series"]}["g1 (2 runs)"]
    assert len(g1["lo"]) == len(g1["hi"]) == len(g1["y"])
    assert max(g1["hi"]) == pytest.approx(logged_loss(0.1, 37, "beta"))  # the spike survives
    page.screenshot(path=str(ARTIFACTS / "dashboard-grouped.png"), full_page=True)
    page.select_option("#group-by", "")  # back: one line per run, no band
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"][data-bands="0"]')
    _forget_workspace(ui)


def test_run_page_shows_config_summary_and_console(ui: str, page: Any) -> None:
    run_id = _run_ids(ui)["alpha"]
    page.goto(f"{ui}/local/dash/runs/{run_id}")
    config = page.locator("#config").inner_text()
    assert "lr" in config
    assert "0.1" in config
    summary = page.locator("#summary").inner_text()
    assert "loss" in summary
    assert repr(logged_loss(0.1, STEPS - 1)) in summary
    page.wait_for_selector('.panel[data-key="loss"][data-series="1"]')
    page.screenshot(path=str(ARTIFACTS / "dashboard-run.png"), full_page=True)


def test_compare_page_diffs_config(ui: str, page: Any) -> None:
    ids = _run_ids(ui)
    page.goto(f"{ui}/local/dash/compare?run={ids['alpha']}&run={ids['gamma']}")
    diff = page.locator("#config-diff").inner_text()
    assert "lr" in diff
    assert "layers" not in diff
    page.wait_for_selector('.panel[data-key="loss"][data-series="2"]')
    page.screenshot(path=str(ARTIFACTS / "dashboard-compare.png"), full_page=True)


def test_user_text_is_never_executed(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('#runs-table[data-rows="5"]')
    assert XSS in page.locator("#runs-table .rt-body").inner_text()
    page.goto(ui + "/local/dash/runs/xss00001")
    page.wait_for_function("() => document.getElementById('console').textContent.length > 0")
    page.hover("#overview")
    assert page.locator("#run-name").inner_text().startswith(XSS)
    assert "<script>window.__xss=1</script>" in page.locator("#console").inner_text()
    assert "onerror" in page.locator("#config").inner_text()
    assert page.evaluate("() => window.__xss") is None
    assert page.dialogs == []
    assert page.locator("img").count() == 0
    assert page.locator("main script").count() == 0
    page.screenshot(path=str(ARTIFACTS / "dashboard-xss.png"), full_page=True)


def test_live_runs_update_the_table_and_charts(browser: Any, tmp_path: Path) -> None:
    run_dir = tmp_path / "fulmen" / "run-20260101_000000-live0001"
    writer = LogWriter(run_dir / "run-live0001.fulmen")
    writer.run("live0001", "live", name="live run")
    writer.history(0, {"loss": 1.0})
    lock = tmp_path / "fulmen" / ".locks" / "live0001.lock"
    lock.parent.mkdir()
    held = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # as the writing process holds it: the run is live
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "ui", str(tmp_path), "--poll", "0.2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        assert proc.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert url
        page = context.new_page()
        page.goto(url.group(0) + "/local/live?live_ms=300")
        page.wait_for_selector('.panel[data-key="loss"][data-points="1"]')
        assert page.locator("#runs-table .rt-body .state").first.inner_text() == "running"
        for i in range(1, 5):
            writer.history(i, {"loss": 1.0 / (i + 1)})
        page.wait_for_selector('.panel[data-key="loss"][data-points="5"]', timeout=20_000)
        writer.record("exit", {"exit_code": 0, "runtime": 1.0})
        page.wait_for_function(
            "() => document.querySelector('.rt-body .state').textContent === 'finished'",
            timeout=20_000,
        )
    finally:
        context.close()
        proc.terminate()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
        os.close(held)


def _forget_workspace(ui: str) -> None:
    """The project's saved layout deleted (the page saves every change): the next test starts
    from the default layout."""
    url = ui + "/api/v1/entities/local/projects/dash/workspace"
    request = urllib.request.Request(url, method="DELETE", headers={"X-Fulmen-Client": "test"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert json.loads(r.read())["saved"] is False


def test_chart_controls_axis_log_smoothing(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    with page.expect_request(lambda r: "/history?" in r.url and "x=_step" in r.url):
        page.select_option("#x-axis", "_step")
    page.wait_for_function(
        """() => document.querySelector('.fp-panel[data-key="loss"]').fulmen.series
            .every(s => s.x.length < 2 || s.x[1] === 1)"""
    )
    page.check("#log-scale")
    page.wait_for_function(
        "() => document.querySelector('.fp-panel[data-key=\"loss\"]').fulmen.log"
    )
    page.fill("#smoothing", "0.9")
    page.dispatch_event("#smoothing", "input")
    page.wait_for_function(
        "() => document.querySelector('.fp-panel[data-key=\"loss\"]').fulmen.smoothing.amount"
    )
    smoothed = _chart(page, "loss")["series"][1]
    assert smoothed["y"][0] == pytest.approx(smoothed["raw"][0])  # debiased: starts at the data
    assert smoothed["y"][5] > smoothed["raw"][5]  # then lags behind a falling curve
    page.select_option("#smoothing-type", "running")
    page.fill("#smoothing", "3")
    page.dispatch_event("#smoothing", "input")
    page.wait_for_function(
        "() => document.querySelector('.fp-panel[data-key=\"loss\"]').fulmen.smoothing.type"
        " === 'running'"
    )
    ran = _chart(page, "loss")["series"][1]
    assert ran["y"][4] == pytest.approx(sum(ran["raw"][2:5]) / 3)  # the mean of the last 3
    _forget_workspace(ui)


def test_legend_and_tooltip_show_run_names_and_values(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    panel = page.locator('.panel[data-key="loss"]')
    box = panel.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    step = float(panel.get_attribute("data-cursor"))  # the x under the cursor (global_step)
    assert step % 4 == 0
    i = int(step) // 4
    tip = panel.locator(".fp-tip")
    assert tip.is_visible()
    shown = tip.inner_text()
    assert "trainer/global_step" in shown
    ids = _run_ids(ui)
    lrs = {name: lr for name, lr, _ in RUNS}
    for name in ("alpha", "beta", "gamma", "delta"):
        expected = logged_loss(lrs[name], i, name)
        entry = panel.locator(f'.fp-legend .fp-entry[data-run="{ids[name]}"]')
        assert entry.locator(".fp-name").inner_text() == name
        assert float(entry.locator(".fp-value").inner_text()) == pytest.approx(expected, abs=1e-4)
        line = next(t for t in shown.splitlines() if t.startswith(f"{name}: "))
        assert float(line.split(": ")[1]) == pytest.approx(expected, abs=1e-4)
    # the cursor is synchronized: another panel of the page shows the same x
    page.wait_for_function(
        """(x) => [...document.querySelectorAll('.fp-panel[data-kind="line"]')]
            .every(p => p.dataset.cursor === x)""",
        arg=panel.get_attribute("data-cursor"),
    )
    # its legend follows once the cursor rests (the hovered panel's at once: rewriting one
    # legend a frame is cheaper than every panel's)
    page.wait_for_function(
        """(x) => document.querySelector('.fp-panel[data-key="acc"]').dataset.legendAt === x""",
        arg=panel.get_attribute("data-cursor"),
    )
    acc = page.locator('.panel[data-key="acc"]')
    acc_line = float(acc.locator(f'.fp-entry[data-run="{ids["alpha"]}"] .fp-value').inner_text())
    assert acc_line == pytest.approx(i / STEPS, abs=1e-4)  # its legend: the value at that step
    # a click on a legend entry highlights its run (the others fade); again to clear
    entry = panel.locator(f'.fp-legend .fp-entry[data-run="{ids["gamma"]}"]')
    entry.click()
    assert panel.get_attribute("data-highlight") == ids["gamma"]
    assert "fp-dim" in (
        panel.locator(f'.fp-entry[data-run="{ids["alpha"]}"]').get_attribute("class") or ""
    )
    entry.click()
    assert panel.get_attribute("data-highlight") == ""
    assert _errors(page) == []
    page.screenshot(path=str(ARTIFACTS / "dashboard-tooltip.png"), full_page=True)


def test_run_colours_are_distinct_and_the_same_on_every_page(ui: str, page: Any) -> None:
    ids = _run_ids(ui)
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    project = {s["id"]: s["color"] for s in _chart(page, "loss")["series"]}
    assert set(project) == set(ids.values())
    assert len(set(project.values())) == 5  # five runs, five colours
    swatches = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.rt-body .rt-row[data-run]')]
            .map(r => [r.dataset.run,
                getComputedStyle(r.querySelector('.rt-swatch')).backgroundColor]))"""
    )

    def rgb(css: str) -> str:
        n = int(css[1:], 16)
        return f"rgb({n >> 16}, {(n >> 8) & 255}, {n & 255})"

    assert swatches == {i: rgb(c) for i, c in project.items()}  # the table's swatch: the same
    page.goto(f"{ui}/local/dash/runs/{ids['gamma']}")
    page.wait_for_selector('.panel[data-key="loss"][data-series="1"]')
    assert _chart(page, "loss")["series"][0]["color"] == project[ids["gamma"]]
    page.goto(f"{ui}/local/dash/compare?run={ids['delta']}&run={ids['alpha']}")
    page.wait_for_selector('.panel[data-key="loss"][data-series="2"]')
    compare = {s["id"]: s["color"] for s in _chart(page, "loss")["series"]}
    assert compare == {ids["delta"]: project[ids["delta"]], ids["alpha"]: project[ids["alpha"]]}
    palette = page.evaluate("() => FulmenPanels.PALETTE")
    assert len(set(palette)) >= 20


def test_a_saved_workspace_comes_back_after_reload(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    assert page.locator("#workspace-status").inner_text().startswith("default")
    # add a panel through the editor: a bar chart of each run's last loss
    page.locator('.fp-section[data-name="charts"] .fp-add-panel').click()
    form = page.locator(".fp-editor")
    form.locator("select.fp-kind").select_option("bar")
    form.locator('input[name="title"]').fill("last loss")
    form.locator('input[name="metric"]').fill("loss")
    form.locator(".fp-save").click()
    page.wait_for_selector('.fp-panel[data-kind="bar"][data-drawn]')
    # and edit the line panel: log y, smoothing (its own settings, not the page's)
    page.locator('.panel[data-key="loss"] .fp-edit').click()
    form = page.locator(".fp-editor")
    form.locator('input[name="logy"]').check()
    form.locator('select[name="smoothing.type"]').select_option("gaussian")
    form.locator('input[name="smoothing.amount"]').fill("2")
    form.locator(".fp-save").click()
    page.wait_for_function(
        "() => document.getElementById('workspace-status').textContent === 'saved'"
    )
    page.reload()
    page.wait_for_selector('.fp-panel[data-kind="bar"][data-drawn]')
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    assert page.locator("#workspace-status").inner_text() == "saved"
    assert page.locator('.fp-panel[data-kind="bar"] .fp-title').inner_text() == "last loss"
    # the panels draw in one frame once their answers are in: wait for the line panel's draw
    page.wait_for_function(
        """() => { const c = document.querySelector('.fp-panel[data-key="loss"]').fulmen;
                   return c && c.log === true; }"""
    )
    chart = _chart(page, "loss")
    assert chart["log"] is True
    bars = page.evaluate("() => document.querySelector('.fp-panel[data-kind=\"bar\"]').fulmen")
    lrs = {name: lr for name, lr, _ in RUNS}
    by_name = {b["label"]: b["value"] for b in bars["bars"]}
    for name, lr in lrs.items():
        assert by_name[name] == pytest.approx(logged_loss(lr, STEPS - 1, name))
    saved = _get(ui + "/api/v1/entities/local/projects/dash/workspace")
    assert saved["saved"] is True
    line = next(
        p for sec in saved["layout"]["sections"] for p in sec["panels"] if p.get("y") == ["loss"]
    )
    assert line["smoothing"] == {"type": "gaussian", "amount": 2}
    page.locator("#workspace-reset").click()  # back to the default layout
    page.wait_for_function("() => !document.querySelector('.fp-panel[data-kind=\"bar\"]')")
    assert _get(ui + "/api/v1/entities/local/projects/dash/workspace")["saved"] is False
    assert _errors(page) == []


def test_the_table_selection_charts_and_its_view_is_saved_in_the_workspace(
    ui: str, page: Any
) -> None:
    _forget_workspace(ui)
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    # the ticked runs are the charted ones (none ticked: the first of the table)
    for name in ("alpha", "gamma"):
        page.locator("#runs-table .rt-body .rt-row", has_text=name).locator(".rt-sel input").check()
    page.wait_for_selector('.panel[data-key="loss"][data-series="2"]')
    ids = _run_ids(ui)
    assert {s["id"] for s in _chart(page, "loss")["series"]} == {ids["alpha"], ids["gamma"]}
    # the table's view (here its sort) is saved in the workspace and comes back without the URL
    page.locator('#runs-table .rt-head [data-col="name"] .rt-label').click()
    page.wait_for_selector('#runs-table[data-sort="-name"]')
    page.wait_for_function(
        "() => document.getElementById('workspace-status').textContent === 'saved'"
    )
    saved = _get(ui + "/api/v1/entities/local/projects/dash/workspace")
    assert saved["layout"]["table"]["sort"] == "-name"
    page.goto(ui + "/local/dash")
    page.wait_for_selector('#runs-table[data-sort="-name"] .rt-body .rt-row[data-run]')
    page.locator("#workspace-reset").click()
    page.wait_for_selector('#runs-table[data-sort="-created"]')
    assert _get(ui + "/api/v1/entities/local/projects/dash/workspace")["saved"] is False
    assert _errors(page) == []


def test_a_run_comparer_on_the_project_page_compares_the_ticked_runs(ui: str, page: Any) -> None:
    _forget_workspace(ui)
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    rows = page.locator("#runs-table .rt-body .rt-row")
    for name in ("alpha", "gamma"):
        rows.filter(has_text=name).locator(".rt-sel input").check()
    page.wait_for_selector('.panel[data-key="loss"][data-series="2"]')
    # the header's box (it clears the selection) shows "some of the runs": indeterminate
    head = page.locator("#runs-table .rt-headrow .rt-sel input")
    assert head.evaluate("b => [b.checked, b.indeterminate, b.disabled]") == [True, True, False]
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    # a table panel with "compare" ticked, added through the editor: W&B's run comparer
    page.locator('.fp-section[data-name="charts"] .fp-add-panel').click()
    form = page.locator(".fp-editor")
    form.locator("select.fp-kind").select_option("table")
    form.locator('input[name="title"]').fill("side by side")
    form.locator('input[name="compare"]').check()
    form.locator(".fp-save").click()
    comparer = '.fp-panel[data-compare="1"][data-drawn]'
    page.wait_for_selector(comparer)
    ids = _run_ids(ui)
    got = page.evaluate(f"() => document.querySelector('{comparer}').fulmen")
    assert sorted(got["runs"]) == sorted([ids["alpha"], ids["gamma"]])
    # the page's runs hold its table's first columns only (config: html, layers, lr): the
    # comparer fetched the whole runs, config.width among them
    wanted = {"config.lr", "config.width", "config.optimizer", "summary.loss", "state"}
    assert wanted <= set(got["rows"])
    whole = [u for u in asked if "/projects/dash/runs?" in u and "run=" in u]
    assert len(whole) == 1, asked  # in one request, not one a run
    assert all(f"run={ids[n]}" in whole[0] for n in ("alpha", "gamma"))
    assert {"config.lr", "summary.loss"} <= set(got["differing"])
    assert "config.width" not in got["differing"]  # 64 in both
    lr = page.locator(f'{comparer} tr[data-row="config.lr"] td')
    by_run = {lr.nth(i).get_attribute("data-run"): lr.nth(i).inner_text() for i in range(2)}
    assert by_run == {ids["alpha"]: "0.1", ids["gamma"]: "0.01"}
    heads = page.locator(f"{comparer} th.fp-compare-run").all_inner_texts()
    assert sorted(h.strip() for h in heads) == ["alpha", "gamma"]
    # "differences only" hides the rows that are the same in every run
    page.locator(f"{comparer} .fp-diff-only").check()
    page.wait_for_selector('.fp-panel[data-compare="1"][data-diff-only="1"]')
    got = page.evaluate(f"() => document.querySelector('{comparer}').fulmen")
    assert "config.lr" in got["shown"]
    assert "config.width" not in got["shown"]
    assert page.locator(f'{comparer} tr[data-row="config.width"]').count() == 1
    assert page.locator(f'{comparer} tr[data-row="config.width"]').is_hidden()
    # ticking a third run puts it in the comparer too
    rows.filter(has_text="beta").locator(".rt-sel input").check()
    page.wait_for_function(
        """() => { const c = document.querySelector('.fp-panel[data-compare="1"]');
                   return c && c.fulmen && c.fulmen.runs.length === 3; }"""
    )
    _forget_workspace(ui)
    assert _errors(page) == []


def test_demo_serves_its_run_page(browser: Any, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "demo", "--dir", str(tmp_path), "--epochs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the last line printed is the dashboard URL of the run
            match = re.search(r"(http://127\.0\.0\.1:\d+/local/fulmen-demo/runs/\w+)", line)
            if match:
                break
        else:
            raise AssertionError("fulmen demo printed no URL")
        page = context.new_page()
        page.goto(match.group(1))
        assert "hidden" in page.locator("#config").inner_text()
        page.wait_for_selector('.panel[data-key="train/loss"][data-series="1"]')
        page.wait_for_selector("#histograms .panel[data-steps]")
        page.wait_for_function(
            "() => document.getElementById('topology').textContent.includes('Linear')"
        )
        assert "best" in page.locator("#artifacts").inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-demo-run.png"), full_page=True)
    finally:
        context.close()
        proc.terminate()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()


def test_every_panel_kind_draws_the_runs(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    drawn = page.evaluate(
        """async () => {
            const src = FulmenPanels.apiSource({entity: "local", project: "dash"});
            const specs = [
                {kind: "scalar", metric: "loss", agg: "min"},
                {kind: "bar", metric: "loss", groupby: "config.lr"},
                {kind: "scatter", x: "config.lr", y: "summary.loss"},
                {kind: "parallel", columns: ["config.lr", "group", "summary.loss"]},
                {kind: "table", columns: ["name", "config.lr", "summary.loss"]},
                {kind: "markdown", text: "plain <b>text</b>"},
                {kind: "markdown", html: "<h2>Title</h2><script>window.__md = 1</script>" +
                                         "<a href='javascript:window.__md = 2'>link</a>"},
                {kind: "nonsense"},
            ];
            const out = [];
            for (const spec of specs) {
                const box = document.createElement("div");
                document.querySelector("main").append(box);
                await FulmenPanels.mountPanel(box, spec, src).ready;
                out.push({fulmen: box.fulmen || null, text: box.innerText});
            }
            return out;
        }"""
    )
    scalar, bar, scatter, parallel, table, plain, html, unknown = drawn
    lrs = {name: lr for name, lr, _ in RUNS}
    lowest = [min(logged_loss(lr, i, n) for i in range(STEPS)) for n, lr in lrs.items()]
    values = sorted(v["value"] for v in scalar["fulmen"]["values"])
    assert values[:-1] == pytest.approx(sorted(lowest))  # (the last: the one-row XSS run, 1.0)
    groups = {b["label"]: b for b in bar["fulmen"]["bars"]}
    last = {n: logged_loss(lr, STEPS - 1, n) for n, lr in lrs.items()}
    assert groups["0.1 (2)"]["value"] == pytest.approx((last["alpha"] + last["beta"]) / 2)
    assert groups["0.1 (2)"]["lo"] == pytest.approx(last["alpha"])
    assert len(scatter["fulmen"]["points"]) == 5
    assert {a["column"] for a in parallel["fulmen"]["axes"]} == {
        "config.lr",
        "group",
        "summary.loss",
    }
    assert parallel["fulmen"]["axes"][1]["categories"] == ["g1", "g2"]
    assert table["fulmen"]["rows"] == 5
    assert "alpha" in table["text"]
    assert "plain <b>text</b>" in plain["text"]  # text stays text
    assert "Title" in html["text"]
    assert page.evaluate("() => window.__md") is None  # the HTML's scripts never run
    page.get_by_text("link").click()
    assert page.evaluate("() => window.__md") is None  # nor its javascript: links
    assert "unknown panel kind" in unknown["text"]
    # runs handed over without their config (a table showing other columns): the panels fetch
    # the values they group or plot by
    trimmed = page.evaluate(
        """async () => {
            const full = await FulmenPanels.apiSource({entity: "local", project: "dash"}).runs();
            const src = FulmenPanels.apiSource({entity: "local", project: "dash"});
            src.setRuns(full.map((r) => ({id: r.id, name: r.name, created: r.created,
                                          config: {}, summary: {}})));
            const box = document.createElement("div");
            document.querySelector("main").append(box);
            await FulmenPanels.mountPanel(box, {kind: "scatter", x: "config.lr",
                                                y: "summary.loss"}, src).ready;
            return box.fulmen.points.length;
        }"""
    )
    assert trimmed == 5
    assert _errors(page) == []


def test_an_exported_snapshot_draws_from_a_file_without_network(
    ui: str, page: Any, browser: Any, tmp_path: Path
) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    layout = {"panels": [{"kind": "line", "y": ["loss"], "x": "trainer/global_step"},
                         {"kind": "bar", "metric": "loss"}]}  # fmt: skip
    snapshot = page.evaluate(
        """(layout) => FulmenPanels.apiSource({entity: "local", project: "dash"})
            .snapshot(layout, {buckets: 500})""",
        layout,
    )
    served = {s["id"]: s for s in _chart(page, "loss")["series"]}

    def static(name: str) -> str:
        with urllib.request.urlopen(f"{ui}/static/{name}", timeout=30) as r:
            return str(r.read().decode())

    data = json.dumps({"snapshot": snapshot, "layout": layout}).replace("<", "\\u003c")
    boot = """const d = JSON.parse(document.getElementById("data").textContent);
      FulmenPanels.mountGrid(document.getElementById("grid"), d.layout,
                             FulmenPanels.embeddedSource(d.snapshot));"""
    html = f"""<!doctype html><html><head><meta charset="utf-8">
<style>{static("vendor/uPlot.min.css")}{static("panels.css")}</style></head><body>
<div id="grid"></div><script type="application/json" id="data">{data}</script>
<script>{static("vendor/uPlot.iife.min.js")}</script><script>{static("panels.js")}</script>
<script>{boot}</script></body></html>"""
    path = tmp_path / "report.html"
    path.write_text(html)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    asked: list[str] = []

    def refuse(route: Any) -> None:
        asked.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(?!file:).*"), refuse)  # no request leaves the file
    try:
        offline = context.new_page()
        errors: list[str] = []
        offline.on("pageerror", lambda e: errors.append(str(e)))
        offline.goto(path.as_uri())
        offline.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
        offline.wait_for_selector('.fp-panel[data-kind="bar"][data-drawn]')
        drawn = {s["id"]: s for s in _chart(offline, "loss")["series"]}
        assert drawn.keys() == served.keys()
        for run, s in drawn.items():
            assert s["y"] == served[run]["y"]  # the same numbers
            assert s["color"] == served[run]["color"]  # and the same colours
        assert asked == []
        assert errors == []
        offline.screenshot(path=str(ARTIFACTS / "dashboard-offline-snapshot.png"), full_page=True)
    finally:
        context.close()
