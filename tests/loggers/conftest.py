"""Every logger test runs in its own folder with a clean tracker environment (as tests/track)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fulmen import track
from fulmen.track import _active
from fulmen.train.utilities import rank_zero_only

QUIET = {
    "FULMEN_CONSOLE": "off",
    "FULMEN_STATS_INTERVAL": "0",
    "FULMEN_DISABLE_GIT": "true",
}
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


@pytest.fixture(autouse=True)
def clean_tracker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith(("FULMEN_", "WANDB_")) or name in RANK_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("FULMEN_SETTINGS_FILE", str(tmp_path / "no-settings-file"))
    for name, value in QUIET.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for run in list(_active.ACTIVE):
        run.finish()
    assert track.run is None
