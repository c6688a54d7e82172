"""The one check of what the journal holds before a run starts its work.

``apply``, ``resume`` and ``rollback`` all call :func:`admit` with the operations they are
about to act on. It refuses (nothing runs) when acting would make the journal forget
something that may exist in the world: a new attempt at an operation writes a fresh intent
over each step it runs, so an operation whose steps are still applied by a failed or
interrupted undo must be rolled back first, never re-applied over.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from atomicops.errors import Refused
from atomicops.journal.state import EnvState, OpState

# What a command does with the operations it is given.
FORWARD = ("apply", "resume")  # runs steps: the operations' steps get new intents
BACKWARD = ("rollback",)  # runs undos from the journal


def admit(
    st: EnvState,
    command: str,
    selected: Collection[str],
    *,
    deps: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Raise :class:`Refused` listing every reason ``command`` may not act on ``selected``.

    ``deps`` (the plan's dependencies, for a forward command) lets an apply refuse an
    operation whose dependency is neither applied nor part of the run.
    """
    reasons: list[str] = []
    if command in BACKWARD:
        reasons += [f"operation {name!r} has no record in environment {st.env!r}" for name in selected if name not in st.ops]
    else:
        chosen = set(selected)
        for op_id in selected:
            for dep in (deps or {}).get(op_id, ()):
                if dep not in chosen and not st.is_applied(dep):
                    reasons.append(f"operation {op_id} needs {dep}, which is neither applied nor selected")
            op = st.ops.get(op_id)
            if op is not None:
                reasons += _forward_blockers(op)
    if reasons:
        raise Refused(command, reasons)


def _forward_blockers(op: OpState) -> list[str]:
    """Why running ``op``'s steps again would lose track of what it made."""
    statuses = {s.status for s in op.steps.values()}
    if "undo_failed" in statuses or (op.status in ("failed", "rollback_failed") and op.present):
        return [f"operation {op.id} has steps left applied by a failed undo; run `atomicops rollback --target {op.id}` first"]
    # An undo settling a step that was in flight (engine/resume.py) is finished by the settling
    # a resume does first: the operation then goes on.
    rolling = any(s.status == "undo_intent" and not s.settling for s in op.steps.values())
    if op.status == "rolling_back" or rolling:
        finish = f"`atomicops resume` (or `atomicops rollback --target {op.id}`)"
        return [f"operation {op.id} was being rolled back when its run was interrupted; finish that first: {finish}"]
    return []
