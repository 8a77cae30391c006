"""The tracker client against wandb (offline), TensorBoard's SummaryWriter and MLflow (SQLite):
``log()`` of 3 scalars and of 50 keys on the caller's thread, ``init()`` until the first ``log()``
can run, ``finish()`` after 20,000 rows, and bytes on disk per 3-scalar row.

    python benchmarks/bench_track.py [--repeats 5] [--warmup 1]

Run it with the anchors' interpreter (see benchmarks/README.md) to get their rows; a missing
library prints "not installed". Each group prints its own table and writes
``benchmarks/results/track_<group>.json``. The baseline of every group is fulmen, so an anchor's
ratio says how many times fulmen's figure it is.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import Case, Unavailable, main

LOG_CALLS = 1000
SLOW_CALLS = 100  # MLflow's log_metrics takes milliseconds per call here (SQLite on this disk)
FINISH_ROWS = 20_000
WORK = Path(tempfile.mkdtemp(prefix="fulmen-bench-track-"))
os.environ.update(
    {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(WORK / "wandb"),
        "WANDB_CONSOLE": "off",
        "FULMEN_CONSOLE": "off",
        "FULMEN_DIR": str(WORK / "fulmen-runs"),
        "FULMEN_DISABLE_GIT": "true",
    }
)
(WORK / "wandb").mkdir()


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise Unavailable(f"not installed ({exc})") from None


# --- one "session" per library: start, log(row), finish, bytes on disk ----------------------------


class Fulmen:
    def __init__(self) -> None:
        from fulmen import track

        self.run = track.init(project="bench")
        self.log = self.run.log

    def finish(self) -> None:
        self.run.finish()

    def size(self) -> int:
        return self.run.log_path.stat().st_size


class Wandb:
    def __init__(self) -> None:
        wandb = _need("wandb")
        self.run = wandb.init(project="bench", settings=wandb.Settings(x_disable_stats=True))
        self.log = self.run.log

    def finish(self) -> None:
        self.run.finish()

    def size(self) -> int:
        return sum(p.stat().st_size for p in Path(self.run.dir).parent.glob("*.wandb"))


class TensorBoard:
    def __init__(self) -> None:
        _need("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.dir = tempfile.mkdtemp(dir=WORK)
        self.writer = SummaryWriter(self.dir)
        self.step = 0

    def log(self, row: dict[str, float]) -> None:
        for key, value in row.items():
            self.writer.add_scalar(key, value, self.step)
        self.step += 1

    def finish(self) -> None:
        self.writer.close()

    def size(self) -> int:
        return sum(p.stat().st_size for p in Path(self.dir).rglob("*") if p.is_file())


class MLflow:
    def __init__(self, asynchronous: bool) -> None:
        mlflow = _need("mlflow")
        self.mlflow, self.synchronous = mlflow, not asynchronous
        mlflow.set_tracking_uri(f"sqlite:///{WORK / 'mlflow.db'}")
        # the client API, not the fluent one: several MLflow runs are open at once here
        self.client = mlflow.MlflowClient()
        self.run_id = self.client.create_run("0").info.run_id
        self.step = 0

    def log(self, row: dict[str, float]) -> None:
        self.mlflow.log_metrics(
            row, step=self.step, synchronous=self.synchronous, run_id=self.run_id
        )
        self.step += 1

    def finish(self) -> None:
        if not self.synchronous:
            self.mlflow.flush_async_logging()  # what end_run waits for
        self.client.set_terminated(self.run_id)


SESSIONS: dict[str, Callable[[], Any]] = {
    "fulmen": Fulmen,
    "wandb offline": Wandb,
    "TensorBoard SummaryWriter": TensorBoard,
    "MLflow async": lambda: MLflow(True),
    "MLflow sync": lambda: MLflow(False),
}
_OPEN: dict[str, Any] = {}


def _session(name: str) -> Any:
    # one long-lived session per library for the log() groups (init cost is measured apart)
    if name not in _OPEN:
        _OPEN[name] = SESSIONS[name]()
    return _OPEN[name]


def log_case(name: str, keys: int, calls: int) -> Case:
    def run() -> float:
        session = _session(name)
        log = session.log
        rows = [{f"metric_{k}": (i * 0.001 + k) for k in range(keys)} for i in range(calls)]
        started = time.perf_counter()
        for row in rows:
            log(row)
        return (time.perf_counter() - started) / calls

    return Case(name, run)


def init_case(name: str) -> Case:
    def run() -> float:
        started = time.perf_counter()
        session = SESSIONS[name]()
        seconds = time.perf_counter() - started
        session.finish()
        return seconds

    return Case(name, run)


def finish_case(name: str, rows: int) -> Case:
    def run() -> float:
        session = SESSIONS[name]()
        for i in range(rows):
            session.log({"loss": 1.0 / (i + 1), "acc": i * 1e-4, "lr": 1e-3})
        started = time.perf_counter()
        session.finish()
        return time.perf_counter() - started

    return Case(name, run)


def size_case(name: str, rows: int) -> Case:
    def run() -> float:
        session = SESSIONS[name]()
        if not hasattr(session, "size"):
            raise Unavailable("rows live in a database")
        before = session.size()
        for i in range(rows):
            session.log({"loss": 1.0 / (i + 1), "acc": i * 1e-4, "lr": 1e-3})
        session.finish()
        return float(session.size() - before) / rows

    return Case(name, run)


def groups(argv: list[str]) -> None:
    log_names = list(SESSIONS)
    main(
        "track_log3",
        f"log() of 3 scalars, caller's thread ({LOG_CALLS} calls; MLflow {SLOW_CALLS})",
        [log_case(n, 3, SLOW_CALLS if "MLflow" in n else LOG_CALLS) for n in log_names],
        baseline="fulmen",
        unit="µs",
        scale=1e6,
        argv=argv,
    )
    main(
        "track_log50",
        f"log() of a 50-key row, caller's thread ({LOG_CALLS // 4} calls per sample)",
        [log_case(n, 50, LOG_CALLS // 4) for n in log_names if "MLflow" not in n],
        baseline="fulmen",
        unit="µs",
        scale=1e6,
        argv=argv,
    )
    for session in list(_OPEN.values()):
        session.finish()
    _OPEN.clear()
    main(
        "track_init",
        "init() until the first log() can run",
        [init_case(n) for n in ("fulmen", "wandb offline", "MLflow sync")],
        baseline="fulmen",
        unit="ms",
        scale=1e3,
        argv=argv,
    )
    main(
        "track_finish",
        f"finish() after {FINISH_ROWS:,} rows of 3 scalars",
        [finish_case(n, FINISH_ROWS) for n in ("fulmen", "wandb offline")],
        baseline="fulmen",
        unit="ms",
        scale=1e3,
        repeats=1,
        warmup=0,
        argv=argv,
    )
    main(
        "track_size",
        "bytes on disk per 3-scalar history row (20,000 rows; the unit column is bytes)",
        [
            size_case(n, FINISH_ROWS)
            for n in ("fulmen", "wandb offline", "TensorBoard SummaryWriter")
        ],
        baseline="fulmen",
        unit="B",
        repeats=1,
        warmup=0,
        argv=argv,
    )


if __name__ == "__main__":
    try:
        groups(sys.argv[1:])
    finally:
        for session in _OPEN.values():
            session.finish()
        shutil.rmtree(WORK, ignore_errors=True)
