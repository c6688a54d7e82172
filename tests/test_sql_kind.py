"""The ``sql`` and ``sql_file`` action kinds against a real PostgreSQL (pgserver's binaries)."""

from __future__ import annotations

import fnmatch
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jmespath
import psycopg
import psycopg.sql
import pytest
from fixtures_postgres import database_url

import atomicops.actions.sql as sql_kind  # registers the sql and sql_file kinds
from atomicops.actions import registry
from atomicops.actions.base import ActionContext, Connections
from atomicops.errors import ActionError
from atomicops.plan.model import DEFAULT_UNDO_OK_ERRORS
from atomicops.sandbox.postgres import free_port

Run = Callable[..., Any]


def _context(dsn: str, **options: Any) -> ActionContext:
    return ActionContext(
        Connections({"db": {"kind": "postgres", "dsn": dsn}}), "test", "run-1", **options
    )


@pytest.fixture
def run(pg_database: str) -> Iterator[Run]:
    """``run(action, **ctx_options)``: execute an action as the engine does, on a fresh database.

    One set of connections for the whole test, as one engine run shares them between steps.
    """
    connections = Connections({"db": {"kind": "postgres", "dsn": pg_database}})

    def execute(action: Mapping[str, Any], **options: Any) -> Any:
        ctx = ActionContext(connections, "test", "run-1", **options)
        kind = "sql_file" if "sql_file" in action else "sql"
        return registry.get(kind).execute(action, ctx)

    yield execute
    connections.close()


