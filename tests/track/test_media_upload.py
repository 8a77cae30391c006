"""Media reach a real ``fulmen server``: online at finish(), and by ``fulmen sync`` after the
client was killed before its encoder finished (the pending pixels are encoded, then sent)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.e2e.test_server_e2e import Server, _env, _sync

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real server process on loopback, with its own data folder."""
    s = Server(tmp_path / "server")
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.terminate()
        s.proc.wait(10)


LOGGER = """
import sys
import numpy as np
import fulmen.track as wandb
run = wandb.init(project="e2e", id=sys.argv[1])
for i in range(int(sys.argv[2])):
    frame = np.full((16, 24, 3), i, np.uint8)
    mask = np.zeros((16, 24), np.uint8)
    mask[: i + 1] = 1
    run.log({"frame": wandb.Image(frame, masks={"m": {"mask_data": mask}})})
    print(i, flush=True)
if sys.argv[3] == "finish":
    run.finish()
else:
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)  # before the encoder is done with the last frames
"""


def _server_file(server: Server, run_id: str, path: str) -> np.ndarray:
    data = server.get(f"/entities/local/projects/e2e/runs/{run_id}/files/{path}")
    return np.asarray(PILImage.open(io.BytesIO(data)))


def _history(server: Server, run_id: str) -> list[dict[str, object]]:
    text = server.get(f"/entities/local/projects/e2e/runs/{run_id}/history/export?format=jsonl")
    return [json.loads(line) for line in text.decode().splitlines()]


def _check(server: Server, run_id: str, n: int) -> None:
    rows = [r for r in _history(server, run_id) if r.get("frame")]
    assert len(rows) == n
    for i, row in enumerate(rows):
        ref = row["frame"]
        if isinstance(ref, str):
            ref = json.loads(ref)
        assert isinstance(ref, dict)
        assert np.array_equal(_server_file(server, run_id, ref["path"]), np.full((16, 24, 3), i))
        mask = _server_file(server, run_id, ref["masks"]["m"]["path"])
        assert int(mask.sum()) == 24 * (i + 1)


def test_online_run_uploads_its_media(tmp_path: Path, server: Server) -> None:
    subprocess.run(
        [sys.executable, "-c", LOGGER, "m1", "5", "finish"],
        env=_env(tmp_path, server),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    _check(server, "m1", 5)
    from fulmen.track import Api

    remote = Api(base_url=server.url).run("local/e2e/m1")
    ref = remote.history()[0]["frame"]
    ref = json.loads(ref) if isinstance(ref, str) else ref
    local = remote.file(ref["path"]).download(tmp_path / "dl")
    assert np.array_equal(np.asarray(PILImage.open(local)), np.zeros((16, 24, 3)))


def test_killed_run_media_reach_the_server_by_sync(tmp_path: Path, server: Server) -> None:
    out = subprocess.run(
        [sys.executable, "-c", LOGGER, "m2", "6", "kill"],
        env=_env(tmp_path, None, FULMEN_MODE="offline"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == -signal.SIGKILL
    assert out.stdout.split() == [str(i) for i in range(6)]
    run_dir = next((tmp_path / "client" / "fulmen").glob("run-*-m2"))
    _sync(tmp_path, server, str(run_dir))
    _check(server, "m2", 6)
    assert not list((run_dir / "files" / "media").rglob("*.npy"))
    assert os.path.isdir(run_dir)


LIVE = """
import sys
import numpy as np
import fulmen.track as wandb
run = wandb.init(project="e2e", id="live")
run.log({"frame": wandb.Image(np.full((16, 24, 3), 7, np.uint8))})
print("logged", flush=True)
sys.stdin.readline()  # the test says when: the run stays live until then
run.finish()
"""


def test_a_live_run_uploads_its_media_before_it_finishes(tmp_path: Path, server: Server) -> None:
    import time
    import urllib.error

    child = subprocess.Popen(
        [sys.executable, "-c", LIVE],
        env=_env(tmp_path, server),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "logged"
        image = None
        deadline = time.monotonic() + 90  # a hang detector, not a timing goal
        while image is None and time.monotonic() < deadline:
            try:  # 404: the run, or its image, is not on the server yet
                rows = [r for r in _history(server, "live") if r.get("frame")]
                if rows:
                    ref = rows[0]["frame"]
                    ref = json.loads(ref) if isinstance(ref, str) else ref
                    assert isinstance(ref, dict)
                    image = _server_file(server, "live", ref["path"])
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
                exc.close()
            if image is None:
                time.sleep(0.2)
        assert child.poll() is None  # the run is still live
        assert image is not None, "the image never reached the server while the run was live"
        assert np.array_equal(image, np.full((16, 24, 3), 7))
    finally:
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.close()
        child.wait(60)
        child.stdout.close()
    assert child.returncode == 0
