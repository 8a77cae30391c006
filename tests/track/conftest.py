"""Every tracker test runs in its own folder with a clean environment: no FULMEN_*/WANDB_*
variables from the machine, no settings file, no console tee, no sampler thread, no git calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
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


def run_child(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) in a fresh interpreter in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_child(code: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
