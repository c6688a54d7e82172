"""Ctrl-C (SIGINT to a real ``atomicops apply``): it starts nothing new, undoes what was in
flight, rolls the run back (or keeps it when asked) and says so in its exit code; a second
Ctrl-C stops the rollback and leaves a journal that ``rollback`` finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atomicops import api
from atomicops.journal import open_store
from atomicops.journal.integrity import check_journal

STEPS = '''
from pathlib import Path

from atomicops.errors import ActionError


def wait_for_cancel(ctx, marker):
    """A long step that stops when the run is cancelled (as a stream copy does)."""
    Path(marker).write_text("waiting")
    if ctx.cancel.wait(120):
        raise ActionError("call", "stopped: the run was cancelled", code="Cancelled")
    return {}


def remove(ctx, path, hold=False):
    """An undo; with ``hold``, the first attempt waits until the rollback is stopped."""
    p = Path(path)
    held = p.with_name(p.name + ".undoing")
    if hold and not held.exists():
        held.write_text("undoing")
        if ctx.cancel.wait(120):
            raise ActionError("call", "stopped: the rollback was cancelled", code="Cancelled")
    p.unlink(missing_ok=True)
    return {}
'''

PLAN = '''
atomicops: 1
name: interrupt
vars: {dir: ".", hold_undo: false}
operations:
  - id: first
    steps:
      - name: make
        do: {run: [touch, "${vars.dir}/first"]}
        undo: {call: "interrupt_steps:remove", args: {path: "${vars.dir}/first", hold: "${vars.hold_undo}"}}
  - id: second
    depends_on: [first]
    steps:
      - name: make
        do: {run: [touch, "${vars.dir}/second"]}
        undo: {run: [rm, -f, "${vars.dir}/second"]}
      - name: wait
        read_only: true
        do: {call: "interrupt_steps:wait_for_cancel", args: {marker: "${vars.dir}/waiting"}}
  - id: third
    depends_on: [second]
    steps:
      - name: make
        do: {run: [touch, "${vars.dir}/third"]}
        undo: {run: [rm, -f, "${vars.dir}/third"]}
'''


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    (tmp_path / "interrupt_steps.py").write_text(STEPS)
    (tmp_path / "plan.yaml").write_text(PLAN)
    (tmp_path / "out").mkdir()
    return tmp_path / "plan.yaml"


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "atomicops.cli", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {path.name} appeared: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.05)


def journal(cwd: Path) -> tuple[dict, list]:
    state = str(cwd / ".atomicops" / "journal.db")
    store = open_store(state)
    try:
        return api.status(state=state), store.events("default")
    finally:
        store.close()


def test_ctrl_c_stops_undoes_the_step_in_flight_and_rolls_the_run_back(plan: Path):
    out = plan.parent / "out"
    proc = start("apply", str(plan), "--var", f"dir={out}", cwd=plan.parent)
    wait_for(out / "waiting", proc)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 1, err
    assert "interrupted" in err and "rolled back" in err
    # The operation in flight was undone, the one before it rolled back, the next never began.
    assert sorted(p.name for p in out.iterdir()) == ["waiting"]
    status, events = journal(plan.parent)
    # `second` failed as a whole (its done step undone at once), `first` was rolled back.
    assert {o["id"]: o["status"] for o in status["operations"]} == {"first": "rolled_back", "second": "failed"}
    assert status["last_run"]["outcome"] == "rolled_back"
    assert status["lock"] is None
    assert check_journal(events) == []


def test_ctrl_c_with_keep_keeps_what_was_applied_and_says_so(plan: Path):
    out = plan.parent / "out"
    proc = start("apply", str(plan), "--var", f"dir={out}", "--on-failure", "keep", cwd=plan.parent)
    wait_for(out / "waiting", proc)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 1, err
    assert "interrupted" in err and "kept" in err
    # The operation in flight is still all-or-nothing; the one before it is kept.
    assert sorted(p.name for p in out.iterdir()) == ["first", "waiting"]
    status, events = journal(plan.parent)
    assert {o["id"]: o["status"] for o in status["operations"]}["first"] == "applied"
    assert status["last_run"]["outcome"] == "kept"
    assert check_journal(events) == []


def test_a_second_ctrl_c_stops_the_rollback_and_rollback_finishes_it(plan: Path):
    out = plan.parent / "out"
    proc = start("apply", str(plan), "--var", f"dir={out}", "--var", "hold_undo=true", cwd=plan.parent)
    wait_for(out / "waiting", proc)
    os.kill(proc.pid, signal.SIGINT)
    wait_for(out / "first.undoing", proc)  # the rollback is undoing `first`
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 3, err
    assert "rollback incomplete" in err and "first" in err
    assert (out / "first").exists() and not (out / "second").exists()
    status, events = journal(plan.parent)
    assert status["last_run"]["outcome"] == "rollback_incomplete"
    assert status["lock"] is None
    assert check_journal(events) == []  # nothing left in flight

    again = subprocess.run([sys.executable, "-m", "atomicops.cli", "rollback"], cwd=plan.parent,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert not (out / "first").exists()
    status, _ = journal(plan.parent)
    assert {o["id"]: o["status"] for o in status["operations"]} == {"first": "rolled_back", "second": "failed"}
