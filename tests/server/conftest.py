"""Fixtures of the server's tests: the store on each engine, the S3-compatible object store
(moto's server, one process for the session) and the blob stores the file, artifact and media
tests are parametrized over.

``database`` is parametrized over the engines: a SQLite file in the test's folder, or a database
on the session's throwaway PostgreSQL cluster (``tests.server.postgres``), at the schema and with
every table emptied before the test (a new database costs ten times as much; a test that needs
one of its own, say to migrate it, asks ``pg_cluster.create_database()``). ``store`` is the store
on it, closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fulmen.server.store import Store, open_store
from tests.server.optional import require
from tests.server.postgres import Cluster, cluster
from tests.server.s3 import BlobBackend, MotoServer

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    with cluster() as made:
        from fulmen.server._postgres import PostgresStore

        template = made.create_database()
        PostgresStore(template).close()  # migrated once; emptied before each test
        made.template = template
        yield made


@pytest.fixture(params=ENGINES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty store of the engine: ``sqlite:///...`` or ``postgresql://...``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'fulmen.db'}"
        return
    made: Cluster = request.getfixturevalue("pg_cluster")
    assert made.template is not None
    made.empty(made.template)
    yield made.template


@pytest.fixture
def store(database: str, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "data", database)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server on a free loopback port, with the bucket ``s3.BUCKET``; stopped at the
    end of the session."""
    require("boto3")
    require("moto.server")
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def blob_backend(request: pytest.FixtureRequest) -> BlobBackend:
    """Each test that takes it runs twice: blobs in the data folder, and in an S3 bucket."""
    if request.param == "local":
        return BlobBackend("local")
    return BlobBackend("s3", request.getfixturevalue("moto"))
