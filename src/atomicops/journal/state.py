"""The state of an environment, derived by folding its journal events. Nothing else is stored.

Event vocabulary (``type``: what ``data`` holds), as the engine writes it:

=================  ==========================================================================
run_started        command, pid, host, user, took_over; apply adds plan (vars applied, secrets as
                   references), plan_file, base_dir, options; rollback adds options
run_resumes        run (the interrupted run a resume finishes), command (what that run was)
run_finished       outcome (succeeded | failed | kept | rolled_back | rollback_incomplete |
                   uncertain | nothing_to_do). A settling outcome (succeeded, rolled_back,
                   nothing_to_do) with no operation left half-done closes every earlier run
                   that never finished: nothing of it is left for a resume.
op_started         phase, phase_index, depends_on, title, fingerprint
step_intent        action (resolved, secrets as references), key, token; redo and tag_run (the
                   run of the first attempt, whose tags a re-do sends again) for a re-do of an
                   in-flight step that is safe to repeat; absent_before (its probe, one that
                   cannot prove ownership, found nothing just before)     -- before the do
step_done          outputs, undo (fully resolved), irreversible, read_only, ok_errors,
                   started, finished, settled_by (None | probe | redo | resolve), reason (resolve),
                   result (only when outputs or undo could not be worked out) -- after the do
step_progress      done, total, note, mark (a high-water mark long work can resume from)
step_failed        error, code, after_effect (the effect happened and was journalled done)
step_settled       applied (false), by (read_only | probe | resolve), why (probe),
                   reason (resolve): an in-flight step, or a failed undo, decided not applied
step_uncertain     reason (nothing could tell): `atomicops resolve` settles it
op_applied         outputs
op_failed          error, undo_error
undo_intent        action; settled_by (undo) and ok_errors for an in-flight step settled by
                   its undo (one that needs none of the step's outputs)    -- before an undo
undo_done          already_gone, code, settled_by (undo)
undo_failed        error, code
undo_refused       error, drift (changed), expected, actual: rollback's drift check found
                   the resource replaced out of band; its undo was not run (engine/drift.py).
                   The step stays applied, like a failed undo: a person decides
undo_skipped       reason (an irreversible step); drift (gone): the drift check found the
                   resource deleted out of band, so there was nothing to undo
drift_checked      counts, drifted (op/step: status): rollback read the steps back first
op_undone          (all of its present steps are undone)
checkpoint         name, seq (the position it stands for), op, by, run    -- journal/marks.py
checkpoint_dropped name, reason (a rollback went back past the mark)
op_skipped         reason, by (user@host), steps: `rollback --skip`, a person cleaned up
                   what a failed undo left; its steps count as undone
=================  ==========================================================================

A step is *present* while its effect may exist in the world (done, or its undo in flight or
failed); *applied* is only an operation's status (every step done).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from atomicops.journal import marks
from atomicops.journal.store import Event

# Step statuses after which the step's effect may exist in the world (the step is "present";
# "applied" is only ever an operation's status: all of its steps done).
_PRESENT = frozenset({"done", "undo_intent", "undo_failed"})

# Outcomes of a run that leave nothing for an earlier, interrupted run to finish, provided no
# operation is left half-done: that earlier run is then closed for good.
_SETTLING = frozenset({"succeeded", "rolled_back", "nothing_to_do"})


@dataclass
class StepState:
    name: str
    status: str
    run_id: str
    outputs: dict[str, Any] = field(default_factory=dict)
    undo: dict[str, Any] | None = None
    irreversible: str | None = None
    read_only: bool = False
    ok_errors: list[str] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    progress: dict[str, Any] | None = None  # the last step_progress: done, total, note, mark
    token: str | None = None  # the idempotency token of the step's latest intent
    settling: bool = False  # its undo in flight settles an in-flight step (not a rollback)
    tag_run: str | None = None  # the run whose tags the step's call carries (a re-do keeps the first's)
    absent_before: bool = False  # its probe (one that cannot prove ownership) found nothing before the intent

    @property
    def present(self) -> bool:
        """The step's effect may exist in the world and would need undoing."""
        return self.status in _PRESENT and not self.read_only

    @property
    def in_flight(self) -> bool:
        return self.status in ("intent", "undo_intent", "uncertain")


