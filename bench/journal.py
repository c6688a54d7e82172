"""B3, the journal: the latency of one durable journal transition (median, p99) and the
journal's bytes per step, against a bare fsynced SQLite insert as the floor.

    python bench/journal.py --steps 2000
    python bench/journal.py --steps 20              # what CI runs (a smoke run, not a timing)

A step is two transitions, as the engine writes them: ``step_started`` (the intent, with
the step's idempotency token) and ``step_done`` (outputs, the resolved undo, timings). Each
goes through ``SqliteStore.append`` exactly as a run's do: one IMMEDIATE transaction with the
fence check and the hash chain, WAL, synchronous=FULL. The floor is one INSERT of the same
JSON text committed the same way on a bare connection, alternated with the journal's appends
so that load on a shared machine falls on both alike. Writes bench/results/journal.json.

    python bench/journal.py --steps 2000 --postgres            # and the PostgreSQL store
    python bench/journal.py --steps 2000 --postgres URL        # ... on that server

With ``--postgres`` the same steps also go through ``PostgresStore.append`` (one transaction:
the lock row locked, the fence checked, the chain's previous link read, the insert, the
commit), against a bare INSERT of the same JSON committed on its own connection as the floor.
Without a URL it starts a scratch server from the sandbox's binaries over TCP on loopback,
with ``fsync`` and ``synchronous_commit`` turned back on (the sandbox turns them off): every
commit durable, as on a real server. A remote server adds its network round trips (three per
transition) to every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from atomicops.journal.sqlite import SqliteStore
from atomicops.journal.store import JournalStore, LockHolder

RESULTS = Path(__file__).resolve().parent / "results" / "journal.json"
ENV = "bench"


def step_events(i: int) -> list[tuple[str, dict[str, object]]]:
    """The two events of one step, with payloads shaped like an AWS create's."""
    now = time.time()
    started = {"token": uuid.uuid4().hex, "key": f"op{i // 3}/step{i % 3}", "attempt": 1}
    done = {
        "outputs": {"vpc_id": f"vpc-{uuid.uuid4().hex[:17]}", "arn": f"arn:aws:ec2:us-east-1:123456789012:vpc/{i}"},
        "undo": {"aws": "ec2.delete_vpc", "params": {"VpcId": f"vpc-{uuid.uuid4().hex[:17]}"}},
        "irreversible": None, "read_only": False, "ok_errors": [], "started": now, "finished": now,
        "settled_by": None, "result": None,
    }
    return [("step_started", started), ("step_done", done)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def files_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--dir", type=Path, default=None, help="Where the journals go (default: the system's temp dir).")
    ap.add_argument("--postgres", nargs="?", const="", default=None, metavar="URL",
                    help="Measure the PostgreSQL store too (on URL, or a scratch server when none is given).")
    args = ap.parse_args()
    journal_ms: list[float] = []
    floor_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="atomicops-bench-", dir=args.dir) as scratch:
        db = Path(scratch) / "journal.db"
        store = SqliteStore(db)
        holder = LockHolder(lock_id=uuid.uuid4().hex[:12], run_id="bench", pid=os.getpid(),
                            host=socket.gethostname(), started=time.time(), command="bench")
        store.acquire_lock(ENV, holder)
        held = store.read_lock(ENV)
        assert held is not None
        store.close()  # closing the last connection checkpoints the WAL: sizes compare file to file
        start_size = files_size(db)
        store = SqliteStore(db)
        bare = sqlite3.connect(Path(scratch) / "floor.db", isolation_level=None)
        bare.execute("PRAGMA journal_mode = WAL")
        bare.execute("PRAGMA synchronous = FULL")
        bare.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, data TEXT)")
        for i in range(args.steps):
            for type_, data in step_events(i):
                t0 = time.perf_counter()
                store.append(ENV, "bench", type_, op=f"op{i // 3}", step=f"step{i % 3}", data=data, fence=held.fence)
                journal_ms.append((time.perf_counter() - t0) * 1000)
                text = json.dumps(data, sort_keys=True)
                t0 = time.perf_counter()
                bare.execute("BEGIN IMMEDIATE")
                bare.execute("INSERT INTO events (data) VALUES (?)", (text,))
                bare.execute("COMMIT")
                floor_ms.append((time.perf_counter() - t0) * 1000)
        store.close()
        bare.close()
        bytes_per_step = (files_size(db) - start_size) / args.steps  # whole pages: 0 for a few steps
        with sqlite3.connect(db) as conn:
            (row_bytes,) = conn.execute(
                "SELECT sum(length(data) + length(chain) + length(run_id) + length(type) + length(env)"
                " + coalesce(length(op), 0) + coalesce(length(step), 0)) FROM events").fetchone()
    rows = []
    for name, ms in (("bare sqlite insert (floor)", floor_ms), ("journal append", journal_ms)):
        rows.append({"what": name, "median_ms": round(statistics.median(ms), 3), "p99_ms": round(percentile(ms, 0.99), 3),
                     "ratio": round(statistics.median(ms) / statistics.median(floor_ms), 2)})
    doc = {"benchmark": "journal", "steps": args.steps, "transitions": len(journal_ms), "python": sys.version.split()[0],
           "sqlite": sqlite3.sqlite_version, "rows": rows, "journal_bytes_per_step": round(bytes_per_step, 1),
           "row_bytes_per_step": round(row_bytes / args.steps, 1),
           "target_median_ms": 2.0, "meets": rows[1]["median_ms"] <= 2.0}
    if args.postgres is not None:
        doc["postgresql"] = bench_postgres(args.postgres, args.steps, args.dir)
        rows += doc["postgresql"]["rows"]
    print(f"{'transition':<34} {'median ms':>10} {'p99 ms':>8} {'x floor':>8}")
    for r in rows:
        print(f"{r['what']:<34} {r['median_ms']:>10.3f} {r['p99_ms']:>8.3f} {r['ratio']:>8.2f}")
    print(f"journal bytes per step: {doc['journal_bytes_per_step']:.0f} on disk, {doc['row_bytes_per_step']:.0f} in rows   target median <= 2 ms: "
          f"{'yes' if doc['meets'] else 'NO'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def hold(store: JournalStore) -> int:
    """Take the bench environment's lock, as a run does, and return its fence."""
    holder = LockHolder(lock_id=uuid.uuid4().hex[:12], run_id="bench", pid=os.getpid(),
                        host=socket.gethostname(), started=time.time(), command="bench")
    store.acquire_lock(ENV, holder)
    held = store.read_lock(ENV)
    assert held is not None
    return held.fence


def bench_postgres(url: str, steps: int, scratch_dir: Path | None) -> dict[str, object]:
    """The PostgreSQL store's transition against a bare committed INSERT, alternated."""
    import psycopg

    from atomicops.journal.postgres import PostgresStore

    with tempfile.TemporaryDirectory(prefix="atomicops-bench-pg-", dir=scratch_dir) as scratch:
        server = None
        if not url:
            from atomicops.sandbox import postgres

            # The sandbox passes its settings as -c options, which no ALTER SYSTEM overrides:
            # this scratch server gets durable ones instead.
            sandbox_settings = postgres._SETTINGS
            postgres._SETTINGS = {**sandbox_settings, "fsync": "on", "synchronous_commit": "on"}
            try:
                server = postgres.start(Path(scratch) / "data")
            finally:
                postgres._SETTINGS = sandbox_settings
            url = server.url
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP SCHEMA IF EXISTS atomicops_bench CASCADE")
                conn.execute("CREATE SCHEMA atomicops_bench")
                conn.execute("CREATE TABLE atomicops_bench.events (seq bigserial PRIMARY KEY, data text)")
                settings: dict[str, str] = dict(conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'server_version')"
                ).fetchall())
            store = PostgresStore(url)
            fence = hold(store)
            bare = psycopg.connect(url, autocommit=True, prepare_threshold=None)
            journal_ms: list[float] = []
            floor_ms: list[float] = []
            for i in range(steps):
                for type_, data in step_events(i):
                    t0 = time.perf_counter()
                    store.append(ENV, "bench", type_, op=f"op{i // 3}", step=f"step{i % 3}", data=data, fence=fence)
                    journal_ms.append((time.perf_counter() - t0) * 1000)
                    text = json.dumps(data, sort_keys=True)
                    t0 = time.perf_counter()
                    bare.execute("INSERT INTO atomicops_bench.events (data) VALUES (%s)", (text,))
                    floor_ms.append((time.perf_counter() - t0) * 1000)
            bare.execute("DROP SCHEMA atomicops_bench CASCADE")
            bare.close()
            store.close()
        finally:
            if server is not None:
                postgres.stop(server, remove_data=True)
    rows = []
    for name, ms in (("bare postgresql insert (floor)", floor_ms), ("journal append (postgresql)", journal_ms)):
        rows.append({"what": name, "median_ms": round(statistics.median(ms), 3), "p99_ms": round(percentile(ms, 0.99), 3),
                     "ratio": round(statistics.median(ms) / statistics.median(floor_ms), 2)})
    return {"server": settings.get("server_version"), "fsync": settings.get("fsync"),
            "synchronous_commit": settings.get("synchronous_commit"), "scratch_server": server is not None, "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
