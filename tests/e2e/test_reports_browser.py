"""Reports in a real browser (Debian's chromium through Playwright) against a real ``fulmen
server`` on loopback, the runs logged online by real client processes: a report written in Python
and one written in the browser editor both render; a frozen run set keeps its runs when a run is
added; the exported HTML, opened from ``file://`` with every request refused, draws every chart.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fulmen.track.reports as wr
from tests.e2e.browser import ARTIFACTS, browser_or_skip
from tests.e2e.test_server_e2e import Server, _env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOGGER = """
import sys
import numpy as np
import fulmen.track as wandb
for spec in sys.argv[1:]:  # one run after the other: "id,optimizer,seed"
    run_id, opt, seed = spec.split(",")[0], spec.split(",")[1], int(spec.split(",")[2])
    run = wandb.init(project="rep", id=run_id, name=f"{opt}-{seed}",
                     config={"optimizer": opt, "seed": seed,
                             "model": {"depth": 4, "width": 32 * (seed + 1)},
                             "data": "/datasets/" + "shard/" * 10 + run_id})
    scale = (1.0 if opt == "adam" else 2.0) + seed / 10
    for i in range(50):
        run.log({"train/loss": scale / (i + 1), "val/acc": 1 - scale / (i + 4)})
    if seed == 0:
        pixels = np.zeros((8, 8, 3), dtype=np.uint8)
        pixels[:, :4] = (250, 30, 30)
        run.log({"samples": wandb.Image(pixels, caption=run_id)})
    run.finish()
