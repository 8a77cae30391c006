"""Blobs: run files and artifact files, stored once each by SHA-256 under ``<data>/blobs``.

A blob's path is made from its digest only (validated as 64 hex digits), never from a user's
name; every open still resolves the path and checks that it lies inside the blob folder, so a
symbolic link planted in the data folder cannot lead outside it. An object-store backend
implements the same three methods later.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

CHUNK = 1 << 20


class BlobTooLarge(ValueError):
    """The upload is bigger than the server accepts (HTTP 413)."""


class DigestMismatch(ValueError):
    """The bytes do not hash to the digest they were sent under (HTTP 400)."""


class BlobStore(Protocol):
    async def put(self, digest: str, chunks: AsyncIterator[bytes], limit: int) -> int: ...

    def open(self, digest: str) -> Iterator[bytes]: ...

    def exists(self, digest: str) -> bool: ...


class FileBlobs:
    """``BlobStore`` on a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self._real = root.resolve()

    def _path(self, digest: str) -> Path:
        path = self.root / digest[:2] / digest
        real = path.resolve()
        if not real.is_relative_to(self._real):
            raise PermissionError(f"blob {digest} resolves outside the blob folder")
        return real

    async def put(self, digest: str, chunks: AsyncIterator[bytes], limit: int) -> int:
        """Stream the body to a temporary file, check size and digest, then move it in place."""
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        hasher, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise BlobTooLarge(f"the body is larger than {limit} bytes")
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.hexdigest() != digest:
                raise DigestMismatch(
                    f"the body's SHA-256 is {hasher.hexdigest()}, not the digest {digest}"
                )
            target = self._path(digest)
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return size

    def exists(self, digest: str) -> bool:
        try:
            return self._path(digest).is_file()
        except PermissionError:
            return False

    def open(self, digest: str) -> Iterator[bytes]:
        path = self._path(digest)
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
