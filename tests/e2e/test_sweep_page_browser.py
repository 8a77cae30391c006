"""The sweep page in a real browser: a ``fulmen server`` process on loopback, a sweep created and
its trials claimed and finished over HTTP (each trial's run logged by ``fulmen.track`` in a child
process, no training), then Debian's chromium (Playwright) opens the sweep page, the sweeps list
and the project page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import browser_or_skip
from tests.e2e.test_server_e2e import Server
from tests.server.runlogs import CLIENT_HEADERS
from tests.track.conftest import child_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROJECT = "sw"
CONFIG = {
    "method": "random",
    "metric": {"name": "val/loss", "goal": "minimize"},
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "batch": {"values": [16, 32, 64]},
        "width": {"distribution": "int_uniform", "min": 8, "max": 64},
        "seed": {"value": 7},
    },
}
FINISHED = 5  # trials claimed and finished; one more is claimed and left running

# the trials' runs, as an agent's child would log them (one process for all, to stay fast)
LOGGER = """
import json, sys
import fulmen.track as wandb
for t in json.loads(sys.argv[1]):
    run = wandb.init(project=t["project"], id=t["run_id"], config=t["params"])
    run.log({"val/loss": t["value"]})
    run.finish()
"""


def _call(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {**CLIENT_HEADERS, "content-type": "application/json", "accept": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())


def _loss(params: dict[str, Any]) -> float:
    return round(abs(params["lr"] - 0.01) * 10 + params["batch"] / 100, 6)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    browser_or_skip()
    root = tmp_path_factory.mktemp("sweep-page")
    server = Server(root / "data")
    server.start()
    try:
        base = f"{server.url}/api/v1/entities/local/projects/{PROJECT}/sweeps"
        sweep_id = _call(base, {"config": CONFIG, "seed": 1})["id"]
        agent = _call(f"{base}/{sweep_id}/agents", {"pid": os.getpid()})["id"]
        trials = [
            _call(f"{base}/{sweep_id}/next", {"agent": agent})["trial"] for _ in range(FINISHED + 1)
        ]
        done = [{**t, "project": PROJECT, "value": _loss(t["params"])} for t in trials]
        logged = subprocess.run(
            [sys.executable, "-c", LOGGER, json.dumps(done)], cwd=root, check=False,
            capture_output=True, timeout=120,
            env=child_env(FULMEN_BASE_URL=server.url, FULMEN_DIR=str(root)),
        )  # fmt: skip
        assert logged.returncode == 0, logged.stderr[-3000:]
        for t in done[:FINISHED]:
            body = {"state": "finished", "value": t["value"]}
            _call(f"{base}/{sweep_id}/trials/{t['number']}/finish", body)
        yield {"url": server.url, "id": sweep_id, "trials": done}
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait(15)


def test_the_json_twins_answer_the_sweep_and_the_list(sweep: dict[str, Any]) -> None:
    twin = _call(f"{sweep['url']}/local/{PROJECT}/sweeps/{sweep['id']}.json")
    api = _call(f"{sweep['url']}/api/v1/entities/local/projects/{PROJECT}/sweeps/{sweep['id']}")
    assert twin["parameters"] == ["lr", "batch", "width"]  # the constant seed is not searched
    assert [t["run_id"] for t in twin["sweep"]["trials"]] == [t["run_id"] for t in api["trials"]]
    assert twin["sweep"]["best"] == api["best"]
    listed = _call(f"{sweep['url']}/local/{PROJECT}/sweeps.json")
    assert [s["id"] for s in listed["sweeps"]] == [sweep["id"]]
    assert listed["sweeps"][0]["progress"]["trials"] == FINISHED + 1
    project = _call(f"{sweep['url']}/local/{PROJECT}.json")
    assert [s["id"] for s in project["sweeps"]] == [sweep["id"]]


def test_the_sweep_page_shows_trials_charts_and_importance(
    sweep: dict[str, Any],
    page: Any,
) -> None:
    page.goto(f"{sweep['url']}/local/{PROJECT}/sweeps/{sweep['id']}")
    rows = page.locator("#trials tbody tr")
    assert rows.count() == FINISHED + 1
    for i, t in enumerate(sweep["trials"]):
        row = rows.nth(i)
        cells = row.locator("td").all_text_contents()
        assert cells[0] == str(t["number"])
        assert cells[1] == ("finished" if i < FINISHED else "running")
        assert float(cells[2]) == pytest.approx(t["params"]["lr"], rel=1e-5)  # 6 digits
        assert cells[3] == str(t["params"]["batch"])
        assert cells[4] == str(t["params"]["width"])
        if i < FINISHED:
            assert float(cells[5]) == pytest.approx(t["value"], rel=1e-5)
        else:
            assert cells[5] == ""
        link = row.locator("a")
        assert link.get_attribute("href") == f"/local/{PROJECT}/runs/{t['run_id']}"
    assert "val/loss" in page.locator("#sweep-config").text_content()
    assert "random" in page.locator("#overview").text_content()

    # parallel coordinates: an axis per parameter and the metric, a line per trial with a metric
    page.wait_for_function("document.querySelector('#parallel .panel')?.fulmen?.runs")
    drawn = page.evaluate("document.querySelector('#parallel .panel').fulmen")
    columns = [a["column"] for a in drawn["axes"]]
    assert columns == ["config.lr", "config.batch", "config.width", "summary.val/loss"]
    assert len(drawn["runs"]) == FINISHED + 1  # the running trial too, without a metric
    assert page.locator("#parallel canvas").count() == 1

    # the metric by trial number with the best-so-far line
    finished = sweep["trials"][:FINISHED]
    best, curve = float("inf"), []
    for t in finished:
        best = min(best, t["value"])
        curve.append(best)
    series = page.evaluate(
        "Array.from(document.querySelector('#best-so-far canvas').fulmen.series, "
        "s => ({x: Array.from(s.x), y: Array.from(s.y)}))"
    )
    assert series[0]["x"] == [t["number"] for t in finished]
    assert series[0]["y"] == pytest.approx([t["value"] for t in finished])
    assert series[1]["y"] == pytest.approx(curve)
    legend = page.locator("#best-so-far .chart-legend").text_content()
    assert "best so far" in legend
    assert "val/loss" in legend

    # importance (named method) and correlation for every searched parameter
    assert "PED-ANOVA" in page.locator("#importance-method").text_content() or (
        "fANOVA" in page.locator("#importance-method").text_content()
    )
    assert "Spearman" in page.locator("#importance-method").text_content()
    table = page.locator("#importance tbody tr")
    assert [table.nth(i).locator("th").text_content() for i in range(table.count())] == [
        "lr", "batch", "width",
    ]  # fmt: skip
    api = _call(f"{sweep['url']}/api/v1/entities/local/projects/{PROJECT}/sweeps/{sweep['id']}")
    importance, rho = api["importance"]["values"], api["correlation"]["values"]
    assert set(importance) == {"lr", "batch", "width"}, api["importance"]
    for i, name in enumerate(["lr", "batch", "width"]):
        shown = table.nth(i).locator("td").all_text_contents()
        assert float(shown[0]) == pytest.approx(importance[name], rel=1e-2)
        assert float(shown[1]) == pytest.approx(rho[name], rel=1e-2)
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#importance-bars .panel')).filter(p => p.fulmen)"
        ".length == 2"
    )
    bars = page.evaluate(
        "Array.from(document.querySelectorAll('#importance-bars .panel'), p => ({"
        "title: p.querySelector('.chart-title, .fp-title, h3, h4')?.textContent || p.textContent,"
        "bars: Object.fromEntries(p.fulmen.bars.map(b => [b.label, b.value]))}))"
    )
    assert "importance" in bars[0]["title"]
    assert bars[0]["bars"] == pytest.approx(importance)
    assert "Spearman" in bars[1]["title"]
    assert bars[1]["bars"] == pytest.approx(rho)
    assert page.problems == []
    page.screenshot(
        path=str(Path(__file__).resolve().parents[2] / "test-artifacts/sweep.png"), full_page=True
    )


def test_the_project_page_and_the_sweeps_list_link_the_sweep(
    sweep: dict[str, Any],
    page: Any,
) -> None:
    href = f"/local/{PROJECT}/sweeps/{sweep['id']}"
    page.goto(f"{sweep['url']}/local/{PROJECT}")
    assert page.locator(f'#sweeps a[href="{href}"]').count() == 1
    page.goto(f"{sweep['url']}/local/{PROJECT}/sweeps")
    link = page.locator(f'table.sweeps a[href="{href}"]')
    assert link.count() == 1
    link.click()
    page.wait_for_url(f"**{href}")
    assert page.locator("#trials tbody tr").count() == FINISHED + 1
    assert page.problems == []
