"""The ``sql`` and ``sql_file`` action kinds: SQL text run against PostgreSQL in ONE transaction.

```yaml
do:
  sql: "INSERT INTO core.agents (name, type) VALUES (%(name)s, %(type)s) RETURNING id"
  params: {name: "${vars.agent}", type: worker}   # bound by psycopg, never formatted into the text
  connection: db                                   # optional: the plan's first ``kind: postgres``
  database: mistersmith                            # optional: another database on that server
outputs: {agent_id: "rows[0].id"}
undo: {sql: "DELETE FROM core.agents WHERE id = %(id)s", params: {id: "${self.agent_id}"}}

do: {sql_file: sql/schema.sql, database: mistersmith}   # relative to the plan's directory

do:   # a name that comes from a var: an identifier, quoted by psycopg's sql.Identifier
  sql: "CREATE TABLE {table} (id serial PRIMARY KEY)"
  ident: {table: "crash_${vars.suffix}"}             # or [schema, table] for schema.table
```

**No references in SQL text.** ``${...}`` inside ``sql:`` would be formatted into the text
unquoted: a var holding ``x'); DROP TABLE ...`` is SQL injection, and validate could not
see the statement that would run. So the text is refused if it holds one: values go in
``params`` (bound, never formatted), names in ``ident`` (written ``{name}`` in the text,
quoted as identifiers; with ``ident`` a literal brace is written ``{{`` or ``}}``). A
secret is never an identifier.

Result: ``{"rows": [{column: value}, ...], "rowcount": N}`` from the last statement that
returned rows (``SELECT``, ``... RETURNING``); when none did, ``rows`` is ``[]`` and
``rowcount`` is the last statement's count of affected rows. Values are JSON-safe: UUID ->
str, numeric -> int or float, timestamps and dates -> ISO 8601, interval -> seconds, bytea ->
base64, json/jsonb -> the structure itself, arrays -> lists, anything else -> its text.
At most :data:`MAX_ROWS` rows are kept (then ``"truncated": true``; ``rowcount`` stays exact):
results are journalled, and a runbook step has no business dumping a table there.

**Params => one statement.** With ``params``, psycopg binds them server side through the
extended query protocol, which takes exactly one statement. Without ``params`` the text goes
through the simple query protocol, which takes any number of statements, ``$$`` function
bodies and all: the server splits them, so we never have to. A schema is one action without
params; a data change that needs values is one statement with params. With params, a literal
``%`` must be written ``%%`` (psycopg reads ``%`` as the start of a placeholder).

**One transaction.** Every action runs in its own transaction on its own connection,
committed when the whole text succeeded and rolled back on any error, so a step is all or
nothing. ``BEGIN``/``COMMIT``/``ROLLBACK`` in the text would break that and are refused.
The exception is a statement PostgreSQL refuses to run inside any transaction block
(``CREATE DATABASE``, ``DROP DATABASE``, ``CREATE INDEX CONCURRENTLY``, ``VACUUM``, ...): it
runs with autocommit, and must be the only statement of its action, since several of them
could not be undone as one.

**Connection** ``{kind: postgres, dsn: "postgresql://user:password@host:port/db"}``, plus
``connect_timeout`` (seconds, default 10) and ``statement_timeout`` (ms). ``database:`` runs an
action in another database of the same server (the DSN with its dbname replaced): the seed's
``CREATE DATABASE mistersmith`` runs on the DSN's database, its schema with ``database:
mistersmith``. A step ``timeout`` becomes the transaction's ``statement_timeout``. Messages
name host, port and database, never the password, and never a parameter value.

Undo of SQL that finds nothing to undo is the plan's business (``DROP TABLE IF EXISTS``,
``DELETE ... WHERE id = ANY(...)``); where a plan prefers to list codes in
``undo_ok_errors``, :data:`NOT_FOUND_CODES` are PostgreSQL's "it is not there" SQLSTATEs.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atomicops.actions.base import ActionContext, ActionKind, CheckIssue
from atomicops.actions.registry import register
from atomicops.actions.sql_connection import (  # noqa: F401 - names the handle's users import from here
    _PLACEHOLDER,
    KIND,
    PostgresConnection,
    bind,
    connect_error,
    connection_issues,
    in_use,
    plain,
    scrub,
    translate_error,
)
from atomicops.errors import ActionError
from atomicops.plan import confine
from atomicops.plan.refs import is_reference

# psycopg (0.1 s to import) is loaded by the functions that talk to a database, so that
# `validate` and the journal commands never pay for it (docs/performance.md, B6).
if TYPE_CHECKING:
    import psycopg
    import psycopg.sql

MAX_ROWS = 10_000

NOT_FOUND_CODES = frozenset(
    {
        "42P01",  # undefined_table: relation "x" does not exist
        "3F000",  # invalid_schema_name: schema "x" does not exist
        "3D000",  # invalid_catalog_name: database "x" does not exist
        "42704",  # undefined_object: type, role, index, trigger... "x" does not exist
        "42883",  # undefined_function: function x() does not exist
    }
)
"""SQLSTATEs meaning "the object is not there", for a plan's ``undo_ok_errors``."""

