"""The SQLite journal store: one file, many readers and writers, every append on disk.

Several processes may open the same file (an ``apply`` and a ``status`` at once, or a crashed
run and the ``resume`` that follows it), so the file is in WAL mode with a busy timeout and
every write that must see a consistent picture (the lock) runs inside ``BEGIN IMMEDIATE``,
which takes SQLite's write lock up front instead of failing on upgrade half-way through.

Events are append-only: the store offers no way to change or delete one, and triggers in the
schema refuse it even to someone with a ``sqlite3`` shell, because state is derived from the
log and an edited log is a lie about what was done to the environment. Someone who drops
those triggers can still edit a row, so each event also carries ``chain``: a SHA-256 over the
previous event's chain (same environment) and its own stored content. Reading verifies it,
and a mismatch is refused (:class:`~atomicops.errors.JournalDamaged` naming the seq) before
anything acts on the events: an edited undo is never run. The chain is a checksum, not a
signature: it catches an edit or a removed event, not someone who recomputes every later link.

A journal file is created only where none exists, complete (schema and all) under a temporary
name and then linked into place, so a file at the path is always a whole journal: one that is
empty, is not a journal, or is damaged is refused, never started afresh (starting afresh would
forget what the environment holds and run it all again).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from atomicops.errors import HolderAlive, JournalDamaged, Locked, StaleLease, UsageError
from atomicops.journal.records import (
    from_json,
    link,
    may_take_over,
    running_here,
    same_holder,
    to_json,
)
from atomicops.journal.store import ClosedOnExit, Event, LockHolder

SCHEMA_VERSION = 3

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
    data   TEXT NOT NULL DEFAULT '{}',         -- JSON
    chain  TEXT NOT NULL DEFAULT ''            -- see _link
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

_EVENT_COLUMNS = "seq, env, run_id, ts, type, op, step, data, chain"
_LOCK_COLUMNS = "lock_id, run_id, pid, host, started, command, lease, heartbeat, fence"


class SqliteStore(ClosedOnExit):
    """A :class:`~atomicops.journal.store.JournalStore` in one SQLite file.

    One connection per store, shared by the engine's worker threads under a mutex: SQLite
    serialises writers anyway, and a single connection keeps each thread's appends in the
    order they committed.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).absolute()
        self.url = f"sqlite:///{self.path}"
        self._mutex = threading.Lock()
        if not _check_existing(self.path):
            _create_journal(self.path)
        conn = _connect(self.path)
        try:
            # Asked before anything writes to the file: someone else's database is refused
            # exactly as it was found.
            _schema_version(conn, self.path)
            # Kept in the file, so a no-op unless someone switched the mode of this journal.
            conn.execute("PRAGMA journal_mode = WAL")
            with _immediate(conn):
                _upgrade(conn, self.path)
                _create_schema(conn)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise _damaged_or_unusable(self.path, e) from e
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
        fence: int,
    ) -> Event:
        text = to_json(data or {})
        # One write transaction (committed and, with synchronous=FULL, fsynced when it ends)
        # for the fence check, the previous link of the chain and the insert: no new holder
        # can take the lock, and no other append can slip in, between them.
        with self._connection() as conn, _immediate(conn):
            row = conn.execute("SELECT fence FROM locks WHERE env = ?", (env,)).fetchone()
            if row is None or int(row[0]) != fence:
                raise StaleLease(env, fence, int(row[0]) if row else None)
            # Stamped under the mutex so that, within a process, ts never goes back as seq rises.
            ts = time.time()
            chain = link(_chain_before(conn, env, None), env, run_id, ts, type, op, step, text)
            seq = conn.execute(
                "INSERT INTO events (env, run_id, ts, type, op, step, data, chain)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (env, run_id, ts, type, op, step, text, chain),
            ).lastrowid
        assert seq is not None
        # Return what a reader will get back (JSON round trip), not the caller's objects, so
        # the engine never acts on a value the journal could not reproduce after a crash.
        return Event(seq, env, run_id, ts, type, op, step, from_json(text))

    def events(self, env: str, *, after: int = 0) -> list[Event]:
        with self._connection() as conn:
            # Two reads, no transaction needed: an append between them only adds rows at the
            # end, chained to the ones before.
            previous = _chain_before(conn, env, after) if after > 0 else ""
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE env = ? AND seq > ? ORDER BY seq",
                (env, after),
            ).fetchall()
        events = []
        for row in rows:
            seq, env_, run_id, ts, type_, op, step, text, chain = row
            previous = link(previous, env_, run_id, ts, type_, op, step, text)
            if chain != previous:
                raise JournalDamaged(
                    str(self.path),
                    f"was changed outside atomicops: event {seq} ({type_}"
                    + (f" of {op}/{step}" if op else "")
                    + ") does not match the checksum chain (it, or an event before it, was "
                    "edited or removed)",
                    seq=seq,
                )
            events.append(_event(row[:-1]))
        return events

    def import_events(self, env: str, events: list[Event], *, fence: int) -> None:
        """Write ``events`` copied from another store (see PostgresStore.import_events)."""
        from atomicops.errors import CopyRefused

        with self._connection() as conn, _immediate(conn):
            row = conn.execute("SELECT fence FROM locks WHERE env = ?", (env,)).fetchone()
            if row is None or int(row[0]) != fence:
                raise StaleLease(env, fence, int(row[0]) if row else None)
            (held,) = conn.execute("SELECT count(*) FROM events WHERE env = ?", (env,)).fetchone()
            if held:
                raise CopyRefused(env, f"the target already holds {held} event(s) of it")
            seqs = [ev.seq for ev in events]
            taken = [
                s for s in seqs if conn.execute("SELECT 1 FROM events WHERE seq = ?", (s,)).fetchone()
            ]
            if taken:
                raise CopyRefused(
                    env,
                    f"{len(taken)} of its seq numbers (from {taken[0]}) are taken by other "
                    "environments in the target; copy into a journal without them (checkpoints "
                    "name seqs, so a copy never renumbers)",
                )
            previous = ""
            for ev in events:
                text = to_json(ev.data)
                previous = link(previous, ev.env, ev.run_id, ev.ts, ev.type, ev.op, ev.step, text)
                # An explicit seq: AUTOINCREMENT then numbers new appends after the highest.
                conn.execute(
                    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ev.seq, ev.env, ev.run_id, ev.ts, ev.type, ev.op, ev.step, text, previous),
                )

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
            if same_holder(current, holder):
                # Re-entry by the run that holds it. The row is kept as it is, so a nested
                # acquire/release pair cannot drop the outer holder's lock mid-run.
                return None
            if may_take_over(current, now=time.time()):
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

    def break_lock(
        self, env: str, lock_id: str | None = None, *, force: bool = False
    ) -> LockHolder | None:
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
            if not force and running_here(current):
                raise HolderAlive(env, current.as_dict())
            conn.execute("DELETE FROM locks WHERE env = ?", (env,))
            return current

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            if self._conn is None:
                raise RuntimeError(f"the journal store {self.url} is closed")
            try:
                yield self._conn
            except sqlite3.DatabaseError as e:
                # A damaged page may be found long after opening, by whatever reads it first.
                if _is_corruption(e):
                    raise JournalDamaged(str(self.path), f"is damaged ({e})") from e
                raise


