"""PostgreSQL inventory (snapshot + diff) and the sandbox server's start/stop, on real servers."""

from __future__ import annotations

import json
import shutil
import socket
import time
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest
from fixtures_postgres import database_url, server_dir

from atomicops.errors import ActionError
from atomicops.inventory import postgres as inventory
from atomicops.sandbox import postgres as sandbox


def execute(url: str, text: str, *, autocommit: bool = False) -> None:
    with psycopg.connect(url, autocommit=autocommit) as conn:
        conn.execute(text)


def db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")  # the URL may go on: ?passfile=... (the sandbox's)


SCHEMA = """
CREATE SCHEMA core;
CREATE TABLE core.agents (id serial PRIMARY KEY, name text NOT NULL, meta jsonb DEFAULT '{}');
CREATE INDEX idx_agents_name ON core.agents (name);
CREATE FUNCTION core.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NEW; END $$;
CREATE TRIGGER agents_touch BEFORE UPDATE ON core.agents FOR EACH ROW EXECUTE FUNCTION core.touch();
CREATE VIEW core.agent_names AS SELECT name FROM core.agents;
INSERT INTO core.agents (name) VALUES ('a'), ('b'), ('c');
"""


def test_a_snapshot_lists_what_a_runbook_makes(pg_database: str) -> None:
    execute(pg_database, SCHEMA)
    db = db_name(pg_database)

    snap = inventory.snapshot(pg_database)

    json.dumps(snap)  # JSON-safe, so rehearse can store and print it
    ids = {kind: {e["id"] for e in entries} for kind, entries in snap.items()}
    assert db in ids["databases"]
    assert f"{db}/core" in ids["schemas"]
    assert f"{db}/core.agent_names" in ids["views"]
    assert f"{db}/core.agents_id_seq" in ids["sequences"]
    assert {f"{db}/core.agents_pkey", f"{db}/core.idx_agents_name"} <= ids["indexes"]
    assert f"{db}/core.touch()" in ids["functions"]
    assert f"{db}/core.agents.agents_touch" in ids["triggers"]
    table = next(e for e in snap["tables"] if e["id"] == f"{db}/core.agents")
    assert table["rows"] == 3
    assert table["columns"] == ["id integer", "name text", "meta jsonb"]
    for kind, entries in snap.items():  # comparable: sorted by id
        assert [e["id"] for e in entries] == sorted(e["id"] for e in entries), kind
    assert not any(e["id"].split("/")[1].startswith(("pg_", "information_schema"))
                   for e in snap["schemas"])  # fmt: skip


def test_a_round_trip_leaves_no_difference(pg_database: str, postgres_url: str) -> None:
    execute(pg_database, "CREATE TABLE keep (n int); INSERT INTO keep VALUES (1), (2)")
    before = inventory.snapshot(postgres_url)

    execute(postgres_url, "CREATE DATABASE round_trip", autocommit=True)
    try:
        execute(database_url(postgres_url, "round_trip"), SCHEMA)
        execute(pg_database, SCHEMA)
        assert inventory.diff(before, inventory.snapshot(postgres_url)) != {}
    finally:
        execute(postgres_url, "DROP DATABASE round_trip WITH (FORCE)", autocommit=True)
    execute(pg_database, "DROP SCHEMA core CASCADE")

    assert inventory.diff(before, inventory.snapshot(postgres_url)) == {}


def test_planted_leftovers_show_in_the_diff(pg_database: str, postgres_url: str) -> None:
    execute(pg_database, SCHEMA)
    db = db_name(pg_database)
    before = inventory.snapshot(postgres_url)

    execute(pg_database, "INSERT INTO core.agents (name) VALUES ('orphan')")
    execute(pg_database, "CREATE TABLE core.leftover (n int)")
    execute(postgres_url, "CREATE DATABASE leftover_db", autocommit=True)
    try:
        changes = inventory.diff(before, inventory.snapshot(postgres_url))
    finally:
        execute(postgres_url, "DROP DATABASE leftover_db", autocommit=True)

    assert [e["id"] for e in changes["databases"]["added"]] == ["leftover_db"]
    assert [e["id"] for e in changes["tables"]["added"]] == [f"{db}/core.leftover"]
    [row_change] = changes["tables"]["changed"]
    assert row_change["id"] == f"{db}/core.agents"
    assert (row_change["before"]["rows"], row_change["after"]["rows"]) == (3, 4)
    assert "leftover_db/public" in [e["id"] for e in changes["schemas"]["added"]]
    assert "removed" not in changes["tables"]


