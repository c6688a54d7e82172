"""The SQLite journal store: one file, many readers and writers, every append on disk.

Several processes may open the same file (an ``apply`` and a ``status`` at once, or a crashed
run and the ``resume`` that follows it), so the file is in WAL mode with a busy timeout and
every write that must see a consistent picture (the lock) runs inside ``BEGIN IMMEDIATE``,
which takes SQLite's write lock up front instead of failing on upgrade half-way through.

Events are append-only: the store offers no way to change or delete one, and triggers in the
schema refuse it even to someone with a ``sqlite3`` shell, because state is derived from the
log and an edited log is a lie about what was done to the environment.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from atomicops.errors import Locked, StaleLease, UsageError
from atomicops.journal.store import Event, LockHolder
from atomicops.processes import pid_alive

SCHEMA_VERSION = 2

# Long enough to ride out another process's append or lock check (milliseconds of work),
# short enough that a wedged peer surfaces as an error rather than a silent hang.
BUSY_TIMEOUT_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a seq is never reused
    env    TEXT NOT NULL,
    run_id TEXT NOT NULL,
    ts     REAL NOT NULL,
    type   TEXT NOT NULL,
    op     TEXT,
    step   TEXT,
    data   TEXT NOT NULL DEFAULT '{}'          -- JSON
);
CREATE INDEX IF NOT EXISTS events_env_seq ON events (env, seq);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the atomicops journal is append-only');
END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the atomicops journal is append-only');
END;
CREATE TABLE IF NOT EXISTS locks (
    env     TEXT PRIMARY KEY,
    lock_id TEXT NOT NULL,
    run_id  TEXT NOT NULL,
    pid     INTEGER NOT NULL,
    host    TEXT NOT NULL,
    started REAL NOT NULL,
    command TEXT NOT NULL DEFAULT '',
    lease     REAL NOT NULL DEFAULT 0,
    heartbeat REAL NOT NULL DEFAULT 0,
    fence     INTEGER NOT NULL DEFAULT 0
);
"""

_EVENT_COLUMNS = "seq, env, run_id, ts, type, op, step, data"
_LOCK_COLUMNS = "lock_id, run_id, pid, host, started, command, lease, heartbeat, fence"


class SqliteStore:
    """A :class:`~atomicops.journal.store.JournalStore` in one SQLite file.

    One connection per store, shared by the engine's worker threads under a mutex: SQLite
    serialises writers anyway, and a single connection keeps each thread's appends in the
    order they committed.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).absolute()
        self.url = f"sqlite:///{self.path}"
        self._mutex = threading.Lock()
        _create_private_file(self.path)
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                check_same_thread=False,  # guarded by self._mutex instead
                isolation_level=None,  # autocommit; transactions are explicit below
            )
        except sqlite3.Error as e:
            raise UsageError(f"cannot open the journal at {self.path}: {e}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: in WAL mode NORMAL may lose the last commits on power loss, and an
            # append that returned must survive (an intent record we lose is an orphan).
            conn.execute("PRAGMA synchronous = FULL")
            with _immediate(conn):
                _create_schema(conn)
                _check_schema_version(conn, self.path)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise UsageError(f"cannot open the journal at {self.path}: {e}") from e
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    # -- events ---------------------------------------------------------------------------

    def append(
        self,
        env: str,
        run_id: str,
        type: str,
        *,
        op: str | None = None,
        step: str | None = None,
        data: dict[str, Any] | None = None,
        fence: int | None = None,
    ) -> Event:
        text = to_json(data or {})
        with self._connection() as conn:
            # Stamped under the mutex so that, within a process, ts never goes back as seq rises.
            ts = time.time()
            insert = (
                "INSERT INTO events (env, run_id, ts, type, op, step, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
            )
            values = (env, run_id, ts, type, op, step, text)
            if fence is None:
                # A single INSERT in autocommit mode is its own transaction: committed (and,
                # with synchronous=FULL, fsynced) when execute returns.
                seq = conn.execute(insert, values).lastrowid
            else:
                # The fence check and the insert in one write transaction: no new holder can
                # take the lock between them.
                with _immediate(conn):
                    row = conn.execute("SELECT fence FROM locks WHERE env = ?", (env,)).fetchone()
                    if row is None or int(row[0]) != fence:
                        raise StaleLease(env, fence, int(row[0]) if row else None)
                    seq = conn.execute(insert, values).lastrowid
        assert seq is not None
        # Return what a reader will get back (JSON round trip), not the caller's objects, so
        # the engine never acts on a value the journal could not reproduce after a crash.
        return Event(seq, env, run_id, ts, type, op, step, from_json(text))

    def events(self, env: str, *, after: int = 0) -> list[Event]:
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE env = ? AND seq > ? ORDER BY seq",
                (env, after),
            ).fetchall()
        return [_event(row) for row in rows]

    def environments(self) -> list[str]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT env FROM events UNION SELECT env FROM locks ORDER BY env"
            ).fetchall()
        return [row[0] for row in rows]

    # -- the environment lock -------------------------------------------------------------

    def acquire_lock(self, env: str, holder: LockHolder) -> LockHolder | None:
        with self._connection() as conn, _immediate(conn):
            current = _read_lock(conn, env)
            if current is None:
                _write_lock(conn, env, holder)
                return None
            if _same_holder(current, holder):
                # Re-entry by the run that holds it. The row is kept as it is, so a nested
                # acquire/release pair cannot drop the outer holder's lock mid-run.
                return None
            gone = current.host == socket.gethostname() and not pid_alive(current.pid)
            lapsed = current.lease > 0 and time.time() - current.heartbeat > current.lease
            if gone or lapsed:
                _write_lock(conn, env, holder)
                return current
            # Alive, or on another host where we cannot tell: only `unlock` may clear it.
            raise Locked(env, current.as_dict())

    def heartbeat(self, env: str, lock_id: str) -> bool:
        with self._connection() as conn:
            cur = conn.execute(
                "UPDATE locks SET heartbeat = ? WHERE env = ? AND lock_id = ?",
                (time.time(), env, lock_id),
            )
            return cur.rowcount == 1

    def release_lock(self, env: str, lock_id: str) -> None:
        with self._connection() as conn:
            conn.execute("DELETE FROM locks WHERE env = ? AND lock_id = ?", (env, lock_id))

    def read_lock(self, env: str) -> LockHolder | None:
        with self._connection() as conn:
            return _read_lock(conn, env)

    def break_lock(self, env: str, lock_id: str | None = None) -> LockHolder | None:
        with self._connection() as conn, _immediate(conn):
            current = _read_lock(conn, env)
            if current is None:
                return None
            if lock_id is not None and lock_id != current.lock_id:
                # The holder changed since the user looked: refuse rather than break a lock
                # they have not seen.
                raise UsageError(
                    f"environment {env!r} is locked by lock id {current.lock_id!r}, "
                    f"not {lock_id!r}; nothing was unlocked"
                )
            conn.execute("DELETE FROM locks WHERE env = ?", (env,))
            return current

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            if self._conn is None:
                raise RuntimeError(f"the journal store {self.url} is closed")
            yield self._conn


# -- helpers ------------------------------------------------------------------------------


def _create_private_file(path: Path) -> None:
    """Create the database file 0600 (and its directory 0700) before SQLite touches it.

    SQLite creates the -wal and -shm files with the database file's mode, so getting this
    one right keeps outputs (resource ids, hostnames, resolved undo actions) private too.
    An existing file is left as it is: its owner chose its mode.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise UsageError(f"cannot open the journal at {path}: {e.strerror or e}") from e
    os.close(fd)


