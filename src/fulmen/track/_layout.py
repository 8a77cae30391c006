"""The run folder layout: ``<dir>/fulmen/run-<YYYYMMDD_HHMMSS>-<id>/run-<id>.fulmen``, the
``latest-run`` link, and the run ids that name them."""

from __future__ import annotations

import os
from pathlib import Path

from fulmen.track._replay import replay, state_of

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_id() -> str:
    """8 random characters from a-z 0-9."""
    return "".join(_ID_ALPHABET[b % 36] for b in os.urandom(8))


def run_id_of(run_dir: Path) -> str:
    return run_dir.name.split("-", 2)[2]


def find_run_dir(root: Path, run_id: str) -> Path | None:
    """The newest folder ``root/run-<time>-<run_id>``, if any."""
    try:
        matches = [p for p in root.glob(f"run-*-{run_id}") if run_id_of(p) == run_id]
    except OSError:
        return None
    return max(matches, key=lambda p: p.name) if matches else None


def log_path(run_dir: Path) -> Path:
    """The run log of a run folder."""
    return run_dir / f"run-{run_id_of(run_dir)}.fulmen"


def auto_resume_id(root: Path) -> str | None:
    """resume="auto" without an id: the newest run, when it ended without finishing."""
    try:
        run_dir = root / os.readlink(root / "latest-run")
    except OSError:
        return None
    path = log_path(run_dir)
    if not path.exists():
        return None
    state = state_of(run_dir, replay(path))
    return run_id_of(run_dir) if state in ("crashed", "failed", "killed") else None
