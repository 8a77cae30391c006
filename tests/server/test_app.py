"""The server's web stack: the ASGI app through an in-process client."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import fulmen
from fulmen.server import API_PREFIX, create_app
from fulmen.server.app import ServerConfig


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    # its own data folder: the default is the user's (~/.local/share/fulmen/server)
    data = tmp_path / "data"
    return TestClient(create_app(ServerConfig(data=data, db=f"sqlite:///{data}/fulmen.db")))


def test_health_answers_ok_with_the_version(client: TestClient) -> None:
    response = client.get(f"{API_PREFIX}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": fulmen.__version__}


def test_openapi_schema_describes_every_route(client: TestClient) -> None:
    schema = client.get(f"{API_PREFIX}/openapi.json").json()
    assert schema["info"] == {"title": "fulmen", "version": fulmen.__version__}
    assert f"{API_PREFIX}/health" in schema["paths"]


def test_no_docs_page_loads_swagger_from_a_cdn(client: TestClient) -> None:
    # FastAPI's docs page loads Swagger UI from a CDN: the server serves only the schema (issue 18)
    assert client.get(f"{API_PREFIX}/docs").status_code == 404
    assert client.get(f"{API_PREFIX}/openapi.json").status_code == 200


def test_unknown_route_is_a_404_not_a_500(client: TestClient) -> None:
    assert client.get(f"{API_PREFIX}/nope").status_code == 404
