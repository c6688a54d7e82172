"""Settle what a killed run left in flight: a step whose intent has no result.

For each such step the step's ``probe`` (a read-only action), or the built-in probe of its
AWS create call (engine/catalog.py), finds out whether the effect
took place: found, by a probe that proves the resource is this step's -> its outputs are
journalled as if the do had returned (with the undo resolved from them); not found -> the
step did not happen and will run again (with the same idempotency token). A step with no
probe, or whose probe cannot tell or found something it cannot prove is this step's, is
marked ``uncertain`` for ``atomicops resolve``; a step already uncertain is probed again only
when its probe proves ownership, as a built-in probe does (the others would only repeat
themselves).
An interrupted undo is simply run again: undo is idempotent.
"""

from __future__ import annotations

import time
from typing import Any

from atomicops.engine.apply import Applier
from atomicops.engine.probe import proves
from atomicops.engine.rollback import undo_step
from atomicops.errors import ResumeMismatch, UndoFailed
from atomicops.journal.state import EnvState, OpState, StepState
from atomicops.plan.model import Operation, Step


def find_step(applier: Applier, op_id: str, step_name: str) -> tuple[Operation, Step]:
    try:
        op = applier.plan.operation(op_id)
    except KeyError:
        raise ResumeMismatch([f"operation {op_id} is in the journal but not in the plan"]) from None
    for step in op.steps:
        if step.name == step_name:
            return op, step
    raise ResumeMismatch([f"step {op_id}/{step_name} is in the journal but not in the plan"])


def settle(applier: Applier) -> tuple[EnvState, list[str]]:
    """Settle every in-flight step; return the new state and the steps left uncertain."""
    run = applier.run
    state = run.state()
    uncertain: list[str] = []
    failures: list[UndoFailed] = []
    for op_state in state.ops.values():
        for st in op_state.steps.values():
            where = f"{op_state.id}/{st.name}"
            if st.status == "undo_intent" and st.read_only:
                run.record("undo_done", op=op_state.id, step=st.name, already_gone=True)
            elif st.status == "undo_intent":
                try:
                    undo_step(run, applier.rt, op_state.id, st)
                except UndoFailed as exc:
                    failures.append(exc)
            elif st.status in ("intent", "uncertain") and not _settle_do(applier, op_state, st):
                uncertain.append(where)
    if failures:
        raise failures[0]
    return run.state(), uncertain


def _settle_do(applier: Applier, op_state: OpState, st: StepState) -> bool:
    op, step = find_step(applier, op_state.id, st.name)
    if st.status == "uncertain" and not proves(step, op):
        return False  # asking again would tell nothing new: `atomicops resolve` decides it
    return applier.settle_intent(op, step, outputs_before(op, op_state, step), st.started or time.time(), intent_run=st.run_id)


def outputs_before(op: Operation, op_state: OpState, step: Step) -> dict[str, Any]:
    """Outputs of the operation's steps done before ``step`` (what ``${self...}`` sees)."""
    out: dict[str, Any] = {}
    for s in op.steps:
        if s.name == step.name:
            break
        done = op_state.steps.get(s.name)
        if done is not None and done.status == "done":
            out.update(done.outputs)
    return out
