"""Rows lost to ``kill -9``: a child process logs 1,000 rows of 3 scalars, says "done" after the
last ``log()`` returned, and is killed with SIGKILL the moment the parent reads it. The figure is
how many of the 1,000 rows are not on disk afterwards (fulmen against wandb offline).

    python benchmarks/bench_track_crash.py [--repeats 5] [--warmup 0]

The harness reports the lost rows in its time column (the unit says "rows"); ratios against
fulmen's 0 are undefined and print "n/a".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import Case, Unavailable, main

ROWS = 1000
CHILD = {
    "fulmen": """
        import fulmen.track as t
        run = t.init(project="crash")
    """,
    "wandb offline": """
        import wandb as t
        run = t.init(project="crash", settings=t.Settings(x_disable_stats=True))
    """,
}
LOOP = f"""
    for i in range({ROWS}):
        run.log({{"loss": 1.0 / (i + 1), "acc": i * 1e-4, "i": i}})
    print("done", flush=True)
    import time
    time.sleep(60)
"""


def count_fulmen(root: Path) -> int:
    from fulmen.track import Api

    (run,) = Api(dir=str(root)).runs()
    return int(run.rows)


def count_wandb(root: Path) -> int:
    """History records in wandb's run files: a LevelDB-style log (7-byte header, 32 KiB blocks
    of records with a 7-byte header each), read here because wandb 0.31 has no Python reader."""
    from wandb.proto import wandb_internal_pb2

    rows = 0
    for path in root.rglob("*.wandb"):
        data = path.read_bytes()
        pos, block, pending = 7, 32768, b""
        while pos + 7 <= len(data):
            room = block - pos % block
            if room < 7:  # block trailer padding
                pos += room
                continue
            length = int.from_bytes(data[pos + 4 : pos + 6], "little")
            kind = data[pos + 6]
            chunk = data[pos + 7 : pos + 7 + length]
            if kind == 0 or len(chunk) < length:  # zero padding or a torn tail
                break
            pos += 7 + length
            pending = chunk if kind in (1, 2) else pending + chunk
            if kind in (1, 4):  # FULL or LAST: one whole record
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pending)
                rows += record.WhichOneof("record_type") == "history"
    return rows


def crash_case(name: str) -> Case:
    def run() -> float:
        try:
            __import__("fulmen.track" if name == "fulmen" else "wandb")
        except ImportError as exc:
            raise Unavailable(f"not installed ({exc})") from None
        root = Path(tempfile.mkdtemp(prefix="fulmen-bench-crash-"))
        env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(root))
        env.update(FULMEN_DIR=str(root), FULMEN_CONSOLE="off", WANDB_CONSOLE="off")
        code = textwrap.dedent(CHILD[name]) + textwrap.dedent(LOOP)
        child = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        line = child.stdout.readline()
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
        if line.strip() != "done":
            raise RuntimeError(f"{name}: the child did not finish logging")
        time.sleep(2.0)  # fair to wandb: its service process may still flush what it holds
        found = count_fulmen(root) if name == "fulmen" else count_wandb(root)
        return float(ROWS - found)

    return Case(name, run)


if __name__ == "__main__":
    main(
        "track_crash",
        f"rows lost to kill -9 right after {ROWS:,} log() calls returned",
        [crash_case("fulmen"), crash_case("wandb offline")],
        baseline="fulmen",
        unit="rows",
        repeats=5,
        warmup=0,
    )
