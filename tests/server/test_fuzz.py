"""Schema-driven fuzzing: schemathesis generates requests for every operation of the app's own
OpenAPI schema and sends them in-process (ASGI); no answer may be a server error (500)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulmen.server.app import API_PREFIX, ServerConfig, create_app
from tests.server.optional import require


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
