"""Inventory of a PostgreSQL server: its databases, and in each what a runbook could have made.

```python
from atomicops.inventory import postgres as inventory

before = inventory.snapshot("postgresql://postgres@127.0.0.1:5432/postgres")
...                                                      # apply, then roll back
assert inventory.diff(before, inventory.snapshot(dsn)) == {}
```

A snapshot maps a type (``"tables"``) to its entries sorted by ``id``, like the AWS inventory;
ids of objects inside a database start with the database name (``"mistersmith/core.agents"``).
Every non-template database the server allows connections to is read, each in one read-only
snapshot. System schemas (``pg_catalog``, ``information_schema``, ``pg_toast*``, ``pg_temp*``),
the schema of an atomicops journal kept on the server (``atomicops``, with its
``schema_version`` table) and objects that belong to an extension are left out. A database
that cannot be read shows as an entry of ``"unreadable"`` with its error code, so a partial
picture does not pass for a clean one.

Each table entry carries its row count and a checksum of its contents: ``md5`` over every
row's text, in text order. That is a full scan and a sort of every table, which is what
proving "the rows are as they were" costs: cheap on a sandbox or a fresh schema, slow on a
large production database (pass ``checksums=False`` there and compare row counts only).
Sequences are listed but not their values: ``nextval`` is never rolled back, so a round trip
would always look like a change.

Each type is one row of :data:`PER_DATABASE` (or :data:`PER_SERVER`); covering a new one is
one more query returning an ``id`` column and the fields to compare.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from atomicops.actions.sql import PostgresConnection, connect_error, plain
from atomicops.inventory.compare import diff  # noqa: F401 - one diff for every source
from atomicops.journal.postgres import SCHEMA as JOURNAL_SCHEMA

Entry = dict[str, Any]
Inventory = dict[str, list[Entry]]

# A team's journal may live on the server a plan changes (``--state postgresql://``): its
# schema, told by its version table, is atomicops' own bookkeeping, not something a run made
# or must put back, so it is left out like the system schemas.
_USER_SCHEMA = (
    "{ns}.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND {ns}.nspname NOT LIKE 'pg\\_toast%' AND {ns}.nspname NOT LIKE 'pg\\_temp\\_%'"
    f" AND ({{ns}}.nspname <> '{JOURNAL_SCHEMA}' OR to_regclass('{JOURNAL_SCHEMA}.schema_version') IS NULL)"
)
_NOT_EXTENSION = (
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = {catalog}::regclass"
    " AND d.objid = {oid} AND d.deptype = 'e')"
)


def _user(ns: str = "n") -> str:
    return _USER_SCHEMA.format(ns=ns)


# Cluster-wide types, read once through the DSN's own database.
PER_SERVER: dict[str, str] = {
    "databases": """
        SELECT datname AS id, pg_get_userbyid(datdba) AS owner,
               pg_encoding_to_char(encoding) AS encoding
        FROM pg_database WHERE NOT datistemplate""",
    "roles": """
        SELECT rolname AS id, rolcanlogin AS login, rolsuper AS superuser
        FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'""",
}

