"""An S3-compatible object store for the blob tests: moto's standalone server (``python -m
moto.server``, from PyPI) in a process of its own on a free loopback port, owned by the tests.

``MotoServer`` can be killed (``kill -9``) and started again on the same port, for the fault tests;
moto keeps its buckets in memory, so a restart starts empty and ``start`` makes the bucket again.
``BlobBackend`` is what the parametrized API tests use: the blob store an app gets (None: the
default folder under the data folder; an ``S3Blobs`` on its own prefix of the shared bucket) and
what the store holds, finished or not.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulmen.server._blobs import BlobStore
from fulmen.server._blobs_s3 import S3Blobs

BUCKET = "fulmen-tests"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
PART_SIZE = 5 << 20  # S3's smallest part: multipart uploads in tests stay small


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """moto's S3 server in a subprocess on ``127.0.0.1:port``."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=2):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text()[-2000:]
                    raise RuntimeError(f"moto did not start: {tail}") from None
                time.sleep(0.05)
        self.client().create_bucket(Bucket=BUCKET)

    def kill(self) -> None:
        """``kill -9``: every connection drops, every object (in memory) is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def env(self) -> dict[str, str]:
        """The AWS settings a ``fulmen server`` process needs to reach this store."""
        return {
            **KEYS,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_MAX_ATTEMPTS": "3",
        }

    def client(self, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
            # as the server's own client (_blobs_s3._client): path-style, SigV4
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4", **config),
        )

    def blobs(self, prefix: str, **kw: Any) -> S3Blobs:
        retries = {"mode": "standard", "max_attempts": 3}
        client = self.client(retries=retries, connect_timeout=2, read_timeout=30)
        return S3Blobs(client, BUCKET, prefix, part_size=PART_SIZE, **kw)

    def keys(self, prefix: str) -> list[str]:
        answer = self.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
        return sorted(o["Key"] for o in answer.get("Contents", []))

    def uploads(self, prefix: str) -> list[str]:
        """Keys of the multipart uploads under ``prefix`` that were started and not finished."""
        answer = self.client().list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/")
        return sorted(u["Key"] for u in answer.get("Uploads", []))


@dataclass
class BlobBackend:
    """One of the blob stores the API tests run over: ``local`` (the data folder's ``blobs``) or
    ``s3`` (moto, a prefix of its own per test)."""

    kind: str
    moto: MotoServer | None = None
    prefix: str = ""

    def __post_init__(self) -> None:
        self.prefix = f"t-{uuid.uuid4().hex[:12]}"

    def store(self, **kw: Any) -> BlobStore | None:
        """The ``blobs`` argument of ``create_app``: None (the default folder) or an S3 store."""
        if self.moto is None:
            return None
        return self.moto.blobs(self.prefix, **kw)

    def stored(self, data: Path) -> list[str]:
        """The digests stored, sorted."""
        if self.moto is None:
            root = data / "blobs"
            found = [p.name for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp"]
            return sorted(found)
        return sorted(key.rsplit("/", 1)[-1] for key in self.moto.keys(self.prefix))

    def leftovers(self, data: Path) -> list[str]:
        """What an unfinished upload left: temporary files, or incomplete multipart uploads."""
        if self.moto is None:
            tmp = data / "blobs" / "tmp"
            return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
        return self.moto.uploads(self.prefix)
