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
@click.option(
    "--log-level",
    default=None,
    metavar="LEVEL",
    help="print fulmen's log records at LEVEL and above to stderr: debug, info, warning, error, "
    "critical (default: quiet, or $FULMEN_LOG_LEVEL)",
)
def cli(log_level: str | None) -> None:
    """fulmen: organized PyTorch training and a self-hosted experiment tracker."""
    if log_level is not None:
        from fulmen import _logging

        try:
            _logging.configure(log_level)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--log-level") from None


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
    from fulmen.track.runlog import escape_surrogates

    found = Api(dir=directory).runs(project)
    if not found:
        click.echo(f"no runs under {Api(dir=directory).root}")
        return
    table: list[tuple[str, ...]] = [("ID", "NAME", "PROJECT", "STATE", "ROWS", "METRICS")]
    for run in found:
        try:
            summary = run.summary
            shown = [k for k in summary if not k.startswith("_") and _is_scalar(summary[k])][:3]
            metrics = "  ".join(f"{k}={_short(summary[k])}" for k in shown)
            if run.corrupt:
                metrics += f"  ({len(run.corrupt)} bad records skipped)"
            cells = (run.id, run.name, run.project, run.state, str(run.rows), metrics)
        except Exception as exc:  # one unreadable run never hides the others
            cells = (run.id, "?", "?", "unreadable", "?", f"{type(exc).__name__}: {exc}")
        table.append(tuple(escape_surrogates(c) for c in cells))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[5]
        )


DEFAULT_DATA = "~/.local/share/fulmen/server"


def _database(url: str | None) -> str | None:
    """``--database`` checked: ``store.parse_database``'s forms, or a usage error naming them."""
    if not url:
        return None
    from fulmen.server.store import parse_database

    try:
        parse_database(url)
    except ValueError as exc:
        message = str(exc).removeprefix("--database (FULMEN_DATABASE_URL) ")
        raise click.BadParameter(message, param_hint="--database") from exc
    return url


@cli.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8080, show_default=True, type=int, help="port to listen on")
@click.option("--data", default=DEFAULT_DATA, show_default=True, help="the server's data folder")
@click.option(
    "--database",
    "--db",
    "db",
    default=None,
    envvar="FULMEN_DATABASE_URL",
    show_envvar=True,
    metavar="URL",
    callback=lambda ctx, param, value: _database(value),
    help="the database: sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
    "(several servers may share a PostgreSQL one; default: SQLite in the data folder)",
)
@click.option("--insecure", is_flag=True, help="serve a non-loopback address without API keys")
@click.option("--allow-anonymous", is_flag=True, help="accept anonymous runs without a key")
@click.option(
    "--allowed-host",
    "allowed_host",
    multiple=True,
    metavar="NAME",
    help="also accept requests whose Host header names NAME (repeatable; '*': any). On loopback "
    "only loopback names are accepted without it; elsewhere any, unless it is given",
)
@click.option(
    "--anonymous-runs-per-minute",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="with --allow-anonymous: spaces, and new runs, one client address may create a minute",
)
@click.option(
    "--anonymous-mib-per-minute",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="with --allow-anonymous: MiB one client address may send a minute",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="seconds a request's line and headers may take to arrive before the connection is closed",
)
@click.option(
    "--body-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="seconds to wait for the next part of a request's body before answering 408",
)
@click.option(
    "--keep-alive-timeout",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="seconds an idle connection stays open between requests",
)
@click.option(
    "--max-connections",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="connections at once; over it requests are answered 503",
)
@click.option(
    "--blobs",
    default=None,
    metavar="URL",
    help="where files, artifacts and media are stored: s3://BUCKET/PREFIX (an S3-compatible "
    "object store; endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) or a "
    "folder (default: FULMEN_BLOBS, else DATA/blobs)",
)
@click.option(
    "--blobs-presign",
    "blobs_presign",
    default=None,
    type=click.IntRange(min=0, max=604800),
    metavar="SECONDS",
    help="with --blobs s3://: downloads redirect to presigned URLs valid SECONDS (default: "
    "FULMEN_BLOBS_PRESIGN, else 0: downloads stream through the server)",
)
@click.pass_context
def server(
    ctx: click.Context,
    host: str,
    port: int,
    data: str,
    db: str | None,
    insecure: bool,
    allow_anonymous: bool,
    allowed_host: tuple[str, ...],
    anonymous_runs_per_minute: int,
    anonymous_mib_per_minute: int,
    header_timeout: float,
    body_timeout: float,
    keep_alive_timeout: int,
    max_connections: int,
    blobs: str | None,
    blobs_presign: int | None,
) -> None:
    """Run the self-hosted tracking server (API under /api/v1)."""
    from pathlib import Path

    ctx.obj = {"data": Path(data).expanduser(), "db": db}
    if ctx.invoked_subcommand is not None:
        return
    from fulmen.server._security import SecurityConfig
    from fulmen.server._serve import ConnectionLimits, serve

    limits = SecurityConfig(
        anonymous_runs_per_minute=anonymous_runs_per_minute,
        anonymous_bytes_per_minute=anonymous_mib_per_minute << 20,
    )
    serve(
        host,
        port,
        ctx.obj["data"],
        db,
        insecure=insecure,
        allow_anonymous=allow_anonymous,
        extra_hosts=allowed_host,
        limits=limits,
        connections=ConnectionLimits(
            keep_alive=keep_alive_timeout,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_connections=max_connections,
        ),
        blobs=blobs,
        presign_seconds=blobs_presign,
    )


