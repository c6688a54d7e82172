"""Drift: read every applied step's resource back and say what changed since it was applied,
in the manner of CloudFormation's drift detection. Read-only: it changes nothing, journals
nothing of its own and takes no lock.

What a step is read back with is what a resume would settle it with (engine/resume.py): the
step's own ``probe`` or, for an AWS create call the catalog knows, the built-in probe. Both
come from the plan the journal recorded for the run that applied the operation, resolved with
the journalled outputs and run, so the plan file is never needed. The verdicts:

=============  =============================================================================
in_sync        the probe finds it, and every output it reads equals the journalled one
gone           the probe finds nothing: what a resume would take as "never happened"
changed        something is there, but not what the run made: an output differs (a new id,
               it was replaced), a namesake without this step's tag, or one failing the
               probe's expect
unknown        nothing can read it (no probe; the plan is not recorded; the probe has no
               answer: an error, no credentials): ``why`` says which
in_progress    the journal holds it in flight (a run is applying or undoing it, or was killed
               there): judging it would report a half-applied step as drift
=============  =============================================================================

``rollback`` runs this first (engine/rollback.py) and acts on ``gone`` and ``changed`` only.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from atomicops.engine.probe import can_probe, probe
from atomicops.engine.runtime import Runtime, open_runtime
from atomicops.engine.scope import SEALED, sealed, shown
from atomicops.errors import AtomicOpsError
from atomicops.journal.records import from_json, to_json
from atomicops.journal.state import EnvState, OpState, RunInfo, StepState
from atomicops.plan.changes import fingerprint
from atomicops.plan.loader import LoadedPlan, loaded_from_journal
from atomicops.plan.model import Operation, Step

IN_SYNC, GONE, CHANGED, UNKNOWN, IN_PROGRESS = "in_sync", "gone", "changed", "unknown", "in_progress"
STATUSES = (IN_SYNC, GONE, CHANGED, UNKNOWN, IN_PROGRESS)
DRIFTED = (GONE, CHANGED)


@dataclass(frozen=True)
class StepDrift:
    op: str
    step: str
    key: str  # <env>/<op>/<step>, the tag its resource carries
    status: str
    read_by: str = ""  # what read it: "probe ec2.describe_vpcs", "built-in probe"
    # Journalled outputs and what the probe reads now; secrets stay masked.
    expected: dict[str, Any] = field(default_factory=dict)
    actual: dict[str, Any] = field(default_factory=dict)
    differs: list[str] = field(default_factory=list)  # the outputs that differ
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "step": self.step, "key": self.key, "status": self.status, "read_by": self.read_by,
                "expected": self.expected, "actual": self.actual, "differs": self.differs, "why": self.why}


@dataclass
class DriftReport:
    env: str
    steps: list[StepDrift] = field(default_factory=list)
    seconds: float = 0.0
    running: dict[str, Any] | None = None  # the lock holder while it was read, if any

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(1 for d in self.steps if d.status == s) for s in STATUSES}

    @property
    def drifted(self) -> list[StepDrift]:
        return [d for d in self.steps if d.status in DRIFTED]

    @property
    def in_sync(self) -> bool:
        """Every step read back as the journal has it: nothing drifted, unreadable or in flight."""
        return all(d.status == IN_SYNC for d in self.steps)

    def by_step(self) -> dict[tuple[str, str], StepDrift]:
        return {(d.op, d.step): d for d in self.steps}

    def as_dict(self) -> dict[str, Any]:
        return {"env": self.env, "in_sync": self.in_sync, "counts": self.counts, "seconds": round(self.seconds, 3),
                "running": self.running, "steps": [d.as_dict() for d in self.steps]}


Progress = Callable[[int, int, StepDrift], None]  # done, total, the step just read


def readable(op: OpState) -> list[StepState]:
    """The steps of ``op`` whose effect may be in the world (or is in flight): what drift reads."""
    return [s for s in op.steps.values() if not s.read_only and (s.present or s.in_flight)]


def check(
    st: EnvState,
    *,
    ops: Iterable[str] | None = None,
    runtime: Runtime | None = None,
    parallelism: int = 10,
    progress: Progress | None = None,
) -> DriftReport:
    """Read back every present step of ``ops`` (default: every operation) and classify it.

    ``runtime``: one already open on the latest recorded plan (a rollback's), reused for the
    operations that plan applied; a runtime is opened (and closed) here for any other."""
    # Here, not at the top: resume (and apply) import rollback, which imports this module.
    from atomicops.engine.resume import outputs_before

    started = time.monotonic()
    chosen = [st.ops[o] for o in (ops if ops is not None else st.ops) if o in st.ops]
    work = [(op, s) for op in chosen for s in readable(op)]
    report = DriftReport(env=st.env)
    with _Plans(st, runtime) as plans:
        reader = _Reader(st, plans, outputs_before)
        done = 0
        with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(work) or 1))) as pool:
            for verdict in pool.map(lambda item: reader.read(*item), work):
                report.steps.append(verdict)
                done += 1
                if progress is not None:
                    progress(done, len(work), verdict)
    report.seconds = time.monotonic() - started
    return report


def settled_since(report: DriftReport, before: EnvState, after: EnvState, *, ops: Iterable[str] | None = None) -> None:
    """Mark as in progress every step the journal moved while it was read (a run applied or
    undid it meanwhile): what was read may be either side of that change."""
    for i, d in enumerate(report.steps):
        was, now = _step(before, d.op, d.step), _step(after, d.op, d.step)
        if now is None or was is None or (was.status, was.outputs, was.run_id) != (now.status, now.outputs, now.run_id):
            moved = f"{now.status} by run {now.run_id}" if now is not None else "forgotten"
            report.steps[i] = replace(d, status=IN_PROGRESS, why=f"the journal changed while it was read: {moved}")
    # A step that became present meanwhile was not read at all: it is in progress too.
    seen = {(d.op, d.step) for d in report.steps}
    chosen = set(ops) if ops is not None else set(after.ops)
    for op in (o for o in after.ops.values() if o.id in chosen):
        for s in readable(op):
            if (op.id, s.name) not in seen:
                report.steps.append(StepDrift(op.id, s.name, step_key(after.env, op.id, s.name), IN_PROGRESS,
                                              why=f"applied by run {s.run_id} while drift read the others"))


def _step(st: EnvState, op: str, step: str) -> StepState | None:
    o = st.ops.get(op)
    return o.steps.get(step) if o is not None else None


def step_key(env: str, op: str, step: str) -> str:
    return f"{env}/{op}/{step}"  # as engine/apply.py keys a step (its tag value)


class _Reader:
    """Reads one step back, with what the whole journal says about the environment."""

    def __init__(self, st: EnvState, plans: _Plans, outputs_before: Callable[[Operation, OpState, Step], dict[str, Any]]):
        self.env = st.env
        self.plans = plans
        self.outputs_before = outputs_before
        self.outputs = {o.id: o.outputs for o in st.ops.values()}
        # Every step key and output value the journal holds, with the step it belongs to: a
        # probe that now reads one of another step's is reading that step's resource.
        self.keys = {step_key(st.env, o.id, name): f"{o.id}/{name}" for o in st.ops.values() for name in o.steps}
        self.values: dict[str, set[str]] = {}
        for o in st.ops.values():
            for name, other in o.steps.items():
                for value in other.outputs.values():
                    if isinstance(value, str) and len(value) >= 8:  # ids, ARNs: not "true" or "1"
                        self.values.setdefault(value, set()).add(f"{o.id}/{name}")

    def read(self, op: OpState, s: StepState) -> StepDrift:
        key = step_key(self.env, op.id, s.name)
        expected = shown(s.outputs)
        if s.in_flight:
            return StepDrift(op.id, s.name, key, IN_PROGRESS, expected=expected,
                             why=f"{s.status} in the journal (run {s.run_id}): a run is at it, or was killed there")
        found = self.plans.step_of(op, s.name)
        if isinstance(found, str):
            return StepDrift(op.id, s.name, key, UNKNOWN, expected=expected, why=found)
        rt, plan_op, step = found
        read_by = f"probe {_call(step.probe)}" if step.probe is not None else f"built-in probe of {_call(step.do)}"
        if not can_probe(step):
            return StepDrift(op.id, s.name, key, UNKNOWN, expected=expected,
                             why=f"no probe: the step has none and {_call(step.do)} is not an AWS create the built-in "
                                 "probes know")
        # What `${self.X}` saw when the step ran; `${ops.OP.X}` reads the journalled outputs.
        scoped = replace(rt, scope=replace(rt.scope, ops_outputs=lambda o: self.outputs.get(o, {})))
        answer = probe(scoped, step, self.outputs_before(plan_op, op, step), key, op.id, run_id=s.tag_run or s.run_id,
                       op=plan_op)
        why = rt.secrets.redactor.text(answer.why)
        if answer.found is None:
            return StepDrift(op.id, s.name, key, UNKNOWN, read_by, expected, why=why)
        if not answer.found and not answer.exists:
            return StepDrift(op.id, s.name, key, GONE, read_by, expected, why=why)
        actual = shown(sealed(answer.outputs, rt.secrets))
        differs = [k for k in answer.outputs if k in s.outputs and _comparable(s.outputs[k])
                   and _plain(s.outputs[k]) != _plain(sealed(answer.outputs[k], rt.secrets))]
        if answer.found and not differs:
            return StepDrift(op.id, s.name, key, IN_SYNC, read_by, expected, actual, why=why)
        if differs:
            why = "replaced or changed since it was applied (" + ", ".join(
                f"{k}: {_short(expected[k])} -> {_short(actual[k])}" for k in differs) + ")"
        # A probe that reads a shared view (a task definition family's latest revision) finds
        # what a later step of this environment made: no news about this step's resource.
        other = self._made_elsewhere(f"{op.id}/{s.name}", [answer.outputs[k] for k in differs], why)
        if other is not None:
            return StepDrift(op.id, s.name, key, UNKNOWN, read_by, expected, actual, differs,
                             why=f"its probe now reads what step {other} of this environment made, not this step's: {why}")
        return StepDrift(op.id, s.name, key, CHANGED, read_by, expected, actual, differs, why=why)

    def _made_elsewhere(self, here: str, values: list[Any], why: str) -> str | None:
        """The other step of this environment whose output is among ``values`` (and not this
        step's too), or whose key the probe's answer names (its tag on what was found)."""
        for value in values:
            makers = self.values.get(value, set()) if isinstance(value, str) else set()
            if makers and here not in makers:
                return min(makers)
        # A whole key: "env/op/step" is not named by "env/op/step-2".
        return next((where for key, where in self.keys.items()
                     if where != here and re.search(re.escape(key) + r"(?![A-Za-z0-9_.-])", why)), None)


def _comparable(value: Any) -> bool:
    """A journalled output that holds a secret is not compared: the probe's reading would be
    sealed only if this process has resolved that secret, and comparing would show it."""
    return SEALED not in to_json(value)


def _plain(value: Any) -> Any:
    """The value as the journal reads it back (a datetime as its text), so that an output
    read now compares equal to the same output journalled at apply time."""
    return from_json(to_json(value))


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else to_json(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _call(action: Any) -> str:
    if isinstance(action, dict):
        for kind in ("aws", "sql", "http", "run", "call", "nats"):
            if kind in action:
                value = action[kind]
                return f"{kind} {value}" if isinstance(value, str) and kind in ("aws", "call") else kind
    return "an action"


class _Plans:
    """The plan each operation was applied with (recorded by its run, or the latest recorded
    plan when its fingerprint matches), and one runtime per distinct plan."""

    def __init__(self, st: EnvState, runtime: Runtime | None):
        self.st = st
        self.latest = st.latest_plan()
        self.given = runtime
        self.loaded: dict[str, LoadedPlan | str] = {}  # by recording run id; text: why not
        self.runtimes: dict[str, Runtime] = {}
        self.opened: list[Runtime] = []
        self.lock = threading.Lock()  # steps are read in parallel; each plan is loaded once

    def __enter__(self) -> _Plans:  # noqa: PYI034 - not subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        for rt in self.opened:
            rt.close()

    def step_of(self, op: OpState, name: str) -> tuple[Runtime, Operation, Step] | str:
        """The runtime, operation and step to probe ``op``/``name`` with, or why there is none."""
        with self.lock:
            return self._step_of(op, name)

    def _step_of(self, op: OpState, name: str) -> tuple[Runtime, Operation, Step] | str:
        recorded = self._recording_run(op)
        if recorded is None:
            return f"no plan recorded for the run that applied operation {op.id}"
        loaded = self._load(recorded)
        if isinstance(loaded, str):
            return loaded
        plan_op = loaded.plan.operations_by_id.get(op.id)
        step = next((s for s in plan_op.steps if s.name == name), None) if plan_op else None
        if plan_op is None or step is None:
            return f"step {op.id}/{name} is not in the plan run {recorded.id} recorded"
        return self._runtime(recorded, loaded), plan_op, step

    def _recording_run(self, op: OpState) -> RunInfo | None:
        first = self.st.runs.get(op.run_id)
        for run in self.st.lineage(first) if first is not None else []:
            if run.plan is not None:
                return run
        # Its run is gone from the journal's view (a copy, an old store): the latest plan
        # still serves when it defines the operation as it was applied.
        latest = self.latest
        if latest is not None and latest.plan is not None and op.fingerprint:
            loaded = self._load(latest)
            same = not isinstance(loaded, str) and op.id in loaded.plan.operations_by_id and (
                fingerprint(loaded.plan.operation(op.id), loaded.plan.vars) == op.fingerprint)
            if same:
                return latest
        return None

    def _load(self, run: RunInfo) -> LoadedPlan | str:
        if run.id not in self.loaded:
            assert run.plan is not None
            try:
                self.loaded[run.id] = loaded_from_journal(run.plan, file=run.plan_file, base_dir=run.base_dir)
            except AtomicOpsError as exc:
                self.loaded[run.id] = f"the plan run {run.id} recorded cannot be loaded: {exc}"
        return self.loaded[run.id]

    def _runtime(self, run: RunInfo, loaded: LoadedPlan) -> Runtime:
        if run.id not in self.runtimes:
            latest = self.latest
            if self.given is not None and latest is not None and (run.id == latest.id or run.plan == latest.plan):
                self.runtimes[run.id] = self.given
            else:
                rt = open_runtime(loaded.plan, env=self.st.env, run_id="drift", base_dir=loaded.base_dir)
                self.opened.append(rt)
                self.runtimes[run.id] = rt
        return self.runtimes[run.id]
