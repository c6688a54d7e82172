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

from atomicops.actions import registry
from atomicops.engine import checkpoints, consistency, faults
from atomicops.engine.adoption import check_no_adoption
from atomicops.engine.crash import crashpoint
from atomicops.engine.executor import extract_outputs
from atomicops.engine.probe import can_probe, created_before, probe, proves
from atomicops.engine.redo import do_is_its_probe
from atomicops.engine.rollback import RollbackReport, rollback_ops, undo_step
from atomicops.engine.run import Run
from atomicops.engine.runtime import Runtime
from atomicops.engine.scope import sealed
from atomicops.errors import (
    ActionError,
    AtomicOpsError,
    ExpectFailed,
    Interrupted,
    StaleLease,
    StepFailed,
    Uncertain,
    UndoFailed,
)
from atomicops.graph import walk
from atomicops.journal.state import EnvState, StepState
from atomicops.plan.changes import definition, fingerprint
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
    nothing_to_do: bool = False  # a resume that found no interrupted run
    not_started: list[str] = field(default_factory=list)  # left when the run was halted
    triggers: dict[str, Any] | None = None  # what the rollback triggers saw (engine/triggers.py)


PROGRESS_EVERY = 2.0  # seconds between journalled progress reports without a mark


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
        self._fresh: set[str] = set()  # output values this run journalled (engine/consistency.py)
        self.refresh_outputs()
        # `${ops.OP.OUT}` anywhere this applier resolves (steps, undos, probes when settling a
        # killed run) reads the outputs it tracks, whoever opened the runtime.
        rt.scope = replace(rt.scope, ops_outputs=self.op_outputs)
        # Not `stop`: a fired trigger halts the walk but lets the actions in flight finish.
        self.stop = run.cancel.halt

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
            for err in result.errors.values():
                if isinstance(err, StaleLease):
                    raise err  # another run holds the environment now: nothing more to do here
            for op_id, err in result.errors.items():
                self.report.failures.append(err if isinstance(err, AtomicOpsError) else StepFailed(op_id, "?", err))
            if not result.ok():
                if self.stop.is_set():
                    not_started = sorted(n for n, o in result.outcomes.items() if o == "not_started")
                    self.report.not_started = not_started
                    if self.run.cancel.stop.is_set():  # Ctrl-C or a lost lease; a trigger reports itself
                        self.report.failures.append(Interrupted(not_started))
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
            fingerprint=fingerprint(op, self.plan.vars),
            definition=definition(op, self.plan.vars),  # what `plan` diffs a changed plan against
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
                earlier = prior.steps.get(step.name) if prior else None
                if earlier is not None and earlier.present:
                    # A new intent would make the journal forget what this step made before
                    # (admission refuses this; the engine never relies on that alone).
                    raise StepFailed(op.id, step.name, f"still applied by run {earlier.run_id}; roll it back first")
                done.append(self._apply_step(op, step, self_outputs))
            self._verify_operation(op, self_outputs)
        except Uncertain as exc:
            # A step may or may not have taken effect, and the steps before it may be what it
            # stands on: nothing is undone until a resume or `resolve` settles it.
            run.record("op_failed", op=op.id, error=run.redactor.text(str(exc)))
            raise
        except Exception as exc:
            # Atomicity: nothing of a failed operation stays behind.
            error = run.redactor.text(str(exc) if isinstance(exc, AtomicOpsError) else f"{type(exc).__name__}: {exc}")
            # The journal, not `done`, says what is present: a step can be journalled done
            # as it fails (its effect found after the error).
            fresh = run.state().ops.get(op.id)
            present = [s for s in fresh.steps.values() if s.present] if fresh else done
            try:
                for st in reversed(present):
                    undo_step(run, self.rt, op.id, st)
            except UndoFailed as undo_exc:
                run.record("op_failed", op=op.id, error=error, undo_error=str(undo_exc))
                raise
            run.record("op_failed", op=op.id, error=error)
            if isinstance(exc, StepFailed):
                raise
            raise StepFailed(op.id, "?", error) from None
        applied = run.record("op_applied", op=op.id, outputs=self_outputs)
        if op.checkpoint is not None:
            crashpoint("before_checkpoint", op.id)
            checkpoints.record(run, op.checkpoint, seq=applied.seq, op=op.id, by="plan")
        with self._lock:
            self._outputs[op.id] = dict(self_outputs)
            self.report.applied.append(op.id)
        crashpoint("between_operations", op.id)

    def _apply_step(self, op: Operation, step: Step, self_outputs: dict[str, Any]) -> StepState:
        run, rt = self.run, self.rt
        key = step_key(run.env, op.id, step.name)
        scope = rt.scope.with_self(self_outputs, key)
        try:
            journal_action = scope.sealed_form(step.do, rt.secrets)
            action = scope.exec_form(step.do, rt.secrets)
        except AtomicOpsError as exc:
            raise StepFailed(op.id, step.name, run.redactor.text(str(exc))) from None
        if not step.read_only:
            self._refuse_adoption(op, step, action, key, self_outputs)
        absent_before = self._absent_before(op, step, self_outputs, key)
        token = self.token_for(op.id, step.name, key)
        run.record("step_intent", op=op.id, step=step.name, action=journal_action, key=key, token=token,
                   **({"absent_before": True} if absent_before else {}))
        crashpoint("after_intent", key)
        started = time.time()
        try:
            return self._run_step(op, step, self_outputs, action, key, token, started)
        except AtomicOpsError:
            raise
        except Exception as exc:  # noqa: BLE001 - settled below, whatever it was
            # Not a failed call (that is an ActionError): something broke after the intent,
            # maybe after the effect (an outputs expression on the real result, a retry wait
            # too long to sleep). Settle the step as a resume would, never leave it in flight.
            why = run.redactor.text(f"{type(exc).__name__}: {exc}")
            if self.settle_intent(op, step, dict(self_outputs), started, why=why, absent_before=absent_before):
                raise StepFailed(op.id, step.name, why) from None
            raise Uncertain(run.env, [f"{op.id}/{step.name}"]) from None

    def _absent_before(self, op: Operation, step: Step, self_outputs: dict[str, Any], key: str) -> bool:
        """Whether the step's probe, one that cannot prove ownership (it does not name
        ``${step.key}``: a database, a role), finds nothing just before the intent.

        Journalled with the intent, it lets a resume take what the probe finds after a crash
        as this step's: nothing was there when the step began, and no other run of the tool
        can write to this environment while this one holds its lock. ``False`` when the
        probe found something, could not answer, or is not needed (one that proves, none).
        """
        if step.read_only or step.probe is None or proves(step, op) or do_is_its_probe(step):
            return False
        answer = probe(self.rt, step, dict(self_outputs), key, op.id, op=op)
        return answer.found is False

    def _refuse_adoption(self, op: Operation, step: Step, action: Any, key: str, self_outputs: dict[str, Any]) -> None:
        """Before the intent: a create that would succeed on a resource this step did not make
        fails here, so the journal never holds an undo that would delete it."""
        aws_kind = registry.get("aws")
        try:
            check_no_adoption(
                action, lambda name: self.rt.executor.connections.get(aws_kind, name),
                step_key=key, env=self.run.env, owned=created_before(op, step, self_outputs),
            )
        except AtomicOpsError as exc:
            message = self.run.redactor.text(str(exc))
            self.run.observer.note(f"{op.id}/{step.name}: {message}", level="error")
            raise StepFailed(op.id, step.name, message) from exc

    def _run_step(
        self, op: Operation, step: Step, self_outputs: dict[str, Any], action: Any, key: str, token: str, started: float
    ) -> StepState:
        run, rt = self.run, self.rt
        tags = {} if step.read_only else {"atomicops:env": run.env, "atomicops:op": op.id, "atomicops:step": key, "atomicops:run": run.id}
        prior = self.state.ops.get(op.id)
        resume_mark = None
        if prior and step.name in prior.steps and prior.steps[step.name].progress:
            resume_mark = (prior.steps[step.name].progress or {}).get("mark")
        lost: list[Any] = []  # the probe's answers about calls whose answer was lost

        def may_resend(exc: ActionError) -> bool:
            # Only a probe that proves ownership can say a lost create did not happen.
            if not proves(step, op):
                return False
            lost.append(probe(rt, step, self_outputs, key, op.id, op=op))
            return lost[-1].found is False

        def execute(retry: Any, should_retry: Any = None) -> Any:
            return rt.executor.execute(
                action, op=op.id, step_key=key, tags=tags, retry=retry, timeout=step.timeout,
                progress=self._progress(op.id, step.name), resume_mark=resume_mark,
                idempotency_token=None if step.read_only else token, may_resend=may_resend,
                should_retry=should_retry,
            )

        try:
            faults.injected("step", op.id, step.name, last=step is op.steps[-1])
            try:
                result = execute(step.retry)
            except ActionError as exc:
                with self._lock:
                    fresh = frozenset(self._fresh)
                if not consistency.waits(exc, action, fresh):
                    raise
                run.observer.note(f"{op.id}/{step.name}: {exc.code} for an id this run just made; "
                                  "waiting for AWS to make it visible", level="warning")
                result = execute(consistency.visibility_retry(),
                                 lambda e: consistency.not_yet_visible(e) or e.transient)
        except ActionError as exc:
            message = run.redactor.text(str(exc))
            if exc.ambiguous:
                message += " (the call may have taken effect; `atomicops inventory --orphans` lists what carries the step's tag)"
            if exc.ambiguous and lost and lost[-1].found:
                # The call did its work and only its answer was lost: settled as a resume
                # would settle it, by the probe's outputs.
                return self.record_done(op, step, lost[-1].outputs, self_outputs, started, time.time(), settled_by="probe")
            if exc.applied:
                # The effect took place (a create whose wait failed): journal it as done so
                # the operation's undo takes it back, then fail the step.
                outputs, _ = extract_outputs(step.result_outputs, exc.result)
                self.record_done(op, step, outputs, self_outputs, started, time.time(), result=exc.result)
                run.record("step_failed", op=op.id, step=step.name, error=message, code=exc.code, after_effect=True)
                raise StepFailed(op.id, step.name, message) from None
            if can_probe(step) and proves(step, op):
                # A call can fail after doing its work (a timeout, a partial failure): ask
                # the probe, and if the resource is there and provably this step's, journal
                # it so the operation's undo takes it back.
                answer = probe(rt, step, self_outputs, key, op.id, op=op)
                if answer.found:
                    self.record_done(op, step, answer.outputs, self_outputs, started, time.time(), settled_by="probe")
                    run.record("step_failed", op=op.id, step=step.name, error=message, code=exc.code, after_effect=True)
                    raise StepFailed(op.id, step.name, message) from None
            run.record("step_failed", op=op.id, step=step.name, error=message, code=exc.code)
            raise StepFailed(op.id, step.name, message) from None
        finished = time.time()
        crashpoint("after_effect", key)
        outputs, missing = extract_outputs(step.result_outputs, result)
        state = self.record_done(op, step, outputs, self_outputs, started, finished, result=result, missing=missing)
        crashpoint("after_result", key)
        if state.error:
            raise StepFailed(op.id, step.name, state.error)
        return state

    def settle_intent(
        self, op: Operation, step: Step, self_outputs: dict[str, Any], started: float, *,
        why: str = "", intent_run: str | None = None, absent_before: bool = False,
    ) -> bool:
        """Decide a step whose intent has no result, by its probe; ``False`` if it is left
        ``uncertain`` for `atomicops resolve`. ``intent_run`` is the run that wrote the intent
        (what ``${step.run}`` means to the probe); this run when None.

        Found is believed only from a probe that proves the resource is this step's (it
        names ``${step.key}``, or it is the built-in probe of an AWS create, which checks
        the tags itself), or from one that found nothing just before the intent
        (``absent_before``, journalled with it): anything else may have existed before the
        run, and a rollback would delete it. Not found is believed from any probe.
        """
        run = self.run
        where = f"{op.id}/{step.name}"
        if step.read_only:
            run.record("step_settled", op=op.id, step=step.name, applied=False, by="read_only")
            return True
        key = step_key(run.env, op.id, step.name)
        answer = probe(self.rt, step, self_outputs, key, op.id, run_id=intent_run, op=op) if can_probe(step) else None
        doubt = (
            "the step has no probe" if answer is None
            else run.redactor.text(answer.why) if answer.found is None
            else "its probe found something but does not prove it is this step's (the probe does not use ${step.key})"
            if answer.found and not proves(step, op) and not absent_before
            else None
        )
        if doubt is not None:
            reason = f"{why}; {doubt}" if why else doubt
            run.observer.note(f"{where}: cannot tell whether it took effect: {reason}", level="warning")
            run.record("step_uncertain", op=op.id, step=step.name, reason=reason)
            return False
        assert answer is not None
        if answer.found:
            run.observer.note(f"{where}: probed: found, journalled as done")
            self.record_done(op, step, answer.outputs, self_outputs, started, time.time(), settled_by="probe")
        else:
            run.observer.note(f"{where}: probed: not found ({run.redactor.text(answer.why)})")
            run.record("step_settled", op=op.id, step=step.name, applied=False, by="probe", why=run.redactor.text(answer.why))
        return True

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
        reason: str | None = None,
    ) -> StepState:
        """Journal a step's result: its outputs and its undo, resolved now with the real ids.

        ``state.error`` is set when the effect happened but its outputs or undo could not be
        worked out; the raw result is journalled then, so a human can find what was made.
        """
        run, rt = self.run, self.rt
        key = step_key(run.env, op.id, step.name)
        # Outputs are kept sealed, in memory as in the journal: a secret value in one is a
        # reference, and `${self...}`/`${ops...}` open it again (engine/scope.py).
        outputs = sealed(outputs, rt.secrets)
        self_outputs.update(outputs)
        with self._lock:
            self._fresh.update(consistency.output_values(outputs))
        undo, undo_error = None, None
        if step.value_outputs:
            # Outputs that are values (a name made of vars, a constant) whatever said the
            # step was done (its result, its probe, resolve).
            try:
                outputs = {**outputs, **rt.scope.with_self(self_outputs, key).journal_form(step.value_outputs)}
                self_outputs.update(outputs)
            except AtomicOpsError as exc:
                undo_error = str(exc)
        if step.undo is not None and undo_error is None:
            try:
                undo = rt.scope.with_self(self_outputs, key).sealed_form(step.undo, rt.secrets)
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
            reason=reason,
            # Kept only when something is wrong, so a human can find what was created.
            result=result if bad else None,
        )
        if bad:
            state.error = f"outputs found nothing: {', '.join(missing or [])}" if missing else undo_error
        return state

    def token_for(self, op_id: str, step_name: str, key: str) -> str:
        """One idempotency token per attempt at a step, reused when a resume re-runs it."""
        prior = self.state.ops.get(op_id)
        earlier = prior.steps.get(step_name) if prior else None
        if earlier and earlier.token and earlier.status in ("intent", "uncertain", "not_applied"):
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
                failures.append(self.run.redactor.text(f"{check.get('name') or 'check'}: {exc}"))
                continue
            failures += [self.run.redactor.text(str(m)) for m in mismatches]
        if failures:
            raise StepFailed(op.id, "verify", ExpectFailed(failures))

    def verify_plan(self) -> list[str]:
        failures = []
        for i, check in enumerate(self.plan.verify):
            name = check.get("name") or f"verify[{i}]"
            try:
                _, mismatches = self.rt.executor.check(self.rt.scope.exec_form(check, self.rt.secrets))
            except AtomicOpsError as exc:
                error = self.run.redactor.text(str(exc))
                failures.append(f"{name}: {error}")
                self.report.verify.append({"check": name, "ok": False, "error": error})
                continue
            ok = not mismatches
            shown = [self.run.redactor.text(str(m)) for m in mismatches]
            self.report.verify.append({"check": name, "ok": ok, "mismatches": shown})
            failures += [f"{name}: {m}" for m in shown]
        return failures

    def rollback_this_run(self) -> RollbackReport:
        """Undo what this run applied: operations it started that still have effects."""
        state = self.run.state()
        runs = {self.run.id} | self.earlier_runs
        mine = [o.id for o in state.ops.values() if o.run_id in runs]
        return rollback_ops(self.run, self.rt, state, mine, parallelism=self.parallelism)
