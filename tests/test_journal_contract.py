"""The journal contract (journal/store.py), store-agnostic: the same tests on SQLite and, with
``ATOMICOPS_TEST_STORE=postgresql``, on PostgreSQL. What only one store has (SQLite's file
handling, PostgreSQL's schema versions and GRANTs) is tested in that store's own file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_journal import ON_POSTGRES, holder
from journal_edit import edit

from atomicops.errors import (
    CopyRefused,
    HolderAlive,
    JournalDamaged,
    Locked,
    StaleLease,
    UsageError,
)
from atomicops.journal import Event, JournalStore, LockHolder, open_store

pytestmark = pytest.mark.both_stores


@pytest.fixture
def store(journal_state: str) -> Iterator[JournalStore]:
    s = open_store(journal_state)
    yield s
    s.close()


def held(store: JournalStore, env: str, who: LockHolder | None = None) -> int:
    """Take ``env``'s lock (for ``who``, or a fresh holder) and return its fence."""
    store.acquire_lock(env, who or holder())
    lock = store.read_lock(env)
    assert lock is not None
    return lock.fence


def tamper(state: str, sql: str) -> None:
    """Change the events table behind atomicops's back, its append-only guard set aside."""
    if ON_POSTGRES:
        import psycopg

        with psycopg.connect(state, autocommit=True) as conn:
            conn.execute("ALTER TABLE atomicops.events DISABLE TRIGGER USER")
            conn.execute(sql.replace(" events ", " atomicops.events "))
    else:
        edit(Path(state), sql)


def exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- events -------------------------------------------------------------------------------


def test_append_returns_the_event_as_a_reader_gets_it(store: JournalStore) -> None:
    fence = held(store, "prod")
    before = time.time()
    ev = store.append("prod", "r1", "step_intent", op="vpc", step="create-vpc",
                      data={"b": 1, "a": [1, 2], "blob": b"\x00\xff", "f": 0.1 + 0.2}, fence=fence)
    assert isinstance(ev, Event)
    assert (ev.env, ev.run_id, ev.type, ev.op, ev.step) == ("prod", "r1", "step_intent", "vpc", "create-vpc")
    assert ev.data == {"a": [1, 2], "b": 1, "blob": b"\x00\xff", "f": 0.1 + 0.2}
    assert before <= ev.ts <= time.time()
    assert store.events("prod") == [ev]


def test_events_are_per_environment_in_order_and_after_a_seq(store: JournalStore) -> None:
    fa, fb = held(store, "a"), held(store, "b")
    written = [store.append(env, "r", f"t{i}", data={"i": i}, fence=fa if env == "a" else fb)
               for i in range(6) for env in ("a", "b")]
    a = store.events("a")
    assert [e.type for e in a] == [f"t{i}" for i in range(6)]
    assert [e.seq for e in a] == sorted(e.seq for e in a)
    assert store.events("a", after=a[2].seq) == a[3:]
    assert store.events("b") == [e for e in written if e.env == "b"]
    assert store.events("nowhere") == []
    assert set(store.environments()) == {"a", "b"}


def test_only_the_lock_holders_fence_writes(store: JournalStore) -> None:
    with pytest.raises(StaleLease):
        store.append("e", "r", "t", fence=1)  # nobody holds it
    old = holder(lease=0.2)
    fence = held(store, "e", old)
    store.append("e", "r", "t", fence=fence)
    time.sleep(0.5)  # past the lease, no heartbeat
    new = holder()
    previous = store.acquire_lock("e", new)
    assert previous is not None and previous.lock_id == old.lock_id
    current = store.read_lock("e")
    assert current is not None and current.lock_id == new.lock_id and current.fence > fence
    with pytest.raises(StaleLease) as refused:
        store.append("e", old.run_id, "late", fence=fence)
    assert (refused.value.fence, refused.value.current) == (fence, current.fence)
    assert [e.type for e in store.events("e")] == ["t"]
    assert not store.heartbeat("e", old.lock_id)
    assert store.heartbeat("e", new.lock_id)


def test_many_threads_append_and_every_event_is_there_once_in_order(store: JournalStore) -> None:
    fence = held(store, "e")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                store.append("e", f"r{n}", "t", data={"n": n, "i": i}, fence=fence)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = store.events("e")  # verifies the chain too
    assert len(events) == 200
    assert sorted((e.data["n"], e.data["i"]) for e in events) == [(n, i) for n in range(8) for i in range(25)]
    for n in range(8):  # each thread's own appends in the order it made them
        assert [e.data["i"] for e in events if e.data["n"] == n] == list(range(25))


def test_an_event_edited_outside_atomicops_is_refused_naming_its_seq(journal_state: str, store: JournalStore) -> None:
    fence = held(store, "e")
    evs = [store.append("e", "r", "t", data={"undo": f"delete {i}"}, fence=fence) for i in range(3)]
    with pytest.raises(Exception):  # noqa: B017 - either store's refusal
        tamper_through_store_guard(journal_state, evs[1].seq)
    assert store.events("e") == evs  # the guard held
    tamper(journal_state, f"UPDATE events SET data = '{{\"undo\": \"delete everything\"}}' WHERE seq = {evs[1].seq}")
    with pytest.raises(JournalDamaged) as damaged:
        store.events("e")
    assert damaged.value.seq == evs[1].seq


