"""Blob uploads (issue 18): the per-file limit (1 GiB by default, FULMEN_MAX_BLOB) and the
per-entity quota (FULMEN_ENTITY_QUOTA) are checked against the declared size before the body is
read; the body is then hashed as it streams, refused past the limit or on a wrong digest, and
nothing of a refused body is kept. Each upload test runs on both blob stores (``blob_backend``:
the data folder, and an S3 bucket on moto's server, issue 17)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fulmen.server._deps import MAX_BLOB
from fulmen.server.app import ServerConfig, create_app
from tests.server.runlogs import CLIENT_HEADERS, LogWriter
from tests.server.s3 import BlobBackend

BLOBS = "/api/v1/entities/local/blobs"
RUNS = "/api/v1/entities/local/projects/proj/runs"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_default_per_file_limit_is_1_gib_and_the_environment_sets_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FULMEN_MAX_BLOB", raising=False)
    monkeypatch.delenv("FULMEN_ENTITY_QUOTA", raising=False)
    assert MAX_BLOB == 1 << 30
    assert (ServerConfig().max_blob, ServerConfig().entity_quota) == (1 << 30, None)
    monkeypatch.setenv("FULMEN_MAX_BLOB", "512M")
    monkeypatch.setenv("FULMEN_ENTITY_QUOTA", "20G")
    assert (ServerConfig().max_blob, ServerConfig().entity_quota) == (512 << 20, 20 << 30)
    assert ServerConfig(max_blob=10).max_blob == 10  # an argument wins over the environment
    monkeypatch.setenv("FULMEN_ENTITY_QUOTA", "lots")
    with pytest.raises(ValueError, match=r"FULMEN_ENTITY_QUOTA='lots': give a positive number"):
        ServerConfig()


def asgi_put(app: Any, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bool]:
    """PUT through the ASGI interface itself: (status, whether the app read the body)."""
    read = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (k.lower().encode(), v.encode()) for k, v in {**CLIENT_HEADERS, **headers}.items()
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return int(start["status"]), read


def test_a_declared_size_over_the_quota_is_refused_before_the_body_is_read(
    tmp_path: Path, blob_backend: BlobBackend
) -> None:
    config = ServerConfig(data=tmp_path, max_blob=1000, entity_quota=100)
    app = create_app(config, blobs=blob_backend.store())
    client = TestClient(app, headers=CLIENT_HEADERS)
    first = b"a" * 60
    assert client.put(f"{BLOBS}/{sha(first)}", content=first).status_code == 200
    second = b"b" * 60  # 60 + 60 > 100
    status, read = asgi_put(
        app, f"{BLOBS}/{sha(second)}", {"content-length": str(len(second))}, second
    )
    assert (status, read) == (413, False)
    r = client.put(f"{BLOBS}/{sha(second)}", content=second)
    assert r.status_code == 413
    assert "entity 'local''s quota of 100 bytes (60 bytes used)" in r.json()["detail"]
    status, read = asgi_put(app, f"{BLOBS}/{sha(second)}", {"content-length": "5000"}, second)
    assert (status, read) == (413, False)  # over the per-file limit too
    # the same bytes again cost nothing: a blob the entity holds is never over its quota
    assert client.put(f"{BLOBS}/{sha(first)}", content=first).status_code == 200
    missing = client.post(f"{BLOBS}/missing", json={"digests": [sha(first), sha(second)]})
    assert missing.json() == {"missing": [sha(second)]}
    assert blob_backend.leftovers(tmp_path) == []
    assert blob_backend.stored(tmp_path) == [sha(first)]


def test_an_undeclared_size_is_cut_off_at_the_quota_as_it_streams(
    tmp_path: Path, blob_backend: BlobBackend
) -> None:
    app = create_app(ServerConfig(data=tmp_path, entity_quota=1000), blobs=blob_backend.store())
    client = TestClient(app, headers=CLIENT_HEADERS)
    data = b"x" * 5000
    read: list[int] = []

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for i in range(0, len(data), 500):
            read.append(i)
            yield data[i : i + 500]

    r = client.put(f"{BLOBS}/{sha(data)}", content=chunks())
    assert r.status_code == 413
    assert "quota of 1000 bytes" in r.json()["detail"]
    assert blob_backend.leftovers(tmp_path) == []
    assert blob_backend.stored(tmp_path) == []
    missing = client.post(f"{BLOBS}/missing", json={"digests": [sha(data)]})
    assert missing.json() == {"missing": [sha(data)]}


def test_a_wrong_digest_is_refused_and_nothing_is_kept(
    tmp_path: Path, blob_backend: BlobBackend
) -> None:
    app = create_app(ServerConfig(data=tmp_path), blobs=blob_backend.store())
    client = TestClient(app, headers=CLIENT_HEADERS)
    data = b"hello"
    wrong = sha(b"something else")
    r = client.put(f"{BLOBS}/{wrong}", content=data)
    assert r.status_code == 400
    assert f"not the digest {wrong}" in r.json()["detail"]
    assert blob_backend.leftovers(tmp_path) == []
    assert blob_backend.stored(tmp_path) == []
    assert client.put(f"{BLOBS}/not-a-digest", content=data).status_code == 422


def test_run_files_count_against_the_quota(tmp_path: Path, blob_backend: BlobBackend) -> None:
    app = create_app(ServerConfig(data=tmp_path, entity_quota=100), blobs=blob_backend.store())
    client = TestClient(app, headers=CLIENT_HEADERS)
    w = LogWriter()
    w.run("r1")
    assert client.post(f"{RUNS}/r1/records", content=w.body()).status_code == 200
    one, two = b"1" * 80, b"2" * 80
    r = client.put(f"{RUNS}/r1/files/a.txt", params={"digest": sha(one)}, content=one)
    assert r.status_code == 200, r.text
    r = client.put(f"{RUNS}/r1/files/b.txt", params={"digest": sha(two)}, content=two)
    assert r.status_code == 413
    assert [f["path"] for f in client.get(f"{RUNS}/r1/files").json()["files"]] == ["a.txt"]
    assert blob_backend.stored(tmp_path) == [sha(one)]
