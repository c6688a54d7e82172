"""A run that loses its lock stops: its steps see ``ctx.cancel``, it starts nothing new, and
the journal refuses its writes (there is no unfenced write path)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from atomicops import api
from atomicops.engine.run import Run
from atomicops.errors import StaleLease
from atomicops.journal.sqlite import SqliteStore
from atomicops.journal.store import LockHolder


def thief() -> LockHolder:
    """Another live run (a long lease, so nobody takes it back)."""
    return LockHolder("thief-lock", "thief-run", os.getpid(), socket.gethostname(), time.time(), "apply", lease=3600)


STEPS = '''
import os
import socket
import time
from pathlib import Path

from atomicops.journal import open_store
from atomicops.journal.store import LockHolder


def take_over_then_work(ctx, state, marker):
    """Another run takes the environment over while this long step runs."""
    store = open_store(state)
    store.break_lock(ctx.env, force=True)
    store.acquire_lock(ctx.env, LockHolder("thief-lock", "thief-run", os.getpid(), socket.gethostname(),
                                           time.time(), "apply", lease=3600))
    store.close()
    seen = ctx.cancel.wait(60)  # the heartbeat finds the lock gone within a lease
    Path(marker).write_text("cancel seen" if seen else "cancel never set")
    return {"seen": seen}


def noop(ctx):
    return {}
'''

PLAN = '''
atomicops: 1
name: lease-lost
vars: {state: "", marker: ""}
operations:
  - id: first
    steps:
      - name: long
        read_only: true
        do: {call: "lease_steps:take_over_then_work", args: {state: "${vars.state}", marker: "${vars.marker}"}}
  - id: second
    depends_on: [first]
    steps:
      - {name: mark, read_only: true, do: {call: "lease_steps:noop"}}
'''


@pytest.mark.both_stores
def test_a_run_whose_lock_is_taken_over_is_cancelled_and_its_writes_refused(tmp_path, monkeypatch, journal_state):
    monkeypatch.setenv("ATOMICOPS_LEASE_SECONDS", "0.6")  # a heartbeat every 0.2 s
    (tmp_path / "lease_steps.py").write_text(STEPS)
    (tmp_path / "plan.yaml").write_text(PLAN)
    state, marker = journal_state, tmp_path / "marker"
    with pytest.raises(StaleLease):
        api.apply(str(tmp_path / "plan.yaml"), state=state, vars={"state": state, "marker": str(marker)})

    assert marker.read_text() == "cancel seen"
    events = api.history(state=str(state))
    run = events[0]["run"]
    # Nothing of the run after the takeover reached the journal: no result for the long step,
    # no start of the operation that needed it, no finish.
    assert [(e["type"], e["op"]) for e in events if e["run"] == run] == [
        ("run_started", None), ("op_started", "first"), ("step_intent", "first"),
    ]
    assert api.lock_holder(state=str(state)).run_id == "thief-run"


class _TakenOverOnAcquire(SqliteStore):
    """A real store in which another run takes the lock right after this one got it, before
    the run reads its fence back: the narrowest window a takeover can hit."""

    def acquire_lock(self, env: str, holder: LockHolder) -> LockHolder | None:
        previous = super().acquire_lock(env, holder)
        self.break_lock(env, force=True)
        super().acquire_lock(env, thief())
        return previous


def test_a_run_that_does_not_hold_its_fence_writes_nothing(tmp_path):
    store = _TakenOverOnAcquire(tmp_path / "journal.db")
    with pytest.raises(StaleLease), Run(store, "default", "apply"):
        pass
    assert store.events("default") == []
    assert store.read_lock("default").run_id == "thief-run"