def query(url: str, text: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Look at the database from outside the code under test."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(text, params).fetchall()


def check(action: Mapping[str, Any]) -> list[str]:
    kind = "sql_file" if "sql_file" in action else "sql"
    return [issue.message for issue in registry.get(kind).check(action)]


# --------------------------------------------------------------------------- execution


def test_captured_ids_give_an_exact_undo(run: Run, pg_database: str) -> None:
    run({"sql": "CREATE TABLE agents (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text)"})
    run({"sql": "INSERT INTO agents (name) VALUES ('was-here-before')"})

    result = run({
        "sql": "INSERT INTO agents (name) SELECT unnest(%(names)s::text[]) RETURNING id, name",
        "params": {"names": ["a", "b", "c"]},
    })  # fmt: skip
    assert result["rowcount"] == 3
    json.dumps(result)  # journalled as JSON: must be JSON-safe as it is
    ids = jmespath.search("rows[].id", result)  # the step's `outputs: {ids: "rows[].id"}`
    assert sorted(r["name"] for r in result["rows"]) == ["a", "b", "c"]

    undo = run({"sql": "DELETE FROM agents WHERE id = ANY(%(ids)s)", "params": {"ids": ids}})

    assert undo == {"rows": [], "rowcount": 3}
    assert query(pg_database, "SELECT name FROM agents") == [("was-here-before",)]


def test_a_failure_midway_leaves_nothing(run: Run, pg_database: str) -> None:
    run({"sql": "CREATE TABLE t (v text)"})

    with pytest.raises(ActionError) as failed:
        run({"sql": "INSERT INTO t VALUES ('first');\nCREATE TABLE t2 (x int);\n"
                    "INSERT INTO missing_table VALUES (1);"})  # fmt: skip

    assert failed.value.code == "42P01"
    assert "line 3: INSERT INTO missing_table" in failed.value.message
    assert query(pg_database, "SELECT count(*) FROM t") == [(0,)]
    assert query(pg_database, "SELECT to_regclass('t2') IS NULL") == [(True,)]
    # The pooled connection came back clean: the next action works.
    assert run({"sql": "SELECT count(*) AS n FROM t"})["rows"] == [{"n": 0}]


SCHEMA = """
-- The seed's schema: several statements, a plpgsql function with a $$ body, triggers.
CREATE SCHEMA IF NOT EXISTS core;

CREATE TABLE core.agents (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    status VARCHAR(50) DEFAULT 'inactive',   -- a ';' in a comment; and in a string: ';'
    metadata JSONB DEFAULT '{}',
    updated_at TIMESTAMPTZ DEFAULT '2000-01-01'
);
CREATE INDEX idx_agents_status ON core.agents(status);

CREATE OR REPLACE FUNCTION update_updated_at()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER update_agents_updated_at
    BEFORE UPDATE ON core.agents
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at();
"""


def test_a_schema_with_a_function_and_a_trigger(run: Run, pg_database: str) -> None:
    assert check({"sql": SCHEMA}) == []
    run({"sql": SCHEMA})

    run({"sql": "INSERT INTO core.agents (name, metadata) VALUES (%(name)s, %(meta)s)",
         "params": {"name": "a1", "meta": {"zone": "eu", "tags": ["x"]}}})  # fmt: skip
    run({"sql": "UPDATE core.agents SET status = 'active'"})

    rows = run({"sql": "SELECT status, metadata, updated_at > '2001-01-01' AS touched "
                       "FROM core.agents"})["rows"]  # fmt: skip
    assert rows == [
        {"status": "active", "metadata": {"zone": "eu", "tags": ["x"]}, "touched": True}
    ]


@pytest.mark.parametrize(
    "value",
    [
        'O\'Brien said "hi" %(x)s and 100% %s $1 $$',
        "'); DROP TABLE victims; --",
        "x'; DROP TABLE victims; SELECT '",
    ],
)
def test_params_are_bound_never_formatted(run: Run, pg_database: str, value: str) -> None:
    run({"sql": "CREATE TABLE victims (v text)"})

    run({"sql": "INSERT INTO victims (v) VALUES (%(v)s)", "params": {"v": value}})

    assert query(pg_database, "SELECT v FROM victims") == [(value,)]


def test_a_literal_percent(run: Run) -> None:
    with_params = run({"sql": "SELECT 'a%%' || %(v)s AS s", "params": {"v": "b"}})
    without = run({"sql": "SELECT 'a%' AS s"})

    assert with_params["rows"] == [{"s": "a%b"}]
    assert without["rows"] == [{"s": "a%"}]


def test_results_come_from_the_last_statement_with_rows(run: Run) -> None:
    result = run({"sql": "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2);"
                         "SELECT n FROM t ORDER BY n; UPDATE t SET n = n + 1"})  # fmt: skip
    assert result == {"rows": [{"n": 1}, {"n": 2}], "rowcount": 2}

    assert run({"sql": "UPDATE t SET n = 0"}) == {"rows": [], "rowcount": 2}


def test_values_are_json_safe(run: Run) -> None:
    row = run({"sql": """
        SELECT '6f1c7f0e-1b2a-4c3d-9e8f-0a1b2c3d4e5f'::uuid AS id, 2.50::numeric AS price,
               7::numeric AS whole, '2024-05-06 07:08:09+00'::timestamptz AS at,
               '2024-05-06'::date AS day, '\\x0102ff'::bytea AS blob,
               '{"a": [1, {"b": null}]}'::jsonb AS doc, '{1,2,3}'::int[] AS nums,
               '1 hour 30 seconds'::interval AS span, '10.0.0.1'::inet AS ip,
               'NaN'::numeric AS nan
    """})["rows"][0]  # fmt: skip

    assert row == {
        "id": "6f1c7f0e-1b2a-4c3d-9e8f-0a1b2c3d4e5f",
        "price": 2.5,
        "whole": 7,
        "at": "2024-05-06T07:08:09+00:00",
        "day": "2024-05-06",
        "blob": "AQL/",
        "doc": {"a": [1, {"b": None}]},
        "nums": [1, 2, 3],
        "span": 3630.0,
        "ip": "10.0.0.1",
        "nan": "NaN",
    }
    json.dumps(row, allow_nan=False)


def test_create_and_drop_database_run_with_autocommit(run: Run, postgres_url: str) -> None:
    name = "atomicops_created"
    try:
        run({"sql": f"CREATE DATABASE {name}"})
        run({"sql": "CREATE SCHEMA core; CREATE TABLE core.t (n int)", "database": name})
        assert query(database_url(postgres_url, name), "SELECT count(*) FROM core.t") == [(0,)]

        # The action above left an idle pooled connection to the database; DROP DATABASE
        # must not be refused because of our own session.
        run({"sql": f"-- undo\nDROP DATABASE IF EXISTS {name}"})
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert query(postgres_url, "SELECT count(*) FROM pg_database WHERE datname = %s", [name]) == [
        (0,)
    ]


def test_one_transaction_per_action_even_in_parallel(pg_database: str) -> None:
    ctx = _context(pg_database)  # one shared handle, as the engine's worker threads share it
    kind = registry.get("sql")
    results: list[Any] = []
    action = {"sql": "SELECT pg_backend_pid() AS pid, txid_current() AS tx, pg_sleep(0.3)"}
    threads = [
        threading.Thread(target=lambda: results.append(kind.execute(action, ctx))) for _ in range(4)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        ctx.connections.close()

    assert len(results) == 4
    assert len({r["rows"][0]["pid"] for r in results}) == 4  # a session each
    assert len({r["rows"][0]["tx"] for r in results}) == 4  # a transaction each


def test_sql_file_is_read_from_the_plan_directory(run: Run, tmp_path: Path) -> None:
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "schema.sql").write_text(SCHEMA)

    run({"sql_file": "sql/schema.sql"}, base_dir=str(tmp_path))
    assert run({"sql": "SELECT count(*) AS n FROM core.agents"})["rows"] == [{"n": 0}]

    with pytest.raises(ActionError) as missing:
        run({"sql_file": "sql/undo.sql"}, base_dir=str(tmp_path))
    assert missing.value.code == "InvalidAction"
    # A missing undo file must never pass for "already undone".
    assert not any(fnmatch.fnmatchcase("InvalidAction", p) for p in DEFAULT_UNDO_OK_ERRORS)


def test_the_step_timeout_is_enforced_by_the_server(run: Run) -> None:
    started = time.monotonic()
    with pytest.raises(ActionError) as slow:
        run({"sql": "SELECT pg_sleep(5)"}, timeout=0.2)
    assert slow.value.code == "57014"  # query_canceled
    assert time.monotonic() - started < 3


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("sql", "code", "transient"),
    [
        ("CREATE TABLE dup (n int); CREATE TABLE dup (n int)", "42P07", False),
        ("DROP TABLE missing", "42P01", False),
        ("DROP SCHEMA missing", "3F000", False),
        ("DROP TYPE missing", "42704", False),
        ("DROP FUNCTION missing()", "42883", False),
        ("SELECT 1/0", "22012", False),
        ("DO $$ BEGIN RAISE EXCEPTION 'retry me' USING ERRCODE = '40001'; END $$", "40001", True),
        ("DO $$ BEGIN RAISE EXCEPTION 'retry me' USING ERRCODE = '40P01'; END $$", "40P01", True),
    ],
)
def test_error_codes(run: Run, sql: str, code: str, transient: bool) -> None:
    with pytest.raises(ActionError) as failed:
        run({"sql": sql})
    assert (failed.value.kind, failed.value.code, failed.value.transient) == (
        "sql",
        code,
        transient,
    )
    assert failed.value.message  # diag's primary message, not empty
    if code in ("42P01", "3F000", "42704", "42883"):
        assert code in sql_kind.NOT_FOUND_CODES


