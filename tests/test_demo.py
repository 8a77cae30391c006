"""``fulmen demo --no-serve`` trains a run that ``fulmen ui`` then serves: config, metrics, watch
histograms, topology and the checkpoint artifact, all on the run page's JSON twin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_trains_a_run_that_the_dashboard_serves(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fulmen",
            "demo",
            "--no-serve",
            "--dir",
            str(tmp_path),
            "--epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    page = re.search(r"page (/local/fulmen-demo/runs/\w+)", done.stdout)
    assert page, done.stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "ui", str(tmp_path), "--serve-for", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert url
        with urllib.request.urlopen(url.group(0) + page.group(1) + ".json", timeout=30) as r:
            view = json.loads(r.read())
        with urllib.request.urlopen(url.group(0) + page.group(1), timeout=30) as r:
            assert r.status == 200
        media_url = url.group(0) + "/api/v1/entities/local/projects/fulmen-demo/runs/"
        media_url += page.group(1).rsplit("/", 1)[1] + "/media?key=val/predictions"
        with urllib.request.urlopen(media_url, timeout=30) as r:
            (predictions,) = json.loads(r.read())["media"]
    finally:
        proc.terminate()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
    run = view["run"]
    assert run["state"] == "finished"
    assert run["config"]["lr"] == 5e-3
    assert run["config"]["hidden"] == 64
    assert {"train/loss", "val/loss", "val/acc"} <= set(view["charts"])
    assert view["x"] == "trainer/global_step"
    assert any(k.startswith("gradients/") for k in view["histograms"])
    assert any(f["type"] == "topology" and f["uploaded"] for f in view["files"])
    (model,) = view["artifacts"]
    assert model["name"] == f"model-{run['id']}"
    assert "best" in model["aliases"]
    assert model["entries"]
    # the image panel: every validation epoch (2) a few predictions, with captions and a mask
    assert predictions["type"] == "images/separated"
    assert len(predictions["steps"]) == 2
    last = predictions["values"][-1]
    assert last["count"] == 4
    assert all(c.startswith("true ") and "predicted" in c for c in last["captions"])
    image = last["images"][0]
    assert (image["width"], image["height"]) == (60, 48)
    assert image["masks"]["features"]["class_labels"]["1"] == "sum > 0 decides"
