"""The Python API. The CLI is a thin shell over these functions; scripts may call them too.

Each function opens the journal store named by ``state`` (default: ``.atomicops/`` in the
current directory), works on one environment, and either returns a report or raises a
typed :class:`~atomicops.errors.AtomicOpsError` carrying the exit code of DESIGN.md.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from atomicops.errors import (
    ExpectFailed,
    ResumeMismatch,
    RollbackIncomplete,
    RunFailed,
    Uncertain,
    UsageError,
)
from atomicops.journal import open_store
from atomicops.journal.state import EnvState, derive
from atomicops.journal.store import JournalStore, LockHolder

# The engine and the plan model (pydantic, every action kind) are imported by the functions
# that run or load a plan: `status`, `history` and `unlock` need only the journal
# (docs/performance.md).
if TYPE_CHECKING:
    from atomicops.engine.apply import Applier, ApplyReport
    from atomicops.engine.cancel import Cancellation
    from atomicops.engine.observer import Observer
    from atomicops.engine.rollback import RollbackReport
    from atomicops.engine.run import Run
    from atomicops.plan.loader import LoadedPlan


def validate(
    plan: str | os.PathLike[str],
    *,
    vars: Mapping[str, Any] | None = None,
    vars_files: Sequence[str] = (),
) -> LoadedPlan:
    """Load and check a plan completely; raise PlanInvalid listing every problem."""
    from atomicops.plan.loader import load_plan

    return load_plan(plan, var_overrides=vars, vars_files=vars_files)


def _loaded(plan: Any, vars: Mapping[str, Any] | None, vars_files: Sequence[str]) -> LoadedPlan:
    from atomicops.plan.loader import LoadedPlan

    return plan if isinstance(plan, LoadedPlan) else validate(plan, vars=vars, vars_files=vars_files)


def _store(state: str | JournalStore | None) -> JournalStore:
    return state if (state is not None and not isinstance(state, str)) else open_store(state)


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
) -> ApplyReport:
    """Apply the plan's pending operations. Raises RunFailed (exit 1) when the run failed.

    ``cancel.interrupt()`` (the CLI's Ctrl-C) stops starting new operations; the run then rolls
    back what it applied (unless ``on_failure`` is keep); a second one stops the rollback."""
    from atomicops.engine.run import Run

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
    with Run(store, env, "apply", observer=observer, start_data=start, cancel=cancel) as run:
        st = run.state()
        prepare = None
        if _interrupted(st):
            # A killed run left steps in flight: settle them by their probes first, provided
            # the plan still says what the journal recorded for them.
            _check_against_journal(loaded, st, half_applied_only=True)
            prepare = functools.partial(_settle_or_stop, run)
        else:
            _check_selection(loaded, st, selected)
        return _apply_in_run(
            run, loaded, st, selected, full=phase is None and not list(targets),
            on_failure=on_failure, parallelism=parallelism, prepare=prepare,
            earlier_runs=[r.id for r in st.unfinished_runs() if r.id != run.id],
        )


def _interrupted(st: EnvState) -> bool:
    return bool(st.in_flight()) or any(o.status in ("applying", "rolling_back") for o in st.ops.values())


def _check_against_journal(given: LoadedPlan, st: EnvState, *, half_applied_only: bool) -> None:
    """Operations the journal recorded must be unchanged in the plan that continues them
    (compared by the fingerprint journalled when each started)."""
    from atomicops.plan.changes import fingerprint

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


def _settle_or_stop(run: Run, applier: Applier) -> EnvState:
    from atomicops.engine.resume import settle

    settled, uncertain = settle(applier)
    if uncertain:
        run.finish("uncertain", steps=uncertain)
        raise Uncertain(run.env, uncertain)
    return settled


def _apply_in_run(
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
) -> ApplyReport:
    """The body of an apply inside a run that holds the lock (``apply`` and ``resume``).

    ``prepare`` runs first with the applier ready (resume settles in-flight steps there) and
    returns the state to continue from; ``earlier_runs`` are runs whose operations a failure
    should roll back too (the run that resume finishes).
    """
    from atomicops.engine.apply import Applier
    from atomicops.engine.preflight import preflight
    from atomicops.engine.runtime import open_runtime
    from atomicops.plan.changes import fingerprint

    p = loaded.plan
    preflight(loaded, [o for o in selected if not st.is_applied(o)], env=run.env, run_id=run.id)
    rt = open_runtime(p, env=run.env, run_id=run.id, base_dir=loaded.base_dir, cancel=run.cancel)
    run.redactor = rt.secrets.redactor
    try:
        applier = Applier(loaded, run, rt, st, parallelism, earlier_runs=set(earlier_runs))
        if prepare is not None:
            st = applier.state = prepare(applier)
            applier.refresh_outputs()
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
        ok = applier.run_phases(pending)
        if ok and full and p.verify:
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
    """The operations an apply runs, in plan order: a phase's, or the targets and what they
    need (within the phase when one is given), or all."""
    p = loaded.plan
    every = [op.id for op in p.operations]
    if phase is not None and phase not in p.phases:
        raise UsageError(f"unknown phase {phase!r} (phases: {', '.join(p.phases)})")
    unknown = [t for t in targets if t not in every]
    if unknown:
        raise UsageError(f"unknown operation(s): {', '.join(unknown)}")
    wanted = set(every)
    if targets:
        graph = loaded.graph
        wanted = set().union(*({t} | graph.ancestors(t) for t in targets))
    if phase is not None:
        wanted &= {op.id for op in p.operations if p.phase_of(op) == phase}
    return [i for i in every if i in wanted]


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
    cancel: Cancellation | None = None,
) -> RollbackReport:
    """Undo applied operations from the journal alone (the plan file is not read)."""
    from atomicops.engine.apply import Applier
    from atomicops.engine.rollback import RollbackReport, needs_undo, rollback_ops, with_dependents
    from atomicops.engine.run import Run
    from atomicops.engine.runtime import open_runtime
    from atomicops.plan.loader import loaded_from_journal

    store = _store(state)
    targets, skip = list(targets), list(skip)
    with Run(store, env, "rollback", observer=observer, start_data={"options": {"targets": targets, "skip": skip}},
             cancel=cancel) as run:
        st = run.state()
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
        loaded = loaded_from_journal(recorded.plan, file=recorded.plan_file, base_dir=recorded.base_dir)
        rt = open_runtime(loaded.plan, env=env, run_id=run.id, base_dir=loaded.base_dir, cancel=run.cancel)
        run.redactor = rt.secrets.redactor
        try:
            if st.in_flight():
                # Settle what a killed run left in flight, so nothing it made is forgotten.
                st = _settle_or_stop(run, Applier(loaded, run, rt, st, parallelism))
            report = rollback_ops(run, rt, st, selection, skip=skip, parallelism=parallelism)
        finally:
            rt.close()
        if not report.complete:
            run.finish("rollback_incomplete")
            raise _with_report(_incomplete(report), report)
        run.finish("rolled_back", undone=report.undone, left=report.left)
        return report


def resume(
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    rollback: bool = False,
    plan: str | os.PathLike[str] | None = None,
    parallelism: int = 10,
    observer: Observer | None = None,
    cancel: Cancellation | None = None,
) -> ApplyReport | RollbackReport:
    """Finish an interrupted run from the journal: settle in-flight steps by their probes,
    then continue it (an apply) or roll it back (``rollback=True``, a rollback, or an apply
    that was already failing). ``plan``, when given, must match what the journal recorded."""
    from atomicops.engine.apply import ApplyReport
    from atomicops.engine.run import Run
    from atomicops.plan.loader import loaded_from_journal

    store = _store(state)
    with Run(store, env, "resume", observer=observer, cancel=cancel) as run:
        st = run.state()
        interrupted = [r for r in st.unfinished_runs() if r.id != run.id]
        if not st.in_flight() and not interrupted and not any(o.status in ("applying", "rolling_back") for o in st.ops.values()):
            run.finish("nothing_to_do")
            return ApplyReport(run.id)
        recorded = st.latest_plan()
        if recorded is None or recorded.plan is None:
            raise UsageError(f"environment {env!r} has no recorded plan to resume")
        loaded = loaded_from_journal(recorded.plan, file=recorded.plan_file, base_dir=recorded.base_dir)
        if plan is not None:
            _check_against_journal(validate(plan, vars=loaded.plan.vars), st, half_applied_only=False)
        last = max(interrupted, key=lambda r: r.started) if interrupted else recorded
        options = _run_options(store, env, last.id)
        failing = any(o.status in ("failed", "rollback_failed", "rolling_back") and o.run_id == last.id for o in st.ops.values())
        if rollback or last.command == "rollback" or failing:
            return _resume_rollback(run, loaded, st, last, options, parallelism)
        on_failure = str(options.get("on_failure") or loaded.plan.on_failure)
        selected = _select(loaded, options.get("phase"), list(options.get("targets") or []))

        return _apply_in_run(
            run, loaded, st, selected, full=not options.get("phase") and not options.get("targets"),
            on_failure=on_failure, parallelism=parallelism, prepare=functools.partial(_settle_or_stop, run),
            earlier_runs=[last.id],
        )


def _resume_rollback(run: Run, loaded: LoadedPlan, st: EnvState, last: Any, options: dict[str, Any], parallelism: int) -> RollbackReport:
    from atomicops.engine.apply import Applier
    from atomicops.engine.rollback import rollback_ops, with_dependents
    from atomicops.engine.runtime import open_runtime

    rt = open_runtime(loaded.plan, env=run.env, run_id=run.id, base_dir=loaded.base_dir, cancel=run.cancel)
    run.redactor = rt.secrets.redactor
    try:
        settled = _settle_or_stop(run, Applier(loaded, run, rt, st, parallelism))
        if last.command == "rollback":
            targets = list(options.get("targets") or [])
            selection = with_dependents(settled, targets) if targets else set(settled.ops)
        else:
            selection = {o.id for o in settled.ops.values() if o.run_id in (last.id, run.id)}
        report = rollback_ops(run, rt, settled, selection, skip=options.get("skip") or (), parallelism=parallelism)
    finally:
        rt.close()
    if not report.complete:
        run.finish("rollback_incomplete")
        raise _with_report(_incomplete(report), report)
    run.finish("rolled_back", undone=report.undone)
    return report


def _run_options(store: JournalStore, env: str, run_id: str) -> dict[str, Any]:
    for ev in store.events(env):
        if ev.type == "run_started" and ev.run_id == run_id:
            return dict(ev.data.get("options") or {})
    return {}


def resolve(
    op: str,
    step: str,
    *,
    applied: bool,
    outputs: Mapping[str, Any] | None = None,
    env: str = "default",
    state: str | JournalStore | None = None,
    observer: Observer | None = None,
) -> None:
    """Settle an interrupted step by hand: it took effect (``applied``, with its outputs so its
    undo can be resolved) or it did not."""
    from atomicops.engine.apply import Applier
    from atomicops.engine.resume import find_step, outputs_before
    from atomicops.engine.run import Run
    from atomicops.engine.runtime import open_runtime
    from atomicops.plan.loader import loaded_from_journal

    store = _store(state)
    with Run(store, env, "resolve", observer=observer) as run:
        st = run.state()
        op_state = st.ops.get(op)
        target = op_state.steps.get(step) if op_state else None
        if op_state is None or target is None or target.status not in ("intent", "uncertain"):
            pending = ", ".join(st.in_flight()) or "none"
            raise UsageError(f"{op}/{step} is not an interrupted step (interrupted: {pending})")
        if not applied:
            run.record("step_settled", op=op, step=step, applied=False, by="resolve")
            run.finish("succeeded")
            return
        recorded = st.latest_plan()
        if recorded is None or recorded.plan is None:
            raise UsageError(f"environment {env!r} has no recorded plan")
        loaded = loaded_from_journal(recorded.plan, file=recorded.plan_file, base_dir=recorded.base_dir)
        rt = open_runtime(loaded.plan, env=env, run_id=run.id, base_dir=loaded.base_dir, cancel=run.cancel)
        run.redactor = rt.secrets.redactor
        try:
            applier = Applier(loaded, run, rt, st, 1)
            plan_op, plan_step = find_step(applier, op, step)
            missing = [k for k in plan_step.result_outputs if k not in (outputs or {})]
            if missing:
                raise UsageError(f"--applied needs the step's outputs: {', '.join('--output ' + k + '=...' for k in missing)}")
            done = applier.record_done(plan_op, plan_step, dict(outputs or {}), outputs_before(plan_op, op_state, plan_step),
                                       target.started or 0.0, target.started or 0.0, settled_by="resolve")
            if done.error:
                raise UsageError(f"cannot resolve the undo of {op}/{step}: {done.error}")
        finally:
            rt.close()
        run.finish("succeeded")


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
    from atomicops.engine.rollback import needs_undo
    from atomicops.plan.changes import changes as changed_fields
    from atomicops.plan.changes import definition, fingerprint, recorded_definitions

    loaded = _loaded(plan, vars, vars_files)
    events = _store(state).events(env)
    st = derive(env, events)
    recorded = recorded_definitions(events)
    forward = [{"phase": ph, "waves": waves} for ph, waves in loaded.forward_waves()]
    rollback_seq = [{"phase": ph, "waves": [list(w) for w in reversed(waves)]} for ph, waves in reversed(loaded.forward_waves())]
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
    }


def orphans(aws_inventory: Mapping[str, Any], *, state: str | JournalStore | None = None) -> list[dict[str, Any]]:
    """Tagged resources in an AWS inventory that no journal of ``state`` holds as applied."""
    from atomicops.inventory.orphans import orphans as find

    store = _store(state)
    return find(aws_inventory, {env: derive(env, store.events(env)) for env in store.environments()})


def lock_holder(env: str = "default", state: str | JournalStore | None = None) -> LockHolder | None:
    return _store(state).read_lock(env)


def unlock(
    env: str = "default", state: str | JournalStore | None = None, lock_id: str | None = None, force: bool = False
) -> LockHolder | None:
    return _store(state).break_lock(env, lock_id, force=force)


def verify(
    plan: str | os.PathLike[str] | LoadedPlan,
    *,
    env: str = "default",
    state: str | JournalStore | None = None,
    vars: Mapping[str, Any] | None = None,
    vars_files: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Run the verify checks of every applied operation and of the plan; read-only, no lock."""
    from atomicops.engine.runtime import open_runtime

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
                results.append({"check": name, "ok": not mismatches,
                                "mismatches": [rt.secrets.redactor.text(str(m)) for m in mismatches]})
            except Exception as exc:  # noqa: BLE001 - every check is reported, none aborts the rest
                results.append({"check": name, "ok": False, "error": rt.secrets.redactor.text(str(exc))})
    finally:
        rt.close()
    return results
