"""The Python API. The CLI is a thin shell over these functions; scripts may call them too.

Each function opens the journal store named by ``state`` (default: ``.atomicops/`` in the
current directory), works on one environment, and either returns a report or raises a
typed :class:`~atomicops.errors.AtomicOpsError` carrying the exit code of DESIGN.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from atomicops.engine.apply import Applier, ApplyReport, fingerprint
from atomicops.engine.observer import Observer
from atomicops.engine.rollback import RollbackReport, needs_undo, rollback_ops, with_dependents
from atomicops.engine.run import Run
from atomicops.engine.runtime import open_runtime
from atomicops.errors import (
    ExpectFailed,
    RollbackIncomplete,
    RunFailed,
    UnfinishedRun,
    UsageError,
)
from atomicops.journal import open_store
from atomicops.journal.state import EnvState, derive
from atomicops.journal.store import JournalStore, LockHolder
from atomicops.plan.loader import LoadedPlan, load_plan
from atomicops.plan.model import Plan


def validate(
    plan: str | os.PathLike[str],
    *,
    vars: Mapping[str, Any] | None = None,
    vars_files: Sequence[str] = (),
) -> LoadedPlan:
    """Load and check a plan completely; raise PlanInvalid listing every problem."""
    return load_plan(plan, var_overrides=vars, vars_files=vars_files)


def _loaded(plan: Any, vars: Mapping[str, Any] | None, vars_files: Sequence[str]) -> LoadedPlan:
    return plan if isinstance(plan, LoadedPlan) else validate(plan, vars=vars, vars_files=vars_files)


def _store(state: str | JournalStore | None) -> JournalStore:
    return state if (state is not None and not isinstance(state, str)) else open_store(state)


def _refuse_unfinished(st: EnvState, *, for_rollback: bool = False) -> None:
    """In-flight steps need `resume`; an operation cut off between steps blocks apply only:
    rollback can finish it, because it undoes exactly the steps recorded as done."""
    stuck = st.in_flight()
    if not for_rollback:
        stuck += [
            f"{op.id} (interrupted while {op.status})"
            for op in st.ops.values()
            if op.status in ("applying", "rolling_back") and not any(s.in_flight for s in op.steps.values())
        ]
    if stuck:
        raise UnfinishedRun(st.env, stuck)


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
) -> ApplyReport:
    """Apply the plan's pending operations. Raises RunFailed (exit 1) when the run failed."""
    loaded = _loaded(plan, vars, vars_files)
    p = loaded.plan
    on_failure = on_failure or p.on_failure
    if on_failure not in ("rollback", "keep"):
        raise UsageError(f"--on-failure is rollback or keep, not {on_failure!r}")
    selected = _select(loaded, phase, list(targets))
    store = _store(state)
    start = {
        "plan": p.model_dump(mode="json"),
        "plan_file": os.path.abspath(loaded.file),
        "base_dir": loaded.base_dir,
        "options": {"phase": phase, "targets": list(targets), "on_failure": on_failure},
    }
    with Run(store, env, "apply", observer=observer, start_data=start) as run:
        st = run.state()
        _refuse_unfinished(st)
        _check_selection(loaded, st, selected)
        applier: Applier | None = None
        rt = open_runtime(
            p, env=env, run_id=run.id, base_dir=loaded.base_dir,
            ops_outputs=lambda op: applier.op_outputs(op) if applier else {},
        )
        run.redactor = rt.secrets.redactor
        try:
            applier = Applier(loaded, run, rt, st, parallelism)
            report = applier.report
            pending = []
            for op_id in selected:
                op_state = st.ops.get(op_id)
                if op_state and op_state.status == "applied":
                    report.unchanged.append(op_id)
                    if op_state.fingerprint != fingerprint(p.operation(op_id)):
                        report.changed_since_applied.append(op_id)
                else:
                    pending.append(op_id)
            for op_id in report.changed_since_applied:
                run.observer.note(
                    f"operation {op_id} changed in the plan since it was applied; it is left as "
                    f"applied (roll it back with --target {op_id} and apply to replace it)",
                    level="warning",
                )
            ok = applier.run_phases(pending)
            if ok and phase is None and not list(targets) and p.verify:
                failures = applier.verify_plan()
                if failures:
                    report.failures.append(ExpectFailed(failures))
                    ok = False
            if ok:
                run.finish("succeeded", applied=report.applied)
                return report
            if on_failure == "keep":
                run.finish("kept")
                raise _with_report(RunFailed(run.id, report.failures, kept=True), report)
            run.observer.note("rolling back what this run applied", level="warning")
            report.rollback = applier.rollback_this_run()
            if not report.rollback.complete:
                run.finish("rollback_incomplete")
                raise _with_report(_incomplete(report.rollback), report)
            run.finish("rolled_back")
            raise _with_report(RunFailed(run.id, report.failures, kept=False), report)
        finally:
            rt.close()


