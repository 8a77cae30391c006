"""Artifacts: named, versioned sets of files, stored content-addressed.

Layout under ``<dir>/fulmen/artifacts/``::

    objects/<sha256[:2]>/<sha256>        every distinct file content, once (across versions, runs)
    <name>/v<N>.json                     the manifest of version N: entries name -> sha256, size
    <name>/aliases.json                  alias -> version ("latest" is the newest version)
    downloads/<name>/<version>/...       copies made by download(): a cache, kept under
                                         FULMEN_ARTIFACT_CACHE_MAX_BYTES (least recently used
                                         versions go first)

A new version is made only when the manifest's digest differs from every existing version's; a
version's files are immutable. Names are checked: no user string becomes a path without containment.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from fulmen.track._system import atomic_write

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_VERSION = re.compile(r"^v(\d+)$")


def check_artifact_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"artifact name must be 1 to 128 characters from A-Z a-z 0-9 _ . - (starting with a "
            f"letter or digit), got {name!r}"
        )
    return name


def check_entry_name(name: str) -> str:
    """A relative POSIX path inside the artifact (no '..', not absolute, no control chars)."""
    path = PurePosixPath(name.replace(os.sep, "/"))
    if (
        not name
        or path.is_absolute()
        or any(p in ("..", "") for p in path.parts)
        or any(ord(ch) < 32 for ch in name)
    ):
        raise ValueError(f"artifact entry name {name!r} must be a relative path without '..'")
    return path.as_posix()


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's content, in hex, read 1 MiB at a time: the digest of an artifact
    entry and of a run file, the same on the client and the server."""
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _HasEntries(Protocol):
    def _copy_entry(self, name: str, root: str | None) -> str: ...


class ArtifactEntry:
    """One file of an artifact, logged here or on a server (``Api(base_url=...)``): ``name``,
    ``digest`` (sha256), ``size``; ``download()``."""

    def __init__(self, artifact: _HasEntries, name: str, digest: str, size: int) -> None:
        self._artifact, self.name, self.digest, self.size = artifact, name, digest, size

    def download(self, root: str | None = None) -> str:
        """Copy this file to ``root`` (default: the artifact's download folder); return its path."""
        return self._artifact._copy_entry(self.name, root)


