"""The SQLite journal store against real files: ordering, isolation, durability, privacy,
concurrency (threads and processes) and the environment lock."""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fixtures_journal import holder
from journal_edit import edit

from atomicops.errors import (
    EXIT_LOCKED,
    HolderAlive,
    JournalDamaged,
    Locked,
    StaleLease,
    UsageError,
)
from atomicops.journal import Event, LockHolder, open_store
from atomicops.journal.sqlite import SCHEMA_VERSION, SqliteStore

# -- helpers (kept here: tests/conftest.py belongs to the action-kind tests) --------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # A directory that does not exist yet, so every test also exercises its creation.
    return tmp_path / "state" / "journal.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(db_path)
    yield s
    s.close()


WRITER = LockHolder("test-writer", "test-writer", os.getpid(), socket.gethostname(), 0.0, "test")


def fence(store: Any, env: str) -> int:
    """The fence of ``env``'s lock, held by this test's writer (acquiring again is harmless):
    the store takes writes only from the lock's holder."""
    store.acquire_lock(env, WRITER)
    return int(store.read_lock(env).fence)


def exited_pid() -> int:
    """The pid of a real process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- events -------------------------------------------------------------------------------


def test_append_returns_the_event_as_stored(store: SqliteStore) -> None:
    before = time.time()
    ev = store.append(
        "prod", "r1", "step_intent", op="vpc", step="create-vpc", data={"b": 1, "a": [1, 2]},
        fence=fence(store, "prod"),
    )
    assert isinstance(ev, Event)
    assert (ev.env, ev.run_id, ev.type, ev.op, ev.step) == (
        "prod",
        "r1",
        "step_intent",
        "vpc",
        "create-vpc",
    )
    assert ev.data == {"a": [1, 2], "b": 1}
    assert before <= ev.ts <= time.time()
    assert store.events("prod") == [ev]


def test_data_is_json_with_non_json_values_as_strings(store: SqliteStore) -> None:
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    ev = store.append("e", "r", "t", data={"when": when, "path": Path("/x")}, fence=fence(store, "e"))
    # What append returns is what any later reader gets: no datetime in one, str in the other.
    assert ev.data == {"when": str(when), "path": "/x"}
    assert store.events("e")[0].data == ev.data


def test_missing_data_and_names_read_back_empty(store: SqliteStore) -> None:
    ev = store.append("e", "r", "run_started", fence=fence(store, "e"))
    assert ev.op is None and ev.step is None and ev.data == {}
    assert store.events("e") == [ev]


def test_seqs_increase_and_after_filters(store: SqliteStore) -> None:
    evs = [store.append("e", "r", f"t{i}", fence=fence(store, "e")) for i in range(5)]
    seqs = [e.seq for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [e.type for e in store.events("e", after=seqs[1])] == ["t2", "t3", "t4"]
    assert store.events("e", after=seqs[-1]) == []


def test_two_stores_on_one_file_see_one_ordered_log(db_path: Path) -> None:
    a, b = SqliteStore(db_path), SqliteStore(db_path)
    try:
        for i in range(6):
            (a if i % 2 == 0 else b).append("e", "r", f"t{i}", fence=fence(a, "e"))
        expected = [f"t{i}" for i in range(6)]
        assert [e.type for e in a.events("e")] == expected
        assert [e.type for e in b.events("e")] == expected
        assert a.events("e") == b.events("e")
    finally:
        a.close()
        b.close()


def test_a_write_by_another_process_is_visible(store: SqliteStore, db_path: Path) -> None:
    store.append("e", "r", "first", fence=fence(store, "e"))
    run_python(
        """
        import sys
        from atomicops.journal.sqlite import SqliteStore
        s = SqliteStore(sys.argv[1])
        s.append("e", "r2", "from-child", data={"pid": 1}, fence=s.read_lock("e").fence)
        s.close()
        """,
        str(db_path),
    )
    evs = store.events("e")
    assert [(e.run_id, e.type) for e in evs] == [("r", "first"), ("r2", "from-child")]
    assert store.append("e", "r", "third", fence=fence(store, "e")).seq > evs[-1].seq


def test_environments_are_isolated(store: SqliteStore) -> None:
    store.append("prod", "r1", "a", fence=fence(store, "prod"))
    store.append("staging", "r2", "b", fence=fence(store, "staging"))
    store.append("prod", "r1", "c", fence=fence(store, "prod"))
    assert [e.type for e in store.events("prod")] == ["a", "c"]
    assert [e.type for e in store.events("staging")] == ["b"]
    assert store.events("nowhere") == []


def test_environments_lists_those_with_events_or_a_lock(store: SqliteStore) -> None:
    assert store.environments() == []
    store.append("prod", "r", "a", fence=fence(store, "prod"))
    store.append("prod", "r", "b", fence=fence(store, "prod"))
    store.release_lock("prod", WRITER.lock_id)
    store.acquire_lock("locked-only", holder())
    store.acquire_lock("prod", holder())
    assert store.environments() == ["locked-only", "prod"]


def test_events_survive_close_and_reopen(db_path: Path) -> None:
    s = SqliteStore(db_path)
    written = [s.append("e", "r", "t", data={"i": i}, fence=fence(s, "e")) for i in range(3)]
    s.close()
    s2 = SqliteStore(db_path)
    try:
        assert s2.events("e") == written
    finally:
        s2.close()


def test_an_append_is_durable_without_close(db_path: Path) -> None:
    # A child appends and dies by SIGKILL without closing: the event must still be there.
    code = (
        "import os, signal, socket, sys\n"
        "from atomicops.journal import LockHolder\n"
        "from atomicops.journal.sqlite import SqliteStore\n"
        "s = SqliteStore(sys.argv[1])\n"
        "s.acquire_lock('e', LockHolder('w', 'w', os.getpid(), socket.gethostname(), 0.0))\n"
        "s.append('e', 'r', 'before-kill', data={'ok': True}, fence=s.read_lock('e').fence)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run([sys.executable, "-c", code, str(db_path)], check=False, timeout=60)
    assert child.returncode == -9
    with SqliteStore(db_path) as s:
        assert [(e.type, e.data) for e in s.events("e")] == [("before-kill", {"ok": True})]


def test_the_journal_refuses_edits_even_from_sqlite(store: SqliteStore, db_path: Path) -> None:
    store.append("e", "r", "t", fence=fence(store, "e"))
    assert not any(hasattr(store, name) for name in ("update", "delete", "delete_events"))
    raw = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("UPDATE events SET type = 'forged'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM events")
    finally:
        raw.close()
    assert [e.type for e in store.events("e")] == ["t"]


def test_settings_wal_full_and_busy_timeout(store: SqliteStore) -> None:
    with store._connection() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )


# -- privacy ------------------------------------------------------------------------------


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "journal.db"
    old = os.umask(0)  # the most permissive umask: the modes must come from us, not it
    try:
        s = SqliteStore(path)
        try:
            s.append("e", "r", "t", data={"x": 1}, fence=fence(s, "e"))
            # The -wal and -shm files exist while a connection is open.
            wal = path.with_name("journal.db-wal")
            shm = path.with_name("journal.db-shm")
            assert wal.exists() and shm.exists()
            assert mode(path) == 0o600
            assert mode(wal) == 0o600
            assert mode(shm) == 0o600
            assert mode(path.parent) == 0o700
        finally:
            s.close()
    finally:
        os.umask(old)


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    with SqliteStore(d / "journal.db"):
        pass
    assert mode(d) == 0o755
    assert mode(d / "journal.db") == 0o600


# -- concurrency --------------------------------------------------------------------------


def test_concurrent_appends_from_8_threads_lose_nothing(store: SqliteStore) -> None:
    per_thread = 50
    results: dict[int, list[int]] = {}
    start = threading.Barrier(8)

    held = fence(store, "e")

    def work(t: int) -> None:
        start.wait()
        results[t] = [
            store.append("e", f"r{t}", "t", data={"t": t, "i": i}, fence=held).seq
            for i in range(per_thread)
        ]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    all_seqs = [s for seqs in results.values() for s in seqs]
    assert len(all_seqs) == len(set(all_seqs)) == 8 * per_thread
    for seqs in results.values():
        assert seqs == sorted(seqs)  # each thread's appends land in its own order
    evs = store.events("e")
    assert [e.seq for e in evs] == sorted(all_seqs)
    for t in range(8):
        assert [e.data["i"] for e in evs if e.data["t"] == t] == list(range(per_thread))


def test_concurrent_appends_from_threads_with_their_own_stores(db_path: Path) -> None:
    # Separate connections contend on SQLite's file lock, as separate processes would.
    stores = [SqliteStore(db_path) for _ in range(4)]
    start = threading.Barrier(len(stores))
    held = fence(stores[0], "e")
    seqs: list[int] = []
    guard = threading.Lock()

    def work(s: SqliteStore, t: int) -> None:
        start.wait()
        mine = [s.append("e", "r", "t", data={"t": t}, fence=held).seq for _ in range(25)]
        with guard:
            seqs.extend(mine)

    threads = [threading.Thread(target=work, args=(s, t)) for t, s in enumerate(stores)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert len(seqs) == len(set(seqs)) == 100
        assert [e.seq for e in stores[0].events("e")] == sorted(seqs)
    finally:
        for s in stores:
            s.close()


def test_concurrent_appends_from_processes(db_path: Path) -> None:
    with SqliteStore(db_path) as parent:  # the schema, and the lock the children write under
        fence(parent, "e")
    code = (
        "import sys\n"
        "from atomicops.journal.sqlite import SqliteStore\n"
        "s = SqliteStore(sys.argv[1])\n"
        "f = s.read_lock('e').fence\n"
        "for i in range(30): s.append('e', sys.argv[2], 't', data={'i': i}, fence=f)\n"
        "s.close()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db_path), f"p{n}"]) for n in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    with SqliteStore(db_path) as s:
        evs = s.events("e")
    assert len(evs) == 120 and len({e.seq for e in evs}) == 120
    for n in range(4):
        assert [e.data["i"] for e in evs if e.run_id == f"p{n}"] == list(range(30))


# -- the lock -----------------------------------------------------------------------------


def test_acquire_a_free_lock(store: SqliteStore) -> None:
    h = holder()
    assert store.read_lock("prod") is None
    assert store.acquire_lock("prod", h) is None
    assert same(store.read_lock("prod"), h)


def test_a_live_holder_locks_others_out_with_its_details(db_path: Path) -> None:
    a, b = SqliteStore(db_path), SqliteStore(db_path)
    try:
        first = holder()
        a.acquire_lock("prod", first)
        with pytest.raises(Locked) as info:
            b.acquire_lock("prod", holder())
        assert info.value.env == "prod"
        assert same(info.value.holder, first)
        assert info.value.exit_code == EXIT_LOCKED
        assert first.lock_id in str(info.value) and str(os.getpid()) in str(info.value)
        assert same(b.read_lock("prod"), first)
        # Other environments are not affected.
        assert b.acquire_lock("staging", holder()) is None
    finally:
        a.close()
        b.close()


def test_the_holder_may_acquire_again(store: SqliteStore) -> None:
    h = holder()
    store.acquire_lock("prod", h)
    assert store.acquire_lock("prod", h) is None
    # Same process and run under a new lock id: re-entry, and the outer lock stays recorded
    # so a nested acquire/release cannot drop it.
    again = LockHolder(uuid.uuid4().hex, h.run_id, h.pid, h.host, time.time())
    assert store.acquire_lock("prod", again) is None
    assert same(store.read_lock("prod"), h)
    store.release_lock("prod", again.lock_id)
    assert same(store.read_lock("prod"), h)


def test_the_same_pid_with_another_run_is_locked_out(store: SqliteStore) -> None:
    store.acquire_lock("prod", holder(run_id="one"))
    with pytest.raises(Locked):
        store.acquire_lock("prod", holder(run_id="two"))


def test_release_needs_the_right_lock_id(store: SqliteStore) -> None:
    h = holder()
    store.acquire_lock("prod", h)
    store.release_lock("prod", "not-the-id")
    assert same(store.read_lock("prod"), h)
    store.release_lock("prod", h.lock_id)
    assert store.read_lock("prod") is None
    store.release_lock("prod", h.lock_id)  # releasing a free lock is a no-op
    assert store.acquire_lock("prod", holder()) is None


def test_a_dead_holder_is_taken_over(store: SqliteStore) -> None:
    dead = holder(exited_pid())
    store.acquire_lock("prod", dead)
    new = holder()
    assert same(store.acquire_lock("prod", new), dead)
    assert same(store.read_lock("prod"), new)


def test_a_zombie_holder_is_taken_over(store: SqliteStore) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("zombie detection reads /proc")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{proc.pid}/stat").read_bytes().rpartition(b")")[2].split()[0] != b"Z":
            assert time.monotonic() < deadline, "child never exited"
            time.sleep(0.01)
        zombie = holder(proc.pid)
        store.acquire_lock("prod", zombie)
        assert same(store.acquire_lock("prod", holder()), zombie)
    finally:
        proc.wait()


def test_a_holder_on_another_host_is_never_taken_over(store: SqliteStore) -> None:
    # Its pid means nothing here, even one that is certainly not running on this host.
    remote = holder(exited_pid(), host="some-other-host.example")
    store.acquire_lock("prod", remote)
    with pytest.raises(Locked) as info:
        store.acquire_lock("prod", holder())
    assert info.value.holder["host"] == "some-other-host.example"


def test_a_live_holder_in_another_process_keeps_its_lock(db_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        with SqliteStore(db_path) as s:
            s.acquire_lock("prod", holder(child.pid))
            with pytest.raises(Locked):
                s.acquire_lock("prod", holder())
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    with SqliteStore(db_path) as s:
        assert s.acquire_lock("prod", holder()) is not None  # now it has exited


def test_only_one_of_many_contenders_wins(db_path: Path) -> None:
    SqliteStore(db_path).close()
    stores = [SqliteStore(db_path) for _ in range(8)]
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []
    guard = threading.Lock()

    def contend(s: SqliteStore) -> None:
        start.wait()
        try:
            s.acquire_lock("prod", holder())
            result = "won"
        except Locked:
            result = "locked"
        with guard:
            outcomes.append(result)

    threads = [threading.Thread(target=contend, args=(s,)) for s in stores]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for s in stores:
        s.close()
    assert sorted(outcomes) == ["locked"] * 7 + ["won"]


def test_break_lock_returns_the_holder(store: SqliteStore) -> None:
    h = holder(exited_pid())
    store.acquire_lock("prod", h)
    assert same(store.break_lock("prod"), h)
    assert store.read_lock("prod") is None
    assert store.break_lock("prod") is None


def test_break_lock_by_id(store: SqliteStore) -> None:
    h = holder(exited_pid())
    store.acquire_lock("prod", h)
    with pytest.raises(UsageError, match=h.lock_id):
        store.break_lock("prod", "stale-id")
    assert same(store.read_lock("prod"), h)
    assert same(store.break_lock("prod", h.lock_id), h)
    assert store.read_lock("prod") is None


def test_break_lock_of_a_live_local_holder_needs_force(store: SqliteStore) -> None:
    h = holder()  # this very process, which took the lock just now: alive
    store.acquire_lock("prod", h)
    with pytest.raises(HolderAlive, match=f"pid {h.pid}") as caught:
        store.break_lock("prod", h.lock_id)
    assert caught.value.exit_code == EXIT_LOCKED and caught.value.holder["run_id"] == h.run_id
    assert same(store.read_lock("prod"), h)
    assert same(store.break_lock("prod", h.lock_id, force=True), h)
    assert store.read_lock("prod") is None


def test_break_lock_of_a_holder_elsewhere_needs_no_force(store: SqliteStore) -> None:
    h = holder(host="another-host.example")  # nothing here can tell whether it runs
    store.acquire_lock("prod", h)
    assert same(store.break_lock("prod", h.lock_id), h)


# -- opening ------------------------------------------------------------------------------


def test_reopening_keeps_the_schema_and_checks_its_version(db_path: Path) -> None:
    SqliteStore(db_path).close()
    SqliteStore(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(UsageError, match="schema version 99"):
        SqliteStore(db_path)


def test_a_file_that_is_not_a_database_is_a_usage_error(tmp_path: Path) -> None:
    bogus = tmp_path / "plan.yaml"
    bogus.write_text("atomicops: 1\n" * 200)
    with pytest.raises(UsageError, match="cannot open the journal"):
        SqliteStore(bogus)


def test_a_closed_store_says_so(db_path: Path) -> None:
    s = SqliteStore(db_path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.events("e")


def test_open_store_default_location(tmp_path: Path) -> None:
    with closing(open_store(None, base_dir=str(tmp_path))) as s:
        assert isinstance(s, SqliteStore)
        assert s.path == tmp_path / ".atomicops" / "journal.db"
        assert s.url == f"sqlite:///{tmp_path}/.atomicops/journal.db"
    assert mode(tmp_path / ".atomicops") == 0o700


@pytest.mark.parametrize(
    ("state", "relative_result"),
    [
        ("j.db", "j.db"),
        ("sub/j.db", "sub/j.db"),
        ("sqlite:///j.db", "j.db"),
        ("sqlite:///sub/j.db", "sub/j.db"),
        ("SQLite:///j.db", "j.db"),
        ("newdir/", "newdir/journal.db"),
        ("sqlite:///newdir/", "newdir/journal.db"),
    ],
)
def test_open_store_relative_forms(tmp_path: Path, state: str, relative_result: str) -> None:
    with closing(open_store(state, base_dir=str(tmp_path))) as s:
        assert isinstance(s, SqliteStore)
        assert s.path == tmp_path / relative_result
        assert s.path.exists()


def test_open_store_absolute_forms(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "j.db"
    elsewhere = str(tmp_path / "unused")
    for state in (str(target), f"sqlite:///{target}", f"sqlite:////{str(target).lstrip('/')}"):
        with closing(open_store(state, base_dir=elsewhere)) as s:
            assert isinstance(s, SqliteStore) and s.path == target
    assert not Path(elsewhere).exists()


def test_open_store_directory_means_journal_db_inside(tmp_path: Path) -> None:
    d = tmp_path / "existing"
    d.mkdir()
    for state in (str(d), f"sqlite:///{d}"):
        with closing(open_store(state)) as s:
            assert isinstance(s, SqliteStore) and s.path == d / "journal.db"


def test_open_store_stores_share_a_file(tmp_path: Path) -> None:
    a = open_store(None, base_dir=str(tmp_path))
    b = open_store(str(tmp_path / ".atomicops"))
    try:
        a.append("e", "r", "t", fence=fence(a, "e"))
        assert [e.type for e in b.events("e")] == ["t"]
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    "url", ["postgresql://u@127.0.0.1:1/atomicops", "postgres://127.0.0.1:1/x", "POSTGRESQL://127.0.0.1:1/x"]
)
def test_open_store_postgres_urls_go_to_the_postgres_store(url: str) -> None:
    # Nothing listens on port 1: the PostgreSQL store tried, and says where (tests/test_journal_postgres.py).
    with pytest.raises(UsageError, match=r"cannot reach the journal at 127\.0\.0\.1:1/"):
        open_store(url)


@pytest.mark.parametrize("url", ["mysql://db/x", "file:///tmp/x.db", "s3://bucket/key"])
def test_open_store_unknown_scheme_lists_the_supported_ones(url: str) -> None:
    with pytest.raises(UsageError) as info:
        open_store(url)
    message = str(info.value)
    assert "sqlite://" in message and "postgresql://" in message
    assert url.split("://")[0] in message


@pytest.mark.parametrize("url", ["sqlite://host/j.db", "sqlite://", "sqlite:///", "  "])
def test_open_store_malformed(url: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        open_store(url, base_dir=str(tmp_path))


def same(a: Any, b: Any) -> bool:
    """The same holder, whatever heartbeat and fence the store stamped on it."""
    def ident(h: Any) -> dict[str, Any]:
        d = dict(h if isinstance(h, dict) else h.as_dict())
        d.pop("heartbeat", None)
        d.pop("fence", None)
        return d

    return a is not None and ident(a) == ident(b)


def test_a_holder_past_its_lease_is_taken_over_and_its_writes_are_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "j.db")
    old = LockHolder("old", "r-old", os.getpid(), socket.gethostname(), time.time(), "apply", lease=0.2)
    store.acquire_lock("prod", old)
    old_fence = store.read_lock("prod").fence
    store.append("prod", "r-old", "step_intent", fence=old_fence)  # holds: accepted
    with pytest.raises(Locked):  # alive and within its lease
        store.acquire_lock("prod", LockHolder("new", "r-new", os.getpid() + 1, socket.gethostname(), time.time()))
    time.sleep(0.3)  # no heartbeat: the lease lapses although the pid is alive
    taken = store.acquire_lock("prod", LockHolder("new", "r-new", os.getpid() + 1, socket.gethostname(), time.time()))
    assert taken is not None and taken.lock_id == "old"
    new_fence = store.read_lock("prod").fence
    assert new_fence > old_fence
    with pytest.raises(StaleLease):
        store.append("prod", "r-old", "step_done", fence=old_fence)
    assert not store.heartbeat("prod", "old")
    assert [e.type for e in store.events("prod")] == ["step_intent"]
    store.append("prod", "r-new", "step_intent", fence=new_fence)


def test_heartbeat_keeps_a_lease_alive(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "j.db")
    store.acquire_lock("prod", LockHolder("a", "r", os.getpid(), socket.gethostname(), time.time(), lease=0.3))
    for _ in range(4):
        time.sleep(0.1)
        assert store.heartbeat("prod", "a")
    with pytest.raises(Locked):
        store.acquire_lock("prod", LockHolder("b", "r2", os.getpid() + 1, socket.gethostname(), time.time()))


# -- the checksum chain -------------------------------------------------------------------

# The schema of version 2, the last without the chain, as journals written then have it.
V2_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, env TEXT NOT NULL, run_id TEXT NOT NULL,
    ts REAL NOT NULL, type TEXT NOT NULL, op TEXT, step TEXT, data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_env_seq ON events (env, seq);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the atomicops journal is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the atomicops journal is append-only'); END;
CREATE TABLE locks (
    env TEXT PRIMARY KEY, lock_id TEXT NOT NULL, run_id TEXT NOT NULL, pid INTEGER NOT NULL,
    host TEXT NOT NULL, started REAL NOT NULL, command TEXT NOT NULL DEFAULT '',
    lease REAL NOT NULL DEFAULT 0, heartbeat REAL NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0
);
INSERT INTO meta VALUES ('schema_version', '2');
"""




