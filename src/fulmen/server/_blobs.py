"""Blobs: run files, artifact files and media, stored once each by SHA-256, behind ``BlobStore``.

Two stores implement it: ``FileBlobs``, a folder (``<data>/blobs`` by default, or any folder
``--blobs`` names), and ``S3Blobs`` (``fulmen.server._blobs_s3``), a bucket of an S3-compatible
object store (``--blobs s3://BUCKET/PREFIX``). ``open_blobs`` picks one from the setting. Every
route that reads or writes a blob goes through the interface (``_deps.put_blob``,
``_deps.blob_response``, ``_deps.missing_blobs``); the store (``store.Store``) only records which
entity holds which digest.

The rules both keep:

- A blob's key is made from its digest only (validated as 64 hex digits), never from a user's name.
- ``put`` streams: the body is hashed as it arrives, refused past ``limit`` bytes
  (``BlobTooLarge``) or when it does not hash to its digest (``DigestMismatch``), and nothing of a
  refused or interrupted body is ever visible under the digest (a folder: a temporary file moved
  in place; a bucket: a multipart upload completed only after the check).
- ``open`` finds the blob before the answer starts (``BlobMissing``: a 404, not a torn answer) and
  then yields it in chunks of ``CHUNK`` bytes.
- An object store that stays unreachable after the client library's retries is
  ``BlobStoreUnavailable``: the server answers 503 with ``Retry-After``, which the uploader
  retries.

FileBlobs also resolves every path and checks that it lies inside the blob folder, so a symbolic
link planted in the data folder cannot lead outside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

CHUNK = 1 << 20


class BlobTooLarge(ValueError):
    """The upload is bigger than the server accepts (HTTP 413)."""


class DigestMismatch(ValueError):
    """The bytes do not hash to the digest they were sent under (HTTP 400)."""


class BlobMissing(LookupError):
    """No blob is stored under the digest (HTTP 404)."""


class BlobStoreUnavailable(RuntimeError):
    """The object store did not answer, or failed, after the retries (HTTP 503, retried)."""

    retry_after = 10  # seconds the client is asked to wait


@dataclass
class Blob:
    """A stored blob being read: its size and its bytes, in chunks."""

    size: int
    chunks: Iterator[bytes]


class BlobStore(Protocol):
    """Where blobs live. Digests are validated (64 lower-case hex digits) before any call."""

    async def put(self, digest: str, chunks: AsyncIterator[bytes], limit: int) -> int:
        """Store the bytes of ``chunks`` as ``digest`` once they are checked; their size."""
        ...

    def open(self, digest: str) -> Blob:
        """The blob ``digest``, found before this returns (``BlobMissing`` if absent)."""
        ...

    def exists(self, digest: str) -> bool: ...

    def missing(self, digests: list[str]) -> list[str]:
        """Those of ``digests`` not stored, in their order."""
        ...

    def download_url(self, digest: str, *, filename: str, content_type: str) -> str | None:
        """A URL the client may fetch the blob from directly (presigned), or None: stream it."""
        ...

    def check(self) -> None:
        """Raise ``ValueError`` with the reason when the store cannot work as set up (at start)."""
        ...

    def describe(self) -> str:
        """Where the blobs are, for the start message (``/srv/fulmen/blobs``, ``s3://b/p``)."""
        ...


class FileBlobs:
    """``BlobStore`` on a folder: ``<root>/<first two hex digits>/<digest>``, files 0600."""

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

    def missing(self, digests: list[str]) -> list[str]:
        return [d for d in digests if not self.exists(d)]

    def open(self, digest: str) -> Blob:
        path = self._path(digest)
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise BlobMissing(digest) from None
        return Blob(os.fstat(f.fileno()).st_size, _read(f))

    def download_url(self, digest: str, *, filename: str, content_type: str) -> str | None:
        return None  # a folder has no URL of its own: the server streams it

    def check(self) -> None:
        pass  # the folder was made (or found) when this store was created

    def describe(self) -> str:
        return str(self.root)


def _read(f: IO[bytes]) -> Iterator[bytes]:
    with f:
        while chunk := f.read(CHUNK):
            yield chunk


def open_blobs(spec: str | None, data: Path, *, presign_seconds: int = 0) -> BlobStore:
    """The blob store ``spec`` names: ``s3://BUCKET[/PREFIX]`` (an S3-compatible object store,
    endpoint and credentials from the AWS settings), a folder path (or ``file:///PATH``), or, when
    None or empty, the folder ``<data>/blobs``. ``presign_seconds`` > 0 has S3 downloads redirect to
    presigned URLs valid that long (a folder always streams)."""
    if not spec:
        return FileBlobs(data / "blobs")
    if spec.startswith("s3://"):
        from fulmen.server._blobs_s3 import S3Blobs

        return S3Blobs.from_url(spec, presign_seconds=presign_seconds)
    if "://" in spec and not spec.startswith("file://"):
        raise ValueError(
            f"--blobs {spec!r}: give s3://BUCKET[/PREFIX] (an S3-compatible object store) "
            "or a folder path"
        )
    return FileBlobs(Path(spec.removeprefix("file://")).expanduser())


def copy_blob(source: BlobStore, target: BlobStore, digest: str, limit: int = 1 << 62) -> int:
    """Copy the blob ``digest`` from ``source`` to ``target`` (streamed, checked again on the way
    in, as an upload is); its size. For tools outside a request (``migrate-store``); call it
    from a thread with no running event loop."""
    blob = source.open(digest)

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in blob.chunks:
            yield chunk

    try:
        return asyncio.run(target.put(digest, chunks(), limit))
    finally:
        close = getattr(blob.chunks, "close", None)  # a put that failed part-way: the file too
        if close is not None:
            close()


def copy_missing(source: BlobStore, target: BlobStore, digests: Iterable[str]) -> int:
    """Copy those of ``digests`` that ``target`` lacks; how many were copied."""
    lacking = target.missing(list(dict.fromkeys(digests)))
    for digest in lacking:
        copy_blob(source, target, digest)
    return len(lacking)
