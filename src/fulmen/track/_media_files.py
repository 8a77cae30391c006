"""Reading logged media back: ``ApiRun.file(path)`` and the references in history rows."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fulmen.track._media_store import PENDING_SUFFIX, finalize_file, finalize_pending
from fulmen.track._replay import is_live

_SIZED = ("image-file", "mask")


class RunFile:
    """A file of a run: ``name``, ``size``, ``download(root)``, ``read()``."""

    def __init__(self, files_dir: Path, path: str) -> None:
        folder = files_dir.resolve()
        local = (folder / path).resolve()
        if not local.is_relative_to(folder):
            raise ValueError(f"file {path!r} is outside the run's files")
        pending = local.with_name(local.name + PENDING_SUFFIX)
        if not local.is_file() and pending.is_file():
            finalize_file(pending)  # the run was killed before its encoder got to this image
        if not local.is_file():
            raise ValueError(f"the run has no file {path!r}")
        self.name = path
        self._local = local

    @property
    def size(self) -> int:
        return self._local.stat().st_size

    def read(self) -> bytes:
        return self._local.read_bytes()

    def download(
        self, root: str | os.PathLike[str] = ".", replace: bool = False, exist_ok: bool = False
    ) -> Path:
        """Copy the file to ``root/<path>`` (W&B's layout) and return that path."""
        return download_to(
            root, self.name, replace, exist_ok, lambda t: shutil.copyfile(self._local, t)
        )

    def __repr__(self) -> str:
        return f"<RunFile {self.name}>"


def download_to(
    root: str | os.PathLike[str],
    name: str,
    replace: bool,
    exist_ok: bool,
    write: Callable[[Path], object],
) -> Path:
    """``root/<name>`` (W&B's layout), written by ``write(target)`` unless it exists: an error
    then, unless ``replace`` (written again) or ``exist_ok`` (kept). Local and HTTP run files."""
    target = Path(root) / name
    if target.exists() and not (replace or exist_ok):
        raise ValueError(f"{target} exists; pass replace=True to overwrite it")
    if not target.exists() or replace:
        target.parent.mkdir(parents=True, exist_ok=True)
        write(target)
    return target


def complete_refs(files_dir: Path, data: Any) -> None:
    """Give image and mask references of a replayed run the ``size`` of their stored file
    (unknown when ``log()`` wrote the row: the PNG is encoded afterwards)."""
    media = files_dir / "media"
    if not media.is_dir():
        return
    if any(media.rglob("*" + PENDING_SUFFIX)) and not is_live(files_dir.parent):
        finalize_pending(files_dir)  # a killed run's (a live run's own encoder is at work)
    sizes = {str(f["path"]): f.get("size") for f in data.files if f.get("type") == "media"}
    seen: dict[int, None] = {}

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            if id(value) in seen:
                return
            seen[id(value)] = None
            if value.get("_type") in _SIZED and "size" not in value and "path" in value:
                size = sizes.get(value["path"])
                if size is None:
                    try:
                        size = (files_dir / value["path"]).stat().st_size
                    except OSError:
                        return
                value["size"] = size
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    for row in data.rows:
        for value in row.values():
            if isinstance(value, (dict, list)):
                visit(value)
    visit(data.summary.result())
