"""Engine behaviour that needs no cloud: concurrency, secrets, locks, interrupted runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from atomicops import api
from atomicops.errors import Locked, Refused, RunFailed
from atomicops.journal import open_store
from atomicops.journal.store import LockHolder

# The journal's subject: CI runs this module on both stores (tests/fixtures_journal.py).
pytestmark = pytest.mark.both_stores

PLANS = Path(__file__).parent / "plans"


def step_intervals(state, env):
    return {
        e["op"]: (e["data"]["started"], e["data"]["finished"])
        for e in api.history(env=env, state=state)
        if e["type"] == "step_done" and e["op"] in ("left", "right")
    }


def test_independent_operations_run_at_the_same_time(tmp_path, journal_state):
    state = journal_state
    report = api.apply(PLANS / "parallel.yaml", state=state, parallelism=4)
    assert sorted(report.applied) == ["after", "left", "right"]
    (l0, l1), (r0, r1) = step_intervals(state, "default").values()
    assert l0 < r1 and r0 < l1  # the recorded intervals overlap


def test_parallelism_one_runs_operations_one_after_another(tmp_path, journal_state):
    state = journal_state
    api.apply(PLANS / "parallel.yaml", state=state, parallelism=1, vars={"fn": "plan_helpers:pause"})
    (l0, l1), (r0, r1) = sorted(step_intervals(state, "default").values())
    assert l1 <= r0
    # `after` starts only when both of its dependencies are applied.
    hist = api.history(state=state)
    started_after = next(e["seq"] for e in hist if e["type"] == "op_started" and e["op"] == "after")
    applied = [e["seq"] for e in hist if e["type"] == "op_applied" and e["op"] in ("left", "right")]
    assert started_after > max(applied)


SECRET_PLAN = """
atomicops: 1
name: secret-test
secrets:
  token: {env: ATOMICOPS_TEST_TOKEN}
operations:
  - id: use-secret
    steps:
      - name: echo
        do: {run: ["sh", "-c", "echo token=$T"], env: {T: "${secrets.token}"}}
        outputs: {said: stdout}
        undo: {run: ["sh", "-c", "echo undo $T"], env: {T: "${secrets.token}"}}
      - name: fail
        read_only: true
        do: {run: ["sh", "-c", "echo \\"bad $T\\" >&2; exit 3"], env: {T: "${secrets.token}"}}
