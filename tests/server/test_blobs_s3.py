"""The S3 blob store (``--blobs s3://BUCKET/PREFIX``, issue 17) against moto's S3 server in a
process of its own: a body of many parts is invisible under its key until its digest is checked,
the object store down answers 503 (the uploader retries) and the upload succeeds once it is back,
a store killed mid-upload leaves nothing behind, presigned downloads, the settings and their
errors, and boto3 only imported when an S3 store is used. The API tests of blobs, files,
artifacts and media run on both stores too (``blob_backend`` in test_blobs.py,
test_media_api.py, test_ingest_query.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fulmen.server._blobs import FileBlobs, copy_blob, copy_missing, open_blobs
from fulmen.server._blobs_s3 import S3Blobs, parse_url
from fulmen.server.app import ServerConfig, create_app
from tests.server.optional import require
from tests.server.runlogs import CLIENT_HEADERS, LogWriter
from tests.server.s3 import BUCKET, BlobBackend, MotoServer

BLOBS = "/api/v1/entities/local/blobs"
RUNS = "/api/v1/entities/local/projects/proj/runs"
MIB = 1 << 20
HEADERS = CLIENT_HEADERS


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def body_of(mib: int, seed: int = 0) -> list[bytes]:
    """``mib`` chunks of 1 MiB, each different."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    return [i.to_bytes(4, "big") + block[4:] for i in range(mib)]


def asgi_put(
    app: FastAPI,
    path: str,
    chunks: list[bytes],
    between: Callable[[int], None] | None = None,
    query: str = "",
) -> tuple[int, bytes]:
    """PUT ``chunks`` through the ASGI interface, one receive() each; ``between(i)`` runs before
    chunk ``i`` is handed over (the test looks at, or breaks, the object store mid-body)."""
    sent: list[dict[str, Any]] = []
    index = 0

    async def receive() -> dict[str, Any]:
        nonlocal index
        if index >= len(chunks):
            return {"type": "http.disconnect"}
        if between is not None:
            between(index)
        chunk = chunks[index]
        index += 1
        return {"type": "http.request", "body": chunk, "more_body": index < len(chunks)}

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
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in CLIENT_HEADERS.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), body


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[MotoServer]:
    """A moto server of this test's own, to kill and restart."""
    require("moto.server")
    server = MotoServer(tmp_path / "moto.log")
    server.start()
    yield server
    server.stop()


def test_a_body_of_many_parts_is_invisible_until_its_digest_is_checked(
    tmp_path: Path, moto: MotoServer
) -> None:
    backend = BlobBackend("s3", moto)
    app = create_app(ServerConfig(data=tmp_path), blobs=backend.store())
    good = body_of(16)
    digest = sha(b"".join(good))
    key = f"{backend.prefix}/{digest[:2]}/{digest}"
    seen: list[tuple[list[str], list[str]]] = []

    def look(i: int) -> None:
        if i == 12:  # two parts of 5 MiB sent (the second perhaps still in flight)
            seen.append((moto.keys(backend.prefix), moto.uploads(backend.prefix)))

    bad = [*good[:-1], b"not the last MiB"]
    status, answer = asgi_put(app, f"{BLOBS}/{digest}", bad, look)
    assert status == 400, answer
    assert b"not the digest" in answer
    assert seen == [([], [key])]  # under way: an incomplete upload, nothing under the key
    assert moto.keys(backend.prefix) == []
    assert moto.uploads(backend.prefix) == []  # aborted: no parts left behind

    status, answer = asgi_put(app, f"{BLOBS}/{digest}", good, look)
    assert status == 200, answer
    assert seen[1] == ([], [key])
    assert moto.keys(backend.prefix) == [key]
    assert moto.uploads(backend.prefix) == []
    client = TestClient(app, headers=CLIENT_HEADERS)
    w = LogWriter()
    w.run("r1")
    assert client.post(f"{RUNS}/r1/records", content=w.body()).status_code == 200
    # a run file of the same bytes: hashed, not sent again; downloads stream with their length
    status, _ = asgi_put(app, f"{RUNS}/r1/files/big.bin", good, query=f"digest={digest}")
    assert status == 200
    download = client.get(f"{RUNS}/r1/files/big.bin")
    assert download.status_code == 200
    assert download.headers["content-length"] == str(16 * MIB)
    assert sha(download.content) == digest
    assert moto.keys(backend.prefix) == [key]


