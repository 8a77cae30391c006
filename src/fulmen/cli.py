"""The ``fulmen`` command.

Each subcommand imports what it needs inside its body, so ``fulmen --version`` and ``fulmen --help``
stay fast and never import torch or the server.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import click

from fulmen.__about__ import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="fulmen")
def cli() -> None:
    """fulmen: organized PyTorch training and a self-hosted experiment tracker."""


@cli.command()
def info() -> None:
    """Print the versions and devices fulmen sees (paste this into bug reports)."""
    click.echo(f"fulmen   {__version__}")
    click.echo(f"python   {platform.python_version()} ({sys.executable})")
    click.echo(f"platform {platform.platform()}")
    for dist in ("numpy", "fastapi", "uvicorn", "click"):
        click.echo(f"{dist:<8} {_dist_version(dist)}")
    try:
        import torch
    except ImportError as exc:  # torch is a dependency; say so plainly when it is broken
        click.echo(f"torch    not importable: {exc}")
        return
    click.echo(f"torch    {torch.__version__} (CUDA build: {torch.version.cuda or 'none'})")
    devices = f"cpu x {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        devices += f"; cuda x {len(names)}: {', '.join(names)}"
    click.echo(f"devices  {devices}")


@cli.command()
@click.argument("directory", required=False)
@click.option("--project", "-p", default=None, help="Only the runs of this project.")
def runs(directory: str | None, project: str | None) -> None:
    """List the local runs under DIRECTORY (default: where init() writes): id, name, project,
    state, rows and the last values of a few metrics."""
    from fulmen.track import Api

    found = Api(dir=directory).runs(project)
    if not found:
        click.echo(f"no runs under {Api(dir=directory).root}")
        return
    table = [("ID", "NAME", "PROJECT", "STATE", "ROWS", "METRICS")]
    for run in found:
        summary = run.summary
        shown = [k for k in summary if not k.startswith("_") and _is_scalar(summary[k])][:3]
        metrics = "  ".join(f"{k}={_short(summary[k])}" for k in shown)
        table.append((run.id, run.name, run.project, run.state, str(run.rows), metrics))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[5]
        )


def _is_scalar(value: object) -> bool:
    return isinstance(value, (int, float, str, bool))


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)[:20]


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> None:
    """Entry point of the ``fulmen`` console script."""
    cli(prog_name="fulmen")
