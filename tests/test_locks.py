"""One run per environment, with real processes: a second run is refused naming the holder;
a holder paused past its lease is taken over, and when it wakes its writes are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atomicops import api

# The journal's subject: CI runs this module on both stores (tests/fixtures_journal.py).
pytestmark = pytest.mark.both_stores

PLANS = Path(__file__).parent / "plans"


def start(*args: str, cwd: Path, lease: float = 30.0) -> subprocess.Popen[str]:
    env = {**os.environ, "ATOMICOPS_LEASE_SECONDS": str(lease)}
    return subprocess.Popen([sys.executable, "-m", "atomicops.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_event(state: str, kind: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ("://" in state or Path(state).exists()) and any(e["type"] == kind for e in api.history(state=state)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event within {timeout}s")


def test_two_concurrent_applies_one_runs_the_other_exits_4_naming_the_holder(tmp_path, journal_state):
    state = journal_state  # the default journal in tmp_path, or ATOMICOPS_STATE's database
    release = tmp_path / "release"
    # The first run holds the lock until the second has been refused, however long a loaded
    # machine takes to start the second process.
    first = start("apply", str(PLANS / "slow.yaml"), "--var", "seconds=120", "--var", f"release={release}", cwd=tmp_path)
    wait_for_event(state, "step_intent")
    second = start("apply", str(PLANS / "slow.yaml"), cwd=tmp_path)
    out2, err2 = second.communicate(timeout=60)
    release.touch()
    assert second.returncode == 4, err2
    holder_run = next(e["run"] for e in api.history(state=state) if e["type"] == "run_started")
    assert holder_run in err2 and f"pid={first.pid}" in err2
    first.communicate(timeout=60)
    assert first.returncode == 0


def test_a_paused_holder_is_taken_over_and_its_writes_are_refused_after_it_wakes(tmp_path, journal_state):
    state = journal_state
    first = start("apply", str(PLANS / "slow.yaml"), "--var", "seconds=3", cwd=tmp_path, lease=1.0)
    wait_for_event(state, "step_intent")
    os.kill(first.pid, signal.SIGSTOP)
    try:
        time.sleep(1.5)  # past the lease: no heartbeat while stopped
        # The same vars: an operation left in flight is continued only by the plan it started with.
        second = start("apply", str(PLANS / "slow.yaml"), "--var", "seconds=3", cwd=tmp_path, lease=1.0)
        out2, err2 = second.communicate(timeout=60)
        assert second.returncode == 0, err2
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out1, err1 = first.communicate(timeout=60)
    assert first.returncode == 4, err1
    assert "no longer holds" in err1

    events = api.history(state=state)
    first_run = events[0]["run"]
    takeover = next(e for e in events if e["type"] == "run_started" and e["run"] != first_run)
    assert takeover["data"]["took_over"]["run_id"] == first_run
    # Nothing the paused run tried to write after the takeover reached the journal.
    assert [e for e in events if e["run"] == first_run and e["seq"] > takeover["seq"]] == []
    statuses = {o["id"]: o["status"] for o in api.status(state=state)["operations"]}
    assert statuses == {"slow": "applied", "after": "applied"}
    assert json.loads(json.dumps(api.status(state=state)))["lock"] is None
