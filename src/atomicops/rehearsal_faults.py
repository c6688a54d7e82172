"""The failures `atomicops rehearse --fault KIND` fires on purpose, and what proves recovery.

A rehearsal with a fault runs the same sandbox, inventory, apply, rollback and leak check as a
plain one; this module only arms the failure and says whether the recovery was proven:

- ``step:OP``  OP's last step fails (``ATOMICOPS_FAULT``): the apply must fail there and roll
  back everything it applied by itself.
- ``undo:OP``  OP's undo fails once: the first ``rollback`` must exit 3 naming OP, the second
  must finish.
- ``kill``     the apply runs in a child process killed with SIGKILL after a number of journal
  events chosen by ``--seed``; ``resume`` must finish it, then the rollback runs as usual.
- ``alarm`` and ``health`` need the rollback triggers (see :func:`parse`).

Proven means: the fault fired where it was aimed, the recovery above happened, and the
inventory after the rollback equals the one before the apply.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from atomicops.engine import faults
from atomicops.errors import AtomicOpsError, ResumeRolledBack, UsageError
from atomicops.journal.views import environment, store_for
from atomicops.plan.model import Plan

KINDS = ("step:OP", "undo:OP", "kill", "alarm", "health")
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
    if kind in ("alarm", "health"):
        # NOT IN THIS BUILD: `alarm` (set the plan's CloudWatch alarm to ALARM mid-run) and
        # `health` (stop the sandbox NATS or the stand-in) need the engine to poll the plan's
        # rollback triggers. Wire them here once the triggers are built.
        raise UsageError(f"--fault {kind}: not in this build (it needs the rollback triggers, which this version does not poll)")
    raise UsageError(f"--fault {text!r}: not a fault; one of {', '.join(KINDS)}")


def check_against(fault: Fault, plan: Plan) -> None:
    """The operation a fault aims at must be in the plan (before the sandbox is touched)."""
    if fault.op is not None and fault.op not in {op.id for op in plan.operations}:
        raise UsageError(f"--fault {fault}: the plan has no operation {fault.op!r}")


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
