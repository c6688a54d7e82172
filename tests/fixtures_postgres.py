"""PostgreSQL fixtures: one real server per test session (pgserver's binaries), one database per test.

Import them where needed (``from tests.fixtures_postgres import postgres_url, pg_database``)
or list this module in ``conftest.py``'s ``pytest_plugins``.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from atomicops.sandbox import postgres


def server_dir() -> Path:
    """A directory for a test server's data, outside pytest's own temporary directories.

    Run as root, the server runs as the ``pgserver`` user, which must be able to pass
    through every parent of its data directory for as long as it runs (it opens
    ``global/pg_control`` by absolute path at each checkpoint). pytest resets
    ``/tmp/pytest-of-root`` to mode 0700 whenever a session starts, a concurrent one
    included, and the server then PANICs at its next CREATE/DROP DATABASE. mkdtemp's
    directory is ours alone; the fixture removes it.
    """
    return Path(tempfile.mkdtemp(prefix="atomicops-test-postgres-"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.ServiceInfo]:
    """A PostgreSQL server for the whole session, stopped (and its data removed) at the end."""
    base = server_dir()
    info = postgres.start(base / "data")
    try:
        yield info
    finally:
        postgres.stop(info, remove_data=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: postgres.ServiceInfo) -> str:
    """``postgresql://postgres@127.0.0.1:PORT/postgres`` of the session's server."""
    return postgres_server.url


def database_url(url: str, database: str) -> str:
    """``url`` pointing at another database of the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextmanager
def fresh_database(postgres_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database of the session's server, dropped on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(postgres_url, name)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            # FORCE: a connection the test left open must not keep the database alive.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    """The URL of a fresh, empty database for one test; dropped afterwards."""
    with fresh_database(postgres_url, "test") as url:
        yield url
