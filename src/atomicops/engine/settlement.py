"""How each step would be settled if a crash left it in flight, known before anything runs.

A step whose intent is journalled and whose result is not may or may not have taken effect.
The engine settles it, in this order (engine/resume.py does exactly this):

- ``own probe``: the step's ``probe`` proves the resource is this step's (``${step.key}``);
- ``built-in probe``: the probe catalog knows the step's AWS create call (no own probe);
- ``re-do``: the ``do`` is safe to send again (engine/redo.py); a rollback then undoes it;
- ``undo``: the undo needs none of the step's own outputs (a delete by name), so it can run
  whatever happened; "already gone" counts as undone. A rollback prefers it to a re-do; a
  resume that has nothing better undoes the step and then runs it again;
- ``needs a person``: nothing can tell; ``atomicops resolve`` decides. A step whose own probe
  cannot prove ownership is one: its probe overrides the rest, and an undo by name or a
  re-do could take over a namesake that was there before (its "not found" still settles).

Read-only steps change nothing and need no settling. ``validate`` and ``plan`` show this per
step, and ``validate --strict`` refuses a plan with a step that needs a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from atomicops.engine.catalog import covers
from atomicops.engine.probe import proves_ownership
from atomicops.engine.redo import aws_call, safe_to_repeat
from atomicops.errors import Problem
from atomicops.plan import refs
from atomicops.plan.loader import LoadedPlan
from atomicops.plan.model import Operation, Step

OWN_PROBE = "own probe"
BUILT_IN_PROBE = "built-in probe"
REDO = "re-do"
UNDO = "undo"
PERSON = "needs a person"
READ_ONLY = "read-only"

KINDS = (OWN_PROBE, BUILT_IN_PROBE, REDO, UNDO, PERSON, READ_ONLY)


@dataclass(frozen=True)
class Settlement:
    kind: str  # what a resume does (one of KINDS)
    on_rollback: str  # what a rollback does
    why: str


def own_outputs_in(value: Any, step: Step) -> list[str]:
    """The step's own result outputs that ``value`` references (``${self.X}``): known only
    from the step's result, so after a crash they are not known at all."""
    own = set(step.result_outputs)
    # A value output made of result outputs is known no sooner than they are.
    own |= {k for k, v in step.value_outputs.items() if own_outputs_direct(v, own)}
    return sorted(own_outputs_direct(value, own))


def own_outputs_direct(value: Any, own: set[str]) -> set[str]:
    found: set[str] = set()
    for text, _ in refs.refs_in(value):
        try:
            ref = refs.parse(text)
        except refs.RefSyntaxError:
            continue
        if ref.namespace == "self" and ref.path and ref.path[0] in own:
            found.add(ref.path[0])
    return found


def undo_settles(step: Step) -> bool:
    """Whether the step's undo can run without its result: a delete by name."""
    if step.read_only or step.undo is None or step.irreversible:
        return False
    return not own_outputs_in(step.undo, step)


def settlement_of(step: Step, op: Operation) -> Settlement:
    if step.read_only:
        return Settlement(READ_ONLY, READ_ONLY, "reads only: nothing to settle")
    call = aws_call(step.do)
    by_undo = undo_settles(step)
    if step.probe is not None and proves_ownership(step, op):
        return Settlement(OWN_PROBE, OWN_PROBE, "its probe finds the resource by this step's key")
    if step.probe is not None:
        # Its own probe overrides the rest, and cannot tell ours from a namesake.
        why = "its probe does not prove the resource is this step's (no ${step.key}): found needs a person"
        return Settlement(PERSON, PERSON, why)
    if call is not None and covers(call):
        return Settlement(BUILT_IN_PROBE, BUILT_IN_PROBE, f"the probe catalog knows {call}")
    repeat = safe_to_repeat(step)
    if repeat is not None:
        return Settlement(REDO, UNDO if by_undo else REDO, repeat)
    if by_undo:
        return Settlement(UNDO, UNDO, "its undo needs none of its outputs")
    if step.undo is None:
        why = "no probe and no undo"
    else:
        why = f"no probe, and its undo needs its outputs ({', '.join(own_outputs_in(step.undo, step))})"
    return Settlement(PERSON, PERSON, why)


def plan_settlement(ops: list[Operation]) -> list[dict[str, Any]]:
    """Per step: op, step, kind, on_rollback, why (in plan order)."""
    return [
        {"op": op.id, "step": step.name, **_as_dict(settlement_of(step, op))}
        for op in ops
        for step in op.steps
    ]


def _as_dict(s: Settlement) -> dict[str, Any]:
    return {"kind": s.kind, "on_rollback": s.on_rollback, "why": s.why}


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {k: n for k in KINDS if (n := sum(1 for r in rows if r["kind"] == k))}


def person_problems(loaded: LoadedPlan) -> list[Problem]:
    """A problem, with its file and line, for every step that would need a person."""
    problems = []
    for i, op in enumerate(loaded.plan.operations):
        for j, step in enumerate(op.steps):
            s = settlement_of(step, op)
            if s.kind == PERSON:
                line = loaded.source.line(("operations", i, "steps", j))
                problems.append(Problem(f"needs a person to settle after a crash: {s.why}", file=loaded.file,
                                        line=line, op=op.id, key=f"step {step.name}"))
    return problems