def test_the_object_store_down_is_503_and_the_upload_succeeds_once_it_is_back(
    tmp_path: Path, own_moto: MotoServer
) -> None:
    blobs = own_moto.blobs("down")
    client = TestClient(create_app(ServerConfig(data=tmp_path), blobs=blobs), headers=HEADERS)
    w = LogWriter()
    w.run("r1")
    assert client.post(f"{RUNS}/r1/records", content=w.body()).status_code == 200
    before = b"stored before the outage"
    put = client.put(f"{RUNS}/r1/files/b.txt", params={"digest": sha(before)}, content=before)
    assert put.status_code == 200
    own_moto.kill()
    data = b"logged during the outage"
    for attempt in (
        lambda: client.put(f"{BLOBS}/{sha(data)}", content=data),
        lambda: client.put(f"{RUNS}/r1/files/a.txt", params={"digest": sha(data)}, content=data),
        lambda: client.post(f"{BLOBS}/missing", json={"digests": [sha(before)]}),
        lambda: client.get(f"{RUNS}/r1/files/b.txt"),
    ):
        answer = attempt()
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "10"
        assert "object store" in answer.json()["detail"]
        assert "retry later" in answer.json()["detail"]
    # the run's file list does not claim what failed to arrive
    assert [f["path"] for f in client.get(f"{RUNS}/r1/files").json()["files"]] == ["b.txt"]
    own_moto.start()  # empty again: moto keeps its objects in memory
    put = client.put(f"{RUNS}/r1/files/a.txt", params={"digest": sha(data)}, content=data)
    assert put.status_code == 200, put.text
    assert client.get(f"{RUNS}/r1/files/a.txt").content == data
    # what the restarted store lost is missing again, though the database says it was uploaded
    lost = client.post(f"{BLOBS}/missing", json={"digests": [sha(before), sha(data)]})
    assert lost.json() == {"missing": [sha(before)]}


def test_a_store_killed_mid_upload_shows_nothing_and_the_retry_succeeds(
    tmp_path: Path, own_moto: MotoServer
) -> None:
    blobs = own_moto.blobs("killed")
    app = create_app(ServerConfig(data=tmp_path), blobs=blobs)
    chunks = body_of(12, seed=1)
    digest = sha(b"".join(chunks))

    def kill_and_restart(i: int) -> None:
        if i == 7:  # one part sent, the second being read
            own_moto.kill()
            own_moto.start()

    status, answer = asgi_put(app, f"{BLOBS}/{digest}", chunks, kill_and_restart)
    assert status == 503, answer
    assert own_moto.keys("killed") == []
    status, answer = asgi_put(app, f"{BLOBS}/{digest}", chunks)  # the uploader's retry
    assert status == 200, answer
    assert own_moto.keys("killed") == [f"killed/{digest[:2]}/{digest}"]
    assert own_moto.uploads("killed") == []
    assert sha(b"".join(blobs.open(digest).chunks)) == digest


