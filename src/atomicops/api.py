"""The Python API. The CLI is a thin shell over these functions; scripts may call them too.

Each function opens the journal store named by ``state`` (default: ``.atomicops/`` in the
current directory), works on one environment, and either returns a report or raises a
typed :class:`~atomicops.errors.AtomicOpsError` carrying the exit code of DESIGN.md.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from atomicops.engine import checkpoints
from atomicops.engine.admission import admit
from atomicops.engine.apply import Applier, ApplyReport
from atomicops.engine.cancel import Cancellation
from atomicops.engine.drift import DriftReport, settled_since
from atomicops.engine.drift import Progress as DriftProgress
from atomicops.engine.drift import check as check_drift
from atomicops.engine.monitor import MonitorReport, monitor_in_run
from atomicops.engine.observer import Observer, Silent
from atomicops.engine.resume import find_step, outputs_before
from atomicops.engine.rollback import (
    RollbackReport,
    needs_undo,
    rollback_ops,
    skip_by_hand,
    with_dependents,
)
from atomicops.engine.run import Run, login_name
from atomicops.engine.runs import (
    apply_in_run,
    check_against_journal,
    incomplete,
    recorded_plan,
    resume_rollback,
    settle_or_stop,
    was_interrupted,
    with_report,
)
from atomicops.engine.runtime import open_runtime, runtime_of
from atomicops.engine.settlement import counts as settlement_counts
from atomicops.engine.settlement import plan_settlement
from atomicops.errors import (
    UsageError,
)
from atomicops.expect import observe
from atomicops.journal.marks import Checkpoint
from atomicops.journal.state import derive
from atomicops.journal.store import JournalStore

# What only reads the journal lives in journal/views.py (no engine loaded); re-exported here
# so that the Python API stays one module.
from atomicops.journal.views import (  # noqa: F401 - re-exported
    environment,
    history,
    lock_holder,
    status,
    store_for,
    unlock,
)
from atomicops.plan.changes import changes as changed_fields
from atomicops.plan.changes import definition, fingerprint, recorded_definitions
from atomicops.plan.loader import LoadedPlan, load_plan
from atomicops.plan.selection import select_operations
from atomicops.plan.targets import aws_targets


def validate(
    plan: str | os.PathLike[str],
    *,
    vars: Mapping[str, Any] | None = None,
    vars_files: Sequence[str] = (),
    offered_vars: Mapping[str, Any] | None = None,
) -> LoadedPlan:
    """Load and check a plan completely; raise PlanInvalid listing every problem.

    ``offered_vars`` set the vars the plan declares and are passed over otherwise (a
    sandbox's URLs); ``vars`` and ``vars_files`` may only set declared vars."""
    return load_plan(plan, var_overrides=vars, vars_files=vars_files, offered_vars=offered_vars)


def _loaded(plan: Any, vars: Mapping[str, Any] | None, vars_files: Sequence[str]) -> LoadedPlan:
    return plan if isinstance(plan, LoadedPlan) else validate(plan, vars=vars, vars_files=vars_files)


def apply(
    plan: str | os.PathLike[str] | LoadedPlan,
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    vars: Mapping[str, Any] | None = None,
    vars_files: Sequence[str] = (),
    parallelism: int = 10,
    on_failure: str | None = None,
    phase: str | None = None,
    targets: Iterable[str] = (),
    observer: Observer | None = None,
    cancel: Cancellation | None = None,
    monitor: float | None = None,
) -> ApplyReport:
    """Apply the plan's pending operations. Raises RunFailed (exit 1) when the run failed.

    ``cancel.interrupt()`` (the CLI's Ctrl-C) stops starting new operations; the run then rolls
    back what it applied (unless ``on_failure`` is keep); a second one stops the rollback.

    The plan's rollback triggers are polled during the run and for ``monitor`` minutes after
    it (None: the plan's ``triggers.monitor_minutes``; 0: no window). One that fires rolls
    the run back (or keeps it) and raises TriggerFired, a RunFailed (exit 1)."""
    if monitor is not None and monitor < 0:
        raise UsageError(f"--monitor takes minutes, 0 or more, not {monitor}")
    loaded = _loaded(plan, vars, vars_files)
    p = loaded.plan
    on_failure = on_failure or p.on_failure
    if on_failure not in ("rollback", "keep"):
        raise UsageError(f"--on-failure is rollback or keep, not {on_failure!r}")
    selected = select_operations(loaded, phase, list(targets))
    for line in aws_targets(p):  # first, before anything runs: which account this touches
        (observer or Silent()).note(f"target: {line}")
    if monitor and not (p.triggers and p.triggers.checks):
        (observer or Silent()).note(f"--monitor {monitor:g}: {loaded.file} has no rollback triggers to watch", level="warning")
    store = store_for(state)
    start = {
        "plan": p.model_dump(),  # the journal encodes what JSON lacks (bytes)
        "plan_file": os.path.abspath(loaded.file),
        "base_dir": loaded.base_dir,
        "options": {"phase": phase, "targets": list(targets), "on_failure": on_failure, "monitor": monitor},
    }
    with Run(store, env, "apply", observer=observer, start_data=start, cancel=cancel) as run:
        st = run.state()
        prepare = None
        admit(st, "apply", selected, deps=loaded.deps)
        if was_interrupted(st):
            # A killed run left steps in flight: settle them by their probes first, provided
            # the plan still says what the journal recorded for them.
            check_against_journal(loaded, st, half_applied_only=True)
            prepare = functools.partial(settle_or_stop, run)
        return apply_in_run(
            run, loaded, st, selected, full=phase is None and not list(targets),
            on_failure=on_failure, parallelism=parallelism, prepare=prepare,
            earlier_runs=[r.id for r in st.unfinished_runs() if r.id != run.id], monitor=monitor,
        )


















def _person() -> str:
    """user@host of whoever runs this command: who vouched for a skipped undo."""
    return f"{login_name()}@{socket.gethostname()}"


def rollback(
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    targets: Iterable[str] = (),
    skip: Iterable[str] = (),
    to: str | None = None,
    reason: str | None = None,
    parallelism: int = 10,
    observer: Observer | None = None,
    cancel: Cancellation | None = None,
    settle_minutes: float | None = None,
    drift_check: bool = True,
) -> RollbackReport:
    """Undo applied operations from the journal alone (the plan file is not read).

    ``drift_check`` (default): read every step back first (:func:`drift`); the undo of a
    resource deleted out of band is skipped, one replaced out of band is left for a person
    (:class:`RollbackIncomplete`, exit 3), never deleted.

    ``to`` names a checkpoint: only the operations started after it are undone (see
    :mod:`atomicops.engine.checkpoints`); :class:`UnknownCheckpoint` (exit 2) if there is none.
    ``skip`` (with ``reason``) records first that a person cleaned up what each of those
    failed undos left (CloudFormation's continue-update-rollback), then the rollback goes on
    with what they stood on. A failed undo raises :class:`RollbackIncomplete` (exit 3).
    ``settle_minutes``: how long an undo AWS refuses while it releases what a deleted resource
    held keeps trying (engine/settling.py; default from the connection, or the target)."""
    store = store_for(state)
    targets, skip = list(targets), list(skip)
    if skip and not (reason or "").strip():
        raise UsageError("--skip needs --reason: what a person did about what the undo left (kept in the history)")
    options: dict[str, Any] = {"targets": targets, "skip": skip}
    if not drift_check:
        options["drift_check"] = False  # a resume of this rollback finishes it without one too
    if to is not None:
        if targets:
            raise UsageError("--to and --target choose what to undo in two ways; give one of them")
        # Refused before the run starts, so a mistyped name leaves no run in the history; the
        # position goes into the run's options, so a resume finishes this same rollback.
        options.update(to=to, to_seq=checkpoints.find(derive(env, store.events(env)), to).seq)
    with Run(store, env, "rollback", observer=observer, start_data={"options": options}, cancel=cancel) as run:
        st = run.state()
        admit(st, "rollback", targets + skip)
        if skip:
            skip_by_hand(run, st, skip, reason or "", by=_person())
            st = run.state()
        if to is not None:
            checkpoints.find(st, to)  # still there now that this run holds the lock
            selection = checkpoints.undo_selection(run, st, int(options["to_seq"]))
        else:
            selection = with_dependents(st, targets) if targets else set(st.ops)
        selection = {o for o in selection if needs_undo(st.ops[o])}
        if not selection:
            run.finish("rolled_back" if skip else "nothing_to_do")
            return RollbackReport(env=env, skipped=skip)
        loaded = recorded_plan(st, "to take connections from")
        with runtime_of(run, loaded) as rt:
            rt.executor.settle_minutes = settle_minutes
            if st.in_flight():
                # Settle what a killed run left in flight, so nothing it made is forgotten.
                st = settle_or_stop(run, Applier(loaded, run, rt, st, parallelism), rolling_back=True)
            report = rollback_ops(run, rt, st, selection, parallelism=parallelism, keep_marks=[to] if to else (),
                                  drift_check=drift_check)
        report.skipped = skip
        if not report.complete:
            run.finish("rollback_incomplete")
            raise with_report(incomplete(report), report)
        run.finish("rolled_back", undone=report.undone, left=report.left)
        return report


def drift(
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    ops: Iterable[str] = (),
    parallelism: int = 10,
    progress: DriftProgress | None = None,
) -> DriftReport:
    """Read every applied step of ``env`` (or of ``ops``) back and say what changed since it
    was applied (engine/drift.py): in_sync, gone, changed, unknown, in_progress. Read-only,
    from the journal alone, no lock: a step a running run holds in flight is in_progress,
    and one the journal moved while it was read is re-marked in_progress."""
    store = store_for(state)
    before = derive(env, store.events(env))
    wanted = list(ops)
    missing = [o for o in wanted if o not in before.ops]
    if missing:
        raise UsageError(f"--op {', '.join(missing)}: no such operation in environment {env!r} "
                         f"(recorded: {', '.join(sorted(before.ops)) or 'none'})")
    holder = store.read_lock(env)
    report = check_drift(before, ops=wanted or None, parallelism=parallelism, progress=progress)
    after = derive(env, store.events(env))
    if after.last_seq != before.last_seq:
        settled_since(report, before, after, ops=wanted or None)
    report.running = holder.as_dict() if holder else None
    return report


def checkpoint(
    name: str,
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    observer: Observer | None = None,
) -> Checkpoint:
    """Mark the environment's journal where it stands now, as checkpoint ``name``: a later
    ``rollback(to=name)`` undoes what is applied after it. Takes the environment's lock;
    :class:`CheckpointExists` if the name is taken (a live mark, or the recorded plan's)."""
    checkpoints.check_name(name)  # before the run: a bad name leaves nothing in the history
    with Run(store_for(state), env, "checkpoint", observer=observer, start_data={"options": {"name": name}}) as run:
        mark = checkpoints.mark_by_hand(run, name)
        # Not a settling outcome: a mark leaves an interrupted run for `resume` to finish.
        run.finish("marked", checkpoint=name)
        return mark


def resume(
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    rollback: bool = False,
    plan: str | os.PathLike[str] | None = None,
    parallelism: int = 10,
    observer: Observer | None = None,
    cancel: Cancellation | None = None,
    drift_check: bool = True,
) -> ApplyReport | RollbackReport:
    """Finish an interrupted run from the journal: settle in-flight steps by their probes,
    then continue it (an apply) or roll it back (``rollback=True``, a rollback, or an apply
    that was already failing). ``plan``, when given, must match what the journal recorded.
    A rollback runs the drift check first, as :func:`rollback` does (``drift_check``)."""
    store = store_for(state)
    with Run(store, env, "resume", observer=observer, cancel=cancel) as run:
        st = run.state()
        interrupted = [r for r in st.unfinished_runs() if r.id != run.id]
        if not interrupted and not st.half_done():
            run.finish("nothing_to_do")
            return ApplyReport(run.id, nothing_to_do=True)
        loaded = recorded_plan(st, "to resume")
        if plan is not None:
            check_against_journal(validate(plan, vars=loaded.plan.vars), st, half_applied_only=False)
        last = max(interrupted, key=lambda r: r.started) if interrupted else st.latest_plan()
        assert last is not None  # recorded_plan found one
        # A resume takes over the interrupted run: a resume of this resume carries out the
        # same command with the same options (not a bare "resume").
        lineage = st.lineage(last)
        task, chain = lineage[-1], [r.id for r in lineage]
        run.record("run_resumes", run=last.id, command=task.command)
        options = task.options
        failing = any(
            (o.status in ("failed", "rollback_failed", "rolling_back") and o.run_id in chain)
            # (an undo that settles an in-flight step is no rollback: resume runs it again)
            or any(s.status == "undo_intent" and not s.settling for s in o.steps.values())
            for o in st.ops.values()
        )
        if rollback or task.command == "rollback" or failing:
            return resume_rollback(run, loaded, st, task.command, chain, options, parallelism, drift_check=drift_check)
        on_failure = str(options.get("on_failure") or loaded.plan.on_failure)
        selected = select_operations(loaded, options.get("phase"), list(options.get("targets") or []))
        admit(st, "resume", selected, deps=loaded.deps)

        return apply_in_run(
            run, loaded, st, selected, full=not options.get("phase") and not options.get("targets"),
            on_failure=on_failure, parallelism=parallelism, prepare=functools.partial(settle_or_stop, run),
            earlier_runs=chain, monitor=options.get("monitor"),  # the window the apply was asked for
        )




def monitor(
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    minutes: float | None = None,
    plan: str | os.PathLike[str] | None = None,
    on_failure: str = "rollback",
    parallelism: int = 10,
    observer: Observer | None = None,
    cancel: Cancellation | None = None,
) -> MonitorReport:
    """Watch an applied environment with its rollback triggers for ``minutes`` (None: the
    plan's ``triggers.monitor_minutes``), holding its lock. The triggers are the recorded
    plan's, or ``plan``'s when given. A trigger that fires rolls back what the last apply
    applied (or keeps it, ``on_failure="keep"``) and raises TriggerFired (exit 1);
    ``cancel.interrupt()`` (Ctrl-C) ends the watch and leaves everything applied."""
    if on_failure not in ("rollback", "keep"):
        raise UsageError(f"--on-failure is rollback or keep, not {on_failure!r}")
    if minutes is not None and minutes < 0:
        raise UsageError(f"--minutes takes 0 or more, not {minutes}")
    store = store_for(state)
    options = {"minutes": minutes, "plan": os.fspath(plan) if plan else None, "on_failure": on_failure}
    with Run(store, env, "monitor", observer=observer, start_data={"options": options}, cancel=cancel) as run:
        st = run.state()
        loaded = recorded_plan(st, "to take the rollback triggers from")
        if plan is not None:
            loaded = validate(plan, vars=loaded.plan.vars)
        return monitor_in_run(run, loaded, st, minutes=minutes, on_failure=on_failure, parallelism=parallelism)


def resolve(
    op: str,
    step: str,
    *,
    applied: bool,
    outputs: Mapping[str, Any] | None = None,
    reason: str | None = None,
    env: str = "default",
    state: str | JournalStore | None = None,
    observer: Observer | None = None,
) -> None:
    """Settle a step by hand, with ``reason`` kept in the history.

    An interrupted (or uncertain) step took effect (``applied``, with its outputs so its undo
    can be resolved) or it did not. A step whose undo failed can only be settled as not
    applied, with a reason: a person removed what it made, or it is to be forgotten."""
    store = store_for(state)
    with Run(store, env, "resolve", observer=observer) as run:
        st = run.state()
        op_state = st.ops.get(op)
        target = op_state.steps.get(step) if op_state else None
        undo_failed = target is not None and target.status == "undo_failed"
        if op_state is None or target is None or not (undo_failed or target.status in ("intent", "uncertain")):
            pending = ", ".join(st.in_flight()) or "none"
            failed = ", ".join(f"{o.id}/{s.name}" for o in st.ops.values() for s in o.steps.values() if s.status == "undo_failed")
            raise UsageError(
                f"{op}/{step} is neither an interrupted step nor a failed undo "
                f"(interrupted: {pending}; failed undos: {failed or 'none'})"
            )
        if undo_failed and (applied or not reason):
            raise UsageError(
                f"the undo of {op}/{step} failed, so the journal holds it as applied: once it is gone "
                f"(removed by hand) or to be forgotten, say so with --not-applied --reason \"...\""
            )
        if not applied:
            run.record("step_settled", op=op, step=step, applied=False, by="resolve", reason=reason)
            run.finish("succeeded")
            return
        loaded = recorded_plan(st, "to resolve the step with")
        with runtime_of(run, loaded) as rt:
            applier = Applier(loaded, run, rt, st, 1)
            plan_op, plan_step = find_step(applier, op, step)
            missing = [k for k in plan_step.result_outputs if k not in (outputs or {})]
            if missing:
                raise UsageError(f"--applied needs the step's outputs: {', '.join('--output ' + k + '=...' for k in missing)}")
            done = applier.record_done(plan_op, plan_step, dict(outputs or {}), outputs_before(plan_op, op_state, plan_step),
                                       target.started or 0.0, target.started or 0.0, settled_by="resolve", reason=reason)
            if done.error:
                raise UsageError(f"cannot resolve the undo of {op}/{step}: {done.error}")
        run.finish("succeeded")


def plan_view(
    plan: str | os.PathLike[str] | LoadedPlan,
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    vars: Mapping[str, Any] | None = None,
    vars_files: Sequence[str] = (),
) -> dict[str, Any]:
    """Forward waves, the rollback sequence, what is applied and what an apply would change."""
    loaded = _loaded(plan, vars, vars_files)
    events = store_for(state).events(env)
    st = derive(env, events)
    recorded = recorded_definitions(events)
    by_phase = loaded.forward_waves()  # once: it is the graph work of the whole view
    forward = [{"phase": ph, "waves": waves} for ph, waves in by_phase]
    rollback_seq = [{"phase": ph, "waves": [list(w) for w in reversed(waves)]} for ph, waves in reversed(by_phase)]
    changes = {}
    diffs: dict[str, list[dict[str, Any]]] = {}
    for op in loaded.plan.operations:
        rec = st.ops.get(op.id)
        if rec is None or rec.status == "rolled_back":
            changes[op.id] = "create"
        elif rec.status == "applied":
            same = rec.fingerprint == fingerprint(op, loaded.plan.vars)
            changes[op.id] = "no change" if same else "changed (kept as applied)"
            if not same and op.id in recorded:
                diffs[op.id] = [c.as_dict() for c in changed_fields(recorded[op.id], definition(op, loaded.plan.vars))]
        else:
            changes[op.id] = f"{rec.status}: needs rollback or resume"
    settle_rows = plan_settlement(loaded.plan.operations)
    orphans = [o for o in st.ops.values() if o.id not in changes and needs_undo(o)]
    for o in orphans:
        changes[o.id] = "applied but no longer in the plan (rollback --target to remove)"
    return {
        "plan": loaded.plan.name,
        "env": env,
        "forward": forward,
        "rollback": rollback_seq,
        "changes": changes,
        "diffs": diffs,
        "warnings": [str(w) for w in loaded.warnings],
        "targets": aws_targets(loaded.plan),
        # How each step would be settled if a crash left it half-done (engine/settlement.py).
        "settlement": {"counts": settlement_counts(settle_rows), "steps": settle_rows},
    }


def orphans(aws_inventory: Mapping[str, Any], *, state: str | JournalStore | None = None) -> list[dict[str, Any]]:
    """Tagged resources in an AWS inventory that no journal of ``state`` holds as applied."""
    from atomicops.inventory.orphans import orphans as find

    store = store_for(state)
    return find(aws_inventory, {env: derive(env, store.events(env)) for env in store.environments()})


def verify(
    plan: str | os.PathLike[str] | LoadedPlan,
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    vars: Mapping[str, Any] | None = None,
    vars_files: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Run the verify checks of every applied operation and of the plan; read-only, no lock."""
    loaded = _loaded(plan, vars, vars_files)
    st = derive(env, store_for(state).events(env))
    outputs = {o.id: o.outputs for o in st.ops.values() if o.status == "applied"}
    rt = open_runtime(loaded.plan, env=env, run_id="verify", base_dir=loaded.base_dir, ops_outputs=lambda op: outputs.get(op, {}))
    results: list[dict[str, Any]] = []
    try:
        checks: list[tuple[str, Any, Any]] = []
        for op in loaded.plan.operations:
            if op.id in outputs:
                scope = rt.scope.with_self(outputs[op.id])
                checks += [(f"{op.id}: {c.get('name') or f'verify[{i}]'}", c, scope) for i, c in enumerate(op.verify)]
        if len(outputs) == len(loaded.plan.operations):
            checks += [(c.get("name") or f"verify[{i}]", c, rt.scope) for i, c in enumerate(loaded.plan.verify)]
        for name, check, scope in checks:
            try:
                result, mismatches = rt.executor.check(scope.exec_form(check, rt.secrets))
                seen = observe(check.get("expect") or {}, result)  # what a report shows beside the expected
                results.append({"check": name, "ok": not mismatches,
                                "mismatches": [rt.secrets.redactor.text(str(m)) for m in mismatches],
                                "observed": {k: rt.secrets.redactor.text(v) for k, v in seen.items()}})
            except Exception as exc:  # noqa: BLE001 - every check is reported, none aborts the rest
                results.append({"check": name, "ok": False, "error": rt.secrets.redactor.text(str(exc))})
    finally:
        rt.close()
    return results