def test_a_database_that_does_not_exist_is_3D000(run: Run) -> None:
    with pytest.raises(ActionError) as failed:
        run({"sql": "DROP TABLE IF EXISTS t", "database": "no_such_db"})
    assert failed.value.code == "3D000"
    assert failed.value.code in sql_kind.NOT_FOUND_CODES
    assert not failed.value.transient


def test_a_closed_port_is_transient_and_the_password_never_shows() -> None:
    port = free_port()
    password = "Sup3rS3cretPassw0rd"
    ctx = _context(f"postgresql://admin:{password}@127.0.0.1:{port}/app")
    try:
        with pytest.raises(ActionError) as failed:
            registry.get("sql").execute({"sql": "SELECT 1"}, ctx)
    finally:
        ctx.connections.close()

    error = failed.value
    assert (error.code, error.transient) == ("ConnectionError", True)
    assert f"127.0.0.1:{port}" in error.message
    assert password not in str(error) and password not in repr(error)
    # psycopg's own exception (whose connection object holds the password) is not chained.
    assert error.__cause__ is None and error.__suppress_context__


def test_a_malformed_dsn_is_refused_without_echoing_it() -> None:
    password = "Sup3rS3cretPassw0rd"
    ctx = _context(f"postgresql://admin:{password}@127.0.0.1:notaport/app?bad")
    with pytest.raises(ActionError) as failed:
        registry.get("sql").execute({"sql": "SELECT 1"}, ctx)
    assert failed.value.code == "InvalidConnection"
    assert password not in str(failed.value)