@dataclass
class OpState:
    id: str
    status: str  # applying | applied | failed | uncertain | rolling_back | rollback_failed | rolled_back
    run_id: str
    phase: str = ""
    phase_index: int = 0
    depends_on: list[str] = field(default_factory=list)
    title: str = ""
    fingerprint: str = ""
    steps: dict[str, StepState] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None
    error: str | None = None

    @property
    def outputs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in self.steps.values():
            if s.status in _PRESENT:
                out.update(s.outputs)
        return out

    @property
    def present(self) -> bool:
        """Something of this operation may exist in the world and would need undoing."""
        return any(s.present for s in self.steps.values())

    @property
    def half_done(self) -> bool:
        """Started and neither finished nor failed: a run was interrupted in it."""
        return self.status in ("applying", "rolling_back", "uncertain") or any(s.in_flight for s in self.steps.values())


@dataclass
class RunInfo:
    id: str
    command: str
    started: float
    finished: float | None = None
    outcome: str | None = None
    pid: int | None = None
    host: str | None = None
    plan: dict[str, Any] | None = None
    plan_file: str | None = None
    base_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # what the command was asked to do
    continues: str | None = None  # the interrupted run this one (a resume) finishes
    closed_by: str | None = None  # a later run that left nothing of this one to finish


@dataclass
class EnvState:
    env: str
    ops: dict[str, OpState] = field(default_factory=dict)
    runs: dict[str, RunInfo] = field(default_factory=dict)
    last_seq: int = 0
    checkpoints: dict[str, marks.Checkpoint] = field(default_factory=dict)  # live marks, by name

    def op_status(self, op_id: str) -> str:
        op = self.ops.get(op_id)
        return op.status if op else "pending"

    def is_applied(self, op_id: str) -> bool:
        return self.op_status(op_id) == "applied"

    def present_ops(self) -> list[OpState]:
        """Operations with steps still applied, whatever their status."""
        return [op for op in self.ops.values() if op.present]

    def in_flight(self) -> list[str]:
        return [
            f"{op.id}/{s.name}" for op in self.ops.values() for s in op.steps.values() if s.in_flight
        ]

    def unfinished_runs(self) -> list[RunInfo]:
        """Runs that neither finished nor were closed by a later run: work a resume owes."""
        return [r for r in self.runs.values() if r.finished is None]

    def lineage(self, run: RunInfo) -> list[RunInfo]:
        """``run``, the run it finishes (for a resume), the run that one finishes, and so on:
        the last is the run whose command and options they all carry out."""
        line = [run]
        while (nxt := self.runs.get(line[-1].continues or "")) is not None and nxt.id not in {r.id for r in line}:
            line.append(nxt)
        return line

    def half_done(self) -> list[str]:
        return [op.id for op in self.ops.values() if op.half_done]

    def latest_plan(self) -> RunInfo | None:
        with_plan = [r for r in self.runs.values() if r.plan is not None]
        return max(with_plan, key=lambda r: r.started) if with_plan else None


def derive(env: str, events: Iterable[Event]) -> EnvState:
    state = EnvState(env)
    for ev in events:
        _apply(state, ev)
        state.last_seq = ev.seq
    return state