# Statements PostgreSQL refuses inside a transaction block ("cannot run inside a transaction
# block"), matched against the statement's first words, upper-cased and single-spaced.
_NO_TRANSACTION = re.compile(
    r"^(CREATE DATABASE|DROP DATABASE|CREATE TABLESPACE|DROP TABLESPACE|ALTER SYSTEM|VACUUM"
    r"|CREATE (UNIQUE )?INDEX CONCURRENTLY|DROP INDEX CONCURRENTLY"
    r"|REINDEX (SYSTEM|DATABASE|\w+ CONCURRENTLY))\b"
)
# Statements that would end or split the action's transaction behind our back.
_TRANSACTION_CONTROL = re.compile(
    r"^(BEGIN|START TRANSACTION|COMMIT|END|ABORT|ROLLBACK(?! TO\b)|PREPARE TRANSACTION)\b"
)


# --------------------------------------------------------------------------- SQL text


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")


def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def split_statements(text: str) -> list[str]:
    """The top-level statements of ``text``, split as psql splits them.

    Skips over quoted strings (``'...'``, ``E'...'``, ``"..."``), dollar-quoted bodies
    (``$$...$$``, ``$fn$...$fn$``), comments, and SQL-standard ``BEGIN ATOMIC ... END``
    function bodies. Used for static checks and to recognise statements that need
    autocommit; execution never depends on it (the server splits multi-statement text).
    """
    statements: list[str] = []
    start = i = 0
    n = len(text)
    atomic = 0  # depth inside BEGIN ATOMIC ... END, where CASE ... END nests
    previous = ""
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            depth, i = 1, i + 2  # PostgreSQL block comments nest
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif ch == "'":
            escapes = i > 0 and text[i - 1] in "eE" and (i < 2 or not _ident_char(text[i - 2]))
            i += 1
            while i < n:
                if (escapes and text[i] == "\\") or text.startswith("''", i):
                    i += 2  # an escaped character, or '' for a quote
                elif text[i] == "'":
                    break
                else:
                    i += 1
            i += 1
        elif ch == '"':
            i += 1
            while i < n and not (text[i] == '"' and not text.startswith('""', i)):
                i += 2 if text.startswith('""', i) else 1
            i += 1
        elif ch == "$" and (i == 0 or not _ident_char(text[i - 1])):
            tag = _DOLLAR_TAG.match(text, i)
            if tag is None:  # $1 and the like
                i += 1
            else:
                end = text.find(tag.group(0), tag.end())
                i = n if end < 0 else end + len(tag.group(0))
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and _ident_char(text[j]):
                j += 1
            word = text[i:j].upper()
            if atomic == 0 and previous == "BEGIN" and word == "ATOMIC":
                atomic = 1
            elif atomic and word == "CASE":
                atomic += 1
            elif atomic and word == "END":
                atomic -= 1
            previous, i = word, j
        elif ch == ";" and atomic == 0:
            statements.append(text[start:i])
            start, i, previous = i + 1, i + 1, ""
        else:
            i += 1
    statements.append(text[start:])
    return [s for s in statements if _leading_words(s)]


