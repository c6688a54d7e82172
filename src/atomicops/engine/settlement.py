"""How each step would be settled if a crash left it in flight, known before anything runs.

A step whose intent is journalled and whose result is not may or may not have taken effect.
The engine settles it (engine/resume.py follows ``settlement_of``):

- ``re-do`` first when the step's ``do`` is the very read its ``probe`` makes (it changes
  nothing: its only effect is the outputs it journals);
- ``own probe``: the step's ``probe`` proves the resource is this step's (``${step.key}``);
- ``own probe (absent before)``: the step's ``probe`` cannot prove ownership (a database, a
  file found by name). It overrides the rest, since an undo by name or a re-do could take
  over a namesake that was there before. The engine runs it just before the intent: if it
  found nothing then, what it finds after the crash is this step's (no other run writes to
  the environment); if it found something then, "found" needs a person. "Not found" always
  settles.
- with no probe of its own, forward (``resume``): ``built-in probe`` when the catalog knows
  the AWS call (engine/catalog.py, it checks the tags), else ``re-do`` when the ``do`` is
  safe to send again (engine/redo.py), else ``undo`` when the undo needs none of the step's
  own outputs (a delete by name; "already gone" counts as undone), then the step runs
  again. Back (``rollback``, ``resume --rollback``): built-in probe, then undo, then re-do.
  An upsert is never looked up (a tagless one cannot be proven): it is re-done or undone.
- ``needs a person``: nothing can tell; ``atomicops resolve`` decides.

Read-only steps change nothing and need no settling. ``validate`` and ``plan`` show this per
step, and ``validate --strict`` refuses a plan with a step that needs a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from atomicops.engine.catalog import covers
from atomicops.engine.ownership import proves_ownership
from atomicops.engine.redo import aws_call, do_is_its_probe, is_upsert, safe_to_repeat
from atomicops.errors import Problem
from atomicops.plan import refs
from atomicops.plan.loader import LoadedPlan
from atomicops.plan.model import Operation, Step

OWN_PROBE = "own probe"
PROBE_BEFORE = "own probe (absent before)"
BUILT_IN_PROBE = "built-in probe"
REDO = "re-do"
UNDO = "undo"
PERSON = "needs a person"
READ_ONLY = "read-only"

KINDS = (OWN_PROBE, PROBE_BEFORE, BUILT_IN_PROBE, REDO, UNDO, PERSON, READ_ONLY)


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
    """How a crash would be settled: ``kind`` by a forward resume, ``on_rollback`` by a
    rollback (engine/resume.py follows this)."""
    if step.read_only:
        return Settlement(READ_ONLY, READ_ONLY, "reads only: nothing to settle")
    if do_is_its_probe(step):
        why = "its do is the read its probe makes: it changes nothing, so it is run again"
        return Settlement(REDO, REDO, why)
    if step.probe is not None and proves_ownership(step, op):
        return Settlement(OWN_PROBE, OWN_PROBE, "its probe finds the resource by this step's key")
    if step.probe is not None:
        # Its own probe overrides the rest, and cannot tell ours from a namesake by itself:
        # the engine runs it just before the intent too (engine/apply.py).
        why = ("its probe does not name ${step.key}: what it finds after a crash is this step's only if it "
               "found nothing just before the step began, and needs a person otherwise")
        return Settlement(PROBE_BEFORE, PROBE_BEFORE, why)
    call = aws_call(step.do)
    # A tagless upsert cannot be proven this step's by a lookup; repeating it needs none.
    covered = call is not None and covers(call) and not is_upsert(step)
    repeat = safe_to_repeat(step)
    by_undo = undo_settles(step)
    # A lookup comes first where the catalog has one: it reads, and does not depend on the
    # service honouring an idempotency token (moto honours few, and a second create would
    # leak the first). Forward, re-sending what is safe to repeat finishes the step in one
    # call; back, the undo comes before a re-do that would create something only to delete it.
    forward = BUILT_IN_PROBE if covered else REDO if repeat else UNDO if by_undo else PERSON
    back = BUILT_IN_PROBE if covered else UNDO if by_undo else REDO if repeat else PERSON
    if forward == PERSON:
        if step.undo is None:
            why = "no probe and no undo"
        else:
            why = f"no probe, and its undo needs its outputs ({', '.join(own_outputs_in(step.undo, step))})"
    else:
        why = {REDO: repeat or "", BUILT_IN_PROBE: f"the probe catalog knows {call}",
               UNDO: "its undo needs none of its outputs"}[forward]
    return Settlement(forward, back, why)


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
