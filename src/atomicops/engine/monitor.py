"""``atomicops monitor``: watch an applied environment after the fact with the rollback
triggers its last run recorded, and roll back what that run applied when one fires.

The run holds the environment's lock for the window (as CloudFormation holds a stack during
its monitoring time), so nothing else changes what is being watched. Ctrl-C ends the watch
only: what is applied stays applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from atomicops.engine.rollback import RollbackReport, needs_undo, rollback_ops
from atomicops.engine.run import Run
from atomicops.engine.runs import incomplete, with_report
from atomicops.engine.runtime import runtime_of
from atomicops.engine.triggers import Monitoring
from atomicops.errors import AtomicOpsError, TriggerFired, UsageError
from atomicops.journal.state import EnvState, RunInfo
from atomicops.plan.loader import LoadedPlan


@dataclass
class MonitorReport:
    run_id: str
    watched_run: str
    minutes: float
    ended: str = ""  # elapsed | interrupted | fired
    checks: list[dict[str, Any]] = field(default_factory=list)
    fired: dict[str, Any] | None = None
    rollback: RollbackReport | None = None


def last_apply(st: EnvState) -> RunInfo:
    """The latest apply (or resume of one) that finished with its operations applied."""
    done = [r for r in st.runs.values() if r.command in ("apply", "resume") and r.outcome == "succeeded"]
    if not done:
        raise UsageError(f"environment {st.env!r} has no successful apply to watch")
    return max(done, key=lambda r: r.started)


def monitor_in_run(
    run: Run, loaded: LoadedPlan, st: EnvState, *, minutes: float | None, on_failure: str, parallelism: int
) -> MonitorReport:
    triggers = loaded.plan.triggers
    if triggers is None or not triggers.checks:
        raise UsageError(f"{loaded.file} has no rollback triggers (triggers.checks) to watch with")
    watched = last_apply(st)
    lineage = {r.id for r in st.lineage(watched)}
    mine = [o.id for o in st.ops.values() if o.run_id in lineage and needs_undo(o)]
    if not mine:
        raise UsageError(f"run {watched.id} left nothing applied: there is nothing to watch over")
    window = triggers.monitor_minutes if minutes is None else minutes
    if window <= 0:
        raise UsageError("the monitoring window is 0 minutes: give --minutes M (the plan's triggers.monitor_minutes is 0)")
    report = MonitorReport(run.id, watched.id, window)
    outputs = {o.id: o.outputs for o in st.ops.values() if o.status == "applied"}
    with runtime_of(run, loaded) as rt:
        rt.scope = replace(rt.scope, ops_outputs=lambda op: outputs.get(op, {}))
        watch = Monitoring(run, rt, triggers, base_dir=loaded.base_dir, during="monitor")
        watch.start(window)
        ended = "error"  # what monitor_ended says if the wait itself breaks
        try:
            ended = watch.window(window * 60, until=run.cancel.stop)
        finally:
            watch.finish(ended)
        found = watch.report()
        report.ended, report.checks, report.fired = watch.ended or "", found["checks"], found["fired"]
        firing = watch.fired
        if firing is None:
            run.finish("succeeded", monitoring=report.ended)
            return report
        failures = [AtomicOpsError(f"trigger {firing.check} fired: {firing.observed}")]
        kept = on_failure == "keep"
        if not kept:
            run.observer.note(f"rolling back what run {watched.id} applied", level="warning")
            report.rollback = rollback_ops(run, rt, run.state(), mine, parallelism=parallelism)
            if not report.rollback.complete:
                run.finish("rollback_incomplete")
                raise with_report(incomplete(report.rollback), report)
    run.finish("kept" if kept else "rolled_back")
    raise with_report(TriggerFired(run.id, firing.check, firing.observed, firing.at, failures, kept=kept,
                                   during="monitor"), report)