@server.command("create-key")
@click.option("--entity", required=True, help="the entity the key may read and write")
@click.pass_context
def create_key(ctx: click.Context, entity: str) -> None:
    """Print a new API key for ENTITY (the server keeps only its hash)."""
    from fulmen.server import _names
    from fulmen.server.store import open_store

    try:
        _names.name("entity", entity)
    except Exception as exc:
        raise click.BadParameter(str(getattr(exc, "detail", exc)), param_hint="--entity") from exc
    store = open_store(ctx.obj["data"], ctx.obj["db"])
    try:
        click.echo(store.create_key(entity))
    finally:
        store.close()


@server.command("migrate-store")
@click.option("--from", "source", required=True, metavar="URL", help="the store to copy")
@click.option("--to", "target", required=True, metavar="URL", help="the empty store to copy into")
@click.option(
    "--from-blobs",
    default=None,
    metavar="URL",
    help="the source's blobs: a folder or s3://BUCKET[/PREFIX] (default: DATA/blobs)",
)
@click.option(
    "--to-blobs",
    default=None,
    metavar="URL",
    help="where the blobs go: a folder or s3://BUCKET[/PREFIX] (default: --from-blobs)",
)
@click.pass_context
def migrate_store_command(
    ctx: click.Context, source: str, target: str, from_blobs: str | None, to_blobs: str | None
) -> None:
    """Copy the store at --from (sqlite:///PATH, postgresql://...) into the empty store at --to,
    blobs included, and verify every table's row count."""
    from fulmen.server._migrate_store import MigrateError, migrate_store, open_blobs
    from fulmen.server._migrations import StoreTooNew
    from fulmen.server.store import StoreUnavailable

    data = ctx.obj["data"]
    try:
        source_blobs = open_blobs(from_blobs, data, "--from-blobs")
        target_blobs = open_blobs(to_blobs, data, "--to-blobs") if to_blobs else source_blobs
        migrate_store(
            source,
            target,
            data=data,
            source_blobs=source_blobs,
            target_blobs=target_blobs,
            echo=click.echo,
        )
    except (MigrateError, StoreUnavailable, StoreTooNew) as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--host", "base_url", default=None, help="server URL (default: settings)")
@click.option("--key", "api_key", default=None, help="API key (default: settings)")
def sync(paths: tuple[str, ...], base_url: str | None, api_key: str | None) -> None:
    """Upload offline or unfinished runs (default: every unsynced run under the tracker dir)."""
    from fulmen.track._sync import sync_paths

    failures = sync_paths(list(paths), base_url=base_url, api_key=api_key, echo=click.echo)
    if failures:
        raise SystemExit(1)


@cli.command()
@click.option("--host", "base_url", default=None, help="server URL, e.g. http://127.0.0.1:8080")
@click.option("--key", "api_key", default=None, help="API key from `fulmen server create-key`")
def login(base_url: str | None, api_key: str | None) -> None:
    """Store the server URL and API key in the settings file (readable by you only)."""
    from fulmen.track._sync import save_login

    if base_url is None and api_key is None:
        api_key = click.prompt("API key", hide_input=True)
    path = save_login(base_url, api_key)
    click.echo(f"fulmen: saved to {path}")


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=0, type=int, help="port to listen on (default: a free one)")
@click.option("--poll", default=1.0, show_default=True, help="seconds between looks at the runs")
@click.option("--serve-for", type=float, default=None, help="stop after this many seconds")
def ui(directory: str | None, host: str, port: int, poll: float, serve_for: float | None) -> None:
    """Serve the dashboard over the run folders under DIRECTORY (default: where init() writes),
    following live runs; prints the URL. The database is temporary (nothing is written to DIR)."""
    from pathlib import Path

    from fulmen.server._serve import is_loopback
    from fulmen.server._ui import serve_runs
    from fulmen.track._settings import resolve

    if not is_loopback(host):
        raise click.BadParameter(
            "fulmen ui serves loopback only; use fulmen server", param_hint="--host"
        )
    root = Path(directory) if directory else resolve({"mode": "offline"}).dir
    serve_runs(root.expanduser().absolute(), host=host, port=port, poll=poll, serve_for=serve_for,
               echo=click.echo)  # fmt: skip


