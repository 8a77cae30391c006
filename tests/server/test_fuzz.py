"""Fuzzing: schemathesis generates requests for every operation of the app's own OpenAPI schema and
sends them in-process (ASGI), and hypothesis builds run-log frames with hostile fields (NaN and
infinities, huge ints, wrong types, deep nesting, lone surrogates) around good records; no answer
may be a server error (500), and no good record may be lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulmen.server.app import API_PREFIX, ServerConfig, create_app
from fulmen.server.store import Store
from tests.server.optional import require
from tests.server.runlogs import CLIENT_HEADERS


def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    schemathesis = require("schemathesis")
    from hypothesis import HealthCheck, given, settings

    app = create_app(ServerConfig(data=tmp_path / "data"))
    schema = schemathesis.openapi.from_asgi(f"{API_PREFIX}/openapi.json", app)
    failures = []
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case: object) -> None:
            response = case.call()  # type: ignore[attr-defined]
            if response.status_code >= 500:
                failures.append((op.label, response.status_code, response.text[:200]))  # noqa: B023

        check()
    assert failures == []


def test_a_missing_test_dependency_skips_locally_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # how require() above behaves when schemathesis (or pyarrow) is not installed
    missing = "fulmen_no_such_test_dependency"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{missing} is not installed"):
        require(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"must run in CI: {missing} is not installed"):
        require(missing)


# --- hand-built run-log frames with hostile fields --------------------------------------------

# the fields each JSON kind's readers use (fulmen.track.runlog's grammar), to fill with anything
FIELDS = {
    "run": ("id", "name", "group", "job_type", "tags", "notes", "resumed", "time", "runtime"),
    "config": ("lr", "nested"),
    "summary": ("update", "remove"),
    "metric": ("name", "step_metric", "summary", "goal", "hidden"),
    "file": ("path", "type", "size"),
    "artifact": ("name", "type", "version", "digest", "aliases", "used", "entries", "metadata"),
    "stats": ("cpu", "gpu.0.util"),
    "exit": ("exit_code", "state", "runtime"),
    "schema": ("id", "columns"),
    "rewind": ("step",),
}


def test_hostile_run_log_frames_never_500_and_never_lose_the_good_records(
    tmp_path: Path, store: Store
) -> None:  # on each store engine (conftest's store)
    pytest.importorskip("hypothesis")
    import itertools
    import json

    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from fulmen.track import runlog as R
    from tests.server.runlogs import KIND, LogWriter

    app = create_app(ServerConfig(data=tmp_path / "data"), store=store)
    client = TestClient(app, headers=CLIENT_HEADERS)
    runs = f"{API_PREFIX}/entities/local/projects/fuzz/runs"
    ids = itertools.count()
    text = st.text(alphabet=st.sampled_from(["a", "\udcff", "\ud800", "\u00e9", "<", '"', "\x00"]))
    scalar = st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**308, 10**309]),
        text,
    )
    value = st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)
        ),
        max_leaves=12,
    )

    def deep(depth: int) -> str:
        return '{"a":' * depth + "1" + "}" * depth

    record = st.one_of(
        st.sampled_from(sorted(FIELDS)).flatmap(
            lambda kind: st.tuples(
                st.just(kind),
                st.dictionaries(st.sampled_from(FIELDS[kind]), value, max_size=len(FIELDS[kind])),
            )
        ),
        st.tuples(st.sampled_from(sorted(FIELDS)), st.integers(150, 3000).map(deep)),
        st.tuples(st.just("history"), value),  # a row with one JSON (j) column
        st.tuples(st.just("history-s"), text),  # a row with one string (s) column
    )

    def emit(w: LogWriter, kind: str, data: object) -> None:
        w.seq += 1
        if kind in ("history", "history-s"):
            code = "j" if kind == "history" else "s"
            schema = 1000 + w.seq
            w.frames.append(
                R.frame(
                    KIND["schema"], R.json_payload(w.seq, {"id": schema, "columns": [["v", code]]})
                )
            )
            w.seq += 1
            raw = (json.dumps(data) if code == "j" else str(data)).encode("utf-8", "surrogatepass")
            body = R.SEQ.pack(w.seq) + R.uvarint(schema) + R.svarint(w.seq - 10**6)
            body += R.fixed_struct(code).pack(0) + R.uvarint(len(raw)) + raw
            w.frames.append(R.frame(KIND["history"], body))
        elif isinstance(data, str):  # JSON text written by hand (nesting json.dumps refuses)
            w.frames.append(R.frame(KIND[kind], R.SEQ.pack(w.seq) + data.encode()))
        else:
            w.frames.append(R.frame(KIND[kind], R.json_payload(w.seq, data)))

    failures: list[tuple[str, int, str]] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(hostile=st.lists(record, min_size=1, max_size=5))
    def check(hostile: list[tuple[str, object]]) -> None:
        run_id = f"r{next(ids)}"
        w = LogWriter()
        w.run(run_id, "fuzz")
        for kind, data in hostile:
            emit(w, kind, data)
        w.record("config", {"good": 1})
        w.history(10**6 + 1, {"good_loss": 0.5})
        r = client.post(f"{runs}/{run_id}/records", content=w.body())
        if r.status_code != 200 or r.json()["held"] != w.seq:
            failures.append(("ingest", r.status_code, r.text[:300]))
            return
        run_page, export = f"/local/fuzz/runs/{run_id}", f"{runs}/{run_id}/history/export"
        compare = f"/local/fuzz/compare?run={run_id}"
        pages = (f"{runs}/{run_id}", runs, run_page, "/local/fuzz", compare, export)
        for path in pages:
            page = client.get(path)
            if page.status_code != 200:
                failures.append((path, page.status_code, page.text[:300]))
        stored = client.get(f"{runs}/{run_id}").json()
        if stored.get("config", {}).get("good") != 1 or "good_loss" not in stored["history_keys"]:
            failures.append(("lost", 200, json.dumps(stored)[:300]))

    check()
    assert failures == []