def test_a_team_journal_on_the_server_is_not_counted_as_a_change(pg_database: str) -> None:
    # --state postgresql:// on the server a plan changes: the journal's schema appears with the
    # first run (and grows with every write); it is not what the run made or must put back.
    from atomicops.journal import open_store

    db = db_name(pg_database)
    before = inventory.snapshot(pg_database)
    from fixtures_journal import holder

    with open_store(pg_database) as store:
        store.acquire_lock("team", holder())
        lock = store.read_lock("team")
        assert lock is not None
        store.append("team", "r1", "run_started", fence=lock.fence)
    assert inventory.diff(before, inventory.snapshot(pg_database)) == {}
    # A schema of that name with no journal in it is the user's, and is inventoried.
    execute(pg_database, "DROP SCHEMA atomicops CASCADE; CREATE SCHEMA atomicops; CREATE TABLE atomicops.mine (n int)")
    added = inventory.diff(before, inventory.snapshot(pg_database))
    assert [e["id"] for e in added["tables"]["added"]] == [f"{db}/atomicops.mine"]


def test_a_changed_row_changes_the_checksum(pg_database: str) -> None:
    execute(pg_database, SCHEMA)
    before = inventory.snapshot(pg_database)
    assert inventory.diff(before, inventory.snapshot(pg_database)) == {}  # stable

    execute(pg_database, "UPDATE core.agents SET name = 'B' WHERE name = 'b'")
    changes = inventory.diff(before, inventory.snapshot(pg_database))

    [change] = changes["tables"]["changed"]
    assert change["before"]["rows"] == change["after"]["rows"] == 3
    assert change["before"]["checksum"] != change["after"]["checksum"]
    assert set(changes) == {"tables"}


def test_checksums_can_be_skipped(pg_database: str) -> None:
    execute(pg_database, SCHEMA)
    snap = inventory.snapshot(pg_database, checksums=False)
    table = next(e for e in snap["tables"] if e["id"].endswith("/core.agents"))
    assert "checksum" not in table and "rows" not in table


def test_diff_reports_removed_and_changed_entries() -> None:
    before: inventory.Inventory = {
        "tables": [{"id": "d/a", "rows": 1}, {"id": "d/b", "rows": 1}],
        "roles": [],
    }
    after: inventory.Inventory = {"tables": [{"id": "d/b", "rows": 2}], "roles": [{"id": "app"}]}
    assert inventory.diff(before, after) == {
        "roles": {"added": [{"id": "app"}]},
        "tables": {
            "removed": [{"id": "d/a", "rows": 1}],
            "changed": [{"id": "d/b", "before": {"id": "d/b", "rows": 1},
                         "after": {"id": "d/b", "rows": 2}}],
        },
    }  # fmt: skip


def test_an_unreachable_server_raises_without_the_password() -> None:
    port = sandbox.free_port()
    with pytest.raises(ActionError) as failed:
        inventory.snapshot(f"postgresql://u:Sup3rS3cretPassw0rd@127.0.0.1:{port}/postgres")
    assert failed.value.code == "ConnectionError"
    assert f"127.0.0.1:{port}" in str(failed.value)
    assert "Sup3rS3cretPassw0rd" not in str(failed.value)


# --------------------------------------------------------------------------- the sandbox server


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((sandbox.HOST, port)) == 0


def test_sandbox_start_and_stop_leave_no_process_and_no_port() -> None:
    base = server_dir()
    try:
        started = time.monotonic()
        info = sandbox.start(base / "data")
        startup = time.monotonic() - started
        port = int(info.url.rsplit(":", 1)[1].split("/")[0])

        assert info.name == "postgres" and info.url.startswith("postgresql://")
        assert startup < 20, f"start took {startup:.1f} s"
        assert _port_open(port)
        execute(info.url, "CREATE TABLE t (n int)")
        assert sandbox.start(base / "data").pid == info.pid  # already running: the same one
        # A backend connected while we stop: it must go too.
        lingering = psycopg.connect(info.url)
        lingering.execute("SELECT 1")
        family = [psutil.Process(info.pid), *psutil.Process(info.pid).children(recursive=True)]
        assert len(family) > 3  # postmaster, checkpointer, ..., our backend

        sandbox.stop(info, remove_data=True)

        for proc in family:
            assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, proc
        assert not sandbox.is_running(info)
        assert not _port_open(port)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(info.url, connect_timeout=2)
        assert not (base / "data").exists()
        lingering.close()
        sandbox.stop(info)  # stopping twice is harmless
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_wait_ready_times_out_on_a_closed_port() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sandbox.wait_ready(f"postgresql://postgres@127.0.0.1:{sandbox.free_port()}/postgres", 0.3)
    assert time.monotonic() - started < 5
