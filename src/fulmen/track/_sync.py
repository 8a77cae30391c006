"""``fulmen sync`` and ``fulmen login``: the command-line side of uploading (see ``_upload``)."""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable
from pathlib import Path

from fulmen.track._layout import log_path
from fulmen.track._replay import is_live
from fulmen.track._settings import DEFAULT_SETTINGS_FILE, SETTINGS_FILE_VARIABLE, resolve
from fulmen.track._upload import (
    Client,
    ServerError,
    UploadError,
    _describe,
    sync_run,
    synced_up_to,
)

DEFAULT_SERVER = "http://127.0.0.1:8080"


def settings_path() -> Path:
    return Path(os.environ.get(SETTINGS_FILE_VARIABLE) or DEFAULT_SETTINGS_FILE).expanduser()


def save_login(base_url: str | None, api_key: str | None) -> Path:
    """Write ``base_url`` and ``api_key`` into the settings file's [default] section, mode 0600."""
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    parser = configparser.ConfigParser()
    if path.is_file():
        parser.read(path)
    if not parser.has_section("default"):
        parser.add_section("default")
    if base_url is not None:
        parser["default"]["base_url"] = base_url.rstrip("/")
    if api_key is not None:
        parser["default"]["api_key"] = api_key
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        parser.write(f)
    os.chmod(tmp, 0o600)  # also when the file existed with looser bits
    os.replace(tmp, path)
    return path


def run_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.glob("run-*-*") if p.is_dir() and log_path(p).is_file()]
    return sorted(found, key=lambda p: p.name)


def _targets(paths: list[str], root: Path, base_url: str) -> list[Path]:
    if not paths:  # every run under the tracker folder whose log grew since its last sync
        return [
            d
            for d in run_dirs(root)
            if synced_up_to(d, base_url, "size") != log_path(d).stat().st_size
        ]
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if log_path_ok(path):
            out.append(path)
        else:
            inner = path / "fulmen" if (path / "fulmen").is_dir() else path
            out += run_dirs(inner)
    return out


def log_path_ok(path: Path) -> bool:
    try:
        return path.name.startswith("run-") and log_path(path).is_file()
    except IndexError:
        return False


def sync_paths(
    paths: list[str],
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Sync run folders (or folders holding them); return those that failed."""
    settings = resolve({"base_url": base_url, "api_key": api_key, "mode": "offline"})
    url = settings.base_url or DEFAULT_SERVER
    root = settings.dir if settings.dir.name == "fulmen" else settings.dir / "fulmen"
    client = Client(url, settings.api_key)
    failed = []
    targets = _targets(paths, root, url)
    if not targets:
        echo(f"fulmen sync: nothing to sync under {root}")
    for run_dir in targets:
        try:
            upload = sync_run(run_dir, client, live=is_live(run_dir))
        except (UploadError, ServerError, OSError) as exc:
            echo(f"fulmen sync: {run_dir.name}: failed: {_describe(exc)}")
            failed.append(run_dir)
            continue
        state = "finished" if upload.exited else "still running" if is_live(run_dir) else "crashed"
        echo(
            f"fulmen sync: {run_dir.name}: {upload.held} records held by {url} "
            f"({upload.entity}/{upload.project}/{upload.run_id}, {state})"
        )
    return failed