# Types read in every database; ``id`` gets the database name as a prefix.
PER_DATABASE: dict[str, str] = {
    "schemas": f"""
        SELECT n.nspname AS id, pg_get_userbyid(n.nspowner) AS owner
        FROM pg_namespace n WHERE {_user()}""",
    "extensions": """
        SELECT extname AS id, extversion AS version FROM pg_extension""",
    "tables": f"""
        SELECT n.nspname || '.' || c.relname AS id, n.nspname AS schema, c.relname AS name,
               (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                 ORDER BY a.attnum)
                FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND {_user()}
          AND {_NOT_EXTENSION.format(catalog="'pg_class'", oid="c.oid")}""",
    "views": f"""
        SELECT n.nspname || '.' || c.relname AS id,
               CASE c.relkind WHEN 'm' THEN 'materialized' ELSE 'view' END AS kind,
               md5(pg_get_viewdef(c.oid)) AS definition_md5
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND {_user()}
          AND {_NOT_EXTENSION.format(catalog="'pg_class'", oid="c.oid")}""",
    "sequences": f"""
        SELECT n.nspname || '.' || c.relname AS id
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'S' AND {_user()}
          AND {_NOT_EXTENSION.format(catalog="'pg_class'", oid="c.oid")}""",
    "indexes": f"""
        SELECT n.nspname || '.' || i.relname AS id, t.relname AS "table",
               pg_get_indexdef(i.oid) AS definition
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE {_user()} AND {_NOT_EXTENSION.format(catalog="'pg_class'", oid="t.oid")}""",
    "functions": f"""
        SELECT n.nspname || '.' || p.proname
                 || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS id,
               pg_get_function_result(p.oid) AS returns, l.lanname AS language,
               md5(coalesce(p.prosrc, '')) AS source_md5
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_language l ON l.oid = p.prolang
        WHERE {_user()} AND {_NOT_EXTENSION.format(catalog="'pg_proc'", oid="p.oid")}""",
    "triggers": f"""
        SELECT n.nspname || '.' || c.relname || '.' || t.tgname AS id,
               pg_get_triggerdef(t.oid) AS definition
        FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND {_user()}""",
}

_CONTENTS = sql.SQL(
    "SELECT count(*) AS rows,"
    " md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS checksum"
    " FROM {} AS t"
)


def _connect(dsn: str, database: str | None = None) -> psycopg.Connection[Any]:
    """A read-only, repeatable-read session: every query of one database sees one snapshot."""
    conninfo = make_conninfo(dsn, dbname=database) if database else dsn
    conn = psycopg.connect(conninfo, row_factory=dict_row, connect_timeout=10)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def _entries(conn: psycopg.Connection[Any], query: str, prefix: str = "") -> list[Entry]:
    rows = conn.execute(query).fetchall()
    return [{**plain(row), "id": prefix + str(row["id"])} for row in rows]


def _database(dsn: str, name: str, checksums: bool) -> dict[str, list[Entry]]:
    found: dict[str, list[Entry]] = {}
    with _connect(dsn, name) as conn:
        for kind, query in PER_DATABASE.items():
            found[kind] = _entries(conn, query, f"{name}/")
        for table in found["tables"]:
            schema, relname = table.pop("schema"), table.pop("name")
            if checksums:
                contents = conn.execute(_CONTENTS.format(sql.Identifier(schema, relname)))
                table.update(contents.fetchone() or {})
        conn.rollback()  # read-only: ends the snapshot
    return found


def _error_code(exc: psycopg.Error) -> str:
    return getattr(exc, "sqlstate", None) or type(exc).__name__


def snapshot(dsn: str, *, checksums: bool = True) -> Inventory:
    """The inventory of the server ``dsn`` reaches: ``{type: [entry, ...]}``, ids sorted.

    ``dsn`` names any database the user can connect to (``postgres`` usually); every other
    database is reached on the same server with the same credentials.
    """
    result: Inventory = {kind: [] for kind in (*PER_SERVER, *PER_DATABASE, "unreadable")}
    try:
        with _connect(dsn) as conn:
            for kind, query in PER_SERVER.items():
                result[kind] = _entries(conn, query)
            allowed = conn.execute(
                "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn"
            ).fetchall()
            conn.rollback()
    except psycopg.Error as exc:
        # The same message, code and password scrubbing as the sql action kind's.
        raise connect_error(exc, PostgresConnection(dsn), None) from None

    for row in allowed:
        name = row["datname"]
        try:
            found = _database(dsn, name, checksums)
        except psycopg.Error as exc:
            # Dropped since it was listed, no CONNECT privilege...: visible, not silent.
            result["unreadable"].append({"id": name, "error": _error_code(exc)})
            continue
        for kind, entries in found.items():
            result[kind].extend(entries)
    return {kind: sorted(entries, key=lambda e: e["id"]) for kind, entries in result.items()}