_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _leading_words(statement: str, count: int = 5) -> str:
    """The first words of a statement after comments, upper-cased: ``"CREATE DATABASE X"``."""
    noise = _NOISE.match(statement)  # always matches, possibly nothing
    body = statement[noise.end() if noise else 0 :]
    if not body:
        return ""
    words: list[str] = []
    for match in _WORD.finditer(body[:400]):
        # Only a run of bare words counts: stop at the first punctuation after them.
        gap = body[match.start() - 1] if match.start() else " "
        if words and not gap.isspace():
            break
        words.append(match.group(0).upper())
        if len(words) == count:
            break
    return " ".join(words) or body[:1]


# Words that make a SELECT change something: `WITH d AS (DELETE ...) SELECT`, `SELECT ...
# INTO new_table`, `FOR UPDATE` locks. Matched outside quotes and comments.
_WRITING_WORDS = frozenset({
    "INSERT", "UPDATE", "DELETE", "MERGE", "INTO", "CREATE", "DROP", "ALTER", "TRUNCATE",
    "GRANT", "REVOKE", "COPY", "CALL", "DO", "LOCK", "NOTIFY", "SET", "VACUUM", "REFRESH",
})  # fmt: skip
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.DOTALL)


def is_select_only(text: str) -> bool:
    """One statement that starts with SELECT (or WITH, TABLE, VALUES, SHOW) and holds no word
    that writes. Conservative: a function with side effects cannot be seen from here, so the
    rule is a guard against mistakes, not a sandbox."""
    statements = split_statements(text)
    if len(statements) != 1 or "$" in statements[0]:  # dollar quoting hides what it holds
        return False
    words = set(_WORD.findall(_QUOTED.sub(" ", statements[0]).upper()))
    first = _leading_words(statements[0], 1)
    return first in ("SELECT", "WITH", "TABLE", "VALUES", "SHOW") and not (words & _WRITING_WORDS)


def needs_autocommit(statement: str) -> bool:
    """True for a statement PostgreSQL refuses to run inside a transaction block."""
    return bool(_NO_TRANSACTION.match(_leading_words(statement)))


# psycopg's placeholder grammar: %% is a literal percent; %(name)s|b|t named; %s|b|t
# positional; any other % is an error once params are given.


def _has_params(params: Any) -> bool:
    """Whether psycopg will get params (and so parse the text for placeholders)."""
    return (isinstance(params, Mapping) and bool(params)) or is_reference(params)


def _placeholder_issues(
    text: str, params: Any, path: tuple[str | int, ...]
) -> Iterator[CheckIssue]:
    """Placeholders against params, read the way psycopg will read them."""
    has_params = _has_params(params)
    names: list[str] = []
    for match in _PLACEHOLDER.finditer(text):
        if match.group("literal"):
            continue
        if match.group("name") is not None:
            if match.group("nfmt") not in ("s", "b", "t"):
                yield CheckIssue(
                    path,
                    f"placeholder {match.group(0)!r}: write %({match.group('name')})s "
                    "(or %(name)b / %(name)t for binary / text format)",
                )
            else:
                names.append(match.group("name"))
        elif has_params and match.group("fmt") in ("s", "b", "t"):
            yield CheckIssue(
                path,
                f"positional placeholder {match.group(0)!r}: params is a mapping, so name it: "
                "%(name)s",
            )
        elif has_params:
            yield CheckIssue(
                path,
                f"a literal % must be written %% when the action has params (found "
                f"{match.group(0)!r} at character {match.start() + 1}): psycopg reads every % "
                "as the start of a placeholder, e.g. write LIKE 'abc%%'",
            )
    if not names:
        return
    if not has_params:
        yield CheckIssue(
            path,
            f"the SQL uses placeholder(s) {', '.join(f'%({n})s' for n in sorted(set(names)))} "
            "but the action has no params",
        )
        return
    if not isinstance(params, Mapping) or any(is_reference(k) for k in params):
        return  # params, or some of their names, are only known at run time
    for name in sorted(set(names) - {str(k) for k in params}):
        hint = difflib.get_close_matches(name, [str(k) for k in params], n=1)
        also = f"; did you mean {hint[0]!r}?" if hint else ""
        yield CheckIssue(("params",), f"the SQL uses %({name})s but params has no {name!r}{also}")


