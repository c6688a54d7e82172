"""The failures `atomicops rehearse --fault KIND` fires on purpose, and what proves recovery.

A rehearsal with a fault runs the same sandbox, inventory, apply, rollback and leak check as a
plain one; this module only arms the failure and says whether the recovery was proven:

- ``step:OP``  OP's last step fails (``ATOMICOPS_FAULT``): the apply must fail there and roll
  back everything it applied by itself.
- ``undo:OP``  OP's undo fails once: the first ``rollback`` must exit 3 naming OP, the second
  must finish.
- ``kill``     the apply runs in a child process killed with SIGKILL after a number of journal
  events chosen by ``--seed``; ``resume`` must finish it, then the rollback runs as usual.
- ``alarm``    once the alarm a trigger check watches (``cloudwatch.describe_alarms`` with
  ``AlarmNames``) exists, it is set to ALARM with ``cloudwatch.set_alarm_state``: that
  trigger must fire and the apply must roll itself back.
- ``health``   once the first operation is applied, the sandbox's NATS server is stopped, and
  started again (same port, same JetStream store) when a trigger has fired or after a
  minute: a trigger check of kind ``nats`` or ``http`` must fire, and the apply roll back.

For ``alarm`` and ``health`` the checks are polled every second (:func:`compressed`).

Proven means: the fault fired where it was aimed, the recovery above happened, and the
inventory after the rollback equals the one before the apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicops.engine import faults
from atomicops.errors import AtomicOpsError, ResumeRolledBack, UsageError
from atomicops.journal.views import environment, store_for
from atomicops.plan.loader import LoadedPlan
from atomicops.plan.model import Plan

KINDS = ("step:OP", "undo:OP", "kill", "alarm", "health")
TRIGGER_FAULTS = ("alarm", "health")
HEALTH_OUTAGE_SECONDS = 60.0  # the longest the NATS server stays down when nothing fires
SABOTEUR_POLL_SECONDS = 0.2
KILL_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Fault:
    kind: str  # step | undo | kill | alarm | health
    op: str | None = None
    seed: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.op}" if self.op else self.kind


@dataclass
class FaultOutcome:
    """What the fault did and how the rehearsal recovered, for the summary table."""

    fault: str
    fired: bool = False  # the failure happened where it was aimed
    path_ok: bool = True  # the recovery it calls for happened (the resume, the second rollback)
    recovered: bool = False  # fired, path_ok, and the inventory equals the one before apply
    detail: list[str] = field(default_factory=list)
    seed: int | None = None
    killed_after_events: int | None = None


def parse(text: str, seed: int | None = None) -> Fault:
    """``step:OP``, ``undo:OP``, ``kill``, ``alarm`` or ``health``. Raises :class:`UsageError`."""
    kind, sep, op = text.partition(":")
    if kind in ("step", "undo"):
        if not sep or not op or "/" in op or "," in op:
            raise UsageError(f"--fault {text!r}: {kind} needs an operation, {kind}:OP")
        return Fault(kind, op)
    if sep:
        raise UsageError(f"--fault {text!r}: only step:OP and undo:OP take an operation")
    if kind == "kill":
        return Fault("kill", seed=seed if seed is not None else random.SystemRandom().randrange(1_000_000))
    if kind in TRIGGER_FAULTS:
        return Fault(kind)
    raise UsageError(f"--fault {text!r}: not a fault; one of {', '.join(KINDS)}")


def check_against(fault: Fault, plan: Plan) -> None:
    """The operation a fault aims at must be in the plan, and a trigger fault needs a trigger
    check it can set off (before the sandbox is touched)."""
    if fault.op is not None and fault.op not in {op.id for op in plan.operations}:
        raise UsageError(f"--fault {fault}: the plan has no operation {fault.op!r}")
    if fault.kind in TRIGGER_FAULTS:
        aimed_check(fault, plan)


REHEARSAL_POLL_SECONDS = 1.0


def compressed(loaded: LoadedPlan, fault: Fault | None) -> LoadedPlan:
    """For a trigger fault, the plan with its checks polled every second at most: on the
    sandbox the whole apply takes seconds where real AWS takes many minutes, and the plan's
    interval would let the apply outrun the trigger it is there to prove."""
    triggers = loaded.plan.triggers
    if fault is None or fault.kind not in TRIGGER_FAULTS or triggers is None:
        return loaded
    faster = triggers.model_copy(update={"poll_seconds": min(triggers.poll_seconds, REHEARSAL_POLL_SECONDS)})
    return dataclasses.replace(loaded, plan=loaded.plan.model_copy(update={"triggers": faster}))


def window_minutes(fault: Fault | None, plan: Plan) -> float:
    """The monitoring window a rehearsal's apply keeps: none, but for a trigger fault, long
    enough for its check to miss ``failures`` times in a row after the apply ends."""
    if fault is None or fault.kind not in TRIGGER_FAULTS or plan.triggers is None:
        return 0
    failures = max((int(c.get("failures") or 1) for c in plan.triggers.checks), default=1)
    return math.ceil((plan.triggers.poll_seconds * (failures + 1) + 10) / 6) / 10  # tenths of a minute


def aimed_check(fault: Fault, plan: Plan) -> tuple[str, list[str]]:
    """The trigger check a trigger fault sets off: its name, and (``alarm``) the alarm names
    it watches. Raises :class:`UsageError` when the plan has none."""
    checks = plan.triggers.checks if plan.triggers else []
    for i, check in enumerate(checks):
        name = str(check.get("name") or f"check {i + 1}")
        if fault.kind == "alarm" and check.get("aws") == "cloudwatch.describe_alarms":
            names = (check.get("params") or {}).get("AlarmNames") or []
            if names and all(isinstance(n, str) and "${" not in n for n in names):
                return name, list(names)
        if fault.kind == "health" and ("nats" in check or "http" in check):
            return name, []
    wanted = ("a check of cloudwatch.describe_alarms with literal AlarmNames" if fault.kind == "alarm"
              else "a check of kind nats or http")
    raise UsageError(f"--fault {fault.kind}: the plan's triggers have no check it can set off ({wanted})")


@contextlib.contextmanager
def sabotage(fault: Fault | None, outcome: FaultOutcome | None, plan: Plan, *, state: str, env: str,
             sandbox_root: Path) -> Iterator[None]:
    """While the rehearsal applies: ``alarm`` sets the watched alarm to ALARM once it exists;
    ``health`` stops the sandbox's NATS server once an operation is applied and starts it
    again when a trigger fired (or after :data:`HEALTH_OUTAGE_SECONDS`). A thread of the
    rehearsal, so the engine under test is untouched."""
    if fault is None or outcome is None or fault.kind not in TRIGGER_FAULTS:
        yield
        return
    _, alarms = aimed_check(fault, plan)
    done = threading.Event()
    work = (functools.partial(_raise_alarm, alarms, sandbox_root) if fault.kind == "alarm"
            else functools.partial(_stop_nats, state, env, sandbox_root))

    def fire() -> None:
        try:
            work(done, outcome)
        except Exception as exc:  # noqa: BLE001 - reported in the summary: the fault did not fire
            outcome.detail.append(f"the fault could not be fired: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=fire, name=f"fault-{fault.kind}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _raise_alarm(alarms: list[str], sandbox_root: Path, done: threading.Event, outcome: FaultOutcome) -> None:
    import boto3

    from atomicops.sandbox import REGION

    cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=_sandbox_url(sandbox_root, "aws"))
    t0 = time.monotonic()
    while not done.wait(SABOTEUR_POLL_SECONDS):
        found = cloudwatch.describe_alarms(AlarmNames=alarms)["MetricAlarms"]
        if found:
            for alarm in found:
                cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue="ALARM",
                                           StateReason="atomicops rehearse --fault alarm")
            outcome.detail.append(f"{', '.join(a['AlarmName'] for a in found)} set to ALARM "
                                  f"{time.monotonic() - t0:.1f}s into the apply")
            return


def _stop_nats(state: str, env: str, sandbox_root: Path, done: threading.Event, outcome: FaultOutcome) -> None:
    from atomicops import sandbox

    watcher = store_for(state)
    seen = 0  # the journal is read from where the last look ended

    def journalled(event_type: str) -> bool:
        nonlocal seen
        new = watcher.events(env, after=seen)
        seen = new[-1].seq if new else seen
        return any(e.type == event_type for e in new)

    try:
        t0 = time.monotonic()
        while not done.wait(SABOTEUR_POLL_SECONDS):
            if journalled("op_applied"):
                break
        else:
            return
        sandbox.stop_service(sandbox_root, "nats")
        stopped = time.monotonic()
        outcome.detail.append(f"NATS stopped {stopped - t0:.1f}s into the apply")
        while not done.wait(SABOTEUR_POLL_SECONDS) and time.monotonic() - stopped < HEALTH_OUTAGE_SECONDS:
            if journalled("trigger_fired"):
                break
        sandbox.restart_service(sandbox_root, "nats")
        outcome.detail.append(f"NATS started again after {time.monotonic() - stopped:.1f}s")
    finally:
        watcher.close()


def _sandbox_url(root: Path, service: str) -> str:
    from atomicops import sandbox

    current = sandbox.load(root)
    if current is None or service not in current.services:
        raise UsageError(f"the sandbox at {root} has no {service} running")
    return current.services[service].url


def judge_trigger(fault: Fault, outcome: FaultOutcome, plan: Plan, fired_check: str | None, rolled_back: bool) -> None:
    """The aimed trigger fired, and the apply rolled itself back completely."""
    aimed, _ = aimed_check(fault, plan)
    outcome.fired = fired_check == aimed
    outcome.path_ok = outcome.fired and rolled_back
    if fired_check is None:
        outcome.detail.append(f"trigger {aimed} did not fire")
    elif not outcome.fired:
        outcome.detail.append(f"trigger {fired_check} fired, not {aimed}")
    else:
        outcome.detail.append(f"trigger {aimed} fired; the apply rolled back "
                              + ("completely" if rolled_back else "with undos left"))


@contextlib.contextmanager
def armed(fault: Fault | None) -> Iterator[None]:
    """``ATOMICOPS_FAULT`` set for the engine while the rehearsal applies and rolls back."""
    if fault is None or fault.kind not in faults.KINDS:
        yield
        return
    saved = os.environ.get(faults.FAULT_ENV)
    os.environ[faults.FAULT_ENV] = str(fault)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(faults.FAULT_ENV, None)
        else:
            os.environ[faults.FAULT_ENV] = saved


def kill_point(seed: int, steps: int) -> int:
    """After how many journal events of the apply to kill it: a step's intent or result, or
    an operation's start or end, anywhere in the plan (about two events per step)."""
    return random.Random(seed).randint(2, max(2, 2 * steps))