class Artifact:
    """A named, typed set of files; ``run.log_artifact`` stores it as a version."""

    def __init__(
        self,
        name: str,
        type: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.name = check_artifact_name(name)
        if not isinstance(type, str) or not _NAME.match(type):
            raise ValueError(f"artifact type must be a simple name like 'model', got {type!r}")
        self.type = type
        self.description = description
        self.metadata = dict(metadata or {})
        self._local: dict[str, Path] = {}  # entry name -> file to store (before logging)
        self.version: str | None = None
        self.aliases: list[str] = []
        self.digest: str | None = None
        self.manifest: dict[str, Any] = {}
        self._store: ArtifactStore | None = None

    def add_file(self, local_path: str, name: str | None = None) -> str:
        """Add one file, as ``name`` (default: its file name); returns the entry name."""
        path = Path(local_path)
        if not path.is_file():
            raise ValueError(f"add_file: {local_path!r} is not a file")
        entry = check_entry_name(name or path.name)
        self._local[entry] = path
        return entry

    def add_dir(self, local_path: str, name: str | None = None) -> None:
        """Add every file under a folder, under the prefix ``name`` (default: none)."""
        root = Path(local_path)
        if not root.is_dir():
            raise ValueError(f"add_dir: {local_path!r} is not a directory")
        prefix = check_entry_name(name) + "/" if name else ""
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self._local[check_entry_name(prefix + path.relative_to(root).as_posix())] = path

    @property
    def entries(self) -> dict[str, ArtifactEntry]:
        return {
            n: ArtifactEntry(self, n, e["digest"], e["size"])
            for n, e in self.manifest.get("entries", {}).items()
        }

    def get_path(self, name: str) -> ArtifactEntry:
        """The entry ``name`` of a logged artifact."""
        entry = self.entries.get(check_entry_name(name))
        if entry is None:
            raise KeyError(f"artifact {self.name}:{self.version} has no file {name!r}")
        return entry

    def download(self, root: str | None = None) -> str:
        """Copy every file to ``root``; returns the folder. The default root is
        ``<dir>/fulmen/artifacts/downloads/<name>/<version>``, a cache with a size limit."""
        target = self._target(root)
        for name in self.manifest.get("entries", {}):
            self._copy_entry(name, str(target))
        target.mkdir(parents=True, exist_ok=True)
        if root is None and self._store is not None:
            os.utime(target)  # most recently used: evicted last
            self._store.trim_downloads(keep=target)
        return str(target)

    def delete(self, delete_aliases: bool = False) -> None:
        """Delete this logged version (W&B's ``Artifact.delete``): its manifest, and the stored
        files no other version uses. A version that has aliases needs ``delete_aliases=True``."""
        if self._store is None or self.version is None:
            raise ValueError(f"artifact {self.name!r} was not logged; there is nothing to delete")
        self._store.delete(self.name, self.version, delete_aliases=delete_aliases)
        self._store, self.version, self.aliases = None, None, []

    def _target(self, root: str | None) -> Path:
        if self._store is None or self.version is None:
            raise ValueError(f"artifact {self.name!r} is not logged yet; log or use it first")
        if root is not None:
            return Path(root)
        return self._store.root / "downloads" / self.name / self.version

    def _copy_entry(self, name: str, root: str | None) -> str:
        target = self._target(root)
        entry = self.manifest["entries"][name]
        assert self._store is not None
        dest = target / check_entry_name(name)
        if not dest.is_file() or dest.stat().st_size != entry["size"]:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            _copyfile(self._store.object_path(entry["digest"]), tmp)
            os.replace(tmp, dest)
        return str(dest)

    def __repr__(self) -> str:
        return f"<Artifact {self.name}:{self.version or 'unlogged'} ({self.type})>"


class ArtifactStore:
    """The local, content-addressed artifact store of one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def object_path(self, digest: str) -> Path:
        return self.root / "objects" / digest[:2] / digest

    def _put(self, path: Path) -> tuple[str, int]:
        digest = file_digest(path)
        dest = self.object_path(digest)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{digest}.{os.getpid()}.tmp")
            _copyfile(path, tmp)
            os.replace(tmp, dest)
        return digest, path.stat().st_size

    def save(self, artifact: Artifact, aliases: list[str], *, run_id: str) -> dict[str, Any]:
        for alias in aliases:
            if not isinstance(alias, str) or not _ALIAS.match(alias) or _VERSION.match(alias):
                raise ValueError(f"alias must be a simple name (not v<N>), got {alias!r}")
        if not artifact._local and not artifact.manifest:
            raise ValueError(f"artifact {artifact.name!r} has no files; add_file or add_dir first")
        entries = {
            n: dict(zip(("digest", "size"), self._put(p), strict=True))
            for n, p in artifact._local.items()
        }
        if not entries:
            entries = artifact.manifest["entries"]
        import hashlib

        digest = hashlib.sha256(json.dumps(sorted(entries.items())).encode()).hexdigest()
        folder = self.root / artifact.name
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / ".lock"):
            versions = self._versions(folder)
            same = [v for v, m in versions.items() if m["digest"] == digest]
            alias_map = self._aliases(folder)
            if same:
                number = max(same)
                manifest = versions[number]
            else:
                number = max(versions, default=-1) + 1
                manifest = {
                    "name": artifact.name,
                    "type": artifact.type,
                    "version": f"v{number}",
                    "digest": digest,
                    "description": artifact.description,
                    "metadata": artifact.metadata,
                    "entries": entries,
                    "created": time.time(),
                    "run": run_id,
                }
                atomic_write(folder / f"v{number}.json", json.dumps(manifest, indent=1))
                alias_map["latest"] = number
            for alias in aliases:
                alias_map[alias] = number
            atomic_write(folder / "aliases.json", json.dumps(alias_map, indent=1))
        manifest = {**manifest, "aliases": sorted(a for a, v in alias_map.items() if v == number)}
        _bind(artifact, self, manifest)
        return manifest

    def delete(self, name: str, version: str, *, delete_aliases: bool) -> None:
        """Remove version ``version`` of ``name`` and the objects no remaining version uses."""
        check_artifact_name(name)
        match = _VERSION.match(version)
        if match is None:
            raise ValueError(f"artifact version must be v<N>, got {version!r}")
        folder, number = self.root / name, int(match.group(1))
        with _locked(folder / ".lock"):
            alias_map = self._aliases(folder)
            held = sorted(a for a, v in alias_map.items() if v == number)
            if held and not delete_aliases:
                raise ValueError(
                    f"artifact {name}:{version} has aliases {held}; pass delete_aliases=True"
                )
            manifest_path = folder / f"v{number}.json"
            if not manifest_path.is_file():
                raise ValueError(f"no artifact {name}:{version} in {self.root}")
            gone = {e["digest"] for e in json.loads(manifest_path.read_text())["entries"].values()}
            manifest_path.unlink()
            remaining = {a: v for a, v in alias_map.items() if v != number}
            atomic_write(folder / "aliases.json", json.dumps(remaining, indent=1))
        # Objects are shared across versions and artifacts: keep every digest still referenced.
        for other in self.root.glob("*/v*.json"):
            if _VERSION.match(other.stem):
                entries = json.loads(other.read_text())["entries"].values()
                gone -= {e["digest"] for e in entries}
        for digest in gone:
            self.object_path(digest).unlink(missing_ok=True)

    def load(self, spec: str) -> Artifact:
        name, _, alias = spec.partition(":")
        check_artifact_name(name)
        alias = alias or "latest"
        folder = self.root / name
        alias_map = self._aliases(folder)
        match = _VERSION.match(alias)
        number = int(match.group(1)) if match else alias_map.get(alias)
        path = folder / f"v{number}.json"
        if number is None or not path.is_file():
            raise ValueError(f"no artifact {name}:{alias} in {self.root}")
        manifest = json.loads(path.read_text())
        manifest["aliases"] = sorted(a for a, v in alias_map.items() if v == number)
        artifact = Artifact(
            name, manifest["type"], manifest.get("description"), manifest.get("metadata")
        )
        _bind(artifact, self, manifest)
        return artifact

    def trim_downloads(self, keep: Path | None = None, max_bytes: int | None = None) -> None:
        """Delete the least recently used download folders until the cache fits ``max_bytes``
        (default: FULMEN_ARTIFACT_CACHE_MAX_BYTES, else 10 GiB). The store itself is never
        trimmed: offline, its objects are the only copy."""
        import shutil

        limit = max_bytes if max_bytes is not None else _cache_limit()
        folders = [v for n in (self.root / "downloads").glob("*") for v in n.glob("v*")]
        sizes = {f: sum(p.stat().st_size for p in f.rglob("*") if p.is_file()) for f in folders}
        total = sum(sizes.values())
        for folder in sorted(folders, key=lambda f: f.stat().st_mtime):
            if total <= limit:
                break
            if keep is not None and folder == keep:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            total -= sizes[folder]

    @staticmethod
    def _versions(folder: Path) -> dict[int, dict[str, Any]]:
        out = {}
        for path in folder.glob("v*.json"):
            match = _VERSION.match(path.stem)
            if match:
                out[int(match.group(1))] = json.loads(path.read_text())
        return out

    @staticmethod
    def _aliases(folder: Path) -> dict[str, int]:
        try:
            return dict(json.loads((folder / "aliases.json").read_text()))
        except (OSError, ValueError):
            return {}


def _cache_limit() -> int:
    value = os.environ.get("FULMEN_ARTIFACT_CACHE_MAX_BYTES")
    try:
        return int(value) if value else 10 * 2**30
    except ValueError:
        raise ValueError(
            f"FULMEN_ARTIFACT_CACHE_MAX_BYTES must be a number of bytes, got {value!r}"
        ) from None


def _copyfile(source: Path, dest: Path) -> None:
    import shutil

    shutil.copyfile(source, dest)


def _bind(artifact: Artifact, store: ArtifactStore, manifest: dict[str, Any]) -> None:
    artifact._store = store
    artifact.manifest = manifest
    artifact.version = manifest["version"]
    artifact.digest = manifest["digest"]
    artifact.aliases = list(manifest.get("aliases", []))


class _locked:
    """An exclusive flock on ``path`` for a with-block (new versions, across processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
