"""Ask the target whether a step's effect exists: the step's ``probe``, a read-only action,
or, for a step without one whose ``do`` is an AWS create call the catalog knows, the
built-in probe (engine/catalog.py). The step's own probe always wins.

Found means every probe output found something and every ``expect`` holds. An error whose
code the step counts as "already gone" (``*NotFound*``...) means not found. Anything else is
no answer at all. A built-in probe answers found only for a resource it proves is this
step's, and not found for one that is absent or plainly someone else's.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any

from atomicops.actions import registry
from atomicops.engine.catalog import catalog_probe, covers
from atomicops.engine.executor import extract_outputs
from atomicops.engine.ownership import outputs_made_before, proves_ownership
from atomicops.engine.runtime import Runtime
from atomicops.errors import ActionError, AtomicOpsError
from atomicops.expect import CANNOT_EVALUATE, evaluate
from atomicops.plan.model import Operation, Step


@dataclass
class ProbeAnswer:
    found: bool | None  # None: the probe could not tell
    outputs: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    # Not found as the step's, yet something answering the probe is there: a namesake without
    # this step's tag, or one that fails the probe's expect. Resume needs only ``found``;
    # drift tells "replaced" from "gone" by it (engine/drift.py).
    exists: bool = False


def builtin(step: Step) -> bool:
    """Whether the step is probed by the catalog: it has no probe of its own and its ``do``
    is an AWS call the catalog covers."""
    call = step.do.get("aws")
    return step.probe is None and not step.read_only and isinstance(call, str) and covers(call)


def can_probe(step: Step) -> bool:
    return step.probe is not None or builtin(step)


def proves(step: Step, op: Operation | None = None) -> bool:
    """Whether what the step's probe finds may be taken as the step's (see proves_ownership):
    a built-in probe decides ownership itself, so what it finds is always proven."""
    return builtin(step) or proves_ownership(step, op)


def created_before(op: Operation | None, step: Step, self_outputs: dict[str, Any]) -> set[str]:
    """Ids and names the operation's earlier (not read-only) steps made: the parents a rule,
    an attachment or an inline policy of this step may live in and be provably ours."""
    names = outputs_made_before(op, step)
    return {str(v) for n, v in self_outputs.items() if n in names and isinstance(v, (str, int)) and v != ""}


def probe(
    rt: Runtime, step: Step, self_outputs: dict[str, Any], key: str, op_id: str, *,
    run_id: str | None = None, op: Operation | None = None,
) -> ProbeAnswer:
    """``run_id``: the run whose intent is settled (``${step.run}``); the current run if None.
    ``op``: the step's operation (what a built-in probe counts as this operation's parents)."""
    if step.probe is None:
        return _builtin_probe(rt, step, self_outputs, key, op, run_id)
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
        named = bool(step.probe.get("outputs")) and not missing  # it read every output, then failed the expect
        return ProbeAnswer(False, why="; ".join(missing + [str(m) for m in mismatches]), exists=named)
    return ProbeAnswer(True, outputs)


def _builtin_probe(
    rt: Runtime, step: Step, self_outputs: dict[str, Any], key: str, op: Operation | None, run_id: str | None
) -> ProbeAnswer:
    try:
        action = rt.scope.with_self(self_outputs, key).exec_form(step.do, rt.secrets)
        found = catalog_probe(action)
        if found is None:
            return ProbeAnswer(None, why="the step has no probe")
        aws = rt.executor.connections.get(registry.get("aws"), found.connection)
        lookup = found.lookup(aws, step_key=key, env=rt.scope.env, run_id=run_id or rt.scope.run_id,
                              owned=created_before(op, step, self_outputs))  # fmt: skip
    except AtomicOpsError as exc:
        return ProbeAnswer(None, why=f"built-in probe failed: {exc}")
    what = f"built-in probe: {lookup.resource}"
    if lookup.state in ("absent", "foreign"):
        return ProbeAnswer(False, why=f"{what}: {lookup.state} ({lookup.why})", exists=lookup.state == "foreign")
    if lookup.state == "unproven":
        return ProbeAnswer(None, why=f"{what}: {lookup.why}")
    outputs, missing = extract_outputs(step.result_outputs, lookup.response or {})
    if missing:
        # Found and ours, but its description lacks what the step's outputs read: no answer
        # (not found would make the create run again).
        return ProbeAnswer(None, why=f"{what}: found, but it does not give " + "; ".join(missing))
    return ProbeAnswer(True, outputs, why=f"{what}: {lookup.why}")
