"""Rehearse a plan on the embedded sandbox and prove that rollback leaves nothing behind.

sandbox up -> inventory -> apply -> verify -> rollback -> inventory -> diff must be empty ->
sandbox down. The plan runs exactly as it would against real services: only the connection
values (the sandbox's vars) differ.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from atomicops import api, inventory, rehearsal_faults, sandbox
from atomicops.engine.executor import extract_outputs
from atomicops.engine.observer import Observer
from atomicops.engine.rollback import RollbackReport
from atomicops.engine.runtime import open_runtime
from atomicops.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_ROLLBACK_INCOMPLETE,
    ActionError,
    AtomicOpsError,
    RollbackIncomplete,
    RunFailed,
    StepFailed,
)
from atomicops.plan.loader import LoadedPlan
from atomicops.plan.model import Plan, Retry

REHEARSAL_ENV = "rehearsal"
FLAGSHIP_PLAN = Path(__file__).parent / "bundled" / "mistersmith"
"""The MisterSmith AWS migration, shipped with atomicops: what `atomicops rehearse` runs."""


@dataclass
class Failure:
    """Why the apply failed: the operation and step (None for a plan-level check or an error
    before any step ran) and the error as the run reported it."""

    op: str | None
    step: str | None
    error: str


@dataclass
class RollbackDone:
    """What the rollbacks of the rehearsal did: operations undone, those whose undo failed
    (with the error), those left applied behind them."""

    undone: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)

    def add(self, report: RollbackReport | None) -> None:
        if report is not None:
            self.undone += report.undone
            for op in report.undone:  # a later pass finished what an earlier one could not
                self.failed.pop(op, None)
            self.failed.update(report.failed)
            self.left = list(report.left)


@dataclass
class RehearsalReport:
    plan: str
    operations: int = 0
    steps: int = 0
    applied: list[str] = field(default_factory=list)
    undone: list[str] = field(default_factory=list)
    apply_error: str | None = None
    failures: list[Failure] = field(default_factory=list)
    rollback: RollbackDone = field(default_factory=RollbackDone)
    verify: list[dict[str, Any]] = field(default_factory=list)
    leaks: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    state: str = ""
    sandbox_kept: bool = False
    fault: rehearsal_faults.FaultOutcome | None = None  # `--fault`: what fired, how it recovered
    least_privilege: dict[str, Any] | None = None  # `--least-privilege`: the policy the run held
    report_file: str | None = None  # the run report (HTML), written beside the journal
    report_error: str | None = None  # why it could not be written (the rehearsal's verdict stands)

    @property
    def exit_code(self) -> int:
        if self.leaks or self.rollback.failed:
            return EXIT_ROLLBACK_INCOMPLETE  # the environment is not where it was
        if self.fault is not None:  # the failure was the point: 0 when recovery was proven
            return EXIT_OK if self.fault.recovered else EXIT_FAILED
        if self.apply_error or any(not v["ok"] for v in self.verify):
            return EXIT_FAILED
        if self.least_privilege and self.least_privilege.get("probe_failures"):
            return EXIT_FAILED
        return EXIT_OK


def write_report(report: RehearsalReport, path: Path) -> None:
    """The rehearsal's run report: its apply and rollback from the journal, with the verify
    results and the inventory diff that only the rehearsal knows. A page that cannot be
    written is reported, and changes nothing of the rehearsal's verdict."""
    from atomicops import report as run_report

    if not report.state:
        return  # it stopped before its journal existed: no run to show
    extra = [("rehearsal", f"{report.operations} operations, {report.steps} steps; leak check "
                           + ("clean" if not report.leaks else "LEAKS"))]
    if report.fault is not None:
        verdict = "recovery proven" if report.fault.recovered else "recovery NOT proven"
        extra.append(("fault", f"{report.fault.fault}: {verdict}"))
    t0 = time.monotonic()
    try:
        page = run_report.of_journal(REHEARSAL_ENV, report.state, every=True, verify=report.verify,
                                     leaks=report.leaks, exit_code=report.exit_code, extra_header=extra)
        run_report.write(page, path)
        report.report_file = str(path)
        report.timings["report"] = round(time.monotonic() - t0, 2)
    except Exception as exc:  # noqa: BLE001 - the page is a view: it must never cost the rehearsal its verdict
        report.report_error = f"{path}: {type(exc).__name__}: {exc}"


def failure_of(exc: AtomicOpsError) -> Failure:
    if isinstance(exc, StepFailed):
        return Failure(exc.op, exc.step, str(exc.cause))
    return Failure(None, None, str(exc))


def aws_services(plan: Plan) -> list[str]:
    """The AWS services a plan's actions call (its inventory looks at these)."""
    found: set[str] = set()

    def visit(action: Mapping[str, Any] | None) -> None:
        if action and isinstance(action.get("aws"), str) and "." in action["aws"]:
            found.add(action["aws"].split(".", 1)[0])

    for op in plan.operations:
        for step in op.steps:
            for action in (step.do, step.undo, step.probe):
                visit(action)
        for check in op.verify:
            visit(check)
    for check in plan.verify:
        visit(check)
    return sorted(found)


