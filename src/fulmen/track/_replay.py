"""Replaying a run log into what it records: config, summary, history rows, state.

The same ``SummaryState`` runs in the writer (``Run.summary``) and here, so a reader computes the
summary the run computed, even for a run that crashed before writing its final summary.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fulmen.track.runlog import Corrupt, Record, decode_history, read_records
from fulmen.track.runlog import SummaryState as SummaryState  # noqa: PLC0414 (re-exported)

SUMMARY_MODES = ("min", "max", "mean", "first", "last", "none")


def parse_summary(summary: str | None) -> list[str]:
    """``"min,max"`` -> ["min", "max"]; a clear ValueError for an unknown mode."""
    if summary is None:
        return []
    modes = [m.strip().lower() for m in summary.split(",") if m.strip()]
    bad = [m for m in modes if m not in SUMMARY_MODES]
    if bad or not modes:
        raise ValueError(
            f"summary must be one or more of {', '.join(SUMMARY_MODES)}; got {summary!r}"
        )
    return modes


class RunData:
    """Everything one run log says, replayed in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.starts: list[dict[str, Any]] = []  # RUN records
        self.config: dict[str, Any] = {}
        self.summary = SummaryState()
        self.rows: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.files: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        self.exit: dict[str, Any] | None = None
        self.corrupt: list[Corrupt] = []
        self.last_seq = 0
        self.max_schema = -1
        self.runtime = 0.0

    @property
    def meta(self) -> dict[str, Any]:
        return self.starts[0] if self.starts else {}

    @property
    def last_step(self) -> int:
        return self.rows[-1]["_step"] if self.rows else -1

    @property
    def max_step(self) -> int:
        return max((r["_step"] for r in self.rows), default=-1)


def iter_rows(  # noqa: PLR0912, PLR0915 (one branch per record kind)
    path: Path, data: RunData | None = None
) -> Iterator[dict[str, Any]]:
    """History rows in order, with rewinds applied lazily by the caller (see ``replay``).

    Yields each HISTORY/PATCH record's row with ``_step``, ``_runtime``, ``_timestamp``; a row
    dict with key ``"__rewind__"`` marks a REWIND. ``data``, when given, collects the rest.
    """
    schemas: dict[int, list[tuple[str, str]]] = {}
    segment_time, segment_runtime = 0.0, 0.0
    for item in read_records(path):
        if isinstance(item, Corrupt):
            if data is not None:
                data.corrupt.append(item)
            continue
        rec: Record = item
        kind, body = rec.kind, rec.data
        if data is not None:
            data.last_seq = rec.seq
        if kind in ("history", "patch"):
            step, runtime, values = decode_history(body, rec.seq, schemas)
            if data is not None:
                data.summary.observe(values)
            if kind == "patch":
                values["__patch__"] = True
            values["_step"] = step
            values["_runtime"] = runtime
            values["_timestamp"] = segment_time + (runtime - segment_runtime)
            if data is not None:
                data.runtime = max(data.runtime, runtime)
            yield values
        elif kind == "schema":
            schemas[body["id"]] = [(k, c) for k, c in body["columns"]]
            if data is not None:
                data.max_schema = max(data.max_schema, body["id"])
        elif kind == "rewind":
            yield {"__rewind__": body["step"]}
        elif kind == "run":
            segment_time, segment_runtime = body.get("time", 0.0), body.get("runtime", 0.0)
            if data is not None:
                data.starts.append(body)
                data.exit = None
        elif data is None:
            continue
        elif kind == "config":
            data.config.update(body)
        elif kind == "summary":
            current = data.summary.result()
            for key, value in body.get("update", {}).items():
                if key not in current or current[key] != value:  # the final summary repeats
                    data.summary.set(key, value)  # what the rows give: only real changes stick
            for key in body.get("remove", []):
                data.summary.remove(key)
        elif kind == "metric":
            data.metrics.append(body)
            data.summary.define(body["name"], body.get("summary") or [])
        elif kind == "file":
            data.files.append(body)
        elif kind == "artifact":
            data.artifacts.append(body)
        elif kind == "exit":
            data.exit = body


def replay(path: Path) -> RunData:
    """Read a whole run log: rows merged and rewound, config and summary as the run had them."""
    data = RunData(path)
    rows = data.rows
    for row in iter_rows(path, data):
        if "__rewind__" in row:
            step = row["__rewind__"]
            while rows and rows[-1]["_step"] >= step:
                rows.pop()
            continue
        if row.pop("__patch__", False):
            target = next((r for r in reversed(rows) if r["_step"] == row["_step"]), None)
            if target is not None:
                target.update({k: v for k, v in row.items() if not k.startswith("_")})
            else:
                rows.append(row)
        elif rows and rows[-1]["_step"] == row["_step"]:
            rows[-1].update(row)  # another part of the same row (commit=False, step=)
        else:
            rows.append(row)
    return data


def lock_path(run_dir: Path) -> Path:
    """The lock file of a run folder ``<root>/run-<time>-<id>``: ``<root>/.locks/<id>.lock``."""
    run_id = run_dir.name.rsplit("-", 1)[-1]
    return run_dir.parent / ".locks" / f"{run_id}.lock"


def is_live(run_dir: Path) -> bool:
    """True while a process holds the run's lock (it is writing the run)."""
    path = lock_path(run_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return False


def state_of(run_dir: Path, data: RunData) -> str:
    """running, finished, failed, killed, or crashed (no exit record and nobody writing)."""
    if data.exit is not None:
        return str(data.exit.get("state", "finished"))
    return "running" if is_live(run_dir) else "crashed"