def _with_report(exc: Exception, report: Any) -> Exception:
    exc.report = report  # type: ignore[attr-defined]
    return exc


def _incomplete(rb: RollbackReport) -> RollbackIncomplete:
    return RollbackIncomplete(
        remaining=sorted(set(rb.failed) | set(rb.left)),
        failures=[f"{op}: {err}" for op, err in sorted(rb.failed.items())],
    )


def _select(loaded: LoadedPlan, phase: str | None, targets: list[str]) -> list[str]:
    p = loaded.plan
    ids = [op.id for op in p.operations]
    if phase is not None:
        if phase not in p.phases:
            raise UsageError(f"unknown phase {phase!r} (phases: {', '.join(p.phases)})")
        ids = [op.id for op in p.operations if p.phase_of(op) == phase]
    if targets:
        unknown = [t for t in targets if t not in ids and t not in [o.id for o in p.operations]]
        if unknown:
            raise UsageError(f"unknown operation(s): {', '.join(unknown)}")
        graph = loaded.graph
        wanted: set[str] = set()
        for t in targets:
            wanted |= {t} | graph.ancestors(t)
        ids = [i for i in [op.id for op in p.operations] if i in wanted and (phase is None or i in ids)]
    return ids


def _check_selection(loaded: LoadedPlan, st: EnvState, selected: list[str]) -> None:
    chosen = set(selected)
    for op_id in selected:
        for dep in loaded.deps[op_id]:
            if dep not in chosen and not st.is_applied(dep):
                raise UsageError(f"operation {op_id} needs {dep}, which is neither applied nor selected")
        op = st.ops.get(op_id)
        if op and op.status in ("failed", "rollback_failed") and op.present:
            raise UsageError(
                f"operation {op_id} has steps left applied by a failed undo; "
                f"run `atomicops rollback --target {op_id}` first"
            )


def rollback(
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    targets: Iterable[str] = (),
    skip: Iterable[str] = (),
    parallelism: int = 10,
    observer: Observer | None = None,
) -> RollbackReport:
    """Undo applied operations from the journal alone (the plan file is not read)."""
    store = _store(state)
    targets, skip = list(targets), list(skip)
    with Run(store, env, "rollback", observer=observer, start_data={"targets": targets, "skip": skip}) as run:
        st = run.state()
        _refuse_unfinished(st, for_rollback=True)
        for name in targets + skip:
            if name not in st.ops:
                raise UsageError(f"operation {name!r} has no record in environment {env!r}")
        selection = with_dependents(st, targets) if targets else set(st.ops)
        selection = {o for o in selection if needs_undo(st.ops[o])}
        if not selection:
            run.finish("nothing_to_do")
            return RollbackReport()
        recorded = st.latest_plan()
        if recorded is None or recorded.plan is None:
            raise UsageError(f"environment {env!r} has no recorded plan to take connections from")
        plan = Plan.model_validate(recorded.plan)
        rt = open_runtime(plan, env=env, run_id=run.id, base_dir=recorded.base_dir or ".")
        run.redactor = rt.secrets.redactor
        try:
            report = rollback_ops(run, rt, st, selection, skip=skip, parallelism=parallelism)
        finally:
            rt.close()
        if not report.complete:
            run.finish("rollback_incomplete")
            raise _with_report(_incomplete(report), report)
        run.finish("rolled_back", undone=report.undone, left=report.left)
        return report