def apply_killed(apply: Callable[[], Any], *, state: str, env: str, at: int, outcome: FaultOutcome) -> None:
    """Run ``apply`` in a forked child and SIGKILL it once the journal holds ``at`` events.

    Forked, not a new ``atomicops`` process: the child has the loaded plan with the sandbox's
    connection values in memory, so no secret goes onto a command line or into a file.
    """
    store_for(state).close()  # the journal file exists before two processes open it
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child, args=(apply,), daemon=True)
    child.start()
    watcher = store_for(state)  # opened after the fork: no SQLite handle crosses it
    try:
        while child.is_alive():
            if len(watcher.events(env)) >= at:
                assert child.pid is not None
                os.kill(child.pid, signal.SIGKILL)
                outcome.fired = True
                break
            time.sleep(KILL_POLL_SECONDS)
    finally:
        # Reaped before resume: a zombie's pid still looks alive to the lock's takeover check.
        child.join()
        if outcome.fired:
            outcome.killed_after_events = len(watcher.events(env))
        watcher.close()
    if outcome.fired:
        outcome.detail.append(f"apply killed (SIGKILL) after {outcome.killed_after_events} journal events "
                              f"(seed {outcome.seed}: aimed at {at})")
    else:
        outcome.detail.append(f"the apply ended (exit {child.exitcode}) before the kill point ({at} events)")


