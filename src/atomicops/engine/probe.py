"""Ask the target whether a step's effect exists: the step's ``probe``, a read-only action.

Found means every probe output found something and every ``expect`` holds. An error whose
code the step counts as "already gone" (``*NotFound*``...) means not found. Anything else is
no answer at all.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any

from atomicops.engine.executor import extract_outputs
from atomicops.engine.runtime import Runtime
from atomicops.errors import ActionError, AtomicOpsError
from atomicops.expect import CANNOT_EVALUATE, evaluate
from atomicops.plan import refs
from atomicops.plan.model import Operation, Step


@dataclass
class ProbeAnswer:
    found: bool | None  # None: the probe could not tell
    outputs: dict[str, Any] = field(default_factory=dict)
    why: str = ""


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
    if op is None:
        return False
    created: set[str] = set()
    for earlier in op.steps:
        if earlier.name == step.name:
            break
        if not earlier.read_only:
            created.update(earlier.outputs)
    return any(r.namespace == "self" and r.path[0] in created for r in named)


def probe(
    rt: Runtime, step: Step, self_outputs: dict[str, Any], key: str, op_id: str, *, run_id: str | None = None
) -> ProbeAnswer:
    """``run_id``: the run whose intent is settled (``${step.run}``); the current run if None."""
    assert step.probe is not None
    scope = replace(rt.scope.with_self(self_outputs, key), step_run=run_id)
    action = {k: v for k, v in step.probe.items() if k not in ("outputs", "expect")}
    try:
        result = rt.executor.execute(scope.exec_form(action, rt.secrets), op=op_id)
    except ActionError as exc:
        if exc.code and any(fnmatch.fnmatchcase(exc.code, p) for p in step.ok_errors):
            return ProbeAnswer(False, why=exc.code)
        return ProbeAnswer(None, why=f"probe failed: {exc}")
    except AtomicOpsError as exc:
        return ProbeAnswer(None, why=f"probe failed: {exc}")
    outputs, missing = extract_outputs(scope.journal_form(step.probe.get("outputs") or {}), result)
    if any(CANNOT_EVALUATE in m for m in missing):
        # An output expression that fails on the result says nothing about the resource:
        # "not found" would re-run the create, so it is no answer (resolve settles it).
        return ProbeAnswer(None, why="probe outputs: " + "; ".join(missing))
    mismatches = evaluate(scope.journal_form(step.probe.get("expect") or {}), result)
    if missing or mismatches:
        return ProbeAnswer(False, why="; ".join(missing + [str(m) for m in mismatches]))
    return ProbeAnswer(True, outputs)