def test_a_version_2_journal_is_chained_on_open_and_later_edits_are_caught(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    raw = sqlite3.connect(path)
    raw.executescript(V2_SCHEMA)
    for i in range(3):
        raw.execute(
            "INSERT INTO events (env, run_id, ts, type, op, step, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("e", "r", 1000.5 + i, "step_done", "op", f"s{i}", f'{{"undo": "echo {i}"}}'),
        )
    raw.commit()
    raw.close()

    with SqliteStore(path) as s:
        assert [e.data for e in s.events("e")] == [{"undo": f"echo {i}"} for i in range(3)]
        s.append("e", "r", "step_done", data={"undo": "echo 3"}, fence=fence(s, "e"))
        assert [e.seq for e in s.events("e", after=2)] == [3, 4]
    with SqliteStore(path) as s:  # upgraded once: reopening changes nothing
        assert len(s.events("e")) == 4

    edit(path, "UPDATE events SET data = '{\"undo\": \"echo HIJACK\"}' WHERE seq = 2")
    with SqliteStore(path) as s, pytest.raises(JournalDamaged, match="event 2 ") as caught:
        s.events("e")
    assert caught.value.seq == 2 and caught.value.exit_code == 2


def test_a_removed_event_breaks_the_chain_at_the_next_one(db_path: Path) -> None:
    with SqliteStore(db_path) as s:
        for i in range(4):
            s.append("e", "r", "t", data={"i": i}, fence=fence(s, "e"))
        s.append("other", "r", "t", fence=fence(s, "other"))
    edit(db_path, "DELETE FROM events WHERE seq = 2")
    with SqliteStore(db_path) as s:
        assert len(s.events("other")) == 1  # each environment has its own chain
        with pytest.raises(JournalDamaged) as caught:
            s.events("e")
        assert caught.value.seq == 3


def test_a_journal_deleted_while_its_log_remains_is_refused(db_path: Path) -> None:
    # A process that dies without closing leaves the -wal file holding its last commits.
    run_python(
        """
        import os, sys
        from atomicops.journal.sqlite import SqliteStore
        from atomicops.journal.store import LockHolder
        s = SqliteStore(sys.argv[1])
        s.acquire_lock("e", LockHolder("l1", "r", os.getpid(), "h", 0.0, "apply", 30.0))
        s.append("e", "r", "step_done", data={"id": "vpc-1"}, fence=s.read_lock("e").fence)
        os._exit(0)
        """,
        str(db_path),
    )
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists()
    db_path.unlink()  # rm journal.db: the journal existed, and its log says so

    with pytest.raises(JournalDamaged, match="write-ahead log"):
        SqliteStore(db_path)
    assert not db_path.exists()
