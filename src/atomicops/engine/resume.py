"""Settle what a killed run left in flight: a step whose intent has no result.

In this order, the first that applies (engine/settlement.py decides it, and ``validate``
shows it before anything runs):

0. A step whose ``do`` is the very read its ``probe`` makes changes nothing: it is re-done.
1. The step's ``probe`` proves ownership (finds the resource by this step's key): found ->
   its outputs are journalled as if the do had returned; not found -> the step did not
   happen and runs again (with the same idempotency token).
2. A probe that cannot prove ownership: its "not found" is believed; "found" is believed
   when the same probe found nothing just before the intent (``absent_before``, journalled
   with it, engine/apply.py), and is uncertain otherwise.
3. No probe of its own: the built-in probe of the AWS call (engine/catalog.py, which checks
   the tags) decides as in 1; else, rolling forward, a ``do`` safe to repeat (an
   idempotency token, an upsert, the plan's ``safe_to_repeat``, engine/redo.py) is sent
   again, or an undo that needs none of the step's outputs is run and the step runs again;
   rolling back, the undo comes before the re-do. An upsert is always re-done or undone
   rather than looked up: a tagless one cannot be proven.
4. Otherwise ``uncertain``, for ``atomicops resolve``. A step already uncertain is asked
   again only by a probe that proves ownership (the others would only repeat themselves).

An interrupted undo is simply run again: undo is idempotent.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from atomicops.engine.apply import Applier, step_key
from atomicops.engine.redo import redo_step
from atomicops.engine.rollback import undo_step
from atomicops.engine.settlement import (
    BUILT_IN_PROBE,
    OWN_PROBE,
    PROBE_BEFORE,
    READ_ONLY,
    REDO,
    UNDO,
    settlement_of,
)
from atomicops.errors import AtomicOpsError, ResumeMismatch, UndoFailed
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


def settle(applier: Applier, *, rolling_back: bool = False) -> tuple[EnvState, list[str]]:
    """Settle every in-flight step; return the new state and the steps left uncertain.

    ``rolling_back``: what is settled is about to be undone (``rollback``, ``resume
    --rollback``), so an undo that needs none of the step's outputs settles it at once."""
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
                    undo_step(run, applier.rt, op_state.id, st, settled_by="undo" if st.settling else None)
                except UndoFailed as exc:
                    failures.append(exc)
            elif st.status in ("intent", "uncertain"):
                try:
                    if not _settle_do(applier, op_state, st, rolling_back):
                        uncertain.append(where)
                except UndoFailed as exc:
                    failures.append(exc)
    if failures:
        raise failures[0]
    return run.state(), uncertain


def _settle_do(applier: Applier, op_state: OpState, st: StepState, rolling_back: bool) -> bool:
    op, step = find_step(applier, op_state.id, st.name)
    before = outputs_before(op, op_state, step)
    started = st.started or time.time()
    way = settlement_of(step, op)
    kind = way.on_rollback if rolling_back else way.kind
    if kind in (READ_ONLY, OWN_PROBE):
        # Its own probe finds the resource by this step's key: what it finds is this step's,
        # what it misses is not there.
        return applier.settle_intent(op, step, before, started, intent_run=st.run_id)
    if kind == PROBE_BEFORE:
        # The plan says how to find the step's resource, and that cannot tell it from a
        # namesake: an undo by name or a re-do could take over (and a rollback delete) what
        # was there before. Its "not found" is believed; "found" is believed only when the
        # same probe found nothing just before the intent (journalled with it), and is left
        # for a person otherwise.
        if st.absent_before:
            return applier.settle_intent(op, step, before, started, intent_run=st.run_id, absent_before=True)
        return st.status != "uncertain" and applier.settle_intent(op, step, before, started, intent_run=st.run_id)
    if kind == BUILT_IN_PROBE:
        # The catalog's lookup checks the tags itself (engine/catalog.py).
        return applier.settle_intent(op, step, before, started, intent_run=st.run_id)
    if kind == REDO:
        return redo_step(applier, op, step, before, st)
    if kind == UNDO:
        # Rolling forward: undone now, the step is known not to be there, and the operation
        # runs it again.
        return settle_by_undo(applier, op, step, before, st)
    if st.status == "uncertain":
        return False  # asking again would tell nothing new: `atomicops resolve` decides it
    return applier.settle_intent(op, step, before, started, intent_run=st.run_id)  # no probe: uncertain


def settle_by_undo(applier: Applier, op: Operation, step: Step, before: dict[str, Any], st: StepState) -> bool:
    """Run the undo of a step that may or may not have taken effect; "already gone" counts
    as undone. Only for an undo that needs none of the step's outputs (``undo_settles``).

    The undo is resolved as ``record_done`` would resolve it (outputs of the steps before,
    value outputs), and journalled with its "already gone" codes, so an interrupted settling
    undo is run again like any other. Raises :class:`UndoFailed`.
    """
    run, rt = applier.run, applier.rt
    key = step_key(run.env, op.id, step.name)
    try:
        scope = replace(rt.scope.with_self(before, key), step_run=st.run_id)
        values = scope.journal_form(step.value_outputs) if step.value_outputs else {}
        scope = replace(rt.scope.with_self({**before, **values}, key), step_run=st.run_id)
        undo = scope.sealed_form(step.undo, rt.secrets)
    except AtomicOpsError as exc:
        reason = run.redactor.text(f"its undo could not be resolved: {exc}")
        run.record("step_uncertain", op=op.id, step=step.name, reason=reason)
        return False
    run.observer.note(f"{op.id}/{step.name}: may or may not have taken effect; undoing it (its undo needs none of its outputs)")
    pending = StepState(name=step.name, status="done", run_id=st.run_id, undo=undo, ok_errors=list(step.ok_errors))
    undo_step(run, rt, op.id, pending, settled_by="undo")
    return True


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
