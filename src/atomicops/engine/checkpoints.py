"""Checkpoints: named marks in the journal, and what ``rollback --to NAME`` undoes.

The rule is kept simple on purpose, so a person can predict it from ``atomicops history``:

* ``rollback --to NAME`` undoes every operation that **started after the mark** (an
  ``op_started`` or ``step_intent`` of it later than the mark's position), and whatever the
  journal records as depending on those; nothing else. An operation still running when the
  mark was made is undone whole: operations are atomic, there is no half of one to keep.
* A rollback that undoes an operation which started **before** a mark (the operation that
  carries the mark included) went back past that mark: the mark is dropped
  (``checkpoint_dropped``), since the state it names no longer exists. ``rollback --to NAME``
  keeps NAME itself, and drops every later mark it went back past.

Picture (journal positions left to right)::

    vpc ── aurora ── snapshot ✓ [before-data] ── schema ── stream-copy
                                       ▲            └──── undone by rollback --to before-data
                                       kept: started before the mark, verify still passes
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterable

from atomicops.engine.run import Run
from atomicops.errors import CheckpointExists, Refused, UnknownCheckpoint, UsageError
from atomicops.journal import marks
from atomicops.journal.marks import Checkpoint
from atomicops.journal.state import EnvState, derive
from atomicops.journal.store import Event
from atomicops.plan.model import Plan
from atomicops.plan.names import ID_MAX, ID_PATTERN

_STARTS = frozenset({"op_started", "step_intent"})

# Rollback threads undo operations in parallel; each drop reads the journal then writes, so
# two threads must not both drop the same mark.
_dropping = threading.Lock()


def find(st: EnvState, name: str) -> Checkpoint:
    """The live mark ``name``; :class:`UnknownCheckpoint` (exit 2) listing the others."""
    mark = st.checkpoints.get(name)
    if mark is None:
        raise UnknownCheckpoint(st.env, name, [c.name for c in sorted(st.checkpoints.values(), key=lambda c: c.seq)])
    return mark


def started_after(events: Iterable[Event], seq: int) -> set[str]:
    """Operations with a start (of the operation or of one of its steps) after ``seq``."""
    return {ev.op for ev in events if ev.op and ev.seq > seq and ev.type in _STARTS}


def record(run: Run, name: str, *, seq: int, op: str | None, by: str, made_by: str | None = None) -> Event:
    """Write the mark ``name`` standing for journal position ``seq``; a live mark of the same
    name (a plan's mark on an operation applied again) is superseded, never duplicated."""
    with _dropping:
        if name in run.state().checkpoints:
            run.record(marks.DROPPED, name=name, reason="superseded by a new mark of the same name")
        return run.record(marks.MARK, name=name, seq=seq, op=op, by=by, run=made_by or run.id)


def drop_passed(run: Run, keep: Collection[str] = ()) -> list[str]:
    """Drop every live mark (but ``keep``) that a rollback went back past: an operation
    undone after the mark was written that had started before the mark's position.

    A sweep over the whole journal rather than a note per undone operation, so that a run
    killed between an ``op_undone`` and its drop is caught up by the next rollback."""
    with _dropping:
        events = run.store.events(run.env)
        st = derive(run.env, events)
        live = [m for m in st.checkpoints.values() if m.name not in keep]
        if not live:
            return []
        op_start: dict[str, int] = {}
        undone: list[tuple[int, str]] = []  # (seq of op_undone, op)
        for ev in events:
            if ev.op is None:
                continue
            if ev.type == "op_started":
                op_start[ev.op] = ev.seq
            elif ev.type == "op_undone":
                undone.append((ev.seq, ev.op))
        dropped = []
        for mark in sorted(live, key=lambda m: m.seq):
            past = sorted({op for at, op in undone if at > mark.event_seq and op_start.get(op, mark.seq) < mark.seq})
            if past:
                run.record(marks.DROPPED, name=mark.name, reason=f"rolled back past it: {', '.join(past)} undone")
                dropped.append(mark.name)
        return dropped


def record_missing(run: Run, plan: Plan, st: EnvState, runs: Collection[str]) -> list[str]:
    """Marks a killed run did not get to write (crash point ``before_checkpoint``): an
    operation of ``runs`` that carries a checkpoint is applied, and no mark stands for it.
    Written at the position of the operation's ``op_applied``, as if on time."""
    wanted = {op.id: op.checkpoint for op in plan.operations if op.checkpoint}
    if not wanted:
        return []
    applied_at: dict[str, int] = {}
    for ev in run.store.events(run.env):
        if ev.type == "op_applied" and ev.op in wanted:
            applied_at[ev.op] = ev.seq
    written = []
    for op_id, name in wanted.items():
        op = st.ops.get(op_id)
        if op is None or op.status != "applied" or op.run_id not in runs or op_id not in applied_at:
            continue
        current = st.checkpoints.get(name)
        if current is not None and current.op == op_id and current.seq >= applied_at[op_id]:
            continue
        run.observer.note(f"checkpoint {name}: recording the mark the interrupted run did not write")
        record(run, name, seq=applied_at[op_id], op=op_id, by="resume", made_by=op.run_id)
        written.append(name)
    return written


def check_name(name: str) -> None:
    """A hand mark's name follows the plan's rules (an operation id's characters and length)."""
    if not re.fullmatch(ID_PATTERN, name) or len(name) > ID_MAX:
        raise UsageError(f"{name!r}: a checkpoint name is 1 to {ID_MAX} letters, digits, '.', '-' or '_', "
                         "starting with a letter or digit")


def mark_by_hand(run: Run, name: str) -> Checkpoint:
    """``atomicops checkpoint NAME``: mark the journal where it stands now."""
    check_name(name)
    st = run.state()
    if name in st.checkpoints:
        mark = st.checkpoints[name]
        raise CheckpointExists(run.env, name, f"marked at seq {mark.seq}" + (f" by operation {mark.op}" if mark.op else " by hand"))
    recorded = st.latest_plan()
    for op in (recorded.plan or {}).get("operations", []) if recorded else []:
        if op.get("checkpoint") == name:
            raise CheckpointExists(run.env, name, f"the plan's operation {op.get('id')} marks it when it completes")
    doubt = st.half_done()
    if doubt:
        # A mark in the middle of an interrupted run would name a state nobody can return to.
        raise Refused("checkpoint", [f"operation {o} is half done; finish it first (`atomicops resume` or "
                                     "`atomicops rollback`)" for o in doubt])
    record(run, name, seq=st.last_seq, op=None, by="hand")
    return run.state().checkpoints[name]


def undo_selection(run: Run, st: EnvState, seq: int) -> set[str]:
    """What ``rollback --to`` a mark at ``seq`` undoes: operations started after it, and
    whatever the journal records as depending on them (which can only have started later)."""
    from atomicops.engine.rollback import (  # rollback imports this module
        needs_undo,
        with_dependents,
    )

    after = started_after(run.store.events(run.env), seq) & set(st.ops)
    return {o for o in with_dependents(st, after) if needs_undo(st.ops[o])}
