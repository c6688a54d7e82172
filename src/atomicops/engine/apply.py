"""Apply: run the plan's pending operations, each all-or-nothing, phases in order.

For every step the journal gets an intent *before* the side effect and a result *after* it
holding the outputs and the fully resolved undo, so a rollback never needs the plan. When an
operation fails, its own done steps are undone at once (atomicity); when the run fails, every
operation it applied is undone in reverse dependency order (unless asked to keep them).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from atomicops.engine.crash import crashpoint
from atomicops.engine.executor import extract_outputs
from atomicops.engine.probe import probe, proves_ownership
from atomicops.engine.rollback import RollbackReport, rollback_ops, undo_step
from atomicops.engine.run import Run
from atomicops.engine.runtime import Runtime
from atomicops.errors import ActionError, AtomicOpsError, ExpectFailed, StepFailed, UndoFailed
from atomicops.graph import walk
from atomicops.journal.sqlite import to_json
from atomicops.journal.state import EnvState, StepState
from atomicops.plan.loader import LoadedPlan
from atomicops.plan.model import Operation, Step


@dataclass
class ApplyReport:
    run_id: str
    applied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failures: list[AtomicOpsError] = field(default_factory=list)
    rollback: RollbackReport | None = None
    changed_since_applied: list[str] = field(default_factory=list)
    verify: list[dict[str, Any]] = field(default_factory=list)


PROGRESS_EVERY = 2.0  # seconds between journalled progress reports without a mark


def fingerprint(op: Operation) -> str:
    """Identifies an operation's definition (vars applied), to tell when the plan changed."""
    text = to_json(op.model_dump())  # as journalled: a !!binary value is not UTF-8 text
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def step_key(env: str, op: str, step: str) -> str:
    return f"{env}/{op}/{step}"


