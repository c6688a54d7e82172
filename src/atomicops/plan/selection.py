"""Which operations a command takes: a phase's, some targets and what they need, or all."""

from __future__ import annotations

from atomicops.errors import UsageError
from atomicops.plan.loader import LoadedPlan


def select_operations(loaded: LoadedPlan, phase: str | None, targets: list[str]) -> list[str]:
    """The operations an apply runs, in plan order: a phase's, or the targets and what they
    need (within the phase when one is given), or all."""
    p = loaded.plan
    every = [op.id for op in p.operations]
    if phase is not None and phase not in p.phases:
        raise UsageError(f"unknown phase {phase!r} (phases: {', '.join(p.phases)})")
    unknown = [t for t in targets if t not in every]
    if unknown:
        raise UsageError(f"unknown operation(s): {', '.join(unknown)}")
    wanted = set(every)
    if targets:
        graph = loaded.graph
        wanted = set().union(*({t} | graph.ancestors(t) for t in targets))
    if phase is not None:
        wanted &= {op.id for op in p.operations if p.phase_of(op) == phase}
    return [i for i in every if i in wanted]