def tamper_through_store_guard(state: str, seq: int) -> None:
    """An UPDATE with the append-only guard in place: refused by the database."""
    if ON_POSTGRES:
        import psycopg

        with psycopg.connect(state, autocommit=True) as conn:
            conn.execute("UPDATE atomicops.events SET type = 'x' WHERE seq = %s", (seq,))
    else:
        import sqlite3

        conn = sqlite3.connect(state)
        try:
            conn.execute("UPDATE events SET type = 'x' WHERE seq = ?", (seq,))
            conn.commit()
        finally:
            conn.close()


# -- the lock -----------------------------------------------------------------------------


def test_a_live_holder_keeps_the_lock_and_reentry_keeps_its_row(store: JournalStore) -> None:
    first = holder()
    assert store.acquire_lock("e", first) is None
    fence = store.read_lock("e").fence
    with pytest.raises(Locked) as locked:
        store.acquire_lock("e", holder())
    assert locked.value.holder["lock_id"] == first.lock_id
    assert store.acquire_lock("e", first) is None  # re-entry
    assert store.read_lock("e").fence == fence
    store.release_lock("e", "someone-else")  # a no-op
    assert store.read_lock("e").lock_id == first.lock_id
    store.release_lock("e", first.lock_id)
    assert store.read_lock("e") is None


def test_a_dead_holder_here_is_taken_over_and_a_fence_never_repeats(store: JournalStore) -> None:
    dead = holder(pid=exited_pid())
    fence = held(store, "e", dead)
    taker = holder()
    previous = store.acquire_lock("e", taker)
    assert previous is not None and previous.lock_id == dead.lock_id
    assert store.read_lock("e").fence == fence + 1
    store.release_lock("e", taker.lock_id)
    assert held(store, "e") == fence + 2  # released and taken again: still a new fence


def test_a_holder_on_another_machine_is_waited_for_until_its_lease_lapses(store: JournalStore) -> None:
    elsewhere = holder(pid=exited_pid(), host="another-machine", lease=1.0)
    store.acquire_lock("e", elsewhere)  # its pid means nothing here: only the lease speaks
    with pytest.raises(Locked):
        store.acquire_lock("e", holder())
    deadline = time.monotonic() + 10
    while True:
        try:
            assert store.acquire_lock("e", holder()).lock_id == elsewhere.lock_id
            break
        except Locked:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    no_lease = holder(pid=exited_pid(), host="another-machine")
    store.acquire_lock("f", no_lease)
    time.sleep(0.2)
    with pytest.raises(Locked):  # no lease: nothing proves it gone, only `unlock` frees it
        store.acquire_lock("f", holder())


def test_break_lock_names_the_holder_and_refuses_a_live_one(store: JournalStore) -> None:
    live = holder()  # this very process
    store.acquire_lock("e", live)
    with pytest.raises(UsageError):
        store.break_lock("e", "not-the-id")
    with pytest.raises(HolderAlive):
        store.break_lock("e", live.lock_id)
    assert store.break_lock("e", live.lock_id, force=True).lock_id == live.lock_id
    assert store.read_lock("e") is None
    assert store.break_lock("e") is None


def test_two_processes_race_for_one_environment_and_exactly_one_wins(journal_state: str) -> None:
    code = textwrap.dedent("""
        import os, socket, sys, time, uuid
        from atomicops.errors import Locked
        from atomicops.journal import LockHolder, open_store
        store = open_store(sys.argv[1])
        me = LockHolder(uuid.uuid4().hex, "r" + str(os.getpid()), os.getpid(), sys.argv[2], time.time(), "race", 30.0)
        while time.time() < float(sys.argv[3]):
            time.sleep(0.001)
        try:
            store.acquire_lock("e", me)
            print("won")
        except Locked:
            print("lost")
    """)
    open_store(journal_state).close()  # the schema made before the race: the race is for the lock
    start = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, journal_state, f"machine-{n}", start],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]


# -- copies -------------------------------------------------------------------------------


def test_import_keeps_seqs_and_refuses_an_environment_already_there(store: JournalStore, tmp_path: Path) -> None:
    source = open_store(str(tmp_path / "source.db"))
    fence = held(source, "e")
    evs = [source.append("e", "r", "t", data={"i": i, "b": b"\x01"}, fence=fence) for i in range(3)]
    target_fence = held(store, "e")
    store.import_events("e", evs, fence=target_fence)
    assert store.events("e") == evs
    after = store.append("e", "r2", "next", fence=target_fence)
    assert after.seq > evs[-1].seq
    with pytest.raises(CopyRefused):
        store.import_events("e", evs, fence=target_fence)
    other = held(store, "other")
    with pytest.raises(CopyRefused, match="seq numbers"):
        store.import_events("other", [Event(evs[0].seq, "other", "r", 1.0, "t")], fence=other)
    with pytest.raises(StaleLease):
        store.import_events("third", evs, fence=99)