def test_presigned_downloads_redirect_and_media_still_stream(
    tmp_path: Path, moto: MotoServer
) -> None:
    backend = BlobBackend("s3", moto)
    blobs = backend.store(presign_seconds=60)
    client = TestClient(create_app(ServerConfig(data=tmp_path), blobs=blobs), headers=HEADERS)
    w = LogWriter()
    w.run("r1")
    assert client.post(f"{RUNS}/r1/records", content=w.body()).status_code == 200
    data = b"\x89PNG not really"
    for path in ("notes/a.txt", "media/images/a.png"):
        put = client.put(f"{RUNS}/r1/files/{path}", params={"digest": sha(data)}, content=data)
        assert put.status_code == 200
    answer = client.get(f"{RUNS}/r1/files/notes/a.txt", follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["cache-control"] == "no-store"
    url = answer.headers["location"]
    assert url.startswith(moto.url + f"/{BUCKET}/{backend.prefix}/")
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as fetched:  # the client fetches it itself
        assert fetched.read() == data
        assert fetched.headers["content-disposition"] == 'attachment; filename="a.txt"'
    # inline media the dashboard draws stay on the server's origin (its CSP allows no other)
    media = client.get(f"{RUNS}/r1/media/files/media/images/a.png", follow_redirects=False)
    assert media.status_code == 200
    assert media.content == data
    assert media.headers["content-type"] == "image/png"
    # not uploaded: a 404 from the server, not a redirect to an object that is not there
    w2 = LogWriter(seq=w.seq)
    w2.record("file", {"path": "later.txt", "type": "user", "size": 1})
    assert client.post(f"{RUNS}/r1/records", content=w2.body()).status_code == 200
    assert client.get(f"{RUNS}/r1/files/later.txt", follow_redirects=False).status_code == 404


def test_missing_counts_what_the_blob_store_lacks(
    tmp_path: Path, blob_backend: BlobBackend
) -> None:
    blobs = blob_backend.store()
    client = TestClient(create_app(ServerConfig(data=tmp_path), blobs=blobs), headers=HEADERS)
    one, two = b"one", b"two"
    for data in (one, two):
        assert client.put(f"{BLOBS}/{sha(data)}", content=data).status_code == 200
    # the bytes of one are gone from under the server (an emptied bucket, a lost folder)
    if blob_backend.moto is None:
        (tmp_path / "blobs" / sha(one)[:2] / sha(one)).unlink()
    else:
        key = f"{blob_backend.prefix}/{sha(one)[:2]}/{sha(one)}"
        blob_backend.moto.client().delete_object(Bucket=BUCKET, Key=key)
    missing = client.post(f"{BLOBS}/missing", json={"digests": [sha(two), sha(one)]})
    assert missing.json() == {"missing": [sha(one)]}
    assert client.put(f"{BLOBS}/{sha(one)}", content=one).status_code == 200
    assert client.post(f"{BLOBS}/missing", json={"digests": [sha(one)]}).json() == {"missing": []}


def test_blobs_copy_between_stores_checked_on_the_way(tmp_path: Path, moto: MotoServer) -> None:
    source = FileBlobs(tmp_path / "blobs")
    target = BlobBackend("s3", moto)
    store = target.store()
    assert store is not None
    datas = [b"a" * 10, bytes(range(256)) * 50_000]  # one part, and a multipart copy
    for data in datas:
        asyncio.run(source.put(sha(data), _aiter([data]), 1 << 30))
    assert copy_missing(source, store, [sha(d) for d in datas] * 2) == 2
    assert copy_missing(source, store, [sha(d) for d in datas]) == 0
    assert target.stored(tmp_path) == sorted(sha(d) for d in datas)
    back = FileBlobs(tmp_path / "back")
    assert copy_blob(store, back, sha(datas[1])) == len(datas[1])
    assert b"".join(back.open(sha(datas[1])).chunks) == datas[1]


async def _aiter(chunks: list[bytes]) -> Any:
    for chunk in chunks:
        yield chunk


def test_stale_incomplete_uploads_are_aborted(moto: MotoServer) -> None:
    backend = BlobBackend("s3", moto)
    store = backend.store()
    assert isinstance(store, S3Blobs)
    abandoned = f"{backend.prefix}/ab/abandoned"
    moto.client().create_multipart_upload(Bucket=BUCKET, Key=abandoned)
    assert store.abort_stale_uploads(older_than_s=1e10) == 0  # younger than that: kept
    assert moto.uploads(backend.prefix) == [abandoned]
    assert store.abort_stale_uploads(older_than_s=0) == 1  # check() at start: a day
    assert moto.uploads(backend.prefix) == []
    assert backend.stored(Path()) == []


def test_the_settings_name_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    assert isinstance(open_blobs(None, tmp_path), FileBlobs)
    assert open_blobs(str(tmp_path / "elsewhere"), tmp_path).describe() == str(
        tmp_path / "elsewhere"
    )
    assert parse_url("s3://my-bucket/a/b/") == ("my-bucket", "a/b")
    assert parse_url("s3://my-bucket") == ("my-bucket", "")
    for bad, says in (
        ("gs://bucket", "give s3://BUCKET[/PREFIX]"),
        ("s3://Bad_Bucket/x", "the bucket name 'Bad_Bucket' is not valid"),
        ("s3://ok-bucket/a/../b", "has an empty, '.' or '..' part"),
    ):
        with pytest.raises(ValueError, match=rf"--blobs '{re.escape(bad)}': .*{re.escape(says)}"):
            open_blobs(bad, tmp_path)
    monkeypatch.setenv("FULMEN_BLOBS", "s3://env-bucket/p")
    monkeypatch.setenv("FULMEN_BLOBS_PRESIGN", "300")
    assert (ServerConfig().blobs, ServerConfig().presign_seconds) == ("s3://env-bucket/p", 300)
    monkeypatch.setenv("FULMEN_BLOBS_PRESIGN", "soon")
    with pytest.raises(ValueError, match=r"FULMEN_BLOBS_PRESIGN='soon': give a whole number"):
        ServerConfig()
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "many")
    with pytest.raises(ValueError, match=r"AWS_MAX_ATTEMPTS='many'"):
        open_blobs(f"s3://{BUCKET}/x", tmp_path)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    store = open_blobs("s3://no-such-bucket/x", tmp_path)
    assert store.describe() == f"s3://no-such-bucket/x at {moto.url}"
    with pytest.raises(ValueError, match=r"the bucket 'no-such-bucket' does not exist"):
        store.check()
    open_blobs(f"s3://{BUCKET}/x", tmp_path).check()  # the environment's store: found