class Applier:
    def __init__(
        self,
        loaded: LoadedPlan,
        run: Run,
        rt: Runtime,
        state: EnvState,
        parallelism: int,
        *,
        earlier_runs: set[str] | None = None,
    ):
        self.earlier_runs = earlier_runs or set()
        self.loaded = loaded
        self.plan = loaded.plan
        self.run = run
        self.rt = rt
        self.state = state
        self.parallelism = parallelism
        self.report = ApplyReport(run.id)
        self._outputs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.refresh_outputs()
        # `${ops.OP.OUT}` anywhere this applier resolves (steps, undos, probes when settling a
        # killed run) reads the outputs it tracks, whoever opened the runtime.
        rt.scope = replace(rt.scope, ops_outputs=self.op_outputs)
        self.stop = threading.Event()

    def refresh_outputs(self) -> None:
        with self._lock:
            self._outputs = {o.id: o.outputs for o in self.state.ops.values() if o.status == "applied"}

    def op_outputs(self, op_id: str) -> dict[str, Any]:
        with self._lock:
            return self._outputs.get(op_id, {})

    def run_phases(self, selected: Iterable[str]) -> bool:
        selected = set(selected)
        for phase in self.plan.phases:
            ids = [o.id for o in self.plan.operations if self.plan.phase_of(o) == phase and o.id in selected]
            if not ids:
                continue
            self.run.observer.note(f"phase {phase}: {len(ids)} operation(s)")
            graph = self.loaded.graph.restricted(ids)
            result = walk(graph, self.apply_operation, parallelism=self.parallelism, stop=self.stop)
            for op_id, err in result.errors.items():
                self.report.failures.append(err if isinstance(err, AtomicOpsError) else StepFailed(op_id, "?", err))
            if not result.ok():
                return False
        return True

    def apply_operation(self, op_id: str) -> None:
        op = self.plan.operation(op_id)
        run = self.run
        run.record(
            "op_started",
            op=op.id,
            phase=self.plan.phase_of(op),
            phase_index=self.loaded.phase_index(op.id),
            depends_on=sorted(self.loaded.deps[op.id]),
            title=op.title,
            fingerprint=fingerprint(op),
        )
        self_outputs: dict[str, Any] = {}
        done: list[StepState] = []
        prior = self.state.ops.get(op.id)
        # An operation an interrupted run left half-applied continues after its done steps.
        continuing = prior is not None and prior.status in ("applying", "uncertain")
        carried = {n: s for n, s in prior.steps.items() if s.status == "done"} if prior and continuing else {}
        try:
            for step in op.steps:
                if step.name in carried:
                    self_outputs.update(carried[step.name].outputs)
                    done.append(carried[step.name])
                    continue
                done.append(self._apply_step(op, step, self_outputs))
            self._verify_operation(op, self_outputs)
        except AtomicOpsError as exc:
            # Atomicity: nothing of a failed operation stays behind.
            error = run.redactor.text(str(exc))
            try:
                for st in reversed(done):
                    undo_step(run, self.rt, op.id, st)
            except UndoFailed as undo_exc:
                run.record("op_failed", op=op.id, error=error, undo_error=str(undo_exc))
                raise
            run.record("op_failed", op=op.id, error=error)
            if isinstance(exc, StepFailed):
                raise
            raise StepFailed(op.id, "?", error) from None
        run.record("op_applied", op=op.id, outputs=self_outputs)
        with self._lock:
            self._outputs[op.id] = dict(self_outputs)
            self.report.applied.append(op.id)
        crashpoint("between_operations", op.id)

    def _apply_step(self, op: Operation, step: Step, self_outputs: dict[str, Any]) -> StepState:
        run, rt = self.run, self.rt
        key = step_key(run.env, op.id, step.name)
        scope = rt.scope.with_self(self_outputs, key)
        try:
            journal_action = scope.journal_form(step.do)
            action = scope.exec_form(step.do, rt.secrets)
        except AtomicOpsError as exc:
            raise StepFailed(op.id, step.name, run.redactor.text(str(exc))) from None
        token = self._token(op.id, step.name, key)
        run.record("step_intent", op=op.id, step=step.name, action=journal_action, key=key, token=token)
        crashpoint("after_intent", key)
        started = time.time()
        tags = {} if step.read_only else {"atomicops:env": run.env, "atomicops:op": op.id, "atomicops:step": key}
        prior = self.state.ops.get(op.id)
        resume_mark = None
        if prior and step.name in prior.steps and prior.steps[step.name].progress:
            resume_mark = (prior.steps[step.name].progress or {}).get("mark")
        try:
            result = rt.executor.execute(
                action, op=op.id, step_key=key, tags=tags, retry=step.retry, timeout=step.timeout,
                progress=self._progress(op.id, step.name), resume_mark=resume_mark,
                idempotency_token=None if step.read_only else token,
            )
        except ActionError as exc:
            message = run.redactor.text(str(exc))
            if exc.applied:
                # The effect took place (a create whose wait failed): journal it as done so
                # the operation's undo takes it back, then fail the step.
                outputs, _ = extract_outputs(step.outputs, exc.result)
                self.record_done(op, step, outputs, self_outputs, started, time.time(), result=exc.result)
                run.record("step_failed", op=op.id, step=step.name, error=message, code=exc.code, after_effect=True)
                raise StepFailed(op.id, step.name, message) from None
            if step.probe is not None and proves_ownership(step):
                # A call can fail after doing its work (a timeout, a partial failure): ask
                # the probe, and if the resource is there and provably this step's, journal
                # it so the operation's undo takes it back.
                answer = probe(rt, step, self_outputs, key, op.id)
                if answer.found:
                    self.record_done(op, step, answer.outputs, self_outputs, started, time.time(), settled_by="probe")
                    run.record("step_failed", op=op.id, step=step.name, error=message, code=exc.code, after_effect=True)
                    raise StepFailed(op.id, step.name, message) from None
            run.record("step_failed", op=op.id, step=step.name, error=message, code=exc.code)
            raise StepFailed(op.id, step.name, message) from None
        finished = time.time()
        crashpoint("after_effect", key)
        outputs, missing = extract_outputs(step.outputs, result)
        state = self.record_done(op, step, outputs, self_outputs, started, finished, result=result, missing=missing)
        crashpoint("after_result", key)
        if state.error:
            raise StepFailed(op.id, step.name, state.error)
        return state

    def record_done(
        self,
        op: Operation,
        step: Step,
        outputs: dict[str, Any],
        self_outputs: dict[str, Any],
        started: float,
        finished: float,
        *,
        result: Any = None,
        missing: list[str] | None = None,
        settled_by: str | None = None,
    ) -> StepState:
        """Journal a step's result: its outputs and its undo, resolved now with the real ids.

        ``state.error`` is set when the effect happened but its outputs or undo could not be
        worked out; the raw result is journalled then, so a human can find what was made.
        """
        run, rt = self.run, self.rt
        key = step_key(run.env, op.id, step.name)
        self_outputs.update(outputs)
        undo, undo_error = None, None
        if step.undo is not None:
            try:
                undo = rt.scope.with_self(self_outputs, key).journal_form(step.undo)
            except AtomicOpsError as exc:
                undo_error = str(exc)
        state = StepState(
            name=step.name,
            status="done",
            run_id=run.id,
            outputs=outputs,
            undo=undo,
            irreversible=step.irreversible or (f"undo could not be resolved: {undo_error}" if undo_error else None),
            read_only=step.read_only,
            ok_errors=list(step.ok_errors),
            started=started,
            finished=finished,
        )
        bad = bool(missing or undo_error)
        run.record(
            "step_done",
            op=op.id,
            step=step.name,
            outputs=outputs,
            undo=undo,
            irreversible=state.irreversible,
            read_only=step.read_only,
            ok_errors=state.ok_errors,
            started=started,
            finished=finished,
            settled_by=settled_by,
            # Kept only when something is wrong, so a human can find what was created.
            result=result if bad else None,
        )
        if bad:
            state.error = f"outputs found nothing: {', '.join(missing or [])}" if missing else undo_error
        return state

    def _token(self, op_id: str, step_name: str, key: str) -> str:
        """One idempotency token per attempt at a step, reused when a resume re-runs it."""
        prior = self.state.ops.get(op_id)
        earlier = prior.steps.get(step_name) if prior else None
        if earlier and earlier.token and earlier.status in ("intent", "not_applied"):
            return earlier.token
        digest = hashlib.sha256(f"{key}/{self.run.id}".encode()).hexdigest()
        return str(uuid.UUID(digest[:32]))

    def _progress(self, op_id: str, step_name: str) -> Any:
        """Journal how far long work got, at most every couple of seconds (and every mark)."""
        last = [0.0]

        def report(done: int, total: int | None = None, note: str = "", mark: Any = None) -> None:
            now = time.monotonic()
            if mark is None and now - last[0] < PROGRESS_EVERY and done != total:
                return
            last[0] = now
            self.run.record("step_progress", op=op_id, step=step_name, done=done, total=total, note=note, mark=mark)

        return report

    def _verify_operation(self, op: Operation, outputs: dict[str, Any]) -> None:
        scope = self.rt.scope.with_self(outputs)
        failures = []
        for check in op.verify:
            try:
                _, mismatches = self.rt.executor.check(scope.exec_form(check, self.rt.secrets))
            except ActionError as exc:
                failures.append(f"{check.get('name') or 'check'}: {exc}")
                continue
            failures += [str(m) for m in mismatches]
        if failures:
            raise StepFailed(op.id, "verify", ExpectFailed(failures))

    def verify_plan(self) -> list[str]:
        failures = []
        for i, check in enumerate(self.plan.verify):
            name = check.get("name") or f"verify[{i}]"
            try:
                _, mismatches = self.rt.executor.check(self.rt.scope.exec_form(check, self.rt.secrets))
            except AtomicOpsError as exc:
                failures.append(f"{name}: {self.run.redactor.text(str(exc))}")
                self.report.verify.append({"check": name, "ok": False, "error": str(exc)})
                continue
            ok = not mismatches
            self.report.verify.append({"check": name, "ok": ok, "mismatches": [str(m) for m in mismatches]})
            failures += [f"{name}: {m}" for m in mismatches]
        return failures

    def rollback_this_run(self) -> RollbackReport:
        """Undo what this run applied: operations it started that still have effects."""
        state = self.run.state()
        runs = {self.run.id} | self.earlier_runs
        mine = [o.id for o in state.ops.values() if o.run_id in runs]
        return rollback_ops(self.run, self.rt, state, mine, parallelism=self.parallelism)