def _apply(state: EnvState, ev: Event) -> None:
    d = ev.data
    if ev.type == "run_started":
        state.runs[ev.run_id] = RunInfo(
            id=ev.run_id,
            command=d.get("command", ""),
            started=ev.ts,
            pid=d.get("pid"),
            host=d.get("host"),
            plan=d.get("plan"),
            plan_file=d.get("plan_file"),
            base_dir=d.get("base_dir"),
            options=dict(d.get("options") or {}),
        )
        return
    if ev.type == "run_resumes":
        run = state.runs.get(ev.run_id)
        if run:
            run.continues = d.get("run")
        return
    if ev.type == "run_finished":
        run = state.runs.get(ev.run_id)
        if run:
            run.finished, run.outcome = ev.ts, d.get("outcome")
        if d.get("outcome") in _SETTLING and not state.half_done():
            for other in state.unfinished_runs():
                other.finished, other.outcome, other.closed_by = ev.ts, "closed", ev.run_id
        return
    if ev.type in marks.EVENTS:
        marks.fold(state.checkpoints, ev)
        return
    if ev.op is None:
        return
    if ev.type == "op_started":
        previous = state.ops.get(ev.op)
        # A fresh attempt keeps steps that are still applied (a failed undo) so they are
        # never forgotten; everything else starts over.
        kept = {n: s for n, s in (previous.steps.items() if previous else []) if s.present}
        state.ops[ev.op] = OpState(
            id=ev.op,
            status="applying",
            run_id=ev.run_id,
            phase=d.get("phase", ""),
            phase_index=d.get("phase_index", 0),
            depends_on=list(d.get("depends_on", [])),
            title=d.get("title", ""),
            fingerprint=d.get("fingerprint", ""),
            steps=kept,
            started=ev.ts,
        )
        return
    op = state.ops.get(ev.op)
    if op is None:
        return
    if ev.type == "op_applied":
        op.status, op.finished, op.error = "applied", ev.ts, None
    elif ev.type == "op_failed":
        # A step nobody can tell about keeps the operation uncertain: it needs `resolve`.
        doubt = any(s.status == "uncertain" for s in op.steps.values())
        op.status, op.finished, op.error = "uncertain" if doubt else "failed", ev.ts, d.get("error")
    elif ev.type == "op_undone":
        op.status = "rolled_back"
    elif ev.type == "op_skipped":
        # A person removed what the failed undo left (`rollback --skip`): as undone, by hand.
        for step in op.steps.values():
            if step.present:
                step.status, step.error = "skipped", f"skipped by {d.get('by')}: {d.get('reason')}"
        op.status = "rolled_back"
    elif ev.step is not None:
        _apply_step(op, ev)


def _apply_step(op: OpState, ev: Event) -> None:
    _apply_step_event(op, ev)
    if op.status == "uncertain" and not any(s.status == "uncertain" for s in op.steps.values()):
        op.status = "applying"  # every doubt settled: the operation can go on


def _apply_step_event(op: OpState, ev: Event) -> None:
    d = ev.data
    step = op.steps.get(ev.step or "")
    if ev.type == "step_intent":
        earlier = op.steps.get(ev.step or "")
        op.steps[ev.step or ""] = StepState(
            name=ev.step or "", status="intent", run_id=ev.run_id, started=ev.ts, token=d.get("token"),
            tag_run=d.get("tag_run") or ev.run_id, absent_before=bool(d.get("absent_before")),
            # A step re-run after a crash keeps the high-water mark its first attempt reached.
            progress=earlier.progress if earlier else None,
        )
        return
    if step is None:
        return
    if ev.type == "step_done":
        step.status = "done"
        step.outputs = dict(d.get("outputs") or {})
        step.undo = d.get("undo")
        step.irreversible = d.get("irreversible")
        step.read_only = bool(d.get("read_only"))
        step.ok_errors = list(d.get("ok_errors") or [])
        step.started = d.get("started", step.started)
        step.finished = d.get("finished", ev.ts)
    elif ev.type == "step_progress":
        step.progress = dict(d)
    elif ev.type == "step_failed":
        if not d.get("after_effect"):  # an effect journalled as done stays applied
            step.status = "failed"
        step.error, step.finished = d.get("error"), ev.ts
    elif ev.type == "step_settled":
        # Resume or `resolve` decided what an interrupted step did.
        if d.get("applied"):
            step.status = "done"
            step.outputs = dict(d.get("outputs") or {})
            step.undo = d.get("undo")
            step.irreversible = d.get("irreversible")
            step.ok_errors = list(d.get("ok_errors") or [])
        else:
            step.status = "not_applied"
    elif ev.type == "step_uncertain":
        step.status = "uncertain"
        op.status = "uncertain"
    elif ev.type == "undo_intent":
        step.status = "undo_intent"
        if d.get("settled_by"):
            # An in-flight step settled by its undo (engine/resume.py): the journal learns
            # the undo and its "already gone" codes here, so an interrupted one runs again.
            step.undo, step.ok_errors, step.settling = d.get("action"), list(d.get("ok_errors") or []), True
        if op.status == "applied":
            op.status = "rolling_back"
    elif ev.type == "undo_done":
        step.status = "undone"
    elif ev.type in ("undo_failed", "undo_refused"):
        step.status, step.error = "undo_failed", d.get("error")
        op.status = "rollback_failed"
    elif ev.type == "undo_skipped":
        step.status, step.error = "undo_skipped", d.get("reason")
