"""Crash safety with real processes: every row whose log() returned survives ``kill -9``."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fulmen.track import Api
from tests.track.conftest import start_child

CHILD = """
    import sys, fulmen.track as t
    run = t.init(id=sys.argv[1] if len(sys.argv) > 1 else None, project="crash")
    out = sys.stdout
    i = 0
    while True:
        run.log({"i": i, "loss": 1.0 / (i + 1), "tag": "x" * (i % 7)})
        out.write(f"{i}\\n")  # reported only after log() returned
        out.flush()
        i += 1
"""


def _drain(child: subprocess.Popen[str]) -> str:
    # read through the file objects: lines already in their buffers count as reported
    assert child.stdout is not None
    assert child.stderr is not None
    rest = child.stdout.read()
    child.stdout.close()
    child.stderr.close()
    child.wait()
    return rest


@pytest.mark.slow
def test_kill_9_loses_no_row_whose_log_returned(tmp_path: Path) -> None:
    rng = random.Random(1234)
    trials = 20
    for trial in range(trials):
        child = start_child(CHILD, tmp_path)
        assert child.stdout is not None
        assert child.stderr is not None
        lines: list[str] = []
        # a thread reads the reports as they come, so the child never waits on the pipe and the
        # kill lands at a random point of its loop (inside log() or between calls)
        reader = threading.Thread(
            target=lambda out=child.stdout, sink=lines: sink.extend(out), daemon=True
        )
        reader.start()
        while not lines and child.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        reader.join(timeout=30)
        child.stdout.close()
        child.stderr.close()
        child.wait()
        reported = max((int(x) for x in lines if x.strip().isdigit()), default=-1)
        assert reported >= 0, f"trial {trial}: the child never logged"
        runs = Api().runs("crash")
        run = max(runs, key=lambda r: r.created_at or 0)
        rows = run.history(pandas=False)
        got = [r["i"] for r in rows]
        assert got[: reported + 1] == list(range(reported + 1)), f"trial {trial}"
        assert len(got) <= reported + 2  # at most the one in flight when the kill landed
        assert run.state == "crashed"
        assert all(c.torn for c in run.corrupt)


@pytest.mark.slow
def test_a_killed_run_resumes_after_its_torn_tail(tmp_path: Path) -> None:
    child = start_child(
        CHILD.replace("sys.argv[1] if len(sys.argv) > 1 else None", '"t"'), tmp_path
    )
    assert child.stdout is not None
    for _ in range(200):
        child.stdout.readline()
    os.kill(child.pid, signal.SIGKILL)
    _drain(child)
    run_dir = Api().run("t").dir
    log = run_dir / "run-t.fulmen"
    with log.open("ab") as f:
        f.write(b"\xa3\x40\x00\x00")  # a torn frame, as a crash mid-write leaves it
    before = Api().run("t").rows
    from fulmen import track

    run = track.init(id="t", resume="allow")
    run.log({"i": -1, "loss": 0.0, "tag": ""})
    run.finish()
    after = Api().run("t")
    assert after.corrupt == []
    assert after.rows == before + 1
    assert after.state == "finished"