def environment(env: str = "default", state: str | JournalStore | None = None) -> EnvState:
    store = _store(state)
    return derive(env, store.events(env))


def status(env: str = "default", state: str | JournalStore | None = None) -> dict[str, Any]:
    """Every recorded operation's state, outputs (secrets already redacted), timings; the lock."""
    store = _store(state)
    st = derive(env, store.events(env))
    lock = store.read_lock(env)
    ops = []
    for op in sorted(st.ops.values(), key=lambda o: (o.phase_index, o.started or 0)):
        ops.append(
            {
                "id": op.id,
                "status": op.status,
                "phase": op.phase,
                "title": op.title,
                "depends_on": op.depends_on,
                "run_id": op.run_id,
                "started": op.started,
                "finished": op.finished,
                "duration": (op.finished - op.started) if op.finished and op.started else None,
                "outputs": op.outputs,
                "error": op.error,
                "steps": [
                    {
                        "name": s.name,
                        "status": s.status,
                        "outputs": s.outputs,
                        "started": s.started,
                        "finished": s.finished,
                        "irreversible": s.irreversible,
                        "error": s.error,
                    }
                    for s in op.steps.values()
                ],
            }
        )
    last = max(st.runs.values(), key=lambda r: r.started, default=None)
    return {
        "env": env,
        "state": store.url,
        "lock": lock.as_dict() if lock else None,
        "in_flight": st.in_flight(),
        "last_run": (
            {k: v for k, v in asdict(last).items() if k not in ("plan",)} if last else None
        ),
        "operations": ops,
    }


def history(env: str = "default", state: str | JournalStore | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
    store = _store(state)
    events = store.events(env)
    if limit:
        events = events[-limit:]
    out = []
    for ev in events:
        data = dict(ev.data)
        data.pop("plan", None)  # the recorded plan is large; `status` and `plan` show it
        out.append({"seq": ev.seq, "ts": ev.ts, "run": ev.run_id, "type": ev.type, "op": ev.op, "step": ev.step, "data": data})
    return out


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
    st = derive(env, _store(state).events(env))
    forward = [{"phase": ph, "waves": waves} for ph, waves in loaded.forward_waves()]
    rollback_seq = [{"phase": ph, "waves": [list(w) for w in reversed(waves)]} for ph, waves in reversed(loaded.forward_waves())]
    changes = {}
    for op in loaded.plan.operations:
        rec = st.ops.get(op.id)
        if rec is None or rec.status == "rolled_back":
            changes[op.id] = "create"
        elif rec.status == "applied":
            changes[op.id] = "no change" if rec.fingerprint == fingerprint(op) else "changed (kept as applied)"
        else:
            changes[op.id] = f"{rec.status}: needs rollback or resume"
    orphans = [o for o in st.ops.values() if o.id not in changes and needs_undo(o)]
    for o in orphans:
        changes[o.id] = "applied but no longer in the plan (rollback --target to remove)"
    return {
        "plan": loaded.plan.name,
        "env": env,
        "forward": forward,
        "rollback": rollback_seq,
        "changes": changes,
        "warnings": [str(w) for w in loaded.warnings],
    }


def unlock(env: str = "default", state: str | JournalStore | None = None, lock_id: str | None = None) -> LockHolder | None:
    return _store(state).break_lock(env, lock_id)


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
    st = derive(env, _store(state).events(env))
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
                _, mismatches = rt.executor.check(scope.exec_form(check, rt.secrets))
                results.append({"check": name, "ok": not mismatches, "mismatches": [str(m) for m in mismatches]})
            except Exception as exc:  # noqa: BLE001 - every check is reported, none aborts the rest
                results.append({"check": name, "ok": False, "error": rt.secrets.redactor.text(str(exc))})
    finally:
        rt.close()
    return results