# -- helpers ------------------------------------------------------------------------------


def _check_existing(path: Path) -> bool:
    """Whether a journal file is at ``path``; raise when what is there is not one we may use.

    Refused: a symbolic link (it could point the journal, and SQLite's -wal and -shm files
    beside it, anywhere), anything but a regular file, and an empty file (a journal that was
    truncated: never a new one, since new journals are linked into place complete).
    """
    _check_directory(path.parent)
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if file.is_symlink():
            raise UsageError(
                f"the journal file {file} is a symbolic link; atomicops does not follow links "
                "for its journal: point --state at the real file instead"
            )
    try:
        st = path.stat()
    except FileNotFoundError:
        if Path(f"{path}-wal").exists():
            raise JournalDamaged(
                str(path),
                f"is missing, but its write-ahead log {path}-wal is there (the journal was "
                "deleted or moved while in use)",
            ) from None
        return False
    except OSError as e:
        raise UsageError(f"cannot open the journal at {path}: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(
            f"the journal path {path} is a directory, not a journal file; "
            "move it away or give --state another path"
        )
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"the journal path {path} is not a regular file")
    if st.st_size == 0:
        raise JournalDamaged(str(path), "is empty (0 bytes): it was truncated")
    return True


def _check_directory(directory: Path) -> None:
    """Make the journal's directory (0700) where missing; refuse a file in its place."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), directory)
        raise UsageError(
            f"{blocker} is not a directory, but the journal's directory {directory} needs it "
            "to be one; move that file away or give --state another path"
        ) from None
    except OSError as e:
        raise UsageError(f"cannot create the journal directory {directory}: {e.strerror or e}") from e


def _create_journal(path: Path) -> None:
    """Create a complete, empty journal at ``path`` (0600), unless another process just did.

    Built under a temporary name and hard-linked into place: link fails when ``path``
    exists, so of two processes creating it at once one wins and the other opens the
    winner's, and nobody ever sees a half-made (empty) file at ``path``. SQLite gives the
    -wal and -shm files the database file's mode, so 0600 here keeps outputs (resource ids,
    hostnames, resolved undo actions) private in those too.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    flags = os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as e:
        raise UsageError(f"cannot create the journal at {path}: {e.strerror or e}") from e
    os.close(fd)
    try:
        conn = _connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # recorded in the file: every opener uses it
            with _immediate(conn):
                _create_schema(conn)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
        finally:
            conn.close()  # checkpoints the WAL into the file, so the link carries everything
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError as e:
            raise UsageError(f"cannot create the journal at {path}: {e.strerror or e}") from e
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to an existing database file; SQLite must not create one (mode=rw)."""
    try:
        conn = sqlite3.connect(
            f"file:{_uri_path(path)}?mode=rw",
            uri=True,
            timeout=BUSY_TIMEOUT_SECONDS,
            check_same_thread=False,  # guarded by SqliteStore._mutex instead
            isolation_level=None,  # autocommit; transactions are explicit
        )
    except sqlite3.Error as e:
        raise UsageError(f"cannot open the journal at {path}: {e}") from e
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        # FULL: in WAL mode NORMAL may lose the last commits on power loss, and an
        # append that returned must survive (an intent record we lose is an orphan).
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as e:
        conn.close()
        raise _damaged_or_unusable(path, e) from e
    return conn


def _uri_path(path: Path) -> str:
    # A URI filename: '%', '?' and '#' in the path would otherwise be taken as URI syntax.
    return str(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def _is_corruption(e: sqlite3.DatabaseError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is None:
        return type(e) is sqlite3.DatabaseError
    return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _damaged_or_unusable(path: Path, e: sqlite3.DatabaseError) -> UsageError:
    if _is_corruption(e):
        return JournalDamaged(str(path), f"is damaged or not a database ({e})")
    return UsageError(f"cannot open the journal at {path}: {e}")


def _create_schema(conn: sqlite3.Connection) -> None:
    # executescript would COMMIT our IMMEDIATE transaction first, so run statement by
    # statement (triggers contain ';' inside BEGIN...END, hence complete_statement).
    buf = ""
    for line in _SCHEMA.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            conn.execute(buf)
            buf = ""


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The journal's schema version; refuse a database that is not a journal."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table: someone else's database
        row = None
    if row is None:
        raise JournalDamaged(
            str(path), "is not an atomicops journal (an SQLite database without its schema)"
        )
    return int(row[0])


def _upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Bring an older journal up to this version (in the caller's write transaction)."""
    # Read again inside the transaction: another process may have upgraded it meanwhile.
    version = _schema_version(conn, path)
    if version == 1:
        # Version 2 added the lease and the fence to the lock.
        for column in ("lease REAL NOT NULL DEFAULT 0", "heartbeat REAL NOT NULL DEFAULT 0", "fence INTEGER NOT NULL DEFAULT 0"):
            conn.execute(f"ALTER TABLE locks ADD COLUMN {column}")
    if version <= 2:
        _add_chain(conn)
    if version < SCHEMA_VERSION:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"the journal at {path} has schema version {version}, newer than this atomicops "
            f"understands ({SCHEMA_VERSION}); upgrade atomicops to use it"
        )