@cli.command()
@click.option(
    "--dir", "directory", default=None, help="where the run goes (default: where init() writes)"
)
@click.option("--epochs", default=6, show_default=True, help="training epochs")
@click.option("--no-serve", is_flag=True, help="stop after training; print where the run is")
@click.option("--port", default=0, type=int, help="port for the dashboard (default: a free one)")
@click.option("--serve-for", type=float, default=None, help="stop serving after this many seconds")
def demo(
    directory: str | None, epochs: int, no_serve: bool, port: int, serve_for: float | None
) -> None:
    """Train a small model on synthetic data with the Trainer and WandbLogger (CPU, seconds), then
    serve the dashboard with the run and print its URL."""
    from pathlib import Path

    from fulmen._demo import train_demo
    from fulmen.track._settings import resolve

    root = Path(directory) if directory else resolve({"mode": "offline"}).dir
    root = root.expanduser().absolute()
    run_dir, path = train_demo(root, epochs=epochs)
    click.echo(f"fulmen demo: trained; the run is in {run_dir}")
    if no_serve:
        click.echo(f"fulmen demo: see it with `fulmen ui {root}` (page {path})")
        return
    from fulmen.server._ui import serve_runs

    serve_runs(root, port=port, serve_for=serve_for, echo=click.echo, path=path)


@cli.group()
def report() -> None:
    """Reports: export one to a file (docs/reports.md)."""


@report.command("export")
@click.argument("target", metavar="URL_OR_ID")
@click.option("--out", "-o", default=None, help="file to write (default: <title>-<id>.html or .md)")
@click.option(
    "--format", "fmt", type=click.Choice(["html", "md"]), default="html", show_default=True,
    help="html: one self-contained page with live charts; md: markdown with PNG charts",
)  # fmt: skip
@click.option("--project", "-p", default=None, help="the report's project (with an ID)")
@click.option("--entity", "-e", default=None, help="the report's entity (with an ID)")
@click.option("--host", "base_url", default=None, help="server URL (default: settings)")
@click.option("--key", "api_key", default=None, help="API key (default: settings)")
def report_export(
    target: str,
    out: str | None,
    fmt: str,
    project: str | None,
    entity: str | None,
    base_url: str | None,
    api_key: str | None,
) -> None:
    """Write a report as one file: its page's URL, or its ID with --project."""
    import json
    from pathlib import Path
    from urllib.parse import quote, unquote, urlsplit

    from fulmen.server import _report_export
    from fulmen.track._upload import Client, ServerError
    from fulmen.track.reports import _setting

    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        path = [unquote(p) for p in parts.path.split("/") if p]
        if len(path) < 4 or path[2] != "reports":
            raise click.BadParameter(
                "give a report's page, http(s)://HOST/<entity>/<project>/reports/<id>",
                param_hint="URL_OR_ID",
            )
        base_url = f"{parts.scheme}://{parts.netloc}"
        entity, project, report_id = path[0], path[1], path[3].removesuffix(".json")
    else:
        if project is None:
            raise click.BadParameter("an ID needs --project (or give the report's URL)",
                                     param_hint="--project")  # fmt: skip
        report_id = target
        base_url = _setting("base_url", base_url)
        if base_url is None:
            raise click.UsageError("no server: give the report's URL, --host, or FULMEN_BASE_URL")
    client = Client(base_url, _setting("api_key", api_key))
    try:
        if entity is None:
            entity = str(client.json("GET", "/viewer")["entity"])
        api = (
            f"/entities/{quote(entity, safe='')}/projects/{quote(project, safe='')}"
            f"/reports/{quote(report_id, safe='')}"
        )
        if fmt == "html":
            body = client.request("GET", api + "/export.html")
        else:
            payload = json.loads(client.request("GET", api + "/data"))
    except ServerError as exc:
        raise click.ClickException(f"the server answered {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach {base_url}: {exc}") from None
    if fmt == "html":
        target_path = Path(out or _report_export.filename({"title": "report", "id": report_id}))
        target_path.write_bytes(body)
        click.echo(f"fulmen: wrote {target_path} ({len(body)} bytes)")
        return
    name = _report_export.filename(payload["report"]).removesuffix(".html") + ".md"
    written = _report_export.write_markdown(payload, Path(out or name))
    click.echo(f"fulmen: wrote {written[0]} and {len(written) - 1} images")


