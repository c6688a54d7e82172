"""The PostgreSQL connection handle of the ``sql`` kinds: a small thread-safe pool of psycopg 3
connections per database, and the translation of psycopg's errors into ``ActionError`` with
SQLSTATE codes, with passwords and parameter values kept out of every message. ``call``
functions doing data work get one from ``connection_of(ctx, "sql")``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import difflib
import ipaddress
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from atomicops.actions.base import CheckIssue
from atomicops.actions.common import positive_or_absent, refuse_unknown_keys
from atomicops.errors import ActionError
from atomicops.plan.refs import is_reference, refs_in

# psycopg (0.1 s to import) is loaded by the functions that talk to a database, so that
# `validate` and the journal commands never pay for it (docs/performance.md, B6).
if TYPE_CHECKING:
    import psycopg

KIND = "sql"

ADDRESS_KEYS = ("host", "port", "user", "password", "dbname", "sslmode", "sslrootcert")
"""A connection given by fields instead of a ``dsn``: libpq's own keywords, so a value is
quoted by libpq's rules and cannot add a parameter of its own (``host: "h password=x"``)."""
OVERRIDE = "override"
"""A DSN (a var) that, when given, replaces the address fields: the rehearsal's PostgreSQL
stands in for the Aurora cluster whose endpoint the fields name."""
CONNECTION_KEYS = frozenset({"kind", "dsn", "connect_timeout", "statement_timeout", OVERRIDE, *ADDRESS_KEYS})
TIMEOUT_KEYS = ("connect_timeout", "statement_timeout")
DEFAULT_CONNECT_TIMEOUT = 10
MAX_IDLE_PER_DATABASE = 4

# Worth retrying as is: the server (or the network) failed, not the SQL.
TRANSIENT_CODES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout, NOWAIT)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, in recovery)
        "53300",  # too_many_connections
    }
)
TRANSIENT_CLASSES = ("08",)  # connection_exception


_PLACEHOLDER = re.compile(
    r"%(?:(?P<literal>%)|\((?P<name>[^)]*)\)(?P<nfmt>.?)|(?P<fmt>.?))", re.DOTALL
)


# --------------------------------------------------------------------------- values


