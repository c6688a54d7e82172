"""Undo, from the journal alone: the recorded undo actions with their real ids.

The plan file is never read here. Operations are undone in reverse dependency order (the
recorded ``depends_on`` of each operation, phases as barriers), several at once where the
graph allows; inside an operation its applied steps are undone newest first.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from atomicops.engine import checkpoints, drift, faults
from atomicops.engine.crash import crashpoint
from atomicops.engine.drift import CHANGED, DRIFTED, GONE, StepDrift
from atomicops.engine.executor import SETTLING_CODES, UNDO_RETRY
from atomicops.engine.run import Run
from atomicops.engine.runtime import Runtime
from atomicops.engine.scope import secrets_only
from atomicops.engine.settling import settle_minutes, settling_retry
from atomicops.errors import ActionError, AtomicOpsError, Uncertain, UndoFailed, UsageError
from atomicops.graph import Graph, walk
from atomicops.journal.state import EnvState, OpState, StepState


@dataclass
class RollbackReport:
    env: str = ""
    undone: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)  # not undone: blocked behind a failed undo
    irreversible: list[str] = field(default_factory=list)
    skippable: list[str] = field(default_factory=list)  # failed undos `--skip` may settle
    skipped: list[str] = field(default_factory=list)  # settled by a person (`--skip`) this run
    remaining: list[str] = field(default_factory=list)  # still applied: failed and left, sorted

    @property
    def complete(self) -> bool:
        return not self.failed


def undo_step(run: Run, rt: Runtime, op_id: str, step: StepState, *, settled_by: str | None = None) -> None:
    """Undo one applied step; "already gone" counts as undone. Raises :class:`UndoFailed`.

    ``settled_by="undo"``: the step was in flight (engine/resume.py settles it by its undo);
    the intent then carries the "already gone" codes, which the journal had not seen yet."""
    if step.read_only or not step.present:
        return
    if step.undo is None:
        reason = step.irreversible or "no undo recorded"
        run.record("undo_skipped", op=op_id, step=step.name, reason=reason)
        return
    extra = {"settled_by": settled_by, "ok_errors": list(step.ok_errors)} if settled_by else {}
    done_extra = {"settled_by": settled_by} if settled_by else {}
    run.record("undo_intent", op=op_id, step=step.name, action=step.undo, **extra)
    key = f"{run.env}/{op_id}/{step.name}"
    crashpoint("inside_undo", key)
    patterns = step.ok_errors

    def already_gone(exc: ActionError) -> bool:
        return bool(exc.code) and any(fnmatch.fnmatchcase(exc.code or "", p) for p in patterns)

    def settling(exc: ActionError) -> bool:
        return bool(exc.code) and any(fnmatch.fnmatchcase(exc.code or "", p) for p in SETTLING_CODES)

    try:
        faults.injected("undo", op_id, step.name, fired=lambda: faults.fired_undos(run.store.events(run.env), op_id))
        action = secrets_only(step.undo, rt.secrets)
        try:
            rt.executor.execute(action, op=op_id, retry=UNDO_RETRY, should_retry=lambda exc: not already_gone(exc),
                                cancel=run.cancel.abort)
        except ActionError as exc:
            if not settling(exc):
                raise
            budget = settle_minutes(rt.connections, action, rt.executor.settle_minutes)
            run.observer.note(f"{op_id}/{step.name}: {exc.code}; waiting up to {budget:g} min for AWS to release it",
                              level="warning")
            rt.executor.execute(action, op=op_id, retry=settling_retry(budget), should_retry=lambda e: settling(e),
                                cancel=run.cancel.abort)
    except ActionError as exc:
        if already_gone(exc):
            run.record("undo_done", op=op_id, step=step.name, already_gone=True, code=exc.code, **done_extra)
            return
        message = run.redactor.text(str(exc))
        run.record("undo_failed", op=op_id, step=step.name, error=message, code=exc.code)
        raise UndoFailed(op_id, step.name, message) from None
    except AtomicOpsError as exc:
        message = run.redactor.text(str(exc))
        run.record("undo_failed", op=op_id, step=step.name, error=message, code=None)
        raise UndoFailed(op_id, step.name, message) from None
    crashpoint("after_undo", key)
    run.record("undo_done", op=op_id, step=step.name, already_gone=False, **done_extra)


def undo_operation(run: Run, rt: Runtime, op: OpState, drift: Mapping[tuple[str, str], StepDrift] | None = None) -> None:
    """Undo every applied step of ``op``, newest first; stop at the first undo that fails.

    Later steps usually build on earlier ones (a subnet in a VPC), so after a failed undo the
    earlier steps are left for the next ``rollback`` rather than attempted in vain.
    ``drift``: the drift check's verdicts (see :func:`drifted_away`).
    """
    doubt = [f"{op.id}/{s.name}" for s in op.steps.values() if s.status in ("intent", "uncertain")]
    if doubt:
        # What such a step made (if anything) is unknown, and the steps before it may be what
        # it stands on: the operation waits for a resume or `atomicops resolve`.
        raise Uncertain(run.env, doubt)
    for step in reversed(list(op.steps.values())):
        if not drifted_away(run, op.id, step, (drift or {}).get((op.id, step.name))):
            undo_step(run, rt, op.id, step)
    run.record("op_undone", op=op.id)


def drifted_away(run: Run, op_id: str, step: StepState, verdict: StepDrift | None) -> bool:
    """Act on the drift check's verdict instead of the journalled undo; ``True`` if it did.

    Gone: nothing is left to undo; the skip is journalled with why. Changed (replaced: a new
    id, a namesake without this step's tag): the journalled undo names what this run made,
    and what is there now is something else; by name (a role, a table) the undo would delete
    that other thing, by id it would find nothing and count the step undone while its
    replacement stays. Neither is safe to decide alone: the step is held as a failed undo
    (``undo_refused``) for a person, never deleted. Raises :class:`UndoFailed` then."""
    if verdict is None or verdict.status not in DRIFTED or step.undo is None or not step.present or step.read_only:
        return False
    if verdict.status == GONE:
        run.record("undo_skipped", op=op_id, step=step.name, drift=GONE, reason=f"gone out of band (drift): {verdict.why}")
        return True
    message = (f"replaced out of band (drift): {verdict.why}; its undo was not run, so that nothing this run did "
               f"not create is deleted. Once a person has dealt with what is there: `atomicops resolve {op_id} "
               f"{step.name} --not-applied --reason \"...\"` and `atomicops rollback` again; or `atomicops rollback "
               "--no-drift-check` to run the journalled undo as it stands (on the journalled ids and names)")
    run.record("undo_refused", op=op_id, step=step.name, drift=CHANGED, error=message,
               expected=verdict.expected, actual=verdict.actual)
    raise UndoFailed(op_id, step.name, message)


def drift_pass(run: Run, rt: Runtime, state: EnvState, selection: Iterable[str], parallelism: int) -> dict[tuple[str, str], StepDrift]:
    """Read back what is about to be undone (engine/drift.py). Only its decisions are acted
    on, each journalled before it takes effect; a kill here or after it leaves nothing that
    the next rollback (which reads everything back again) would not find."""
    chosen = list(selection)
    total = sum(len(drift.readable(state.ops[o])) for o in chosen)
    run.observer.note(f"drift check: reading back {total} applied step(s) before undoing them "
                      "(--no-drift-check skips it)")
    report = drift.check(state, ops=chosen, runtime=rt, parallelism=parallelism)
    for d in report.steps:
        if d.status in DRIFTED or d.status == drift.UNKNOWN:
            then = {GONE: "its undo is skipped", CHANGED: "its undo is left for a person"}.get(d.status, "undone as journalled")
            run.observer.note(f"{d.op}/{d.step}: {d.status}: {d.why} ({then})", level="warning")
    run.record("drift_checked", counts=report.counts, seconds=round(report.seconds, 3),
               drifted={f"{d.op}/{d.step}": d.status for d in report.drifted})
    crashpoint("after_drift_check", run.env)
    return report.by_step()


def rollback_order(state: EnvState, selection: Iterable[str]) -> Graph:
    """The graph to walk for undoing ``selection``: recorded dependencies, phases as barriers."""
    chosen = {op_id: state.ops[op_id] for op_id in selection}
    by_phase: dict[int, list[str]] = {}
    for op_id, op in chosen.items():
        by_phase.setdefault(op.phase_index, []).append(op_id)
    # Each operation comes after every one of the nearest earlier phase present: the phases
    # before that are ordered through it. (Edges to every earlier operation were quadratic:
    # 500,000 for 1,000 operations in 20 phases.) A failed undo still stops every earlier
    # phase, through the skipped operations between.
    phases = sorted(by_phase)
    before = {p: by_phase[phases[i - 1]] if i else [] for i, p in enumerate(phases)}
    deps: dict[str, set[str]] = {}
    for op_id, op in chosen.items():
        deps[op_id] = {d for d in op.depends_on if d in chosen}
        deps[op_id].update(before[op.phase_index])
    return Graph.build(chosen, deps).inverted()


def needs_undo(op: OpState) -> bool:
    return op.status != "rolled_back" and (
        op.present or op.status in ("applied", "rolling_back", "rollback_failed", "applying", "uncertain")
    )


def with_dependents(state: EnvState, targets: Iterable[str]) -> set[str]:
    """``targets`` and every recorded operation that depends on them, transitively."""
    graph = Graph.build(state.ops, {o.id: set(o.depends_on) for o in state.ops.values()})
    out: set[str] = set()
    for t in targets:
        out |= {t} | graph.descendants(t)
    return out


def rollback_ops(
    run: Run,
    rt: Runtime,
    state: EnvState,
    selection: Iterable[str],
    *,
    parallelism: int = 10,
    keep_marks: Iterable[str] = (),
    drift_check: bool = False,
) -> RollbackReport:
    """Undo ``selection``; an operation whose undo fails blocks only what it stands on (its
    dependencies wait for it), every other branch is still undone. ``keep_marks`` are
    checkpoints kept even if it goes back past them (the one ``rollback --to`` returns to);
    other marks it goes back past are dropped. ``drift_check``: read every step back first
    and skip the undo of what is gone, hold what was replaced (:func:`drifted_away`)."""
    selection = [o for o in selection if o in state.ops and needs_undo(state.ops[o])]
    verdicts = drift_pass(run, rt, state, selection, parallelism) if drift_check and selection else {}
    keep = set(keep_marks)
    # No rollback creates a mark: once the marks live at its start (but ``keep``) are dropped
    # there is nothing left to drop, and each sweep reads the whole journal (16 of the 18
    # sweeps of B1's rollback found nothing).
    droppable = {name for name in state.checkpoints if name not in keep}
    report = RollbackReport(env=run.env)

    def visit(op_id: str) -> None:
        op = state.ops[op_id]
        undo_operation(run, rt, op, verdicts)
        if droppable:
            droppable.difference_update(checkpoints.drop_passed(run, keep))
        report.irreversible += [
            f"{op_id}/{s.name}: {s.irreversible}" for s in op.steps.values() if s.present and s.undo is None
        ]

    # The undos' AWS clients are built while the first undos wait on their answers (an undo
    # is never a step's effect: no token, the resending clients), latest phase first.
    ahead = sorted(selection, key=lambda o: -state.ops[o].phase_index)
    rt.executor.prepare((s.undo, False) for o in ahead for s in reversed(list(state.ops[o].steps.values()))
                        if s.undo is not None and s.present and not s.read_only)
    # A second Ctrl-C (or a lost lease) stops the rollback: no new undo starts.
    stop = run.cancel.abort
    result = walk(rollback_order(state, selection), visit, parallelism=parallelism, continue_on_failure=True, stop=stop)
    if state.checkpoints:  # once more: catches up a drop a killed rollback did not get to write
        checkpoints.drop_passed(run, keep)
    for op_id, outcome in result.outcomes.items():
        if outcome == "done":
            report.undone.append(op_id)
        elif outcome == "failed":
            report.failed[op_id] = str(result.errors[op_id])
            if isinstance(result.errors[op_id], UndoFailed):
                report.skippable.append(op_id)
        elif outcome == "not_started" and stop.is_set():
            report.failed[op_id] = f"not undone: the rollback was stopped ({run.cancel.reason})"
        else:
            report.left.append(op_id)
    report.remaining = sorted(set(report.failed) | set(report.left))
    return report


def skippable(state: EnvState) -> list[str]:
    """Operations a person may settle with ``rollback --skip``: an undo of theirs failed."""
    return [o.id for o in state.ops.values() if any(s.status == "undo_failed" for s in o.steps.values())]


def skip_by_hand(run: Run, state: EnvState, ops: Iterable[str], reason: str, by: str) -> None:
    """Record that a person cleaned up what each failed undo of ``ops`` left (CloudFormation's
    continue-update-rollback with resources to skip): the journal stops holding their steps
    as applied, so what they stand on can be undone. Nothing is deleted here.

    Only a failed undo can be skipped: an operation that was never tried, or is blocked
    behind another, is undone by the rollback itself, and skipping it would forget it."""
    allowed = skippable(state)
    refused = [o for o in ops if o not in allowed]
    if refused:
        raise UsageError(
            f"--skip {', '.join(refused)}: only an operation whose undo failed can be skipped "
            f"(now: {', '.join(allowed) or 'none'}); `atomicops rollback` undoes the others"
        )
    if not reason.strip():
        raise UsageError("--skip needs --reason: what a person did about what the undo left")
    for op_id in ops:
        steps = [s.name for s in state.ops[op_id].steps.values() if s.present]
        run.record("op_skipped", op=op_id, reason=reason, by=by, steps=steps)
