"""Fixtures the server tests share: the S3-compatible object store (moto's server, one process
for the session) and the blob stores the file, artifact and media tests are parametrized over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.optional import require
from tests.server.s3 import BlobBackend, MotoServer


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