def apply_with(
    fault: Fault | None,
    outcome: FaultOutcome | None,
    apply: Callable[[], Any],
    resume: Callable[[], Any],
    *,
    state: str,
    env: str,
    steps: int,
) -> Any:
    """The rehearsal's apply: as is, or (``kill``) killed at the seed's moment and resumed."""
    if fault is None or outcome is None or fault.kind != "kill":
        return apply()
    assert fault.seed is not None
    apply_killed(apply, state=state, env=env, at=kill_point(fault.seed, steps), outcome=outcome)
    try:
        result = resume()
    except AtomicOpsError as exc:
        outcome.path_ok = False
        outcome.detail.append(f"resume did not finish the apply: {exc}")
        raise
    if not hasattr(result, "applied"):  # a RollbackReport: the killed apply was already failing
        outcome.path_ok = False
        raise ResumeRolledBack(list(getattr(result, "undone", [])))
    outcome.detail.append("resume finished the apply")
    # The rehearsal's "applied" is what the killed apply and the resume applied together.
    result.applied = [op.id for op in environment(env, state).ops.values() if op.status == "applied"]
    return result


def conclude(outcome: FaultOutcome, *, leaks: bool, undo_failed: bool) -> None:
    outcome.recovered = outcome.fired and outcome.path_ok and not leaks and not undo_failed
    if leaks:
        outcome.detail.append("the inventory after rollback differs from the one before apply")


def _child(apply: Callable[[], Any]) -> None:
    try:
        apply()
    except AtomicOpsError:
        os._exit(1)
    os._exit(0)


def judge_step(fault: Fault, outcome: FaultOutcome, failed_ops: list[str | None], undone_by_apply: list[str]) -> None:
    outcome.fired = outcome.path_ok = fault.op in failed_ops
    if outcome.fired:
        outcome.detail.append(f"apply failed at {fault.op} as aimed; it rolled back {len(undone_by_apply)} operation(s) itself")
    else:
        outcome.detail.append(f"the apply did not fail at {fault.op}")


def judge_undo(fault: Fault, outcome: FaultOutcome, first_failed: dict[str, str], still_failed: dict[str, str]) -> None:
    outcome.fired = fault.op in first_failed
    outcome.path_ok = not still_failed
    if outcome.fired:
        then = "the second finished" if not still_failed else f"the second did not finish: {', '.join(still_failed)}"
        outcome.detail.append(f"rollback 1 exited 3 with {fault.op}'s undo failed; {then}")
    else:
        outcome.detail.append(f"the first rollback did not fail at {fault.op}")