def run_setup(loaded: LoadedPlan, progress: Callable[[str], None]) -> dict[str, Any]:
    """Stand up the local system being migrated (the plan's ``rehearsal.setup``); the outputs
    of its actions become vars of the rehearsal."""
    assert loaded.plan.rehearsal is not None
    rt = open_runtime(loaded.plan, env=REHEARSAL_ENV, run_id="setup", base_dir=loaded.base_dir)
    found: dict[str, Any] = {}
    try:
        for i, action in enumerate(loaded.plan.rehearsal.setup):
            name = action.get("name") or f"setup[{i}]"
            body = {k: v for k, v in action.items() if k not in ("name", "outputs")}
            scope = replace(rt.scope, vars={**rt.scope.vars, **found})
            result = rt.executor.execute(scope.exec_form(body, rt.secrets), retry=Retry(attempts=1))
            outputs, missing = extract_outputs(action.get("outputs") or {}, result)
            if missing:
                raise ActionError("rehearsal", f"setup {name}: outputs found nothing: {', '.join(missing)}")
            found.update(outputs)
            progress(f"setup {name}: done")
    finally:
        rt.close()
    return found


def rehearse(
    plan: str | os.PathLike[str],
    *,
    sandbox_dir: str | os.PathLike[str] = sandbox.DEFAULT_DIR,
    keep: bool = False,
    vars: Mapping[str, Any] | None = None,
    vars_files: Sequence[str] = (),
    parallelism: int = 10,
    observer: Observer | None = None,
    progress: Callable[[str], None] = lambda text: None,
    fault: rehearsal_faults.Fault | None = None,
    least_privilege: bool = False,
    withhold: Sequence[str] = (),
    report_to: str | os.PathLike[str] | None = None,
) -> RehearsalReport:
    """``least_privilege``: AWS is a moto server of its own that enforces IAM; the setup and
    the inventories run as an administrator, apply, verify, the built-in probe of every AWS
    step (as a resume would make them) and rollback as a user holding exactly ``atomicops
    policy``'s actions, but ``withhold`` (which the tests prove each run needs).

    ``report_to``: where the run report (HTML) goes; default ``rehearsal-report.html``
    beside the journal, in the sandbox's directory. It is written before the sandbox goes
    down, which takes the journal with it."""
    t_start = time.monotonic()
    root = Path(sandbox_dir).resolve()
    was_up = sandbox.status(root)["up"]
    # Fail on a broken plan (or a fault aimed at no operation) before starting anything.
    first = api.validate(plan, vars=vars, vars_files=vars_files)
    if fault is not None:
        rehearsal_faults.check_against(fault, first.plan)

    t0 = time.monotonic()
    sb = sandbox.up(root, progress=progress)
    # The emulator's credentials, for this rehearsal only: restored when it ends, so a
    # caller's own credential chain is never shadowed afterwards.
    saved_env = {k: os.environ.get(k) for k in sandbox.SANDBOX_AWS_ENV}
    os.environ.update(sandbox.aws_env())
    report = RehearsalReport(plan=str(plan))
    if fault is not None:
        report.fault = rehearsal_faults.FaultOutcome(str(fault), seed=fault.seed)
    report.timings["sandbox_up"] = round(time.monotonic() - t0, 2)
    enforced: Any = None
    as_runner: Callable[[], Any] = contextlib.nullcontext
    try:
        offered = sb.vars()
        if least_privilege:
            from atomicops.policy import sandbox as iam_sandbox
            from atomicops.policy.proof import credentials

            enforced, admin = iam_sandbox.start_enforced(root)
            offered["aws_endpoint"] = enforced.url
            os.environ.update(admin.env())
        loaded: LoadedPlan = api.validate(plan, vars=vars, vars_files=vars_files, offered_vars=offered)
        if loaded.plan.rehearsal and loaded.plan.rehearsal.setup:
            t0 = time.monotonic()
            local = run_setup(loaded, progress)
            report.timings["setup"] = round(time.monotonic() - t0, 2)
            loaded = api.validate(plan, vars=vars, vars_files=vars_files, offered_vars={**offered, **local})
        if least_privilege:
            from atomicops.policy import build

            held = build(loaded, env=REHEARSAL_ENV)
            granted = [a for a in held.actions() if a not in withhold]
            runner = iam_sandbox.make_user(enforced.url, admin, "atomicops-runner", iam_sandbox.actions_only(granted))
            as_runner = lambda: credentials(runner)  # a new context for each use
            report.least_privilege = {"user": "atomicops-runner", **held.summary(), "unknown_calls": list(held.unknown)}
        p = loaded.plan
        report.plan = p.name
        report.operations = len(p.operations)
        report.steps = sum(len(op.steps) for op in p.operations)
        state = str(root / "rehearsal-journal.db")
        # Each rehearsal starts from an empty journal. SQLite's -wal and -shm go with it: a new
        # database beside an earlier one's write-ahead log cannot be opened ("disk I/O error").
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(state + suffix).unlink(missing_ok=True)
        report.state = state
        sv = offered
        take = lambda: inventory.take(
            aws_endpoint=sv.get("aws_endpoint"), region=sv.get("region"), aws_services=aws_services(p),
            database_url=sv.get("database_url"), nats_url=sv.get("nats_url"),
        )

        t0 = time.monotonic()
        before = take()
        report.timings["inventory"] = round(time.monotonic() - t0, 2)
        progress(f"inventory taken ({report.timings['inventory']:.1f}s)")

        t0 = time.monotonic()
        fired_check: str | None = None
        try:
            # Triggers are polled during the apply; the window after it is skipped (the
            # rehearsal rolls back right after its verify anyway, and a resume inherits it),
            # but for a trigger fault, which may fire just after the apply ends.
            window = rehearsal_faults.window_minutes(fault, p)
            drilled = rehearsal_faults.compressed(loaded, fault)
            with as_runner(), rehearsal_faults.armed(fault), rehearsal_faults.sabotage(
                fault, report.fault, p, state=state, env=REHEARSAL_ENV, sandbox_root=root,
            ):
                applied = rehearsal_faults.apply_with(
                    fault, report.fault,
                    lambda: api.apply(drilled, env=REHEARSAL_ENV, state=state, parallelism=parallelism, observer=observer,
                                      monitor=window),
                    lambda: api.resume(env=REHEARSAL_ENV, state=state, parallelism=parallelism, observer=observer),
                    state=state, env=REHEARSAL_ENV, steps=report.steps,
                )
            report.applied = applied.applied
            report.verify = applied.verify
        except (RunFailed, RollbackIncomplete) as exc:
            report.apply_error = str(exc)
            fired_check = getattr(exc, "check", None)  # a TriggerFired
            failed = getattr(exc, "report", None)
            if failed is not None:
                report.applied = list(failed.applied)
                report.failures = [failure_of(f) for f in failed.failures]
                report.rollback.add(failed.rollback)
        except AtomicOpsError as exc:
            report.apply_error = str(exc)
            report.failures = [Failure(None, None, str(exc))]
        report.timings["apply"] = round(time.monotonic() - t0, 2)
        if fault is not None and fault.kind in rehearsal_faults.TRIGGER_FAULTS and report.fault is not None:
            rolled_back = fired_check is not None and not report.rollback.failed and report.apply_error is not None
            rehearsal_faults.judge_trigger(fault, report.fault, p, fired_check, rolled_back)
        if fault is not None and fault.kind == "step" and report.fault is not None:
            rehearsal_faults.judge_step(fault, report.fault, [f.op for f in report.failures], report.rollback.undone)

        if report.apply_error is None:
            t0 = time.monotonic()
            with as_runner():
                report.verify = api.verify(loaded, env=REHEARSAL_ENV, state=state)
                if report.least_privilege is not None:
                    from atomicops.policy.proof import probe_all

                    report.least_privilege["probe_failures"] = probe_all(loaded, env=REHEARSAL_ENV, state=state)
            report.timings["verify"] = round(time.monotonic() - t0, 2)

        t0 = time.monotonic()
        # An undo fault fails the first rollback (exit 3); a second one must finish.
        passes = 2 if fault is not None and fault.kind == "undo" else 1
        for attempt in range(1, passes + 1):
            try:
                with as_runner(), rehearsal_faults.armed(fault):
                    report.rollback.add(api.rollback(env=REHEARSAL_ENV, state=state, parallelism=parallelism, observer=observer))
                break
            except AtomicOpsError as exc:
                report.rollback.add(getattr(exc, "report", None))
                if report.applied and not isinstance(exc, RollbackIncomplete):
                    # The rollback could not run at all (the journal, a lock...): what was
                    # applied may still be there.
                    report.rollback.failed.setdefault("(rollback)", str(exc))
                progress(f"rollback {attempt} did not complete: {exc}")
            finally:
                if attempt == 1:
                    first_failed = dict(report.rollback.failed)
        if fault is not None and fault.kind == "undo" and report.fault is not None:
            rehearsal_faults.judge_undo(fault, report.fault, first_failed, report.rollback.failed)
        report.undone = list(report.rollback.undone)
        report.timings["rollback"] = round(time.monotonic() - t0, 2)

        report.leaks = inventory.diff(before, take())
        if report.fault is not None:
            rehearsal_faults.conclude(report.fault, leaks=bool(report.leaks), undo_failed=bool(report.rollback.failed))
        write_report(report, Path(report_to) if report_to else root / "rehearsal-report.html")
    finally:
        if enforced is not None:
            from atomicops.sandbox import moto

            moto.stop(enforced)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if keep or was_up:
            report.sandbox_kept = True
        else:
            t0 = time.monotonic()
            sandbox.down(root)
            report.timings["sandbox_down"] = round(time.monotonic() - t0, 2)
        report.timings["total"] = round(time.monotonic() - t_start, 2)
    return report
