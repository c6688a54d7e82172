"""Whether what a step's probe finds may be taken as the step's own.

Kept apart from engine/probe.py (which runs probes, with the executor and the catalog) so
that `validate` and `plan` can say how each step would be settled without loading the
engine (docs/performance.md, B6).
"""

from __future__ import annotations

from atomicops.plan import refs
from atomicops.plan.model import Operation, Step


def proves_ownership(step: Step, op: Operation | None = None) -> bool:
    """Whether the probe identifies the resource by this step's key (a tag filter or an
    expectation on the tag): only then may a resource it finds be taken as this step's.

    With ``op`` given, a probe that names what it looks at by ``${self.X}`` proves it too,
    when X is an output of an earlier step of ``op`` that is not read-only. Rules, route
    associations, attachments and attributes take no tags; they live inside a parent (a
    security group, a route table, a VPC) that the same operation created and journalled,
    so what the probe finds there was made by this operation, not found lying about. An
    output of a read-only step is excluded: it may name something that existed before the
    run (a looked-up VPC), and a probe scoped to it would adopt a namesake.
    """
    if step.probe is None:
        return False
    named = [refs.parse(text) for text, _ in refs.refs_in(step.probe)]
    if any(r.namespace == "step" for r in named):
        return True
    created = outputs_made_before(op, step)
    return any(r.namespace == "self" and r.path[0] in created for r in named)


def outputs_made_before(op: Operation | None, step: Step) -> set[str]:
    """Names of the outputs of ``op``'s steps before ``step`` that are not read-only: what
    they name was made by this operation (a read-only step's may have been there before)."""
    created: set[str] = set()
    for earlier in op.steps if op is not None else ():
        if earlier.name == step.name:
            break
        if not earlier.read_only:
            created.update(earlier.outputs)
    return created
