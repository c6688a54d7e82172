"""Apply: run the plan's pending operations, each all-or-nothing, phases in order.

For every step the journal gets an intent *before* the side effect and a result *after* it
holding the outputs and the fully resolved undo, so a rollback never needs the plan. When an
operation fails, its own done steps are undone at once (atomicity); when the run fails, every
operation it applied is undone in reverse dependency order (unless asked to keep them).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from atomicops.engine.executor import extract_outputs
from atomicops.engine.rollback import RollbackReport, rollback_ops, undo_step
from atomicops.engine.run import Run
from atomicops.engine.runtime import Runtime
from atomicops.errors import ActionError, AtomicOpsError, ExpectFailed, StepFailed, UndoFailed
from atomicops.graph import walk
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
    text = json.dumps(op.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def step_key(env: str, op: str, step: str) -> str:
    return f"{env}/{op}/{step}"


class Applier:
    def __init__(self, loaded: LoadedPlan, run: Run, rt: Runtime, state: EnvState, parallelism: int):
        self.loaded = loaded
        self.plan = loaded.plan
        self.run = run
        self.rt = rt
        self.state = state
        self.parallelism = parallelism
        self.report = ApplyReport(run.id)
        self._outputs: dict[str, dict[str, Any]] = {o.id: o.outputs for o in state.ops.values() if o.status == "applied"}
        self._lock = threading.Lock()
        self.stop = threading.Event()

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
        try:
            for step in op.steps:
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

    def _apply_step(self, op: Operation, step: Step, self_outputs: dict[str, Any]) -> StepState:
        run, rt = self.run, self.rt
        key = step_key(run.env, op.id, step.name)
        scope = rt.scope.with_self(self_outputs, key)
        try:
            journal_action = scope.journal_form(step.do)
            action = scope.exec_form(step.do, rt.secrets)
        except AtomicOpsError as exc:
            raise StepFailed(op.id, step.name, run.redactor.text(str(exc))) from None
        run.record("step_intent", op=op.id, step=step.name, action=journal_action, key=key)
        started = time.time()
        tags = {} if step.read_only else {"atomicops:env": run.env, "atomicops:op": op.id, "atomicops:step": key}
        try:
            result = rt.executor.execute(
                action, op=op.id, step_key=key, tags=tags, retry=step.retry, timeout=step.timeout,
                progress=self._progress(op.id, step.name),
            )
        except ActionError as exc:
            message = run.redactor.text(str(exc))
            run.record("step_failed", op=op.id, step=step.name, error=message, code=exc.code)
            raise StepFailed(op.id, step.name, message) from None
        finished = time.time()
        outputs, missing = extract_outputs(step.outputs, result)
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
            # Kept only when something is wrong, so a human can find what was created.
            result=result if (missing or undo_error) else None,
        )
        if missing or undo_error:
            why = f"outputs found nothing: {', '.join(missing)}" if missing else undo_error
            raise StepFailed(op.id, step.name, why or "")
        return state

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
        mine = [o.id for o in state.ops.values() if o.run_id == self.run.id]
        return rollback_ops(self.run, self.rt, state, mine, parallelism=self.parallelism)
