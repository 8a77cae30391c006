"""Media reach a real ``fulmen server`` process by ``fulmen sync``: a table whose cells are images
with masks survives the trip pixel-exact, a second sync changes nothing (idempotent), and the
server stores each content once."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.e2e.test_server_e2e import Server, _env, _sync

pytestmark = pytest.mark.slow

ROWS = 6
LOGGER = f"""
import numpy as np
import fulmen.track as wandb
run = wandb.init(project="media", id="tab00001")
table = wandb.Table(columns=["id", "frame", "iou"])
for i in range({ROWS}):
    frame = np.full((12, 16, 3), 10 * i, np.uint8)
    mask = np.zeros((12, 16), np.uint8)
    mask[: i + 1] = 1
    table.add_data(i, wandb.Image(frame, masks={{"pred": {{"mask_data": mask,
                   "class_labels": {{0: "road", 1: "car"}}}}}}), i / 10)
same = wandb.Image(np.full((12, 16, 3), 200, np.uint8))
run.log({{"ious": table, "a": same, "b": same}})
run.finish()
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "server")
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.terminate()
        s.proc.wait(10)


def log_offline(tmp_path: Path) -> Path:
    """Log the table run offline; answer its run folder."""
    subprocess.run(
        [sys.executable, "-c", LOGGER],
        env=_env(tmp_path, None, FULMEN_MODE="offline"),
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return next((tmp_path / "client" / "fulmen").glob("run-*-tab00001"))


def _json(server: Server, path: str) -> Any:
    return json.loads(server.get("/entities/local/projects/media/runs/tab00001" + path))


def _pixels(server: Server, path: str) -> np.ndarray:
    data = server.get(f"/entities/local/projects/media/runs/tab00001/media/files/{path}")
    return np.asarray(PILImage.open(io.BytesIO(data)))


def _blobs(server: Server) -> list[str]:
    return sorted(p.name for p in (server.data / "blobs").rglob("*") if p.is_file())


def test_a_table_with_image_cells_survives_sync(tmp_path: Path, server: Server) -> None:
    run_dir = log_offline(tmp_path)
    _sync(tmp_path, server, str(run_dir))
    media = _json(server, "/media")["media"]
    assert {m["key"]: m["type"] for m in media} == {
        "a": "image-file",
        "b": "image-file",
        "ious": "table-file",
    }
    ref = next(m for m in media if m["key"] == "ious")["values"][0]
    table = _json(server, "/media/files/" + ref["path"])
    assert table["columns"] == ["id", "frame", "iou"]
    assert len(table["data"]) == ROWS
    for i, (row_id, cell, iou) in enumerate(table["data"]):
        assert (row_id, iou) == (i, i / 10)
        assert np.array_equal(_pixels(server, cell["path"]), np.full((12, 16, 3), 10 * i))
        mask = _pixels(server, cell["masks"]["pred"]["path"])
        expected = np.zeros((12, 16), np.uint8)
        expected[: i + 1] = 1
        assert np.array_equal(mask, expected)
    # the same image under two keys is one file in the run and one blob on the server
    a, b = (next(m for m in media if m["key"] == k)["values"][0] for k in ("a", "b"))
    assert a["path"] == b["path"]
    files = _json(server, "/files")["files"]
    blobs = _blobs(server)
    assert len(blobs) == len(set(blobs))
    assert {f["digest"] for f in files if f["path"].startswith("media/")} <= set(blobs)

    # a second sync (and a third) sends nothing new and changes nothing
    _sync(tmp_path, server, str(run_dir))
    assert _json(server, "/files")["files"] == files
    assert _blobs(server) == blobs
    assert _json(server, "/media")["media"] == media
