"""``BlobStore`` on an S3-compatible object store (AWS S3, MinIO, Ceph RGW, R2, ...), with boto3.

``--blobs s3://BUCKET/PREFIX`` stores the blob ``<digest>`` under the key
``PREFIX/<first two hex digits>/<digest>``. The endpoint, the credentials and the region come
from the usual AWS settings, which boto3 reads (``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``,
``~/.aws/config``); ``AWS_REGION`` is honoured too (boto3 itself reads only
``AWS_DEFAULT_REGION``). With an endpoint of its own the bucket is addressed by path
(``http://host:9000/BUCKET/KEY``), as MinIO and most other S3-compatible servers expect.

Uploads stream. The body is hashed as it arrives and sent in parts of ``PART_SIZE`` bytes
(at most two parts in memory, and one in flight while the next arrives): a body of one part is
one ``PutObject`` after its digest is checked; a longer one is a multipart upload, completed only
once the whole body hashes to its digest, and aborted otherwise. An object store shows nothing of
a multipart upload under its key before it is completed, so nothing half-written is ever visible,
whichever way the upload ends (a wrong digest, a client that goes away, the object store or the
server failing). Uploads a killed server left incomplete are aborted at the next start once they
are a day old (a bucket lifecycle rule ``AbortIncompleteMultipartUpload`` does the same).
A blob already stored is hashed and not sent again.

Failures: botocore retries each call with backoff (``standard`` mode, 5 attempts;
``AWS_RETRY_MODE`` and ``AWS_MAX_ATTEMPTS`` change it); what still fails is
``BlobStoreUnavailable``, answered 503 with ``Retry-After``, so the uploader tries again later.

Downloads stream through the server (the client needs no access to the bucket), or, with
``presign_seconds`` > 0 (``--blobs-presign SECONDS``), redirect to a presigned URL valid that long.

boto3 is imported only here, and this module only when ``--blobs`` names ``s3://``: it is the
``s3`` extra (``pip install 'fulmen[s3]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread

from fulmen.server._blobs import (
    Blob,
    BlobMissing,
    BlobStoreUnavailable,
    BlobTooLarge,
    DigestMismatch,
)

log = logging.getLogger("fulmen.server")

PART_SIZE = 8 << 20  # bytes per part of a multipart upload (S3 wants >= 5 MiB but the last)
MAX_PARTS = 10_000  # S3's limit on the parts of one upload
READ_CHUNK = 1 << 20
STALE_UPLOAD_S = 86_400  # incomplete uploads older than this are aborted at start
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


def _client() -> Any:
    """A boto3 S3 client on the AWS settings of the environment, with retries and timeouts."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ValueError(
            f"--blobs s3://...: the S3 blob store needs boto3 ({exc}); "
            "install it with: pip install 'fulmen[s3]'"
        ) from None
    attempts_text = os.environ.get("AWS_MAX_ATTEMPTS") or "5"
    if not attempts_text.isdigit() or int(attempts_text) < 1:
        raise ValueError(f"AWS_MAX_ATTEMPTS={attempts_text!r}: give a whole number >= 1")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        retries={
            "mode": os.environ.get("AWS_RETRY_MODE") or "standard",
            "max_attempts": int(attempts_text),
        },
        connect_timeout=5,
        read_timeout=60,
        signature_version="s3v4",
        s3={"addressing_style": "path"} if endpoint else None,
        max_pool_connections=32,
    )
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None
    session = boto3.session.Session()
    return session.client("s3", region_name=region, endpoint_url=endpoint or None, config=config)


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://BUCKET[/PREFIX]``; a clear error naming ``--blobs`` otherwise."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"--blobs {url!r}: the bucket name {bucket!r} is not valid (3 to 63 characters: "
            "lower-case letters, digits, '.' and '-'); give s3://BUCKET[/PREFIX]"
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ValueError(f"--blobs {url!r}: the prefix {prefix!r} has an empty, '.' or '..' part")
    return bucket, prefix