def plain(value: Any) -> Any:
    """A JSON-safe copy of a value psycopg returned."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)  # NaN, Infinity: not JSON numbers
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    return str(value)  # ranges, networks, enums of extensions...: their text form


def bind(params: Mapping[str, Any]) -> dict[str, Any]:
    """Plan values -> psycopg parameters.

    A mapping (or a list holding one) becomes ``jsonb``: psycopg will not guess JSON for a
    dict, and in a plan a mapping can only mean a JSON document. Other lists become arrays
    (so ``id = ANY(%(ids)s)`` works, for uuid columns too); scalars go as they are. For a
    JSON array of scalars, cast in SQL: ``to_jsonb(%(tags)s::text[])``.
    """
    from psycopg.types.json import Jsonb
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping) or (
            isinstance(value, list) and any(isinstance(v, Mapping) for v in value)
        ):
            value = Jsonb(value)
        out[str(key)] = value
    return out


# --------------------------------------------------------------------------- connection


def in_use(spec: Mapping[str, Any], given: Any) -> dict[str, Any]:
    """The keys of a plan connection a run connects with: ``override`` (a DSN, resolved by
    ``given`` from vars) when it is given, with the timeouts; else the connection without it."""
    if OVERRIDE not in spec:
        return dict(spec)
    chosen = given(spec[OVERRIDE])
    if chosen is None or chosen == "":
        return {k: v for k, v in spec.items() if k != OVERRIDE}
    return {"kind": spec.get("kind"), "dsn": chosen, **{k: spec[k] for k in TIMEOUT_KEYS if k in spec}}


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def connection_issues(spec: Mapping[str, Any]) -> Iterator[CheckIssue]:
    """Static checks of a plan connection mapping of kind ``postgres`` (values may still
    hold references: those are checked once resolved)."""
    for key in sorted(set(spec) - CONNECTION_KEYS):
        close = difflib.get_close_matches(key, CONNECTION_KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        yield CheckIssue((key,), f"unknown key {key!r} in postgres connection{hint}")
    fields = [k for k in ADDRESS_KEYS if k in spec]
    dsn = spec.get("dsn")
    if "dsn" in spec and fields:
        yield CheckIssue((fields[0],), "give the address one way: dsn, or host/port/user/password/dbname "
                         f"(a DSN that replaces the fields when a var gives it is `{OVERRIDE}:`)")
    elif "dsn" in spec and (not isinstance(dsn, str) or not dsn):
        yield CheckIssue(("dsn",), "a postgres connection needs dsn: postgresql://...")
    elif "dsn" not in spec and spec.get("host") in (None, ""):
        yield CheckIssue(("host",), "a postgres connection needs dsn: postgresql://..., or host "
                         "(with user, password: ${secrets.NAME}, dbname)")
    elif isinstance(dsn, str) and not is_reference(dsn):
        import psycopg  # only for a literal DSN: libpq parses it
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(dsn)
        except psycopg.Error:
            yield CheckIssue(("dsn",), "dsn is not a valid PostgreSQL connection string")
    yield from _override_issues(spec)
    port = spec.get("port")
    if port is not None and not is_reference(port) and not (
        isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
        or isinstance(port, str) and port.isdigit()
    ):
        yield CheckIssue(("port",), f"port must be a number from 1 to 65535, not {port!r}")
    mode = spec.get("sslmode")
    if mode is not None and not is_reference(mode) and mode not in _SSLMODES:
        yield CheckIssue(("sslmode",), f"sslmode must be one of {', '.join(_SSLMODES)}, not {mode!r}")
    for key in TIMEOUT_KEYS:
        if not positive_or_absent(spec.get(key)):
            yield CheckIssue((key,), f"{key} must be a positive number")


def _override_issues(spec: Mapping[str, Any]) -> Iterator[CheckIssue]:
    if OVERRIDE not in spec:
        return
    value = spec[OVERRIDE]
    if "dsn" in spec:
        yield CheckIssue((OVERRIDE,), f"{OVERRIDE} replaces the address fields (host, user...) when its var is "
                         "given; with a dsn there is nothing to replace: keep one of the two")
    if value is None:
        return
    if not isinstance(value, str) or not is_reference(value):
        yield CheckIssue((OVERRIDE,), f"{OVERRIDE} is a var that may replace the fields (\"${{vars.database_url}}\"): "
                         "a literal would always win, write it as dsn instead")
        return
    for text, _ in refs_in(value):
        if text.strip().split(".")[0] not in ("vars", "env"):
            yield CheckIssue((OVERRIDE,), f"{OVERRIDE} may name only vars (it is chosen before the run "
                             f"resolves anything else), not ${{{text.strip()}}}")


def dsn_of_fields(spec: Mapping[str, Any]) -> str | None:
    """A libpq connection string of the address fields (None when there is no host)."""
    from psycopg.conninfo import make_conninfo

    fields = {k: spec[k] for k in ADDRESS_KEYS if spec.get(k) is not None}
    if not fields.get("host"):
        return None
    try:
        return make_conninfo("", **{k: str(v) for k, v in fields.items()})
    except Exception:  # noqa: BLE001 - psycopg's message would quote the values, password included
        raise ActionError(KIND, "the connection's fields do not make a PostgreSQL connection string "
                          f"(keys: {', '.join(sorted(fields))})", code="InvalidConnection") from None

_URL_PASSWORD = re.compile(r"(://[^:/?#@\s]*:)[^@\s]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def scrub(text: str, *passwords: str | None) -> str:
    """``text`` without passwords: the known ones, and any a DSN in it carries."""
    for password in sorted({p for p in passwords if p}, key=len, reverse=True):
        text = text.replace(password, "***")
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _KV_PASSWORD.sub(r"\1***", text)


class PostgresConnection:
    """The handle a plan connection of ``kind: postgres`` opens: a small pool of sessions.

    psycopg connections open on first use, one per concurrent action (a connection runs one
    transaction at a time, and every action needs its own transaction), and go back to an
    idle list per database afterwards. Safe to share between the run's worker threads.
    """

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        statement_timeout: int | None = None,
    ) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        try:
            self._conninfo = conninfo_to_dict(dsn)
        except psycopg.Error:
            # libpq's message quotes the string it could not parse, password included.
            raise ActionError(
                KIND,
                "the dsn is not a valid PostgreSQL connection string "
                "(postgresql://user:password@host:port/database?param=value)",
                code="InvalidConnection",
            ) from None
        self._dsn = dsn
        self._password = str(self._conninfo.get("password") or "") or None
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._idle: dict[str | None, list[psycopg.Connection[Any]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> PostgresConnection:
        refuse_unknown_keys(KIND, "postgres connection", spec, CONNECTION_KEYS)
        dsn = spec.get("dsn") if spec.get("dsn") is not None else dsn_of_fields(spec)
        if not isinstance(dsn, str) or not dsn:
            raise ActionError(KIND, "a postgres connection needs a dsn, or host and user", code="InvalidConnection")
        try:
            connect_timeout = float(spec.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
            statement_timeout = (
                int(spec["statement_timeout"]) if spec.get("statement_timeout") else None
            )
        except (TypeError, ValueError):
            raise ActionError(
                KIND,
                "connect_timeout (seconds) and statement_timeout (ms) must be numbers",
                code="InvalidConnection",
            ) from None
        return cls(dsn, connect_timeout=connect_timeout, statement_timeout=statement_timeout)

    # -- where it points, for messages (never the password)

    def where(self, database: str | None = None) -> str:
        host = self._conninfo.get("host") or self._conninfo.get("hostaddr") or "localhost"
        port = self._conninfo.get("port") or 5432
        return f"{host}:{port}/{database or self._conninfo.get('dbname') or '(default)'}"

    def scrub(self, text: str) -> str:
        return scrub(text, self._password)

    # -- sessions

    def _open(self, database: str | None) -> psycopg.Connection[Any]:
        import psycopg
        from psycopg.conninfo import make_conninfo
        overrides: dict[str, Any] = {
            "connect_timeout": max(1, int(self.connect_timeout)),
            "application_name": "atomicops",
        }
        if database:
            overrides["dbname"] = database
        if self.statement_timeout:
            options = str(self._conninfo.get("options") or "")
            overrides["options"] = f"{options} -c statement_timeout={self.statement_timeout}"
        try:
            conn = psycopg.connect(make_conninfo(self._dsn, **overrides), autocommit=False)
        except psycopg.Error as exc:
            raise connect_error(exc, self, database) from None
        # psycopg prepares a query it has run five times on a connection; a runbook changes
        # schemas between steps, and a prepared plan can then fail ("cached plan must not
        # change result type"). Every step runs a query only a few times anyway.
        conn.prepare_threshold = None
        return conn

    @contextlib.contextmanager
    def session(
        self, database: str | None = None, *, autocommit: bool = False
    ) -> Iterator[psycopg.Connection[Any]]:
        """A connection to ``database`` (the DSN's by default) for one action.

        It is returned to the pool only if it ended idle (no open transaction) and unbroken.
        """
        from psycopg.pq import TransactionStatus
        conn: psycopg.Connection[Any] | None = None
        with self._lock:
            if self._closed:
                raise ActionError(KIND, "the postgres connection is closed", code="Closed")
            idle = self._idle.get(database)
            candidates = [idle.pop() for _ in range(len(idle))] if idle else []
        for candidate in candidates:
            if conn is None and _usable(candidate):
                conn = candidate
            elif conn is not None:
                self._put_back(database, candidate)
            else:
                candidate.close()
        if conn is None:
            conn = self._open(database)
        try:
            conn.autocommit = autocommit
            yield conn
        finally:
            reusable = (
                not conn.closed
                and not conn.broken
                and conn.info.transaction_status == TransactionStatus.IDLE
            )
            if reusable:
                self._put_back(database, conn)
            else:
                conn.close()

    def _put_back(self, database: str | None, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            pool = self._idle.setdefault(database, [])
            if not self._closed and len(pool) < MAX_IDLE_PER_DATABASE:
                pool.append(conn)
                return
        conn.close()

    def close_idle(self) -> None:
        """Close every pooled connection not in use.

        Before ``DROP DATABASE``: the server refuses to drop a database anyone is connected
        to, and our own idle sessions would count.
        """
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.close_idle()

    def __repr__(self) -> str:
        return f"PostgresConnection({self.where()!r})"


def _usable(conn: psycopg.Connection[Any]) -> bool:
    """True if a pooled connection still works (one empty query, no transaction started).

    An idle session can be gone without psycopg knowing (server restart, idle timeout, a
    DROP DATABASE ... WITH (FORCE)); finding out here costs one round trip, finding out in
    the action would fail a step that never reached the server.
    """
    import psycopg
    if conn.closed or conn.broken:
        return False
    try:
        conn.autocommit = True
        conn.execute("")
        return True
    except psycopg.Error:
        return False


# --------------------------------------------------------------------------- errors

# libpq reports connection failures as text; the server's FATAL reasons have SQLSTATEs.
_CONNECT_REASONS: tuple[tuple[re.Pattern[str], str, bool], ...] = (
    (re.compile(r'database ".*" does not exist'), "3D000", False),
    (re.compile(r"password authentication failed"), "28P01", False),
    (re.compile(r'role ".*" does not exist|no pg_hba\.conf entry'), "28000", False),
    (re.compile(r"the database system is (starting up|shutting down|in recovery)"), "57P03", True),
    (re.compile(r"too many clients|remaining connection slots"), "53300", True),
)


def connect_error(
    exc: BaseException, conn: PostgresConnection, database: str | None
) -> ActionError:
    """An ActionError for a failed connection attempt: host and port named, no password."""
    text = str(exc).strip()
    # 'connection failed: connection to server at "h", port p failed: FATAL:  reason'
    reason = text.rsplit(" failed: ", 1)[-1].splitlines()[0] if text else type(exc).__name__
    reason = re.sub(r"^(FATAL|ERROR):\s+", "", reason)
    code, transient = "ConnectionError", True
    for pattern, sqlstate, retry in _CONNECT_REASONS:
        if pattern.search(reason):
            code, transient = sqlstate, retry
            break
    return ActionError(
        KIND,
        f"cannot connect to PostgreSQL at {conn.where(database)}: {conn.scrub(reason)}",
        code=code,
        transient=transient,
    )


def _placeholders_to_dollars(text: str) -> str:
    """``text`` as psycopg sends it with params (``%(a)s`` -> ``$1``), to locate errors."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        if match.group("literal"):
            return "%"
        name = match.group("name") or ""
        numbers.setdefault(name, len(numbers) + 1)
        return f"${numbers[name]}"

    return _PLACEHOLDER.sub(number, text)


def _location(text: str, position: str | None, with_params: bool) -> str:
    """``"line 3: CREATE TABLE x (..."`` for the server's 1-based character position."""
    if not position or not position.isdigit():
        return ""
    sent = _placeholders_to_dollars(text) if with_params else text
    line_no = sent.count("\n", 0, int(position) - 1) + 1
    lines = text.splitlines()
    line = lines[line_no - 1].strip() if line_no <= len(lines) else ""
    if len(line) > 120:
        line = line[:117] + "..."
    return f"line {line_no}: {line}"


def translate_error(
    exc: psycopg.Error,
    conn: PostgresConnection,
    *,
    text: str,
    values: Mapping[str, Any] | None,
    database: str | None,
    during_commit: bool = False,
) -> ActionError:
    """An ActionError for a psycopg failure. Never quotes parameter values or passwords."""
    import psycopg
    with_params = bool(values)
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is None and isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        if during_commit:
            # The COMMIT may or may not have reached the server: a retry could apply the
            # step twice, so it is not transient; the step's probe has to settle it.
            return ActionError(
                KIND,
                f"connection to {conn.where(database)} lost during COMMIT: whether the "
                "transaction committed is unknown",
                code="ConnectionError",
            )
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ActionError(
            KIND,
            f"connection to {conn.where(database)} failed: {conn.scrub(first)}; the "
            "transaction was not committed",
            code="ConnectionError",
            transient=True,
        )
    if sqlstate is None:
        # Raised by psycopg itself before anything reached the server: placeholders that do
        # not match params, a value it cannot adapt. Its messages name placeholders and
        # types, not values.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ActionError(KIND, _without_values(conn.scrub(first), values), code="ParamValidation")

    diag = exc.diag
    message = diag.message_primary or str(exc).splitlines()[0]
    if sqlstate == "42601" and "multiple commands" in message:
        message += " (with params the text must be one statement: split it into actions)"
    where = [part for part in (
        _location(text, diag.statement_position, with_params),
        (diag.context or "").splitlines()[0] if diag.context else "",
    ) if part]  # fmt: skip
    if where:
        message += f" ({'; '.join(where)})"
    if diag.message_detail and not with_params:
        # A detail quotes row values ("Key (name)=(x) already exists"); with params those
        # are parameter values, so it is left out then.
        message += f". {diag.message_detail}"
    if diag.message_hint:
        message += f" Hint: {diag.message_hint}"
    if database:
        message = f"in database {database!r}: {message}"
    message = _without_values(conn.scrub(message), values)
    transient = sqlstate in TRANSIENT_CODES or sqlstate.startswith(TRANSIENT_CLASSES)
    return ActionError(KIND, message, code=sqlstate, transient=transient)


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _texts(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _without_values(message: str, values: Mapping[str, Any] | None) -> str:
    """``message`` with every quoted parameter value replaced by ``"***"``.

    The server quotes a value it cannot use, even in its primary message (``invalid input
    syntax for type uuid: "..."``, ``value "..." is out of range for type integer``). Only
    quoted occurrences are replaced, so a short value cannot mangle the rest of the text.
    """
    for text in sorted(set(_texts(values or {})), key=len, reverse=True):
        message = message.replace(f'"{text}"', '"***"')
    return message