def test_parameter_values_stay_out_of_messages(run: Run) -> None:
    run({"sql": "CREATE TABLE u (name text UNIQUE)"})
    secret = "value-that-must-not-leak"
    run({"sql": "INSERT INTO u VALUES (%(n)s)", "params": {"n": secret}})

    with pytest.raises(ActionError) as failed:
        run({"sql": "INSERT INTO u VALUES (%(n)s)", "params": {"n": secret}})

    assert failed.value.code == "23505"
    assert secret not in str(failed.value)
    # Without params the detail is the plan's own text, and it helps: it is kept.
    with pytest.raises(ActionError) as literal:
        run({"sql": f"INSERT INTO u VALUES ('{secret}')"})
    assert "already exists" in literal.value.message


def test_a_bad_parameter_value_is_not_quoted_back(run: Run) -> None:
    run({"sql": "CREATE TABLE ids (id uuid)"})
    secret = "not-a-uuid-but-a-secret"

    with pytest.raises(ActionError) as failed:
        run({"sql": "INSERT INTO ids VALUES (%(id)s::uuid)", "params": {"id": secret}})

    assert failed.value.code == "22P02"  # invalid_text_representation
    assert "invalid input syntax for type uuid" in failed.value.message
    assert secret not in str(failed.value)


def test_the_connections_statement_timeout(pg_database: str) -> None:
    spec = {"kind": "postgres", "dsn": pg_database, "statement_timeout": 100}
    ctx = ActionContext(Connections({"db": spec}), "test", "run-1")
    try:
        with pytest.raises(ActionError) as slow:
            registry.get("sql").execute({"sql": "SELECT pg_sleep(3)"}, ctx)
    finally:
        ctx.connections.close()
    assert slow.value.code == "57014"


def test_a_pooled_session_killed_by_the_server_is_replaced(run: Run, pg_database: str) -> None:
    pid = run({"sql": "SELECT pg_backend_pid() AS pid"})["rows"][0]["pid"]
    query(pg_database, "SELECT pg_terminate_backend(%s)", [pid])  # e.g. a server restart

    after = run({"sql": "SELECT pg_backend_pid() AS pid"})["rows"][0]["pid"]

    assert after != pid


def test_params_with_several_statements_are_refused_by_the_server(run: Run) -> None:
    with pytest.raises(ActionError) as failed:
        run({"sql": "SELECT %(a)s; SELECT 2", "params": {"a": 1}})
    assert failed.value.code == "42601"
    assert "one statement" in failed.value.message


def test_statements_that_need_autocommit_must_be_alone(run: Run) -> None:
    with pytest.raises(ActionError) as failed:
        run({"sql": "CREATE DATABASE a1; CREATE DATABASE a2"})
    assert failed.value.code == "InvalidAction"


def test_transaction_control_in_the_text_is_refused(run: Run, pg_database: str) -> None:
    with pytest.raises(ActionError) as failed:
        run({"sql": "CREATE TABLE t (n int); COMMIT; CREATE TABLE t2 (n int)"})
    assert failed.value.code == "InvalidAction"
    assert query(pg_database, "SELECT to_regclass('t') IS NULL") == [(True,)]