@cli.command("sweep")
@click.argument("config", required=False)
@click.option("--project", "-p", default=None, help="The project of the sweep and its runs.")
@click.option("--entity", "-e", default=None, help="The entity of the sweep and its runs.")
@click.option("--name", default=None, help="The sweep's name (overrides the config's name).")
@click.option(
    "--stop", "stop_id", default=None, metavar="ID", help="Finish running trials, no new."
)
@click.option("--cancel", "cancel_id", default=None, metavar="ID", help="Kill running trials.")
@click.option("--pause", "pause_id", default=None, metavar="ID", help="Hand out no trials for now.")
@click.option("--resume", "resume_id", default=None, metavar="ID", help="Resume a paused sweep.")
def sweep_command(
    config: str | None,
    project: str | None,
    entity: str | None,
    name: str | None,
    stop_id: str | None,
    cancel_id: str | None,
    pause_id: str | None,
    resume_id: str | None,
) -> None:
    """Create a sweep from CONFIG (a W&B sweep YAML file), or change a sweep's state."""
    from fulmen.sweep import SweepConfigError, set_state
    from fulmen.sweep import sweep as create
    from fulmen.sweep._config import load

    actions = {"stopped": stop_id, "canceled": cancel_id, "paused": pause_id, "running": resume_id}
    chosen = {state: sweep_id for state, sweep_id in actions.items() if sweep_id}
    if chosen:
        if config is not None or len(chosen) > 1:
            raise click.UsageError("give one of --stop/--cancel/--pause/--resume ID, or CONFIG")
        ((state, sweep_id),) = chosen.items()
        try:
            set_state(sweep_id, state)
        except (KeyError, ValueError, ConnectionError, PermissionError) as exc:
            raise click.ClickException(str(exc).strip("\"'")) from None
        click.echo(f"fulmen: sweep {sweep_id} is {state}")
        return
    if config is None:
        raise click.UsageError("give a sweep CONFIG file (or --stop/--cancel/--pause/--resume ID)")
    try:
        raw = load(config)
        if name is not None:
            raw["name"] = name
        sweep_id = create(raw, entity=entity, project=project)
    except (SweepConfigError, ValueError, TypeError, ConnectionError, PermissionError) as exc:
        raise click.ClickException(str(exc)) from None
    from fulmen.track import Api

    found = Api().sweep(sweep_id)
    click.echo(f"fulmen: created sweep with id: {sweep_id}")
    click.echo(f"fulmen: sweep path: {found.path}")
    click.echo(f"fulmen: run an agent with: fulmen agent {found.path}")
    click.echo(f"fulmen agent {found.path}")


@cli.command()
@click.argument("sweep_id")
@click.option("--count", type=int, default=None, help="Run at most this many trials (this agent).")
@click.option("--project", "-p", default=None, help="The sweep's project (checked).")
@click.option("--entity", "-e", default=None, help="The sweep's entity (checked).")
def agent(sweep_id: str, count: int | None, project: str | None, entity: str | None) -> None:
    """Run trials of the sweep SWEEP_ID (id, project/id or entity/project/id): the config's
    program with the command macros, one trial after another, until the sweep is done."""
    import logging

    from fulmen import _logging
    from fulmen.sweep import agent as run_agent

    # The agent's per-trial lines are its output (as W&B's agent prints them): shown at INFO unless
    # the program or --log-level / FULMEN_LOG_LEVEL already decide where fulmen's records go.
    logger = logging.getLogger("fulmen.sweep")
    if not logger.handlers and not logging.getLogger().handlers and not _logging.configured():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("fulmen: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    if count is not None and count < 1:
        raise click.BadParameter(f"must be >= 1, got {count}", param_hint="--count")
    try:
        ran = run_agent(sweep_id, entity=entity, project=project, count=count)
    except (KeyError, ValueError, ConnectionError, PermissionError) as exc:
        raise click.ClickException(str(exc).strip("\"'")) from None
    click.echo(f"fulmen: agent ran {ran} trial(s) of sweep {sweep_id}")


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


# Lightning's ``pytorch_lightning.cli`` names, for ``from fulmen.cli import LightningCLI``. They
# live in fulmen.lightning_cli and load on first use, so the ``fulmen`` command stays fast.
_LIGHTNING_CLI_NAMES = frozenset(
    {"LightningArgumentParser", "LightningCLI", "SaveConfigCallback", "cli_lightning_logo"}
)


def __getattr__(name: str) -> object:
    if name in _LIGHTNING_CLI_NAMES:
        import importlib

        return getattr(importlib.import_module("fulmen.lightning_cli"), name)
    raise AttributeError(f"module 'fulmen.cli' has no attribute {name!r}")
