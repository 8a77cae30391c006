"""Every sweep test runs in its own folder with a clean tracker environment (as tests/track)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fulmen import track
from fulmen.track import _active

QUIET = {
    "FULMEN_CONSOLE": "off",
    "FULMEN_STATS_INTERVAL": "0",
    "FULMEN_DISABLE_GIT": "true",
}


@pytest.fixture(autouse=True)
def clean_tracker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith(("FULMEN_", "WANDB_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FULMEN_SETTINGS_FILE", str(tmp_path / "no-settings-file"))
    for name, value in QUIET.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for run in list(_active.ACTIVE):
        run.finish()
    assert track.run is None


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(QUIET)
    env.update(extra)
    return env