@contextlib.contextmanager
def _store_errors(what: str) -> Iterator[None]:
    """What botocore raises once its retries are spent, as ``BlobStoreUnavailable``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise BlobStoreUnavailable(f"the object store failed to {what}: {exc}") from exc
    except BotoCoreError as exc:
        raise BlobStoreUnavailable(f"the object store is unavailable ({what}): {exc}") from exc


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3Blobs:
    """``BlobStore`` on ``bucket`` of an S3-compatible object store, keys under ``prefix``."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        presign_seconds: int = 0,
        part_size: int = PART_SIZE,
    ) -> None:
        if part_size < 5 << 20:
            raise ValueError(f"part_size={part_size}: S3 needs parts of at least 5 MiB")
        if presign_seconds < 0 or presign_seconds > 7 * 86_400:
            raise ValueError(
                f"presign_seconds={presign_seconds}: give 0 (stream downloads) up to 604800 "
                "(7 days, the longest a presigned URL may live)"
            )
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.presign_seconds = presign_seconds
        self.part_size = part_size

    @classmethod
    def from_url(cls, url: str, *, presign_seconds: int = 0) -> S3Blobs:
        bucket, prefix = parse_url(url)
        return cls(_client(), bucket, prefix, presign_seconds=presign_seconds)

    def key(self, digest: str) -> str:
        name = f"{digest[:2]}/{digest}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.client.meta.endpoint_url}"

    # --- reads ------------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        from botocore.exceptions import ClientError

        with _store_errors(f"look up blob {digest}"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    return False
                raise
        return True

    def missing(self, digests: list[str]) -> list[str]:
        if len(digests) <= 1:
            return [d for d in digests if not self.exists(d)]
        # one HEAD per digest: many at once (the client's connection pool holds 32)
        with ThreadPoolExecutor(max_workers=min(16, len(digests))) as pool:
            found = list(pool.map(self.exists, digests))
        return [d for d, held in zip(digests, found, strict=True) if not held]

    def open(self, digest: str) -> Blob:
        from botocore.exceptions import ClientError

        with _store_errors(f"read blob {digest}"):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key(digest))
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    raise BlobMissing(digest) from None
                raise
        return Blob(int(answer["ContentLength"]), self._read(answer["Body"], digest))

    def _read(self, body: Any, digest: str) -> Iterator[bytes]:
        try:
            with _store_errors(f"read blob {digest}"):
                yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def download_url(self, digest: str, *, filename: str, content_type: str) -> str | None:
        if self.presign_seconds <= 0:
            return None
        params = {
            "Bucket": self.bucket,
            "Key": self.key(digest),
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
            "ResponseContentType": content_type,
        }
        url: str = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.presign_seconds
        )
        return url

    # --- writes -----------------------------------------------------------------------------

    async def put(self, digest: str, chunks: AsyncIterator[bytes], limit: int) -> int:
        """Hash and send the body part by part; make it visible only once it is checked."""
        key = self.key(digest)
        held = await anyio.to_thread.run_sync(self.exists, digest)
        part_size = max(self.part_size, -(-limit // MAX_PARTS))
        hasher, size = hashlib.sha256(), 0
        buffered: list[bytes] = []
        buffered_size = 0
        upload: _Multipart | None = None
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise BlobTooLarge(f"the body is larger than {limit} bytes")
                hasher.update(chunk)
                if held:
                    continue  # stored already: the body only proves the client has it
                buffered.append(chunk)
                buffered_size += len(chunk)
                if buffered_size >= part_size:
                    if upload is None:
                        upload = await anyio.to_thread.run_sync(_Multipart.start, self, key)
                    await upload.send(b"".join(buffered))
                    buffered, buffered_size = [], 0
            if hasher.hexdigest() != digest:
                raise DigestMismatch(
                    f"the body's SHA-256 is {hasher.hexdigest()}, not the digest {digest}"
                )
            if held:
                return size
            if upload is None:  # one part: checked in memory, then written whole
                body = b"".join(buffered)
                await anyio.to_thread.run_sync(self._put_object, key, body)
                return size
            if buffered_size:
                await upload.send(b"".join(buffered))
            await upload.complete()
            upload = None
            return size
        finally:
            if upload is not None:
                await upload.abort()

    def _put_object(self, key: str, body: bytes) -> None:
        with _store_errors(f"write {key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    # --- at start ---------------------------------------------------------------------------

    def check(self) -> None:
        """The bucket exists and the credentials reach it; stale incomplete uploads aborted.
        ``ValueError`` for what the operator must fix; ``BlobStoreUnavailable`` when the object
        store does not answer (the server starts anyway and answers 503 until it does)."""
        from botocore.exceptions import ClientError, NoCredentialsError

        where = f"--blobs {f's3://{self.bucket}/{self.prefix}'.rstrip('/')!r}"
        try:
            with _store_errors(f"find bucket {self.bucket!r}"):
                try:
                    self.client.head_bucket(Bucket=self.bucket)
                except ClientError as exc:
                    code = _code(exc)
                    if code in ("404", "NoSuchBucket", "NotFound"):
                        raise ValueError(
                            f"{where}: the bucket {self.bucket!r} does not exist at "
                            f"{self.client.meta.endpoint_url} (create it first)"
                        ) from None
                    if code in ("403", "AccessDenied", "Forbidden"):
                        raise ValueError(
                            f"{where}: access to the bucket {self.bucket!r} is denied with "
                            "these credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)"
                        ) from None
                    raise
        except BlobStoreUnavailable as exc:
            if isinstance(exc.__cause__, NoCredentialsError):
                raise ValueError(
                    f"{where}: no credentials for the object store: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
                ) from None
            raise
        self.abort_stale_uploads(STALE_UPLOAD_S)

    def abort_stale_uploads(self, older_than_s: float) -> int:
        """Abort the incomplete uploads under the prefix started over ``older_than_s`` ago."""
        now = datetime.datetime.now(datetime.timezone.utc)
        aborted = 0
        with _store_errors("list incomplete uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""
            )
            for page in pages:
                for up in page.get("Uploads", []):
                    if (now - up["Initiated"]).total_seconds() > older_than_s:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        aborted += 1
        if aborted:
            log.info("aborted %d incomplete uploads older than %s s", aborted, older_than_s)
        return aborted


class _Multipart:
    """One multipart upload: parts sent in order, one in flight while the next is read."""

    def __init__(self, store: S3Blobs, key: str, upload_id: str) -> None:
        self.store, self.key, self.upload_id = store, key, upload_id
        self.parts: list[dict[str, Any]] = []
        self._pending: asyncio.Task[dict[str, Any]] | None = None

    @classmethod
    def start(cls, store: S3Blobs, key: str) -> _Multipart:
        with _store_errors(f"start an upload of {key}"):
            answer = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)
        return cls(store, key, str(answer["UploadId"]))

    def _send(self, number: int, body: bytes) -> dict[str, Any]:
        with _store_errors(f"write part {number} of {self.key}"):
            answer = self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=body,
            )
        return {"ETag": answer["ETag"], "PartNumber": number}

    async def _settle(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.parts.append(await pending)

    async def send(self, body: bytes) -> None:
        """Start sending ``body`` as the next part, once the part before it has arrived."""
        await self._settle()
        number = len(self.parts) + 1
        self._pending = asyncio.ensure_future(anyio.to_thread.run_sync(self._send, number, body))

    async def complete(self) -> None:
        await self._settle()
        store = self.store
        with _store_errors(f"complete the upload of {self.key}"):
            await anyio.to_thread.run_sync(
                lambda: store.client.complete_multipart_upload(
                    Bucket=store.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": self.parts},
                )
            )

    async def abort(self) -> None:
        """Drop what was sent (best effort: an upload that cannot be aborted stays invisible,
        and the next start, or a lifecycle rule, aborts it)."""
        if self._pending is not None:
            with contextlib.suppress(Exception):
                await self._pending  # a thread cannot be cancelled: let its part land first
            self._pending = None
        store = self.store

        def abort() -> None:
            store.client.abort_multipart_upload(
                Bucket=store.bucket, Key=self.key, UploadId=self.upload_id
            )

        try:
            await anyio.to_thread.run_sync(abort)
        except Exception as exc:  # the store is down: the upload stays incomplete, unseen
            log.warning("could not abort the incomplete upload of %s: %s", self.key, exc)