def _create_schema(conn: sqlite3.Connection) -> None:
    # executescript would COMMIT our IMMEDIATE transaction first, so run statement by
    # statement (triggers contain ';' inside BEGIN...END, hence complete_statement).
    buf = ""
    for line in _SCHEMA.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            conn.execute(buf)
            buf = ""


def _check_schema_version(conn: sqlite3.Connection, path: Path) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        return
    version = int(row[0])
    if version == 1:
        # Version 2 added the lease and the fence to the lock.
        for column in ("lease REAL NOT NULL DEFAULT 0", "heartbeat REAL NOT NULL DEFAULT 0", "fence INTEGER NOT NULL DEFAULT 0"):
            conn.execute(f"ALTER TABLE locks ADD COLUMN {column}")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        return
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"the journal at {path} has schema version {version}, newer than this atomicops "
            f"understands ({SCHEMA_VERSION}); upgrade atomicops to use it"
        )


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE`` transaction: the write lock is taken before the first read.

    A deferred transaction that reads the lock row and then writes would fail with BUSY at
    the write if another process got there between, which is exactly the race this prevents.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _event(row: tuple[Any, ...]) -> Event:
    seq, env, run_id, ts, type_, op, step, data = row
    return Event(seq, env, run_id, ts, type_, op, step, from_json(data))


def _read_lock(conn: sqlite3.Connection, env: str) -> LockHolder | None:
    row = conn.execute(f"SELECT {_LOCK_COLUMNS} FROM locks WHERE env = ?", (env,)).fetchone()
    if row is None:
        return None
    lock_id, run_id, pid, host, started, command, lease, heartbeat, fence = row
    return LockHolder(
        lock_id, run_id, int(pid), host, float(started), command, float(lease), float(heartbeat), int(fence)
    )


def _write_lock(conn: sqlite3.Connection, env: str, holder: LockHolder) -> None:
    # Every new holder gets a fence one above any this environment has had.
    key = f"fence/{env}"
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    fence = (int(row[0]) if row else 0) + 1
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(fence)))
    conn.execute(
        f"INSERT OR REPLACE INTO locks (env, {_LOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            env,
            holder.lock_id,
            holder.run_id,
            holder.pid,
            holder.host,
            holder.started,
            holder.command,
            holder.lease,
            time.time(),
            fence,
        ),
    )


def _same_holder(current: LockHolder, holder: LockHolder) -> bool:
    if current.lock_id == holder.lock_id:
        return True
    return (current.host, current.pid, current.run_id) == (holder.host, holder.pid, holder.run_id)


# Binary values (a Lambda ZipFile, an S3 Body written `!!binary` in a plan) are kept as
# {"$bytes": base64} and read back as bytes, so an undo or a resume gets the very bytes.
_BYTES = "$bytes"


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    return str(value)


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and isinstance(obj.get(_BYTES), str):
        return base64.b64decode(obj[_BYTES])
    return obj


def to_json(data: Any) -> str:
    """The journal's JSON text of ``data``: bytes encoded, other unknown types as text."""
    return json.dumps(data, sort_keys=True, default=_encode)


def from_json(text: str) -> Any:
    return json.loads(text, object_hook=_decode)