"""


def log_runs(tmp_path: Path, server: Server, runs: list[tuple[str, str, int]]) -> None:
    env = _env(tmp_path, server, FULMEN_MODE="online")
    specs = [f"{i},{o},{s}" for i, o, s in runs]
    subprocess.run([sys.executable, "-c", LOGGER, *specs], env=env, check=True, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    browser_or_skip()
    tmp = tmp_path_factory.mktemp("reports")
    s = Server(tmp / "server")
    s.start()
    try:
        log_runs(tmp, s, [("a0", "adam", 0), ("a1", "adam", 1), ("s0", "sgd", 0), ("s1", "sgd", 1)])
        yield s
    finally:
        assert s.proc is not None
        s.proc.terminate()
        s.proc.wait(30)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    pg.on("dialog", lambda d: d.accept())
    pg.problems = problems
    yield pg
    context.close()


def python_report(server: Server) -> wr.Report:
    panels = [
        wr.LinePlot(
            x="_step",
            y=["train/loss"],
            groupby="config.optimizer",
            groupby_rangefunc="minmax",
            title="loss by optimizer",
        ),
        wr.BarPlot(metrics=["val/acc"], agg="max", groupby="config.optimizer", title="best acc"),
        wr.ScalarChart("val/acc", agg="max", title="best of all"),
        wr.RunTable(columns=["name", "config.optimizer", "summary.val/acc"]),
        wr.MediaBrowser("samples"),
    ]
    report = wr.Report(
        project="rep",
        title="Adam or SGD?",
        description="four runs",
        blocks=[
            wr.H1("Loss"),
            wr.P("The mean loss $\\bar{L} = \\frac{1}{n}\\sum_i L_i$ with a min/max band."),
            wr.PanelGrid(runsets=[wr.Runset(name="live")], panels=panels),
            wr.PanelGrid(runsets=[wr.Runset(name="frozen", frozen=True)], panels=panels[:1]),
        ],
    )
    report.save(base_url=server.url)
    return report


def counts(page: Any) -> list[str]:
    return page.locator(".runset .runset-count").all_inner_texts()


DRAWN = """() => {
    const all = (selector) => [...document.querySelectorAll(selector)];
    const inked = (c) => {  // pixels neither blank nor near-white
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i + 3] > 0 && (d[i] < 200 || d[i + 1] < 200)) n++;
        }
        return n;
    };
    const line = (p) => ({
        series: Number(p.dataset.series),
        bands: Number(p.dataset.bands),
        legend: [...p.querySelectorAll(".fp-entry .fp-name")].map((e) => e.textContent).sort(),
        ink: Math.max(0, ...[...p.querySelectorAll("canvas")].map(inked)),
    });
    const loaded = (i) => i.complete && i.naturalWidth > 0;
    return {
        lines: all('.fp-panel[data-kind="line"]').map(line),
        bars: all('.fp-panel[data-kind="bar"]').map((p) => p.fulmen.bars.map((b) => b.label)
            .sort()),
        scalars: all('.fp-panel[data-kind="scalar"] .fp-scalar').map((e) => e.textContent),
        rows: all('.fp-panel[data-kind="table"]:not([data-compare])').map((p) => p.fulmen.rows),
        compare: all('.fp-panel[data-compare]').map((p) => p.fulmen),
        images: all('.fp-panel[data-kind="media"] img').filter(loaded).length,
        math: all(".block-markdown math").length,
    };
}"""


def drawn_everywhere(page: Any) -> dict[str, Any]:
    """What each panel of the page drew: line series and bands, non-blank canvases, bars,
    table rows, loaded images, MathML elements."""
    result: dict[str, Any] = page.evaluate(DRAWN)
    return result


def test_a_report_written_in_python_renders_and_a_frozen_run_set_stays(
    server: Server, page: Any, tmp_path: Path
) -> None:
    report = python_report(server)
    page.goto(report.url)
    page.wait_for_selector("body[data-ready='1']")
    drawn = drawn_everywhere(page)
    live, _frozen = drawn["lines"]
    assert live["series"] == 2
    assert live["bands"] == 2
    assert live["legend"] == ["adam (2 runs)", "sgd (2 runs)"]
    assert live["ink"] > 500
    assert drawn["bars"] == [["adam (2)", "sgd (2)"]]
    assert drawn["scalars"]
    assert drawn["scalars"][0] != "-"
    assert drawn["rows"] == [4]
    assert drawn["images"] == 2  # a0's and s0's sample
    assert drawn["math"] >= 1
    assert counts(page) == ["4 runs", "4 runs"]
    page.screenshot(path=str(ARTIFACTS / "report-python.png"), full_page=True)

    log_runs(tmp_path, server, [("a2", "adam", 2)])
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert counts(page) == ["5 runs", "4 runs"]  # the live run set has it, the frozen one not
    assert page.problems == []


def test_a_report_written_in_the_browser_renders(server: Server, page: Any) -> None:
    page.goto(f"{server.url}/local/rep/reports/new")
    page.fill("#report-title-input", "Written in the browser")
    page.click("#add-markdown")
    page.fill(".md-input", "## Notes\n\nAccuracy $a^2$ rises.")
    page.wait_for_selector(".md-preview math")  # the live preview, from the server
    assert page.inner_text(".md-preview h2") == "Notes"
    page.click("#add-grid")  # the project's workspace over all its runs
    page.wait_for_selector('.block-edit-panels .fp-panel[data-kind="line"][data-series]')
    page.click("#add-image")
    assert page.get_attribute("#blocks", "data-blocks") == "3"
    page.click(".block-edit-image .block-remove")
    page.click(".block-edit-markdown .block-down")  # the text after the grid
    assert page.get_attribute("#blocks", "data-blocks") == "2"
    with page.expect_navigation():
        page.click("#save-report")
    assert re.search(r"/local/rep/reports/[a-z0-9]{12}$", page.url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#report-title") == "Written in the browser"
    kinds = page.eval_on_selector_all(
        "article.report .block", "els => els.map((e) => e.className.split(' ')[1])"
    )
    assert kinds == ["block-panels", "block-markdown"]
    drawn = drawn_everywhere(page)
    assert drawn["lines"]
    assert all(line["series"] >= 4 for line in drawn["lines"])
    assert drawn["math"] == 1
    page.screenshot(path=str(ARTIFACTS / "report-browser.png"), full_page=True)
    # edited again: the title changes, the blocks stay
    page.click("#edit-report")
    page.wait_for_selector('.block-edit-panels .fp-panel[data-kind="line"]')
    page.fill("#report-title-input", "Written in the browser, edited")
    with page.expect_navigation():
        page.click("#save-report")
    assert page.inner_text("#report-title") == "Written in the browser, edited"
    assert page.problems == []


def exported(report: wr.Report, out: Path) -> Path:
    """``fulmen report export`` of ``report`` into ``out``."""
    done = subprocess.run(
        [sys.executable, "-m", "fulmen", "report", "export", report.url, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out


@contextlib.contextmanager
def opened_offline(browser: Any, path: Path) -> Iterator[tuple[Any, list[str], list[str]]]:
    """The file ``path`` in a browser context that refuses every request but file:, data: and
    blob: ones: the page, the URLs it asked for anyway, and its script and console errors."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    asked: list[str] = []
    errors: list[str] = []

    def refuse(route: Any) -> None:
        asked.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(?!file:|data:|blob:).*"), refuse)
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(path.as_uri())
        yield page, asked, errors
    finally:
        context.close()


def test_the_export_draws_every_chart_from_a_file_with_no_network(
    server: Server, browser: Any, tmp_path: Path
) -> None:
    report = python_report(server)
    runs = json.loads(server.get("/entities/local/projects/rep/runs?limit=100"))["runs"]
    opts = [r["config"]["optimizer"] for r in runs]
    out = exported(report, tmp_path / "report.html")
    html = out.read_text()
    assert "http://127.0.0.1" not in html  # nothing points back at the server
    with opened_offline(browser, out) as (offline, asked, errors):
        offline.wait_for_selector("body[data-ready='1']")
        drawn = drawn_everywhere(offline)
        live, frozen = drawn["lines"]
        assert live["series"] == 2
        assert live["bands"] == 2
        assert live["ink"] > 500
        assert frozen["series"] == 2
        assert frozen["ink"] > 500
        assert drawn["bars"] == [[f"adam ({opts.count('adam')})", f"sgd ({opts.count('sgd')})"]]
        assert drawn["rows"] == [len(runs)]
        assert drawn["images"] == 2
        assert drawn["math"] >= 1
        assert counts(offline) == [f"{len(runs)} runs"] * 2
        offline.screenshot(path=str(ARTIFACTS / "report-export.png"), full_page=True)
    assert asked == []
    assert errors == []


