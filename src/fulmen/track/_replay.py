"""Replaying a run log into what it records: config, summary, history rows, state.

The same ``SummaryState`` runs in the writer (``Run.summary``) and here, so a reader computes the
summary the run computed, even for a run that crashed before writing its final summary.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fulmen.track.runlog import Corrupt, Record, decode_history, read_records
from fulmen.track.runlog import SummaryState as SummaryState  # noqa: PLC0414 (re-exported)

SUMMARY_MODES = ("min", "max", "mean", "first", "last", "none")
# what applying a record that does not make sense raises (RecursionError: JSON nested too deep)
_BAD_RECORD = (
    KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError,
    struct.error,
)  # fmt: skip


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


def iter_rows(path: Path, data: RunData | None = None) -> Iterator[dict[str, Any]]:
    """History rows in order, with rewinds applied lazily by the caller (see ``replay``).

    Yields each HISTORY/PATCH record's row with ``_step``, ``_runtime``, ``_timestamp``; a row
    dict with key ``"__rewind__"`` marks a REWIND. ``data``, when given, collects the rest.
    """
    schemas: dict[int, list[tuple[str, str]]] = {}
    segment = [0.0, 0.0]  # the last RUN record's time and runtime
    for item in read_records(path):
        if isinstance(item, Corrupt):
            if data is not None:
                data.corrupt.append(item)
            continue
        if data is not None:
            data.last_seq = item.seq
        try:
            row = _apply(item, schemas, segment, data)
        except _BAD_RECORD as exc:
            # a CRC-valid record that does not make sense (a writer bug, a hand-made file): one
            # bad record is reported and skipped; it never hides the rest of the run
            if data is not None:
                data.corrupt.append(
                    Corrupt(item.offset, item.end, f"{item.kind} record {item.seq}: {exc!r}")
                )
            continue
        if row is not None:
            yield row


def _apply(  # noqa: PLR0912 (one branch per record kind)
    rec: Record,
    schemas: dict[int, list[tuple[str, str]]],
    segment: list[float],
    data: RunData | None,
) -> dict[str, Any] | None:
    """Apply one record to ``data``: the row it makes (HISTORY, PATCH, REWIND), or None.
    Records are checked before anything of them is applied, so a bad one changes nothing."""
    kind, body = rec.kind, rec.data
    if kind in ("history", "patch"):
        step, runtime, values = decode_history(body, rec.seq, schemas)
        if data is not None:
            data.summary.observe(values)
            data.runtime = max(data.runtime, runtime)
        if kind == "patch":
            values["__patch__"] = True
        values["_step"] = step
        values["_runtime"] = runtime
        values["_timestamp"] = segment[0] + (runtime - segment[1])
        return values
    if kind == "schema":
        sid, columns = int(body["id"]), [(str(k), str(c)) for k, c in body["columns"]]
        schemas[sid] = columns
        if data is not None:
            data.max_schema = max(data.max_schema, sid)
    elif kind == "rewind":
        return {"__rewind__": int(body["step"])}
    elif kind == "run":
        time_, runtime_ = float(body.get("time") or 0.0), float(body.get("runtime") or 0.0)
        segment[:] = [time_, runtime_]
        if data is not None:
            data.starts.append(body)
            data.exit = None
    elif data is None:
        return None
    elif kind == "config":
        data.config.update(_dict(body))
    elif kind == "summary":
        update, remove = _dict(body.get("update") or {}), list(body.get("remove") or [])
        current = data.summary.result()
        for key, value in update.items():
            if key not in current or current[key] != value:  # the final summary repeats
                data.summary.set(key, value)  # what the rows give: only real changes stick
        for key in remove:
            data.summary.remove(str(key))
    elif kind == "metric":
        modes = list(body.get("summary") or [])
        data.summary.define(str(body["name"]), modes)
        data.metrics.append(body)
    elif kind in ("file", "artifact", "exit"):
        _dict(body)
        if kind == "file":
            data.files.append(body)
        elif kind == "artifact":
            data.artifacts.append(body)
        else:
            data.exit = body
    return None


def _dict(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError(f"a JSON object was expected, got {type(body).__name__}")
    return body


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
