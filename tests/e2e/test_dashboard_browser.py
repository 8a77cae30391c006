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

from tests.server.runlogs import LogWriter

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
XSS = "<script>alert(1)</script>"
STEPS = 60

LOGGER = f"""
import sys
import fulmen.track as wandb
name, lr, group = sys.argv[1], float(sys.argv[2]), sys.argv[3]
run = wandb.init(project="dash", name=name, group=group, config={{"lr": lr, "layers": 2}},
                 tags=["t1"], mode="offline")
for i in range({STEPS}):
    loss = lr * 10 / (i + 1) + (5.0 if i == 37 else 0.0) + (0.1 if name in ("beta", "delta") else 0)
    run.log({{"loss": loss, "trainer/global_step": i * 4}})
run.finish()
"""


def logged_loss(lr: float, i: int, name: str = "alpha") -> float:
    return lr * 10 / (i + 1) + (5.0 if i == 37 else 0.0) + (0.1 if name in ("beta", "delta") else 0)


RUNS = [("alpha", 0.1, "g1"), ("beta", 0.1, "g1"), ("gamma", 0.01, "g2"), ("delta", 0.01, "g2")]


def _browser_or_skip() -> Any:
    """Playwright's chromium launcher, or a skip (locally) / a failure (CI) saying what lacks."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem is None and not os.path.exists(CHROMIUM):
        problem = f"{CHROMIUM} is missing (apt-get install chromium; scripts/test does it)"
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


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
    _browser_or_skip()  # before any work: skip (or fail in CI) at once without chromium
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
            ],
        )  # fmt: skip
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    yield pg
    context.close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _run_ids(ui: str) -> dict[str, str]:
    runs = _get(ui + "/api/v1/entities/local/projects/dash/runs?limit=100")["runs"]
    return {r["name"]: r["id"] for r in runs}


def _chart(page: Any, key: str) -> dict[str, Any]:
    data: dict[str, Any] = page.evaluate(
        """key => {
            const c = document.querySelector(`.panel[data-key="${key}"] canvas`).fulmen;
            return {points: c.points, series: c.series.map(s => ({
                id: s.id, label: s.label, x: Array.from(s.x), y: Array.from(s.y),
                lo: s.lo && Array.from(s.lo), hi: s.hi && Array.from(s.hi)}))};
        }""",
        key,
    )
    return data


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
        assert max(s["hi"]) == pytest.approx(logged_loss(lrs[name], 37, name))  # the spike is there
    page.screenshot(path=str(ARTIFACTS / "dashboard-project.png"), full_page=True)


def test_zoom_refetches_the_range(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    box = page.locator('.panel[data-key="loss"] .chart-overlay').bounding_box()
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


def test_grouping_draws_mean_and_band(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    page.select_option("#group-by", "config.lr")
    page.wait_for_selector('.panel[data-key="loss"][data-series="3"]')
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


def test_chart_controls_axis_log_smoothing_tooltip(ui: str, page: Any) -> None:
    page.goto(ui + "/local/dash")
    page.wait_for_selector('.panel[data-key="loss"][data-series="5"]')
    with page.expect_request(lambda r: "/history?" in r.url and "x=_step" in r.url):
        page.select_option("#x-axis", "_step")
    page.wait_for_function(
        """() => document.querySelector('.panel[data-key="loss"] canvas').fulmen.series
            .every(s => s.x.length < 2 || s.x[1] === 1)"""
    )
    page.check("#log-scale")
    assert page.evaluate(
        "() => document.querySelector('.panel[data-key=\"loss\"] canvas').fulmen.log"
    )
    page.fill("#smoothing", "0.9")
    page.dispatch_event("#smoothing", "input")
    smoothed = _chart(page, "loss")["series"][1]
    assert smoothed["y"][0] == pytest.approx(smoothed["lo"][0])  # debiased: starts at the data
    assert smoothed["y"][5] > smoothed["lo"][5]  # then lags behind a falling curve
    box = page.locator('.panel[data-key="loss"] .chart-overlay').bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    tip = page.locator('.panel[data-key="loss"] .chart-tip')
    assert tip.is_visible()
    assert "alpha" in tip.inner_text()
    assert "_step" in tip.inner_text()


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
