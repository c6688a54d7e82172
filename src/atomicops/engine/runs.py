"""What apply, resume and rollback do once their run holds the environment's lock: settle what
a killed run left in flight, apply the selected operations, roll back on failure. The Python
API (``atomicops.api``) loads the plan, opens the run and calls these; the CLI maps the typed
errors they raise to exit codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from atomicops.engine import checkpoints
from atomicops.engine.apply import Applier, ApplyReport
from atomicops.engine.preflight import preflight
from atomicops.engine.resume import settle
from atomicops.engine.rollback import RollbackReport, rollback_ops, with_dependents
from atomicops.engine.run import Run
from atomicops.engine.runtime import runtime_of
from atomicops.engine.triggers import Monitoring
from atomicops.errors import (
    AtomicOpsError,
    ExpectFailed,
    ResumeMismatch,
    RollbackIncomplete,
    RunFailed,
    TriggerFired,
    Uncertain,
    UsageError,
)
from atomicops.journal.state import EnvState
from atomicops.plan.changes import fingerprint
from atomicops.plan.loader import LoadedPlan, loaded_from_journal


def was_interrupted(st: EnvState) -> bool:
    """A killed run left steps in flight or an operation half applied or half undone."""
    return bool(st.in_flight()) or any(o.status in ("applying", "rolling_back") for o in st.ops.values())


def check_against_journal(given: LoadedPlan, st: EnvState, *, half_applied_only: bool) -> None:
    """Operations the journal recorded must be unchanged in the plan that continues them
    (compared by the fingerprint journalled when each started)."""
    differences = []
    for op in st.ops.values():
        half_applied = op.status in ("applying", "rolling_back", "uncertain") or any(s.in_flight for s in op.steps.values())
        if not op.fingerprint or op.status == "rolled_back" or (half_applied_only and not half_applied):
            continue
        try:
            now = fingerprint(given.plan.operation(op.id), given.plan.vars)
        except KeyError:
            differences.append(f"operation {op.id} is in the journal but not in {given.file}")
            continue
        if now != op.fingerprint:
            differences.append(f"operation {op.id} differs in {given.file} from what the journal recorded")
    if differences:
        raise ResumeMismatch(differences)


def settle_or_stop(run: Run, applier: Applier, *, rolling_back: bool = False) -> EnvState:
    settled, uncertain = settle(applier, rolling_back=rolling_back)
    if uncertain:
        run.finish("uncertain", steps=uncertain)
        raise Uncertain(run.env, uncertain)
    return settled


def recorded_plan(st: EnvState, purpose: str) -> LoadedPlan:
    """The plan the environment's latest run recorded (vars applied, secrets as specs): what
    rollback, resume and resolve run with, so that the plan file is never needed."""
    recorded = st.latest_plan()
    if recorded is None or recorded.plan is None:
        raise UsageError(f"environment {st.env!r} has no recorded plan {purpose}")
    return loaded_from_journal(recorded.plan, file=recorded.plan_file, base_dir=recorded.base_dir)


def apply_in_run(
    run: Run,
    loaded: LoadedPlan,
    st: EnvState,
    selected: list[str],
    *,
    full: bool,
    on_failure: str,
    parallelism: int,
    prepare: Callable[[Applier], EnvState] | None = None,
    earlier_runs: Iterable[str] = (),
    monitor: float | None = None,
) -> ApplyReport:
    """The body of an apply inside a run that holds the lock (``apply`` and ``resume``).

    The plan's rollback triggers are polled from the first operation on and, once all is
    applied, for ``monitor`` minutes (None: the plan's ``monitor_minutes``; 0: no window).
    When one fires the run starts no new operation and rolls back as a failed run does.

    ``prepare`` runs first with the applier ready (resume settles in-flight steps there) and
    returns the state to continue from; ``earlier_runs`` are runs whose operations a failure
    should roll back too (the run that resume finishes).
    """
    p = loaded.plan
    preflight(loaded, [o for o in selected if not st.is_applied(o)], env=run.env, run_id=run.id,
              plan_verify=full, applied={o.id: o.outputs for o in st.ops.values() if o.status == "applied"})
    with runtime_of(run, loaded) as rt:
        applier = Applier(loaded, run, rt, st, parallelism, earlier_runs=set(earlier_runs))
        if prepare is not None:
            st = applier.state = prepare(applier)
            applier.refresh_outputs()
        # A run killed between an operation and its checkpoint left the mark unwritten.
        checkpoints.record_missing(run, p, st, set(earlier_runs))
        report = applier.report
        pending = []
        for op_id in selected:
            op_state = st.ops.get(op_id)
            if op_state and op_state.status == "applied":
                report.unchanged.append(op_id)
                if op_state.fingerprint != fingerprint(p.operation(op_id), p.vars):
                    report.changed_since_applied.append(op_id)
            else:
                pending.append(op_id)
        for op_id in report.changed_since_applied:
            run.observer.note(
                f"operation {op_id} changed in the plan since it was applied; it is left as "
                f"applied (roll it back with --target {op_id} and apply to replace it)",
                level="warning",
            )
        window = p.triggers.monitor_minutes if (p.triggers and monitor is None) else (monitor or 0.0)
        # Polled from the first operation of the run, never sharing its connections.
        # Nothing to apply, nothing to watch: a re-apply that changes nothing waits no window.
        watch = Monitoring.of(run, rt, p.triggers, base_dir=loaded.base_dir, during="apply") if pending else None
        if watch is not None:
            watch.start(window)
        try:
            ok = applier.run_phases(pending)
            if ok and full and p.verify and not run.cancel.halt.is_set():
                failures = applier.verify_plan()
                if failures:
                    report.failures.append(ExpectFailed(failures))
                    ok = False
            if watch is not None:
                ended = "apply_failed" if not ok else "no_window"
                if ok and window > 0 and watch.fired is None:
                    run.observer.note(f"applied; watching the rollback triggers for {window:g} minute(s) "
                                      "(Ctrl-C ends the watch, not the environment)")
                    ended = watch.window(window * 60, until=run.cancel.stop)
                watch.finish(ended)
                report.triggers = watch.report()
        finally:
            if watch is not None and watch.ended is None:
                watch.watcher.close()  # an error on the way: stop polling, nothing to record
        firing = watch.fired if watch is not None else None
        if firing is not None:
            report.failures.insert(0, AtomicOpsError(f"trigger {firing.check} fired: {firing.observed}"))
            ok = False
        if ok:
            run.finish("succeeded", applied=report.applied)
            return report
        kept = on_failure == "keep"
        if not kept:
            run.observer.note("rolling back what this run applied", level="warning")
            report.rollback = applier.rollback_this_run()
            if not report.rollback.complete:
                run.finish("rollback_incomplete")
                raise with_report(incomplete(report.rollback), report)
        run.finish("kept" if kept else "rolled_back")
        if firing is not None:
            raise with_report(TriggerFired(run.id, firing.check, firing.observed, firing.at, report.failures, kept=kept,
                                           during=watch.fired_during if watch else "apply"), report)
        raise with_report(RunFailed(run.id, report.failures, kept=kept), report)


def resume_rollback(
    run: Run, loaded: LoadedPlan, st: EnvState, command: str, chain: list[str], options: dict[str, Any], parallelism: int,
    *, drift_check: bool = True,
) -> RollbackReport:
    with runtime_of(run, loaded) as rt:
        settled = settle_or_stop(run, Applier(loaded, run, rt, st, parallelism), rolling_back=True)
        to = options.get("to")
        if command == "rollback" and to:
            # The same partial rollback: back to the position recorded when it started.
            selection = checkpoints.undo_selection(run, settled, int(options["to_seq"]))
        elif command == "rollback":
            targets = list(options.get("targets") or [])
            selection = with_dependents(settled, targets) if targets else set(settled.ops)
        else:
            selection = {o.id for o in settled.ops.values() if o.run_id in (*chain, run.id)}
        # A rollback run with --no-drift-check is finished the same way.
        check = drift_check and options.get("drift_check", True) is not False
        report = rollback_ops(run, rt, settled, selection, parallelism=parallelism, keep_marks=[to] if to else (),
                              drift_check=check)
    if not report.complete:
        run.finish("rollback_incomplete")
        raise with_report(incomplete(report), report)
    run.finish("rolled_back", undone=report.undone)
    return report


def with_report(exc: Exception, report: Any) -> Exception:
    exc.report = report  # type: ignore[attr-defined]
    return exc


def incomplete(rb: RollbackReport) -> RollbackIncomplete:
    return RollbackIncomplete(
        remaining=rb.remaining,
        failures=[f"{op}: {err}" for op, err in sorted(rb.failed.items())],
        env=rb.env,
        skippable=rb.skippable,
    )
