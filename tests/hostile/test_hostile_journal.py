"""Hostile cases for the journal, the lock and the sandbox (issue 17).

Each case runs the CLI as a user would, in its own directory, and asserts the exit code, the
message and that nothing ran: no effect, no journal written, no process signalled.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import psycopg
import pytest
from journal_edit import edit
from run_cli import cli

from atomicops.sandbox.service import ServiceInfo


@pytest.fixture
def bystander() -> Iterator[psutil.Process]:
    """An unrelated live process, the kind a recorded pid may now belong to."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


# -- the sandbox never signals a pid it cannot prove is its own ----------------------------


@pytest.mark.parametrize("started_at", [None, 0.0])
def test_sandbox_down_spares_a_pid_whose_start_time_was_not_recorded(
    tmp_path: Path, bystander: psutil.Process, started_at: float | None
) -> None:
    root = tmp_path / "sb"
    data = tmp_path / "sb" / "aws"
    data.mkdir(parents=True)
    service = {
        "name": "aws", "url": "http://127.0.0.1:9", "pid": bystander.pid,
        "data_dir": str(data), "log_file": str(data / "moto.log"),
    }  # fmt: skip
    if started_at is not None:
        service["started_at"] = started_at
    state = {"root": str(root), "vars_file": str(root / "vars.yaml"), "services": {"aws": service}}
    (root / "state.json").write_text(json.dumps(state))

    proc = cli("sandbox", "down", "--dir", str(root), cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert f"pid {bystander.pid}" in proc.stderr and "not signalled" in proc.stderr, proc.stderr
    time.sleep(0.2)
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE


# -- a journal that existed is never taken for a new one -----------------------------------

PLAN = Path(__file__).parent / "journal" / "effects.yaml"


def apply(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("apply", str(PLAN), "--var", f"effects={cwd / 'effects.log'}", *args, cwd=cwd)


def effects(cwd: Path) -> list[str]:
    log = cwd / "effects.log"
    return log.read_text().split() if log.exists() else []


@pytest.fixture
def applied(tmp_path: Path) -> Path:
    """A directory where the plan was applied once: its effect ran, its journal exists."""
    proc = apply(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert effects(tmp_path) == ["do"]
    return tmp_path


def journal_of(cwd: Path) -> Path:
    return cwd / ".atomicops" / "journal.db"


def test_an_emptied_journal_is_refused_not_started_afresh(applied: Path) -> None:
    journal = journal_of(applied)
    os.truncate(journal, 0)  # truncate -s 0 journal.db

    proc = apply(applied)

    assert proc.returncode == 2, proc.stderr
    assert str(journal) in proc.stderr and "is empty" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert effects(applied) == ["do"]  # the effect did not run again
    assert journal.stat().st_size == 0  # and the journal was not rewritten


def test_a_truncated_journal_is_refused(applied: Path) -> None:
    journal = journal_of(applied)
    os.truncate(journal, 4096)  # the first page only: the tables' pages are gone

    proc = apply(applied)

    assert proc.returncode == 2, proc.stderr
    assert str(journal) in proc.stderr and "damaged" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert effects(applied) == ["do"]


def test_a_corrupt_journal_page_is_refused(applied: Path) -> None:
    journal = journal_of(applied)
    conn = sqlite3.connect(journal)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    conn.close()
    with open(journal, "r+b") as f:  # scribble over the events table's page, nothing else
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)

    proc = cli("rollback", cwd=applied)

    assert proc.returncode == 2, proc.stderr
    assert str(journal) in proc.stderr and "damaged" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert effects(applied) == ["do"]  # no undo ran


@pytest.mark.parametrize(
    "content",
    [b"atomicops: 1\n" * 400, b"SQLite format 3\x00" + b"\x00" * 100],
    ids=["text", "a-torn-header"],
)
def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path, content: bytes) -> None:
    journal = journal_of(tmp_path)
    journal.parent.mkdir()
    journal.write_bytes(content)

    proc = apply(tmp_path)

    assert proc.returncode == 2, proc.stderr
    assert str(journal) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert effects(tmp_path) == []
    assert journal.read_bytes() == content


def test_another_sqlite_database_is_not_made_into_a_journal(tmp_path: Path) -> None:
    journal = journal_of(tmp_path)
    journal.parent.mkdir()
    other = sqlite3.connect(journal)
    other.execute("CREATE TABLE customers (name TEXT)")
    other.commit()
    other.close()
    before = journal.read_bytes()

    proc = apply(tmp_path)

    assert proc.returncode == 2, proc.stderr
    assert "not an atomicops journal" in proc.stderr, proc.stderr
    assert effects(tmp_path) == []
    assert journal.read_bytes() == before


def test_dot_atomicops_being_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".atomicops").write_text("not a directory\n")

    proc = apply(tmp_path)

    assert proc.returncode == 2, proc.stderr
    assert str(tmp_path / ".atomicops") in proc.stderr and "not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert effects(tmp_path) == []
    assert (tmp_path / ".atomicops").read_text() == "not a directory\n"