# --------------------------------------------------------------------------- check()


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ({"sql": ""}, "non-empty string"),
        ({"sql": 42}, "non-empty string"),
        ({"sql": "-- only a comment"}, "no SQL statement"),
        ({"sql_file": 3}, "path to a .sql file"),
        ({"sql": "SELECT 1", "params": [1]}, "params must be a mapping"),
        ({"sql": "SELECT %(a)s"}, "has no params"),
        ({"sql": "SELECT %(a)s, %(b)s", "params": {"a": 1}}, "params has no 'b'"),
        ({"sql": "SELECT %(nmae)s", "params": {"name": 1}}, "did you mean 'name'"),
        ({"sql": "SELECT 'x%' || %(a)s", "params": {"a": 1}}, "must be written %%"),
        ({"sql": "SELECT %s", "params": {"a": 1}}, "positional placeholder"),
        ({"sql": "SELECT %(a)d", "params": {"a": 1}}, "write %(a)s"),
        ({"sql": "SELECT 1; SELECT %(a)s", "params": {"a": 1}}, "params bind to exactly one"),
        ({"sql": "CREATE DATABASE a; CREATE TABLE b ()"}, "only statement of its action"),
        ({"sql": "BEGIN; SELECT 1; COMMIT"}, "one transaction"),
        ({"sql": "SELECT 1", "database": ""}, "name of a database"),
        ({"sql": "SELECT 1", "connection": 5}, "name of a plan connection"),
        ({"sql": "SELECT * FROM t WHERE name = '${vars.name}'"}, "SQL injection"),
        ({"sql": "${vars.query}"}, "SQL injection"),
        ({"sql": "SELECT %(a)s FROM ${ops.db.table}", "params": {"a": 1}}, "SQL injection"),
        ({"sql": "SELECT * FROM {tabel}", "ident": {"table": "t"}}, "ident has no 'tabel'"),
        ({"sql": "SELECT * FROM t", "ident": {"table": "t"}}, "not used"),
        ({"sql": "SELECT * FROM {t}", "ident": {"t": "${secrets.pw}"}}, "a secret cannot be an identifier"),
        ({"sql": "SELECT * FROM {t}", "ident": {"t": 3}}, "non-empty string"),
        ({"sql": "SELECT '}' FROM {t}", "ident": {"t": "x"}}, "literal brace"),
    ],
)
def test_check_reports(action: dict[str, Any], expected: str) -> None:
    messages = check(action)
    assert any(expected in m for m in messages), messages


@pytest.mark.parametrize(
    "action",
    [
        {"sql": SCHEMA},
        {"sql": "SELECT 'a%'"},  # no params: the text is sent as written
        {"sql": "SELECT %(a)s", "params": "${vars.params}"},  # known only at run time
        {"sql": "SELECT %(a)s", "params": {"a": "${ops.x.y}"}},
        {"sql": "SELECT %(a)s::uuid, %(a)s", "params": {"a": 1}, "database": "${vars.db}"},
        {"sql": "CREATE DATABASE mistersmith"},
        {"sql": "SELECT '{{}}' FROM {t} WHERE a = %(a)s", "ident": {"t": ["s", "${vars.t}"]}, "params": {"a": 1}},
        {"sql": "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END"},
        {"sql_file": "sql/schema.sql", "params": {}},
    ],
)
def test_check_accepts(action: dict[str, Any]) -> None:
    assert check(action) == []


def test_check_connection() -> None:
    kind = registry.get("sql")
    ok = {"kind": "postgres", "dsn": "postgresql://u:p@h:5432/d", "statement_timeout": 5000}
    assert list(kind.check_connection(ok)) == []  # type: ignore[attr-defined]
    bad = {"kind": "postgres", "dns": "x", "connect_timeout": -1}
    messages = [i.message for i in kind.check_connection(bad)]  # type: ignore[attr-defined]
    assert any("did you mean 'dsn'" in m for m in messages)
    assert any("needs dsn" in m for m in messages)
    assert any("connect_timeout must be a positive" in m for m in messages)


def test_ident_quotes_a_name_that_would_be_injection_as_text(run: Run, pg_database: str) -> None:
    hostile = 'x" (n int); CREATE TABLE planted (n int); --'
    run({"sql": "CREATE TABLE {t} (id int)", "ident": {"t": hostile}})
    run({"sql": "INSERT INTO {t} (id) VALUES (%(id)s)", "ident": {"t": hostile}, "params": {"id": 7}})
    assert query(pg_database, "SELECT to_regclass('planted') IS NULL") == [(True,)]
    assert query(pg_database, psycopg.sql.SQL("SELECT id FROM {}").format(psycopg.sql.Identifier(hostile))) == [(7,)]
    run({"sql": "DROP TABLE {t}", "ident": {"t": ["public", hostile]}})
    assert query(pg_database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