def _ident_issues(text: str, ident: Any) -> Iterator[CheckIssue]:
    """``{name}`` fields of the text against ``ident``, read as psycopg's sql.SQL.format will."""
    if ident is None:
        return
    if not isinstance(ident, Mapping) or not ident:
        yield CheckIssue(("ident",), "ident maps {name} fields of the text to identifiers (a string, or [schema, name])")
        return
    for name, value in ident.items():
        parts = value if isinstance(value, list) else [value]
        if not parts or not all(isinstance(v, str) and v for v in parts):
            yield CheckIssue(("ident", name), "an identifier is a non-empty string, or a list of them for schema.name")
        elif any("${secrets." in v.replace(" ", "") for v in parts):
            yield CheckIssue(("ident", name), "a secret cannot be an identifier: SQL text is logged and journalled")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        yield CheckIssue(("sql",), f"with ident, the text's braces are fields: {exc} (write a literal brace as {{{{ or }}}})")
        return
    for name in sorted(fields - {str(k) for k in ident}):
        yield CheckIssue(("sql",), f"the SQL uses {{{name}}} but ident has no {name!r}")
    for name in sorted({str(k) for k in ident} - fields):
        yield CheckIssue(("ident", name), f"ident {name!r} is not used: write {{{name}}} in the SQL")


def _identifiers(ident: Any) -> dict[str, psycopg.sql.Identifier]:
    import psycopg.sql
    if not isinstance(ident, Mapping):
        raise ActionError(KIND, "ident must map names to identifiers", code="InvalidAction")
    out = {}
    for name, value in ident.items():
        parts = value if isinstance(value, list) else [value]
        if not parts or not all(isinstance(v, str) and v for v in parts):
            raise ActionError(KIND, f"ident {name!r} is not an identifier (a string, or [schema, name])", code="InvalidAction")
        out[str(name)] = psycopg.sql.Identifier(*parts)
    return out


def _text_issues(text: str, params: Any, path: tuple[str | int, ...]) -> Iterator[CheckIssue]:
    statements = split_statements(text)
    if not statements:
        yield CheckIssue(path, "contains no SQL statement")
        return
    yield from _placeholder_issues(text, params, path)
    if _has_params(params) and len(statements) > 1:
        yield CheckIssue(
            path,
            f"has {len(statements)} statements but params bind to exactly one (psycopg binds "
            "them server side, and that protocol takes one statement): split it into one "
            "action per statement, or drop params",
        )
    for statement in statements:
        lead = _leading_words(statement)
        alone = _NO_TRANSACTION.match(lead)
        if _TRANSACTION_CONTROL.match(lead):
            yield CheckIssue(
                path,
                f"{lead.split()[0]} in the text: each action is one transaction that atomicops "
                "commits or rolls back itself; split the work into several actions instead",
            )
        elif alone and len(statements) > 1:
            yield CheckIssue(
                path,
                f"{alone.group(0)} cannot run inside a transaction, so atomicops runs it alone "
                "with autocommit: make it the only statement of its action",
            )


# --------------------------------------------------------------------------- the kinds