def test_the_journal_being_a_directory_is_refused(tmp_path: Path) -> None:
    journal_of(tmp_path).mkdir(parents=True)

    proc = apply(tmp_path)

    assert proc.returncode == 2, proc.stderr
    assert str(journal_of(tmp_path)) in proc.stderr and "is a directory" in proc.stderr
    assert effects(tmp_path) == []
    assert list(journal_of(tmp_path).iterdir()) == []


@pytest.mark.parametrize("target_exists", [False, True], ids=["dangling", "to-a-journal"])
def test_a_symlinked_journal_is_refused(tmp_path: Path, target_exists: bool) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if target_exists:  # a real journal, applied once, reached through the link
        assert apply(elsewhere).returncode == 0
        (elsewhere / "effects.log").unlink()
    target = journal_of(elsewhere)
    work = tmp_path / "work"
    journal_of(work).parent.mkdir(parents=True)
    journal_of(work).symlink_to(target)

    proc = apply(work)

    assert proc.returncode == 2, proc.stderr
    assert str(journal_of(work)) in proc.stderr and "symbolic link" in proc.stderr, proc.stderr
    assert effects(work) == []
    assert target.exists() == target_exists  # a dangling link did not create its target


def test_an_edited_undo_is_detected_and_nothing_runs(applied: Path) -> None:
    journal = journal_of(applied)
    seq = sqlite3.connect(journal).execute(
        "SELECT seq FROM events WHERE type = 'step_done'"
    ).fetchone()[0]
    edit(
        journal,
        f"UPDATE events SET data = replace(data, 'echo undo', 'echo HIJACK') WHERE seq = {seq}",
    )

    proc = cli("rollback", cwd=applied)

    assert proc.returncode == 2, proc.stderr
    assert str(journal) in proc.stderr and f"event {seq}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert effects(applied) == ["do"]  # neither the undo nor the hijack ran


def test_a_deleted_event_is_detected(applied: Path) -> None:
    journal = journal_of(applied)
    seq = sqlite3.connect(journal).execute(
        "SELECT seq FROM events WHERE type = 'step_done'"
    ).fetchone()[0]
    edit(journal, f"DELETE FROM events WHERE seq = {seq}")

    proc = cli("status", cwd=applied)

    assert proc.returncode == 2, proc.stderr
    assert str(journal) in proc.stderr and "event" in proc.stderr, proc.stderr


# -- unlock does not break a live run's lock without --force --------------------------------

