"""examples/segmentation/ on tiny settings: it trains, and the dashboard's server then has what
docs/examples.md describes (per-class IoU, frames with true and predicted masks per validation
epoch, a table of per-image IoU with image cells, the checkpoint artifact, histograms)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "segmentation" / "train.py"
CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_segmentation_example_logs_what_the_dashboard_shows(tmp_path: Path) -> None:
    tiny = ["--epochs", "2", "--train", "32", "--val", "16", "--height", "24", "--width", "32",
            "--channels", "4", "--watch-freq", "1", "--root", str(tmp_path)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *tiny],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert re.search(r"mean IoU \d\.\d+ after 2 epochs", done.stdout), done.stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "ui", str(tmp_path), "--serve-for", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert url
        api = url.group(0) + "/api/v1/entities/local/projects/segmentation"
        (run,) = _get(api + "/runs")["runs"]
        base = f"{api}/runs/{run['id']}"
        full = _get(base)
        media = {m["key"]: m for m in _get(base + "/media")["media"]}
        page = _get(url.group(0) + f"/local/segmentation/runs/{run['id']}.json")
        artifacts = _get(base + "/artifacts")["artifacts"]
        table_ref = media["val/per_image_iou"]["values"][-1]
        table = _get(base + "/media/files/" + table_ref["path"])
    finally:
        proc.terminate()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
    summary = full["summary"]
    for name in CLASSES:
        assert 0.0 <= summary[f"val/iou_{name}"] <= 1.0 or summary[f"val/iou_{name}"] is None
    assert 0.0 <= summary["val/mean_iou"] <= 1.0
    # every validation epoch (2): four frames with both masks, and the per-image table
    frames = media["val/predictions"]
    assert frames["type"] == "images/separated"
    assert len(frames["steps"]) == 2
    last = frames["values"][-1]
    assert last["count"] == 4
    image = last["images"][0]
    assert (image["width"], image["height"]) == (32, 24)
    assert set(image["masks"]) == {"predictions", "ground_truth"}
    assert image["masks"]["ground_truth"]["class_labels"]["5"] == "car"
    assert len(media["val/per_image_iou"]["steps"]) == 2
    assert table["columns"][:3] == ["frame", "image", "mean_iou"]
    assert len(table["data"]) == 16
    assert table["data"][0][1]["_type"] == "image-file"
    assert set(table["data"][0][1]["masks"]) == {"predictions", "ground_truth"}
    # log_model and watch
    assert any(a["name"].startswith("model-") for a in artifacts)
    assert any(k.startswith("gradients/") for k in page["histograms"])
    assert "val/mean_iou" in page["charts"]