def test_the_server_imports_boto3_only_for_an_s3_store(tmp_path: Path) -> None:
    code = (
        "import hashlib, pathlib, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from fulmen.server.app import ServerConfig, create_app\n"
        f"app = create_app(ServerConfig(data=pathlib.Path({str(tmp_path)!r})))\n"
        "c = TestClient(app, headers={'X-Fulmen-Client': 't'})\n"
        "digest = hashlib.sha256(b'x').hexdigest()\n"
        "assert c.put('/api/v1/entities/local/blobs/' + digest, content=b'x').status_code == 200\n"
        "print('boto3' in sys.modules, 'botocore' in sys.modules)\n"
        "sys.modules['boto3'] = None  # as if it were not installed\n"
        "from fulmen.server._blobs import open_blobs\n"
        "try:\n"
        "    open_blobs('s3://some-bucket/p', pathlib.Path('.'))\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out[0] == "False False"
    assert out[1].startswith("--blobs s3://...: the S3 blob store needs boto3")
    assert out[1].endswith("install it with: pip install 'fulmen[s3]'")


FULMEN_SERVER = [sys.executable, "-m", "fulmen", "server", "--port", "0"]


def test_fulmen_server_refuses_a_blob_store_it_cannot_use(tmp_path: Path, moto: MotoServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "AWS_"))}
    env.update(moto.env())
    for blobs, says in (
        ("s3://no-such-bucket/p", "the bucket 'no-such-bucket' does not exist at"),
        ("gs://bucket", "give s3://BUCKET[/PREFIX]"),
    ):
        out = subprocess.run(
            [*FULMEN_SERVER, "--data", str(tmp_path), "--blobs", blobs],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0
        assert f"fulmen server: --blobs '{blobs}'" in out.stderr, out.stderr
        assert says in out.stderr
        assert "Traceback" not in out.stderr