def _add_chain(conn: sqlite3.Connection) -> None:
    """Version 3: chain the events written before it, once, in the upgrade's transaction.

    The chain then vouches for those events as they were at the upgrade; the update trigger
    is set aside for this one rewrite and comes back with the schema.
    """
    conn.execute("ALTER TABLE events ADD COLUMN chain TEXT NOT NULL DEFAULT ''")
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    heads: dict[str, str] = {}
    rows = conn.execute(
        "SELECT seq, env, run_id, ts, type, op, step, data FROM events ORDER BY seq"
    ).fetchall()
    for seq, env, run_id, ts, type_, op, step, text in rows:
        heads[env] = link(heads.get(env, ""), env, run_id, ts, type_, op, step, text)
        conn.execute("UPDATE events SET chain = ? WHERE seq = ?", (heads[env], seq))


def _chain_before(conn: sqlite3.Connection, env: str, seq: int | None) -> str:
    """The chain value of ``env``'s last event (up to ``seq``); "" before the first."""
    if seq is None:
        row = conn.execute(
            "SELECT chain FROM events WHERE env = ? ORDER BY seq DESC LIMIT 1", (env,)
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT chain FROM events WHERE env = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
            (env, seq),
        ).fetchone()
    return str(row[0]) if row else ""


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


# to_json and from_json: callers that predate journal/records.py import them from here.
__all__ = ["SCHEMA_VERSION", "SqliteStore", "from_json", "to_json"]
