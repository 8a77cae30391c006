"""A run's media through the in-process ASGI client: the media keys with their steps and
references, the media files served inline with their type, content addressed (the same bytes are
one blob), and the file routes' containment and auth rules on media paths; on both blob stores
(the data folder and an S3 bucket: ``blob_backend``)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from fulmen.server import API_PREFIX, create_app
from fulmen.server._api_media import media_keys
from fulmen.server.app import ServerConfig
from tests.server.runlogs import CLIENT_HEADERS, LogWriter
from tests.server.s3 import BlobBackend

RUNS = f"{API_PREFIX}/entities/local/projects/p/runs"


def _png(value: int) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(np.full((4, 6, 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _image(path: str, caption: str) -> dict[str, Any]:
    return {"_type": "image-file", "path": path, "format": "png", "width": 6, "height": 4,
            "caption": caption}  # fmt: skip


def _put(client: TestClient, run: str, path: str, data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    answer = client.put(f"{RUNS}/{run}/files/{path}", params={"digest": digest}, content=data)
    assert answer.status_code == 200, answer.text


@pytest.fixture
def client(tmp_path: Path, blob_backend: BlobBackend) -> TestClient:
    app = create_app(ServerConfig(data=tmp_path / "data"), blobs=blob_backend.store())
    c = TestClient(app, headers=CLIENT_HEADERS)
    w = LogWriter()
    w.run("r1", "p")
    for step in range(6):
        row: dict[str, Any] = {"loss": 1.0 / (step + 1)}
        if step % 2 == 0:  # the image every other step
            row["frame"] = _image(f"media/images/{step:032x}.png", f"step {step}")
        if step == 5:
            row["table"] = {"_type": "table-file", "path": "media/table/t.table.json", "nrows": 1,
                            "ncols": 1}  # fmt: skip
        w.history(step, row)
    w.record("exit", {"exit_code": 0, "state": "finished", "runtime": 1.0})
    assert c.post(f"{RUNS}/r1/records", content=w.body()).status_code == 200
    for step in (0, 2, 4):
        _put(c, "r1", f"media/images/{step:032x}.png", _png(step))
    return c


def test_media_lists_each_key_with_its_steps_and_references(client: TestClient) -> None:
    answer = client.get(f"{RUNS}/r1/media").json()["media"]
    assert [(m["key"], m["type"]) for m in answer] == [("frame", "image-file"),
                                                         ("table", "table-file")]  # fmt: skip
    frame = answer[0]
    assert frame["steps"] == [0, 2, 4]
    assert [v["caption"] for v in frame["values"]] == ["step 0", "step 2", "step 4"]
    assert answer[1]["steps"] == [5]
    # one key; only the steps; the references at a step (the last at or before it)
    only = client.get(f"{RUNS}/r1/media", params={"key": "table"}).json()["media"]
    assert [m["key"] for m in only] == ["table"]
    bare = client.get(f"{RUNS}/r1/media", params={"refs": "false"}).json()["media"]
    assert all("values" not in m for m in bare)
    assert bare[0]["steps"] == [0, 2, 4]
    at = client.get(f"{RUNS}/r1/media", params={"key": "frame", "step": 3}).json()["media"][0]
    assert at["value_steps"] == [2]
    assert at["values"][0]["caption"] == "step 2"
    assert at["steps"] == [0, 2, 4]
    # a scalar key or an unknown key is no media key; an unknown run is a 404
    none = client.get(f"{RUNS}/r1/media", params={"key": ["loss", "nope"]}).json()
    assert none == {"media": []}
    assert client.get(f"{RUNS}/r9/media").status_code == 404


def test_media_keys_come_from_the_summary() -> None:
    summary = {"b": {"_type": "images/separated"}, "a": {"_type": "chart"}, "h": {"_type":
               "histogram"}, "x": 1.0, "s": "text"}  # fmt: skip
    assert media_keys(summary) == {"a": "chart", "b": "images/separated"}


def test_media_files_are_served_inline_with_their_type(client: TestClient) -> None:
    answer = client.get(f"{RUNS}/r1/media/files/media/images/{2:032x}.png")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["content-disposition"].startswith("inline")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in answer.headers["content-security-policy"]
    pixels = np.asarray(PILImage.open(io.BytesIO(answer.content)))
    assert np.array_equal(pixels, np.full((4, 6, 3), 2))  # pixel-exact
    # the run-files route still answers the same bytes as a download
    download = client.get(f"{RUNS}/r1/files/media/images/{2:032x}.png")
    assert download.content == answer.content
    assert download.headers["content-disposition"].startswith("attachment")
    # HTML a run uploaded is never served as HTML on the server's origin
    _put(client, "r1", "media/html/page.html", b"<script>alert(1)</script>")
    html = client.get(f"{RUNS}/r1/media/files/media/html/page.html")
    assert html.headers["content-type"].startswith("text/plain")


def test_only_media_paths_are_served_and_never_outside_the_run(client: TestClient) -> None:
    _put(client, "r1", "output.log", b"console")
    assert client.get(f"{RUNS}/r1/files/output.log").status_code == 200
    refused = client.get(f"{RUNS}/r1/media/files/output.log")
    assert refused.status_code == 404
    assert "media/" in refused.json()["detail"]
    assert client.get(f"{RUNS}/r1/media/files/media/x.exe").status_code == 404
    for evil in ("media/../output.log", "media/%2e%2e/output.log", "/etc/passwd.png",
                 "media/..%2f..%2foutput.png", "media\\..\\x.png"):  # fmt: skip
        answer = client.get(f"{RUNS}/r1/media/files/{evil}")
        assert answer.status_code in (400, 404, 422), (evil, answer.status_code)
    # a logged but not yet uploaded media file is a 404 naming it
    missing = client.get(f"{RUNS}/r1/media/files/media/images/{1:032x}.png")
    assert missing.status_code == 404


def test_the_same_bytes_are_one_blob(
    tmp_path: Path, client: TestClient, blob_backend: BlobBackend
) -> None:
    w = LogWriter()
    w.run("r2", "p")
    assert client.post(f"{RUNS}/r2/records", content=w.body()).status_code == 200
    _put(client, "r2", "media/images/copy.png", _png(2))
    _put(client, "r1", f"media/images/{2:032x}.png", _png(2))  # again: idempotent
    digest = hashlib.sha256(_png(2)).hexdigest()
    stored = blob_backend.stored(tmp_path / "data")
    assert stored.count(digest) == 1
    assert len(stored) == 3  # three PNGs


def test_media_routes_keep_the_auth_rules(tmp_path: Path, blob_backend: BlobBackend) -> None:
    config = ServerConfig(data=tmp_path / "data", require_auth=True)
    app = create_app(config, blobs=blob_backend.store())
    c = TestClient(app, headers=CLIENT_HEADERS)
    alice = {"Authorization": f"Bearer {app.state.resources.store.create_key('alice')}"}
    bob = {"Authorization": f"Bearer {app.state.resources.store.create_key('bob')}"}
    base = f"{API_PREFIX}/entities/alice/projects/p/runs"
    w = LogWriter()
    w.run("r1", "p")
    w.history(0, {"frame": _image("media/images/a.png", "x")})
    assert c.post(f"{base}/r1/records", content=w.body(), headers=alice).status_code == 200
    data = _png(7)
    put = c.put(f"{base}/r1/files/media/images/a.png", content=data, headers=alice,
                params={"digest": hashlib.sha256(data).hexdigest()})  # fmt: skip
    assert put.status_code == 200
    for path in ("/r1/media", "/r1/media/files/media/images/a.png"):
        assert c.get(base + path).status_code == 401
        assert c.get(base + path, headers=bob).status_code == 403
        assert c.get(base + path, headers=alice).status_code == 200
