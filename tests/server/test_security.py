"""The security model: one auth layer over every route, entity-scoped keys, anonymous spaces,
contained paths (the MLflow CVE path attacks replayed), and no 500 under schema-driven fuzzing."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fulmen.server._auth import PUBLIC
from fulmen.server._security import SecurityConfig, allowed_hosts
from fulmen.server._serve import config_for, describe, is_loopback
from fulmen.server.app import API_PREFIX, ServerConfig, create_app
from fulmen.server.store import open_store
from tests.server.runlogs import CLIENT_HEADERS, LogWriter


def secured(tmp_path: Path, **kw: bool) -> tuple[TestClient, str]:
    app = create_app(ServerConfig(data=tmp_path / "data", require_auth=True, **kw))
    client = TestClient(app, headers=CLIENT_HEADERS)
    key = app.state.resources.store.create_key("alice")
    return client, key


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_every_route_requires_a_key_except_the_public_ones(tmp_path: Path) -> None:
    client, _ = secured(tmp_path)
    # FastAPI includes routers lazily: enumerate through the schema, which lists every route
    app = create_app(ServerConfig(data=tmp_path / "unused", require_auth=True))
    routes = [(m.upper(), p) for p, ms in app.openapi()["paths"].items() for m in ms]
    assert len(routes) > 20
    for method, path in routes:
        response = client.request(method, _concrete(path))
        public = path.removeprefix(API_PREFIX) in PUBLIC
        assert (response.status_code == 401) != public, (method, path)
    # also paths no route matches: the layer runs before routing
    assert client.get(f"{API_PREFIX}/not-a-route").status_code == 401
    assert client.get(f"{API_PREFIX}/openapi.json").status_code == 200


def test_keys_are_scoped_to_their_entity_and_stored_hashed(tmp_path: Path) -> None:
    client, key = secured(tmp_path)
    alice = {"Authorization": f"Bearer {key}"}
    w = LogWriter()
    w.run("r1")
    runs = f"{API_PREFIX}/entities/alice/projects/p/runs"
    assert client.post(f"{runs}/r1/records", content=w.body(), headers=alice).status_code == 200
    assert client.get(runs, headers=alice).json()["total"] == 1
    other = f"{API_PREFIX}/entities/bob/projects/p/runs"
    assert client.get(other, headers=alice).status_code == 403
    assert client.get(runs, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(f"{API_PREFIX}/viewer", headers=alice).json()["entity"] == "alice"
    assert client.get(f"{API_PREFIX}/entities", headers=alice).json()["entities"][0]["name"] == (
        "alice"
    )
    db = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("fulmen.db*"))
    assert key.encode() not in db
    assert hashlib.sha256(key.encode()).hexdigest().encode() in db


def test_anonymous_spaces_only_by_their_link(tmp_path: Path) -> None:
    closed, _ = secured(tmp_path / "a")
    assert closed.post(f"{API_PREFIX}/anonymous").status_code == 401
    client, key = secured(tmp_path / "b", allow_anonymous=True)
    entity = client.post(f"{API_PREFIX}/anonymous").json()["entity"]
    w = LogWriter()
    w.run("r1")
    runs = f"{API_PREFIX}/entities/{entity}/projects/p/runs"
    assert client.post(f"{runs}/r1/records", content=w.body()).status_code == 200
    assert client.get(f"{runs}/r1").status_code == 200
    guessed = f"{API_PREFIX}/entities/anon-guessed/projects/p/runs"
    assert client.get(guessed).status_code == 401
    listing = client.get(f"{API_PREFIX}/entities", headers={"Authorization": f"Bearer {key}"})
    assert listing.json()["entities"] == []


def test_only_loopback_is_open_by_default() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")  # noqa: PT018
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.2")
    data = Path("unused")
    assert not config_for(
        "127.0.0.1", data, None, insecure=False, allow_anonymous=False
    ).require_auth
    assert config_for("0.0.0.0", data, None, insecure=False, allow_anonymous=False).require_auth
    assert not config_for("0.0.0.0", data, None, insecure=True, allow_anonymous=False).require_auth


ATTACKS = [
    "../secret",
    "a/../../secret",
    "%2e%2e%2fsecret",
    "%2e%2e/secret",
    "%252e%252e%252fsecret",
    "..%5csecret",
    "..\\secret",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "//server/share/secret",
    "\\\\server\\share\\secret",
    "C:/Windows/win.ini",
    "c:%5cwindows%5cwin.ini",
    "a//b",
    "a%00b",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_path_attacks_are_refused(tmp_path: Path, attack: str) -> None:
    client = TestClient(create_app(ServerConfig(data=tmp_path / "data")), headers=CLIENT_HEADERS)
    w = LogWriter()
    w.run("r1")
    base = f"{API_PREFIX}/entities/local/projects/p/runs/r1"
    client.post(f"{base}/records", content=w.body())
    digest = hashlib.sha256(b"x").hexdigest()
    for method, url in [
        ("PUT", f"{base}/files/{attack}?digest={digest}"),
        ("GET", f"{base}/files/{attack}"),
        ("GET", f"{API_PREFIX}/entities/local/projects/p/artifacts/m/v0/files/{attack}"),
    ]:
        response = client.request(method, url, content=b"x" if method == "PUT" else None)
        assert response.status_code in (400, 404, 422), (method, url, response.status_code)
    assert not (tmp_path / "secret").exists()
    blobs = tmp_path / "data" / "blobs"
    assert not blobs.exists() or os.listdir(blobs) == ["tmp"]  # nothing was stored


def test_a_symlink_out_of_the_blob_folder_is_not_followed(tmp_path: Path) -> None:
    client = TestClient(create_app(ServerConfig(data=tmp_path / "data")), headers=CLIENT_HEADERS)
    w = LogWriter()
    w.run("r1")
    w.record("file", {"path": "a.txt", "type": "user", "size": 1})
    base = f"{API_PREFIX}/entities/local/projects/p/runs/r1"
    client.post(f"{base}/records", content=w.body())
    digest = hashlib.sha256(b"x").hexdigest()
    assert client.put(f"{base}/files/a.txt?digest={digest}", content=b"x").status_code == 200
    outside = tmp_path / "outside"
    outside.write_text("secret")
    blob = tmp_path / "data" / "blobs" / digest[:2] / digest
    blob.unlink()
    blob.symlink_to(outside)
    response = client.get(f"{base}/files/a.txt")
    assert response.status_code in (403, 404)
    assert b"secret" not in response.content


def test_every_body_is_capped(tmp_path: Path) -> None:
    client = TestClient(create_app(ServerConfig(data=tmp_path / "data")), headers=CLIENT_HEADERS)
    url = f"{API_PREFIX}/entities/local/blobs/missing"
    big = b'{"digests": [' + b'"x",' * 5_000_000 + b'"x"]}'
    assert client.post(url, content=big).status_code == 413  # declared length

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b" " * (1 << 20)

    assert client.post(url, content=chunks()).status_code == 413


# --- the browser boundary (issue 18): cross-origin writes, Host names --------------------------

RUNS = f"{API_PREFIX}/entities/local/projects/p/runs"


def _run_body(run_id: str = "r1") -> bytes:
    w = LogWriter()
    w.run(run_id)
    return w.body()


def _runs(client: TestClient) -> int:
    return int(client.get(RUNS).json()["total"])


def test_a_page_on_another_origin_cannot_write(tmp_path: Path) -> None:
    # what fetch(url, {method: "POST", mode: "no-cors", body}) sends from https://evil.test:
    # Origin and Sec-Fetch-Site from a modern browser, a plain body (no preflight) from any
    client = TestClient(create_app(ServerConfig(data=tmp_path / "data")))
    posts = [
        {"Origin": "https://evil.test", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.test"},
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/octet-stream"},
        {"Sec-Fetch-Site": "same-site", "Content-Type": "application/octet-stream"},  # other port
        {"Origin": "http://127.0.0.1:3000", "Content-Type": "application/octet-stream"},
        {"Content-Type": "text/plain"},  # an old browser: no Origin, but a simple request
        {"Content-Type": "application/x-www-form-urlencoded"},  # a form post
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},  # a plain ArrayBuffer body has no Content-Type at all
    ]
    for headers in posts:
        r = client.post(f"{RUNS}/r1/records", content=_run_body(), headers=headers)
        assert r.status_code in (403, 415), (headers, r.status_code)
        assert "refused" in r.json()["detail"] or "Content-Type" in r.json()["detail"]
    assert (
        client.post(f"{API_PREFIX}/anonymous", headers={"Origin": "https://e.test"}).status_code
        == 403
    )
    assert _runs(client) == 0
    # what the real client sends, and a same-origin page, pass
    ok = [
        {"Content-Type": "application/octet-stream", "Content-Encoding": "identity"},
        {"Content-Type": "application/octet-stream", "Origin": "http://testserver"},
        {"Content-Type": "application/octet-stream", "Origin": "http://TestServer"},
        {"Content-Type": "application/octet-stream", "Sec-Fetch-Site": "same-origin"},
        {"Content-Type": "application/octet-stream", "Sec-Fetch-Site": "none"},
        {"X-Fulmen-Client": "curl"},
    ]
    for i, headers in enumerate(ok):
        r = client.post(f"{RUNS}/r{i}/records", content=_run_body(f"r{i}"), headers=headers)
        assert r.status_code == 200, (headers, r.text)
    assert _runs(client) == len(ok)
    # reads are not writes: a cross-origin GET reaches the route (the browser hides the answer)
    assert client.get(RUNS, headers={"Origin": "https://evil.test"}).status_code == 200


def test_host_names_are_checked_on_loopback(tmp_path: Path) -> None:
    loopback = SecurityConfig(allowed_hosts=allowed_hosts(True, ["tracker.lan"]))
    client = TestClient(create_app(ServerConfig(data=tmp_path / "data", security=loopback)))
    health = f"{API_PREFIX}/health"
    for host in ("rebind.test", "rebind.test:8080", "127.0.0.2", "evil.localhost", ""):
        r = client.get(health, headers={"Host": host})
        assert r.status_code == 400, host
        assert "--allowed-host" in r.json()["detail"]
    for host in ("localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LOCALHOST", "tracker.lan:80"):
        assert client.get(health, headers={"Host": host}).status_code == 200, host
    # a DNS-rebinding page is refused its writes too (its Origin matches its own Host)
    r = client.post(
        f"{RUNS}/r1/records",
        content=_run_body(),
        headers={"Host": "rebind.test:8080", "Origin": "http://rebind.test:8080",
                 "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert r.status_code == 400


def test_the_host_check_is_configurable_off_loopback() -> None:
    assert allowed_hosts(False, []) is None  # off loopback: any Host unless names are given
    assert allowed_hosts(False, ["Tracker.Example.com."]) == {"tracker.example.com"}
    assert allowed_hosts(True, []) == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts(True, ["*"]) is None
    data = Path("unused")
    on = config_for("127.0.0.1", data, None, insecure=False, allow_anonymous=False)
    assert on.security.allowed_hosts == {"localhost", "127.0.0.1", "::1"}
    off = config_for("0.0.0.0", data, None, insecure=False, allow_anonymous=False)
    assert off.security.allowed_hosts is None
    named = config_for(
        "0.0.0.0", data, None, insecure=False, allow_anonymous=False, extra_hosts=["t.lan"]
    )
    assert named.security.allowed_hosts == {"t.lan"}
    limited = config_for(
        "127.0.0.1",
        data,
        None,
        insecure=False,
        allow_anonymous=True,
        limits=SecurityConfig(anonymous_runs_per_minute=7),
    )
    assert limited.security.anonymous_runs_per_minute == 7
    assert limited.security.allowed_hosts == {"localhost", "127.0.0.1", "::1"}


def test_pages_carry_the_security_headers(tmp_path: Path) -> None:
    client = TestClient(create_app(ServerConfig(data=tmp_path / "data")), headers=CLIENT_HEADERS)
    client.post(f"{RUNS}/r1/records", content=_run_body())
    answers = [
        client.get("/"),
        client.get("/local/p"),
        client.get("/local/p/runs/r1"),
        client.get(RUNS),
        client.get("/static/dashboard.js"),
        client.post(f"{RUNS}/r2/records", content=b"", headers={"Origin": "https://e.test"}),
    ]
    for r in answers:
        assert r.headers["x-frame-options"] == "DENY", r.url
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
        assert csp["script-src"] == "'self'"  # no inline script, no CDN
        assert csp["frame-ancestors"] == "'none'"
        assert csp["img-src"] == "'self' data: blob:"
        assert csp["object-src"] == "'none'"
    page = answers[2].text
    # the page keeps to its CSP: scripts only from /static, data only as JSON
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts
    for attrs, text in scripts:
        assert 'src="/static/' in attrs or ('type="application/json"' in attrs and text), attrs
        assert "//" not in attrs.replace('src="/static/', "")
    assert not re.search(r"<[^>]*\s(style|on[a-z]+)\s*=", page)  # no inline style or handler
    assert "<style" not in page


def test_no_docs_page_loads_from_a_cdn(tmp_path: Path) -> None:
    client = TestClient(create_app(ServerConfig(data=tmp_path / "data")))
    assert client.get(f"{API_PREFIX}/docs").status_code == 404
    assert client.get(f"{API_PREFIX}/openapi.json").json()["info"]["title"] == "fulmen"
    assert {"/health", "/openapi.json"} == PUBLIC


def test_the_start_message_says_who_can_reach_the_server() -> None:
    data = Path("/srv/f")

    def lines(host: str, *, insecure: bool = False, anon: bool = False, keys: bool = False) -> str:
        config = config_for(host, data, None, insecure=insecure, allow_anonymous=anon)
        return "\n".join(describe(config, host, 8080, has_keys=keys))

    assert "open without keys (loopback" in lines("127.0.0.1")
    everyone = lines("0.0.0.0", insecure=True)
    assert "loopback" not in everyone  # it printed "open (loopback)"
    assert "OPEN TO THE NETWORK" in everyone
    assert "anyone who can reach 0.0.0.0:8080" in everyone
    assert "WARNING" not in everyone  # keys are not needed there
    closed = lines("0.0.0.0")
    assert "API keys required" in closed
    assert "WARNING: no API key exists yet, so nothing can log" in closed
    assert "fulmen server --data /srv/f create-key --entity NAME" in closed
    assert "WARNING" not in lines("0.0.0.0", keys=True)
    assert "except anonymous runs" in lines("0.0.0.0", anon=True)


def test_one_anonymous_client_cannot_flood_the_server(tmp_path: Path) -> None:
    limits = SecurityConfig(anonymous_runs_per_minute=3, anonymous_bytes_per_minute=4000)
    config = ServerConfig(
        data=tmp_path / "data", require_auth=True, allow_anonymous=True, security=limits
    )
    app = create_app(config)
    client = TestClient(app, headers=CLIENT_HEADERS)
    # it created 69 spaces in 5 s: now the fourth in a minute is refused, with when to retry
    spaces = [client.post(f"{API_PREFIX}/anonymous") for _ in range(4)]
    assert [r.status_code for r in spaces] == [200, 200, 200, 429]
    assert 1 <= int(spaces[3].headers["retry-after"]) <= 60
    assert "anonymous_runs_per_minute" in spaces[3].json()["detail"]
    entity = spaces[0].json()["entity"]
    runs = f"{API_PREFIX}/entities/{entity}/projects/p/runs"
    started = [client.post(f"{runs}/r{i}/records", content=_run_body(f"r{i}")) for i in range(4)]
    assert [r.status_code for r in started] == [200, 200, 200, 429]
    # a run that goes on is not a new run; its bytes count until the minute's budget is spent
    w = LogWriter(seq=1)
    w.history(0, {"x": "y" * 900})
    codes = [client.post(f"{runs}/r0/records", content=w.body()).status_code for _ in range(5)]
    assert codes[0] == 200
    assert codes[-1] == 429
    too_big = client.put(f"{API_PREFIX}/entities/{entity}/blobs/{'0' * 64}", content=b"x" * 5000)
    assert too_big.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as the body arrives
        for _ in range(5):
            yield b"x" * 1000

    other_space = TestClient(app, headers=CLIENT_HEADERS, client=("10.0.0.8", 5000))
    blob = f"{API_PREFIX}/entities/{entity}/blobs/{'0' * 64}"
    streamed = other_space.put(blob, content=chunks())
    assert streamed.status_code == 429
    assert int(streamed.headers["retry-after"]) >= 1
    # a client with a key is not limited; nor is another address
    key = app.state.resources.store.create_key("alice")
    keyed = {"Authorization": f"Bearer {key}"}
    alice = f"{API_PREFIX}/entities/alice/projects/p/runs"
    assert all(
        client.post(f"{alice}/k{i}/records", content=_run_body(f"k{i}"), headers=keyed).status_code
        == 200
        for i in range(5)
    )
    other = TestClient(app, headers=CLIENT_HEADERS, client=("10.0.0.9", 5000))
    assert other.post(f"{API_PREFIX}/anonymous").status_code == 200


def test_the_limits_forget_what_is_older_than_a_minute() -> None:
    from fulmen.server._security import AnonymousRateLimit

    now = [1000.0]

    async def app(scope: object, receive: object, send: object) -> None:
        return None

    limit = AnonymousRateLimit(
        app,
        prefix=API_PREFIX,
        config=SecurityConfig(anonymous_runs_per_minute=2),
        run_exists=lambda *_: False,
        clock=lambda: now[0],
    )
    import asyncio

    scope = {"type": "http", "method": "POST", "path": f"{API_PREFIX}/anonymous", "headers": []}
    assert asyncio.run(limit._check(scope, "c")) is None
    now[0] += 30
    assert asyncio.run(limit._check(scope, "c")) is None
    refused = asyncio.run(limit._check(scope, "c"))
    assert refused is not None
    assert refused[0] == 429
    assert refused[2] == 30  # the first one leaves the window in 30 s
    now[0] += 31
    assert asyncio.run(limit._check(scope, "c")) is None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_the_data_folder_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which made fulmen.db 0644
    try:
        data = tmp_path / "data"
        app = create_app(ServerConfig(data=data))
        client = TestClient(app, headers=CLIENT_HEADERS)
        assert client.post(f"{RUNS}/r1/records", content=_run_body()).status_code == 200
        digest = hashlib.sha256(b"x").hexdigest()
        client.put(f"{API_PREFIX}/entities/local/blobs/{digest}", content=b"x")
        db = sorted(data.glob("fulmen.db*"))
        assert [p.name for p in db] == ["fulmen.db", "fulmen.db-shm", "fulmen.db-wal"]
        assert {p.name: _mode(p) for p in db} == {p.name: 0o600 for p in db}
        assert _mode(data) == 0o700
        assert _mode(data / "blobs" / digest[:2] / digest) == 0o600
        app.state.resources.store.close()
        (data / "fulmen.db").chmod(0o644)  # a database made before: opening it fixes that
        open_store(data).close()
        assert _mode(data / "fulmen.db") == 0o600
    finally:
        os.umask(old)