COMPARER = """(p) => ({
    heads: [...p.querySelectorAll("thead th.fp-compare-run")].map((th) => ({
        run: th.dataset.run, name: th.textContent, href: th.querySelector("a")?.getAttribute("href")
            || null, swatch: th.querySelector(".fp-swatch").style.background})),
    visible: [...p.querySelectorAll("tbody tr[data-row]")].filter((r) => r.offsetParent !== null)
        .map((r) => r.dataset.row),
    cell: (() => {
        const td = p.querySelector('tr[data-row="config.data"] td');
        return td ? {text: td.textContent, title: td.title} : null;
    })(),
})"""


def comparer_report(server: Server) -> wr.Report:
    """a0 and a1: the same optimizer and model depth, another seed, width and data path."""
    report = wr.Report(
        project="rep",
        title="a0 against a1",
        blocks=[
            wr.PanelGrid(
                runsets=[wr.Runset(name="adam", selection=["a0", "a1"])],
                panels=[wr.RunComparer(title="side by side")],
            )
        ],
    )
    report.save(base_url=server.url)
    return report


def check_comparer(page: Any, linked: bool) -> None:
    panel = page.locator(".fp-panel[data-compare]")
    seen = panel.evaluate(COMPARER)
    assert [h["run"] for h in seen["heads"]] == ["a0", "a1"]  # a column per run, in run order
    assert [h["name"] for h in seen["heads"]] == ["adam-0", "adam-1"]
    assert all(h["swatch"] for h in seen["heads"])
    if linked:
        assert [h["href"] for h in seen["heads"]] == ["/local/rep/runs/a0", "/local/rep/runs/a1"]
    for row in ("state", "config.optimizer", "config.seed", "config.model.depth",
                "config.model.width", "summary.val/acc"):  # fmt: skip
        assert row in seen["visible"]
    full = "/datasets/" + "shard/" * 10 + "a0"
    assert seen["cell"]["title"] == full  # cut in the cell, whole in its title
    assert seen["cell"]["text"].endswith("\u2026")
    assert len(seen["cell"]["text"]) < len(full)
    drawn = panel.evaluate("(p) => p.fulmen")
    assert "config.seed" in drawn["differing"]
    assert "config.optimizer" not in drawn["differing"]
    assert "config.model.depth" not in drawn["differing"]
    # differences only: the equal rows go, the differing stay
    panel.locator("input.fp-diff-only").check()
    seen = panel.evaluate(COMPARER)
    assert "config.seed" in seen["visible"]
    assert "config.model.width" in seen["visible"]
    assert "config.optimizer" not in seen["visible"]
    assert "config.model.depth" not in seen["visible"]
    assert "state" not in seen["visible"]  # both finished
    panel.locator("input.fp-diff-only").uncheck()
    assert "config.optimizer" in panel.evaluate(COMPARER)["visible"]


def test_a_run_comparer_shows_the_runs_side_by_side_and_their_differences(
    server: Server, page: Any
) -> None:
    report = comparer_report(server)
    page.goto(report.url)
    page.wait_for_selector("body[data-ready='1'] .fp-panel[data-compare] tr[data-row]")
    check_comparer(page, linked=True)
    page.screenshot(path=str(ARTIFACTS / "report-comparer.png"), full_page=True)
    # diff_only in the spec: the panel opens with the equal rows hidden
    only = wr.Report(
        project="rep",
        title="differences only",
        blocks=[
            wr.PanelGrid(
                runsets=[wr.Runset(selection=["a0", "a1"])],
                panels=[wr.RunComparer(diff_only=True)],
            )
        ],
    )
    only.save(base_url=server.url)
    page.goto(only.url)
    page.wait_for_selector("body[data-ready='1'] .fp-panel[data-compare] tr.fp-differs")
    seen = page.locator(".fp-panel[data-compare]").evaluate(COMPARER)
    assert "config.seed" in seen["visible"]
    assert "config.optimizer" not in seen["visible"]
    assert page.is_checked("input.fp-diff-only")
    assert page.problems == []


def test_the_exported_run_comparer_draws_from_a_file(
    server: Server, browser: Any, tmp_path: Path
) -> None:
    report = comparer_report(server)
    out = exported(report, tmp_path / "comparer.html")
    with opened_offline(browser, out) as (offline, asked, errors):
        offline.wait_for_selector("body[data-ready='1'] .fp-panel[data-compare] tr[data-row]")
        check_comparer(offline, linked=False)
    assert asked == []
    assert errors == []


def test_the_export_button_answers_the_file(server: Server, page: Any) -> None:
    report = python_report(server)
    page.goto(report.url)
    href = page.get_attribute("#export-report", "href")
    assert href == f"/api/v1/entities/local/projects/rep/reports/{report.id}/export.html"
    url = server.url + href
    with urllib.request.urlopen(url) as r:
        assert r.headers["content-disposition"].startswith("attachment; filename=")
        assert b"Content-Security-Policy" in r.read()
