"""The ``fulmen`` command: the real console script in a subprocess, and click's runner."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import fulmen
from fulmen.cli import cli


def fulmen_command() -> list[str]:
    script = Path(sys.executable).parent / "fulmen"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fulmen"]


def test_console_script_prints_the_version() -> None:
    out = subprocess.run(
        [*fulmen_command(), "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"fulmen, version {fulmen.__version__}"


def test_python_dash_m_is_the_same_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fulmen", "-V"], capture_output=True, text=True, check=True
    )
    assert fulmen.__version__ in out.stdout


def test_help_lists_the_subcommands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output


def test_info_reports_torch_and_devices() -> None:
    import torch

    result = CliRunner().invoke(cli, ["info"])
    assert result.exit_code == 0, result.output
    assert f"torch    {torch.__version__}" in result.output
    assert f"fulmen   {fulmen.__version__}" in result.output
    assert "devices  cpu x" in result.output


def test_unknown_command_names_it() -> None:
    result = CliRunner().invoke(cli, ["trian"])
    assert result.exit_code == 2
    assert "No such command 'trian'" in result.output


def test_console_script_is_installed() -> None:
    # The README's commands install into a venv; the script must be on that venv's bin path.
    assert shutil.which("fulmen", path=str(Path(sys.executable).parent)) is not None