def _collect(cursor: psycopg.Cursor[Any]) -> dict[str, Any]:
    """Rows of the last result that had rows; else the last statement's rowcount."""
    result: dict[str, Any] = {"rows": [], "rowcount": 0}
    found_rows = False
    while True:
        if cursor.description is not None:
            names = [column.name for column in cursor.description]
            rows = cursor.fetchmany(MAX_ROWS)
            result = {
                "rows": [{n: plain(v) for n, v in zip(names, row, strict=True)} for row in rows],
                "rowcount": max(cursor.rowcount, len(rows)),
            }
            if cursor.rowcount > len(rows):
                result["truncated"] = True
            found_rows = True
        elif not found_rows:
            result = {"rows": [], "rowcount": max(cursor.rowcount, 0)}
        if not cursor.nextset():
            return result


@register
class SqlKind(ActionKind):
    """``sql: "..."`` + ``params`` (+ ``connection``, + ``database``)."""

    key = "sql"
    extra_keys = frozenset({"params", "connection", "database", "ident"})
    connection_kind = "postgres"

    # -- connections

    def connect(self, spec: Mapping[str, Any]) -> PostgresConnection:
        return PostgresConnection.from_spec(spec)

    def disconnect(self, handle: Any) -> None:
        handle.close()

    secret_connection_keys = frozenset({"password"})

    def check_connection(self, spec: Mapping[str, Any]) -> Iterator[CheckIssue]:
        """Static checks of a plan connection mapping of kind ``postgres``."""
        return connection_issues(spec)

    def connection_in_use(self, spec: Mapping[str, Any], given: Any) -> Mapping[str, Any]:
        return in_use(spec, given)

    # -- static checks

    def check(self, action: Mapping[str, Any]) -> Iterator[CheckIssue]:
        params = action.get("params")
        if params is not None and not isinstance(params, Mapping) and not is_reference(params):
            yield CheckIssue(("params",), "params must be a mapping of placeholder name to value")
            params = None
        for key in ("connection", "database"):
            value = action.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                what = "a plan connection" if key == "connection" else "a database"
                yield CheckIssue((key,), f"{key} must be the name of {what}")
        yield from self._check_source(action, params)

    def writes(self, action: Mapping[str, Any]) -> bool:
        text = action.get(self.key)
        return not (isinstance(text, str) and is_select_only(text))

    def _check_source(self, action: Mapping[str, Any], params: Any) -> Iterator[CheckIssue]:
        text = action.get(self.key)
        if not isinstance(text, str) or not text.strip():
            yield CheckIssue((self.key,), "sql must be a non-empty string of SQL")
        elif is_reference(text):
            yield CheckIssue(
                (self.key,),
                "a ${...} reference in SQL text is formatted into it unquoted (SQL injection): "
                "pass values in `params` as %(name)s, names in `ident` as {name}",
            )
        else:
            yield from _text_issues(text, params, (self.key,))
            yield from _ident_issues(text, action.get("ident"))

    # -- execution

    def source(self, action: Mapping[str, Any], ctx: ActionContext) -> str:
        """The SQL text the action runs."""
        text = action.get(self.key)
        if not isinstance(text, str) or not text.strip():
            raise ActionError(KIND, "sql must be a non-empty string of SQL", code="InvalidAction")
        return text

    def execute(self, action: Mapping[str, Any], ctx: ActionContext) -> Any:
        import psycopg.sql
        text = self.source(action, ctx)
        params = action.get("params") or {}
        if not isinstance(params, Mapping):
            raise ActionError(KIND, "params must be a mapping", code="ParamValidation")
        database = action.get("database") or None
        statements = split_statements(text)
        control = [s for s in statements if _TRANSACTION_CONTROL.match(_leading_words(s))]
        if control:
            raise ActionError(
                KIND,
                f"{_leading_words(control[0]).split()[0]} in the text would end the action's "
                "transaction; split the work into several actions",
                code="InvalidAction",
            )
        autocommit = any(needs_autocommit(s) for s in statements)
        if autocommit and len(statements) > 1:
            raise ActionError(
                KIND,
                "CREATE/DROP DATABASE and the other statements that cannot run in a "
                "transaction must be alone in their action",
                code="InvalidAction",
            )
        if ctx.cancel.is_set():
            raise ActionError(KIND, "cancelled before it started", code="Cancelled")

        handle: PostgresConnection = ctx.connections.get(self, action.get("connection"))
        if autocommit:
            handle.close_idle()
        query: str | psycopg.sql.Composed = text
        if action.get("ident") is not None:
            query = psycopg.sql.SQL(text).format(**_identifiers(action["ident"]))  # type: ignore[arg-type]
        with handle.session(database, autocommit=autocommit) as conn:
            return self._run(conn, handle, text, query, params, database, ctx)

    def _run(
        self,
        conn: psycopg.Connection[Any],
        handle: PostgresConnection,
        text: str,
        query: str | psycopg.sql.Composed,
        params: Mapping[str, Any],
        database: str | None,
        ctx: ActionContext,
    ) -> dict[str, Any]:
        import psycopg

        def fail(exc: psycopg.Error, during_commit: bool = False) -> ActionError:
            return translate_error(
                exc,
                handle,
                text=text,
                values=params,
                database=database,
                during_commit=during_commit,
            )

        try:
            with conn.cursor() as cursor:
                if ctx.timeout and not conn.autocommit:
                    # The step timeout, enforced by the server for this transaction only.
                    cursor.execute(
                        "SELECT set_config('statement_timeout', %s, true)",
                        [str(int(ctx.timeout * 1000))],
                    )
                # No params: simple protocol, any number of statements. Params: one
                # statement, values bound server side (psycopg's %(name)s).
                cursor.execute(query, bind(params) if params else None)
                result = _collect(cursor)
        except psycopg.Error as exc:
            error = fail(exc)
            if not conn.autocommit:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            raise error from None
        if not conn.autocommit:
            try:
                conn.commit()
            except psycopg.Error as exc:
                raise fail(exc, during_commit=True) from None
        return result

    def describe(self, action: Mapping[str, Any]) -> str:
        text = action.get(self.key)
        first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
        if len(first) > 60:
            first = first[:57] + "..."
        where = f" [{action['database']}]" if action.get("database") else ""
        return f"sql{where}: {first}"


