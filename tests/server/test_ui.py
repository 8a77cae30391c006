"""``fulmen ui``'s follower: run folders under a directory reach a real server, live runs keep
flowing, and the command prints the URL of a server that serves them."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fulmen.server._ui import run_folders
from fulmen.track._replay import lock_path
from tests.server.runlogs import LogWriter

pytestmark = pytest.mark.slow


def _run_folder(root: Path, run_id: str) -> LogWriter:
    w = LogWriter(root / "fulmen" / f"run-20260101_000000-{run_id}" / f"run-{run_id}.fulmen")
    w.run(run_id, "p")
    return w


def test_run_folders_are_found_where_the_tracker_puts_them(tmp_path: Path) -> None:
    _run_folder(tmp_path, "aaaa1111")
    _run_folder(tmp_path / "exp", "bbbb2222")
    (tmp_path / "fulmen" / "run-x-notarun").mkdir()
    assert [p.name.rsplit("-", 1)[1] for p in run_folders(tmp_path)] == ["aaaa1111", "bbbb2222"]


def test_fulmen_ui_serves_and_follows_the_runs(tmp_path: Path) -> None:
    w = _run_folder(tmp_path, "aaaa1111")
    w.history(0, {"loss": 1.0})
    lock = lock_path(tmp_path / "fulmen" / "run-20260101_000000-aaaa1111")
    lock.parent.mkdir()
    held = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a writing process holds it: the run is live
    proc = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "ui", str(tmp_path), "--poll", "0.2", "--serve-for", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        api = url.group(0) + "/api/v1/entities/local/projects/p/runs/aaaa1111"

        def get(path: str = "") -> dict[str, object]:
            with urllib.request.urlopen(api + path, timeout=10) as r:
                return dict(json.loads(r.read()))

        assert get()["rows"] == 1
        w.history(1, {"loss": 0.5})  # the run goes on: the follower picks it up
        deadline = time.time() + 20
        while get()["rows"] != 2:
            assert time.time() < deadline
            time.sleep(0.1)
        with urllib.request.urlopen(url.group(0) + "/local/p", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
        os.close(held)
    assert os.listdir(tmp_path / "fulmen" / "run-20260101_000000-aaaa1111") == [
        "run-aaaa1111.fulmen"
    ]
