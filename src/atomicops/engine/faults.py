"""Failures on purpose, for `atomicops rehearse --fault` and the tests that prove recovery.

``ATOMICOPS_FAULT=step:OP[/STEP],undo:OP[/STEP]`` makes the engine fail a step's do, or a
step's undo, as if the service had refused it after every retry. Unset (always, outside a
rehearsal), :func:`injected` is one environment lookup and never raises.

- ``step:OP/STEP`` fails that step's do each time it runs; ``step:OP`` fails the operation's
  *last* step, so the steps before it are done and the operation's own compensation has
  something to undo (the harder case).
- ``undo:OP/STEP`` fails that step's undo once: the first undo of the step fails, and the
  journal then holds it as ``undo_failed``, which is what turns the fault off. A second
  ``atomicops rollback`` (another process, the variable still set) finishes. ``undo:OP``
  fails the first undo of that operation, whichever step it is.

The fault is raised as an :class:`ActionError` at the engine's call site, so everything after
it (journal, compensation, exit codes) runs the code a real failure runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from atomicops.errors import ActionError, UsageError
from atomicops.journal.store import Event

FAULT_ENV = "ATOMICOPS_FAULT"
FAULT_CODE = "InjectedFault"
KINDS = ("step", "undo")


@dataclass(frozen=True)
class Fault:
    kind: str  # step | undo
    op: str
    step: str | None = None  # None: the operation's last step (step) or first undo (undo)

    def __str__(self) -> str:
        return f"{self.kind}:{self.op}" + (f"/{self.step}" if self.step else "")


def parse(text: str) -> list[Fault]:
    """``step:OP[/STEP]`` and ``undo:OP[/STEP]``, comma-separated. Raises :class:`UsageError`."""
    faults = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        kind, sep, target = item.partition(":")
        op, _, step = target.partition("/")
        if kind not in KINDS or not sep or not op:
            raise UsageError(f"{FAULT_ENV}: {item!r} is not step:OP[/STEP] or undo:OP[/STEP]")
        faults.append(Fault(kind, op, step or None))
    return faults


def active() -> list[Fault]:
    text = os.environ.get(FAULT_ENV)
    return parse(text) if text else []


def injected(
    kind: str,
    op: str,
    step: str,
    *,
    last: bool = False,
    fired: Callable[[], Collection[str]] = lambda: (),
) -> None:
    """Raise the fault configured for this call site, if any.

    ``last``: the step is its operation's last (where ``step:OP`` fires). ``fired``: the
    operation's steps whose undo the journal holds as failed by this fault already (an undo
    fault fires once); asked only when an undo fault matches, so the journal is read only then.
    """
    if not os.environ.get(FAULT_ENV):
        return
    for fault in active():
        if fault.kind != kind or fault.op != op:
            continue
        if fault.step is not None and fault.step != step:
            continue
        if kind == "step" and fault.step is None and not last:
            continue
        if kind == "undo":
            before = fired()
            # Once: for that step (undo:OP/STEP), or for the whole operation (undo:OP).
            if (fault.step in before) if fault.step else bool(before):
                continue
        raise ActionError("fault", f"injected fault ({FAULT_ENV}={fault})", code=FAULT_CODE)


def fired_undos(events: Iterable[Event], op: str) -> set[str]:
    """The steps of ``op`` whose undo an injected fault failed, by the journal's events."""
    return {
        ev.step or ""
        for ev in events
        if ev.type == "undo_failed" and ev.op == op and ev.data.get("code") == FAULT_CODE
    }