@register
class SqlFileKind(SqlKind):
    """``sql_file: path/to/file.sql`` (relative to the plan's directory), otherwise as ``sql``."""

    key = "sql_file"
    extra_keys = SqlKind.extra_keys | {confine.OPT_OUT}

    def writes(self, action: Mapping[str, Any]) -> bool:
        return True  # the file is read only at run time: its text cannot be vetted here

    def _check_source(self, action: Mapping[str, Any], params: Any) -> Iterator[CheckIssue]:
        # The file is read at run time (the plan's directory is not known to static checks).
        path = action.get(self.key)
        if not isinstance(path, str) or not path.strip():
            yield CheckIssue((self.key,), "sql_file must be a path to a .sql file")

    def source(self, action: Mapping[str, Any], ctx: ActionContext) -> str:
        name = action.get(self.key)
        if not isinstance(name, str) or not name.strip():
            raise ActionError(KIND, "sql_file must be a path to a .sql file", code="InvalidAction")
        if action.get(confine.OPT_OUT) is not True and not confine.within(ctx.base_dir, name):
            raise ActionError(KIND, f"sql_file {name} is outside the plan's directory; {confine.HINT}", code="InvalidAction")
        path = Path(ctx.base_dir) / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            # Not "...NotFound": that would match the default undo_ok_errors and make a
            # missing undo file look like an undo already done.
            raise ActionError(
                KIND, f"cannot read sql_file {name}: {exc.strerror}", code="InvalidAction"
            ) from None
        if not text.strip():
            raise ActionError(KIND, f"sql_file {name} is empty", code="InvalidAction")
        return text

    def describe(self, action: Mapping[str, Any]) -> str:
        where = f" [{action['database']}]" if action.get("database") else ""
        return f"sql_file{where}: {action.get(self.key)}"

