"""A throwaway PostgreSQL cluster owned by the tests: ``initdb`` in a temporary folder, a free port,
its unix socket in that folder, trust authentication, stopped and deleted at the end.

PostgreSQL refuses to run as root, and CI runs the tests as root: there the cluster's folder is
given to an unprivileged user (``postgres`` when Debian's package made it, else ``nobody``) and
``initdb``, ``pg_ctl`` and the server run as that user (``runuser``). The binaries are found on
``PATH`` or in Debian's ``/usr/lib/postgresql/<version>/bin``. Where they are missing the tests
that need them skip, except in CI (``CI=true``), where they fail: scripts/test installs
PostgreSQL from Debian's packages.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.server.optional import in_ci, require

SUPERUSER = "fulmen"


def binaries() -> Path | None:
    """The folder of ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(versions[-1]).parent if versions else None


def require_postgres() -> Path:
    """The binaries' folder, or a skip (locally) / a failure (CI) saying how to get them."""
    folder = binaries()
    if folder is None:
        message = "PostgreSQL is not installed (no initdb/pg_ctl); apt-get install postgresql"
        if in_ci():
            pytest.fail(f"the PostgreSQL tests must run in CI: {message}")
        pytest.skip(message)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """The user to run PostgreSQL as when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


class Cluster:
    """One PostgreSQL server on a temporary folder (see the module docstring)."""

    def __init__(self, bin_dir: Path, root: Path | None = None) -> None:
        """A new cluster in a temporary folder, or in ``root`` (kept: started again when it holds
        one already, as the benchmarks keep their databases)."""
        self.bin = bin_dir
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="fulmen-pg-")) if root is None else root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count()
        self.template: str | None = None  # a database at the schema (conftest's)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        if (self.data / "PG_VERSION").exists():
            self.start()
            return
        self._pg("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                 "--locale=C", "--no-sync")  # fmt: skip
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.root}'",
            "port": str(self.port),
            "max_connections": "300",
            "fsync": "off",  # a test cluster: speed over durability across a machine crash
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self.start()

    def _pg(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-o", f"-p {self.port}", "-l",
                 str(self.root / "log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}&port={self.port}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(sql)  # type: ignore[arg-type]

    def create_database(self, template: str | None = None) -> str:
        """A new empty database (from ``template``, a database of this cluster); its URL."""
        name = f"t{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def empty(self, url: str) -> None:
        """Empty every table of the database at ``url`` but ``schema_version`` (identities
        restarted): a database at the schema as new, for a fraction of a copy's cost."""
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            tables = [
                row[0]
                for row in con.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'schema_version'"
                )
            ]
            if tables:
                names = ", ".join(f'"{t}"' for t in tables)
                con.execute(f"TRUNCATE {names} RESTART IDENTITY")  # type: ignore[arg-type]

    @staticmethod
    def name_of(url: str) -> str:
        """The database a URL of this cluster names."""
        return urlsplit(url).path.lstrip("/")

    def drop_database(self, url: str) -> None:
        name = self.name_of(url)
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A cluster for the block (skipped or failed where PostgreSQL is missing)."""
    folder = require_postgres()
    require("psycopg")
    made = Cluster(folder)
    try:
        yield made
    finally:
        made.destroy()
