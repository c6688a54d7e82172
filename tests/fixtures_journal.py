"""The journal store the tests run on: one switch, as DBOS runs its suite on SQLite and
Postgres (``DBOS_DATABASE``).

    ATOMICOPS_TEST_STORE=postgresql pytest -m both_stores     # the journal-bound tests on PostgreSQL

Without the switch every test runs on SQLite files, as before. A test marked ``both_stores``
is one whose subject is the journal (its contract, the lock and hand-off tests, and the whole
engine, crash and lock modules, marked with ``pytestmark``): with the switch it gets a fresh PostgreSQL database of the session's
server as its journal, through ``journal_state`` when it names its state, and through
``ATOMICOPS_STATE`` (inherited by the CLI processes it starts) when it relies on the default.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from atomicops.journal.store import LockHolder

STORE = os.environ.get("ATOMICOPS_TEST_STORE", "sqlite").strip().lower() or "sqlite"
if STORE not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"ATOMICOPS_TEST_STORE={STORE!r}: say sqlite or postgresql")
ON_POSTGRES = STORE == "postgresql"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_stores: a journal-bound test CI runs again with ATOMICOPS_TEST_STORE=postgresql",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"atomicops journal store under test: {STORE} (ATOMICOPS_TEST_STORE)"


@pytest.fixture
def journal_state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ``--state`` of this test's journal: a SQLite file in its tmp_path or, with the
    switch, the URL of a fresh database (not ``pg_database``: a plan under test may use that
    one, and the journal is not part of what it changes)."""
    if ON_POSTGRES:
        return str(request.getfixturevalue("journal_database"))
    return str(tmp_path / ".atomicops" / "journal.db")


@pytest.fixture
def journal_database(postgres_url: str) -> Iterator[str]:
    """A fresh database of the session's server for one test's journal; dropped afterwards."""
    from fixtures_postgres import fresh_database

    with fresh_database(postgres_url, "journal") as url:
        yield url


@pytest.fixture(autouse=True)
def _default_state_on_the_switched_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the switch, a ``both_stores`` test's default journal is a fresh database: the CLI
    processes it starts read ``ATOMICOPS_STATE`` as their ``--state``."""
    if ON_POSTGRES and request.node.get_closest_marker("both_stores") is not None:
        monkeypatch.setenv("ATOMICOPS_STATE", request.getfixturevalue("journal_state"))


def holder(pid: int | None = None, *, host: str | None = None, lease: float = 0.0,
           run_id: str | None = None) -> LockHolder:
    """A lock holder of this process (or of ``pid``, on ``host``) for the journal tests."""
    return LockHolder(
        lock_id=uuid.uuid4().hex,
        run_id=run_id or f"run-{uuid.uuid4().hex[:8]}",
        pid=os.getpid() if pid is None else pid,
        host=socket.gethostname() if host is None else host,
        started=time.time(),
        command="atomicops apply plan.yaml",
        lease=lease,
    )
