"""examples/report/ on tiny settings: it trains the runs online to the server it starts, saves the
report and exports it; the exported file holds the report's blocks and every run's data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "report" / "train.py"


def test_the_report_example_trains_reports_and_exports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "WANDB_"))}
    env.update(
        FULMEN_SETTINGS_FILE=str(tmp_path / "settings"),
        FULMEN_CONSOLE="off",
        FULMEN_STATS_INTERVAL="0",
        FULMEN_DISABLE_GIT="true",
    )
    out = tmp_path / "report.html"
    tiny = [
        "--epochs",
        "2",
        "--seeds",
        "1",
        "--samples",
        "256",
        "--out",
        str(out),
        "--dir",
        str(tmp_path / "work"),
    ]
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *tiny],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert re.search(r"report: http://127\.0\.0\.1:\d+/local/optimizers/reports/\w+", done.stdout)
    html = out.read_text()
    data = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert data is not None
    page = json.loads(data[1])
    report = page["report"]
    assert report["title"] == "Adam or SGD?"
    kinds = [b["kind"] for b in report["blocks"]]
    assert kinds == ["markdown", "markdown", "panels", "markdown", "markdown"]
    grid = report["blocks"][2]
    panels = [p["kind"] for p in grid["panels"]]
    assert panels == ["line", "line", "bar", "table"]
    assert grid["panels"][0]["groupby"] == "config.optimizer"
    assert grid["panels"][0]["band"] == "minmax"
    (snapshot,) = page["snapshots"].values()
    runs = {r["name"]: r for r in snapshot["runs"]}
    assert set(runs) == {"adam-seed0", "sgd-seed0"}
    assert {r["config"]["optimizer"] for r in runs.values()} == {"adam", "sgd"}
    series = [s for h in snapshot["history"] for s in h["answer"]["series"]]
    assert {(s["key"], s["run"]) for s in series if s["x"]} >= {
        ("train/loss", r["id"]) for r in runs.values()
    }