"""


def test_secret_values_never_reach_the_journal_or_errors(tmp_path, monkeypatch):
    canary = "canary-" + os.urandom(8).hex()
    monkeypatch.setenv("ATOMICOPS_TEST_TOKEN", canary)
    plan = tmp_path / "plan.yaml"
    plan.write_text(SECRET_PLAN)
    state = tmp_path / "state" / "j.db"
    with pytest.raises(RunFailed) as exc:
        api.apply(plan, state=str(state))
    assert canary not in str(exc.value)
    assert "bad ***" in str(exc.value)  # the library echoed the value; the sink redacted it
    hist = api.history(state=str(state))
    intent = next(e for e in hist if e["type"] == "step_intent")
    sealed = {"$sealed": [{"secret": "token"}]}  # a reference by name; data cannot forge it
    assert intent["data"]["action"]["env"] == {"T": sealed}
    done = next(e for e in hist if e["type"] == "step_done")
    # The secret's value in an output is journalled as a reference to it, not masked.
    assert done["data"]["outputs"]["said"] == {"$sealed": ["token=", {"secret": "token"}, "\n"]}
    assert done["data"]["undo"]["env"] == {"T": sealed}
    for f in state.parent.iterdir():
        assert canary.encode() not in f.read_bytes(), f
    assert canary not in json.dumps(api.status(state=str(state)))


def test_a_live_lock_refuses_a_second_run(tmp_path, journal_state):
    state = journal_state
    store = open_store(state)
    holder = LockHolder(lock_id="L1", run_id="other-run", pid=os.getppid(), host=os.uname().nodename, started=0.0, command="apply")
    store.acquire_lock("default", holder)
    with pytest.raises(Locked) as exc:
        api.apply(PLANS / "parallel.yaml", state=state)
    assert exc.value.exit_code == 4
    assert exc.value.holder["run_id"] == "other-run"
    assert api.history(state=state) == []  # nothing ran, nothing was written
    assert api.unlock(state=state).lock_id == "L1"
    api.apply(PLANS / "parallel.yaml", state=state, vars={"fn": "plan_helpers:pause"})


def test_a_dead_holders_lock_is_taken_over(tmp_path, journal_state):
    state = journal_state
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    open_store(state).acquire_lock(
        "default", LockHolder(lock_id="L0", run_id="crashed", pid=dead.pid, host=os.uname().nodename, started=0.0)
    )
    api.apply(PLANS / "parallel.yaml", state=state, vars={"fn": "plan_helpers:pause"})
    started = next(e for e in api.history(state=state) if e["type"] == "run_started")
    assert started["data"]["took_over"]["run_id"] == "crashed"


def test_an_interrupted_step_with_no_probe_blocks_apply_and_is_settled_by_its_undo_on_rollback(tmp_path, journal_state):
    state = journal_state
    api.apply(PLANS / "parallel.yaml", state=state, vars={"fn": "plan_helpers:pause"})
    store = open_store(state)
    # A rollback run r0 that was killed mid-way: it wrote under its lock, which died with it.
    store.acquire_lock("default", LockHolder(lock_id="L-r0", run_id="r0", pid=os.getpid(), host=os.uname().nodename, started=0.0))
    fence = store.read_lock("default").fence
    store.append("default", "r0", "run_started", data={"command": "rollback"}, fence=fence)
    store.append("default", "r0", "undo_intent", op="after", step="last", data={}, fence=fence)
    store.append("default", "r0", "op_started", op="left", data={"depends_on": []}, fence=fence)
    store.append("default", "r0", "step_intent", op="left", step="meet", data={"action": {}}, fence=fence)
    store.release_lock("default", "L-r0")
    # An undo in flight: apply refuses until that rollback is finished (nothing re-applied over it).
    with pytest.raises(Refused) as refused:
        api.apply(PLANS / "parallel.yaml", state=state)
    assert "operation after was being rolled back" in str(refused.value) and refused.value.exit_code == 2
    # The rollback settles the interrupted step by its undo (it needs none of the step's
    # outputs), then finishes the interrupted undo and rolls the rest back.
    api.rollback(state=state)
    settled = [e.data for e in store.events("default") if e.type == "undo_done" and e.op == "left"]
    assert settled[0].get("settled_by") == "undo"
    doc = api.status(state=state)
    assert {o["status"] for o in doc["operations"]} == {"rolled_back"}
    assert doc["in_flight"] == []


SETTLING_PLAN = """
atomicops: 1
name: settling-test
operations:
  - id: a
    steps:
      - name: s
        do: {call: "plan_helpers:noop"}
        undo: {call: "plan_helpers:busy_until", args: {key: "KEY", refusals: 6}}
"""


def test_an_undo_refused_while_aws_settles_keeps_trying(tmp_path, monkeypatch, journal_state):
    monkeypatch.setenv("ATOMICOPS_SETTLE_DELAY", "0.01")
    plan = tmp_path / "plan.yaml"
    plan.write_text(SETTLING_PLAN.replace("KEY", tmp_path.name))
    import shutil

    shutil.copy(PLANS / "plan_helpers.py", tmp_path / "plan_helpers.py")
    state = journal_state
    api.apply(plan, state=state)
    api.rollback(state=state)  # 3 quick tries, then the settling schedule
    assert api.status(state=state)["operations"][0]["status"] == "rolled_back"
    undone = [e for e in api.history(state=state) if e["type"] == "undo_done"]
    assert len(undone) == 1 and undone[0]["data"]["already_gone"] is False