# Takes the lock of environment "prod" in journal argv[1] for pid argv[2] (0: itself), taken
# at argv[3] (0: now), then holds it as a running `apply` would.
HOLD = """
import os, socket, sys, time
from atomicops.journal import open_store
from atomicops.journal.store import LockHolder

pid, taken = int(sys.argv[2]) or os.getpid(), float(sys.argv[3]) or time.time()
holder = LockHolder("LIVE1", "run-live", pid, socket.gethostname(), taken, "apply plan.yaml")
open_store(sys.argv[1]).acquire_lock("prod", holder)
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held_by_a_live_run(tmp_path: Path) -> Iterator[tuple[Path, psutil.Process]]:
    """An environment whose lock a live local process holds, as a running `apply` would."""
    journal = journal_of(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(journal), "0", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield tmp_path, psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def lock_id_held(journal: Path) -> str | None:
    row = sqlite3.connect(journal).execute("SELECT lock_id FROM locks WHERE env = 'prod'").fetchone()
    return row[0] if row else None


def test_unlock_refuses_to_break_a_live_local_holder(
    held_by_a_live_run: tuple[Path, psutil.Process],
) -> None:
    cwd, holder = held_by_a_live_run

    proc = cli("unlock", "--env", "prod", "--lock-id", "LIVE1", cwd=cwd)

    assert proc.returncode == 4, proc.stderr
    assert f"pid {holder.pid}" in proc.stderr and "run-live" in proc.stderr, proc.stderr
    assert "still running" in proc.stderr and "--force" in proc.stderr, proc.stderr
    assert lock_id_held(journal_of(cwd)) == "LIVE1"  # nothing was broken
    assert holder.is_running()


def test_unlock_force_breaks_a_live_holder_and_says_whose(
    held_by_a_live_run: tuple[Path, psutil.Process],
) -> None:
    cwd, holder = held_by_a_live_run

    proc = cli("unlock", "--env", "prod", "--lock-id", "LIVE1", "--force", cwd=cwd)

    assert proc.returncode == 0, proc.stderr
    assert "run-live" in proc.stdout and f"pid {holder.pid}" in proc.stdout, proc.stdout
    assert lock_id_held(journal_of(cwd)) is None


def test_unlock_breaks_a_lock_whose_pid_now_belongs_to_a_later_process(
    tmp_path: Path, bystander: psutil.Process
) -> None:
    journal = journal_of(tmp_path)
    # The holder took the lock a minute before the bystander started: the bystander merely
    # reuses its pid, and the holder itself is gone.
    took_lock = bystander.create_time() - 60
    subprocess.run(
        [sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(journal),
         str(bystander.pid), str(took_lock)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    proc = cli("unlock", "--env", "prod", "--lock-id", "LIVE1", cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert lock_id_held(journal) is None
    assert bystander.is_running()


# -- the sandbox's PostgreSQL: no password-less superuser, no secret in its log --------------


def test_the_sandbox_postgres_refuses_a_connection_without_its_password(
    postgres_server: ServiceInfo,
) -> None:
    parts = urlsplit(postgres_server.url)
    assert parts.password is None  # the URL (a plan var, journalled) carries no password
    bare = f"postgresql://postgres@{parts.hostname}:{parts.port}/postgres"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(bare, connect_timeout=5).close()
    with psycopg.connect(postgres_server.url, connect_timeout=5) as conn:  # its URL still works
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    passfile = Path(parse_qs(parts.query)["passfile"][0])
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600


def test_the_sandbox_postgres_log_holds_no_statement_or_value(postgres_server: ServiceInfo) -> None:
    canary = f"CANARY{uuid.uuid4().hex}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        for statement in (
            f"SELECT '{canary}'::int",  # the error message quotes the value
            f"CREATE ROLE \"x\" LOGIN PASSWORD '{canary}' INVALID_OPTION",  # the statement
            f"DO $$ BEGIN RAISE EXCEPTION '{canary}'; END $$",
        ):
            with pytest.raises(psycopg.Error):
                conn.execute(statement)
    log = Path(postgres_server.log_file)
    assert log.exists()
    assert canary not in log.read_text(errors="replace")


# -- what `sandbox up` writes is private -----------------------------------------------------


def test_sandbox_up_keeps_its_directories_and_logs_private(tmp_path: Path) -> None:
    # Not under pytest's tmp: run as root, the PostgreSQL user must pass through the parents
    # (see tests/fixtures_postgres.server_dir); mkdtemp's directory is private to us anyway.
    work = Path(tempfile.mkdtemp(prefix="atomicops-test-hostile-"))
    root = work / ".atomicops" / "sandbox"
    try:
        proc = cli("sandbox", "up", cwd=work)
        assert proc.returncode == 0, proc.stderr
        state = json.loads((root / "state.json").read_text())

        directories = [work / ".atomicops", root] + [Path(s["data_dir"]) for s in state["services"].values()]
        files = [root / "state.json", root / "vars.yaml"] + [Path(s["log_file"]) for s in state["services"].values()]
        # Run as root, the PostgreSQL server's own user must pass through the directories
        # above its data directory: others get search (x) there, and nothing more.
        passed_through = {work / ".atomicops", root} if os.geteuid() == 0 else set()
        assert {str(d): oct(mode(d) & 0o077) for d in directories} == {
            str(d): oct(0o001 if d in passed_through else 0) for d in directories
        }
        assert {str(f): oct(mode(f)) for f in files} == {str(f): "0o600" for f in files}
    finally:
        cli("sandbox", "down", cwd=work)
        shutil.rmtree(work, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sandbox_up_does_not_write_through_a_planted_vars_link(tmp_path: Path) -> None:
    root = tmp_path / "sb"
    root.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (root / "vars.yaml").symlink_to(victim)
    try:
        proc = cli("sandbox", "up", "--service", "aws", "--dir", str(root), cwd=tmp_path)

        assert proc.returncode == 2, proc.stderr
        assert f"{root / 'vars.yaml'} is a symbolic link" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert victim.read_text() == "precious\n"
    finally:
        cli("sandbox", "down", "--dir", str(root), cwd=tmp_path)
