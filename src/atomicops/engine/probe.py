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
from atomicops.expect import evaluate
from atomicops.plan import refs
from atomicops.plan.model import Step


@dataclass
class ProbeAnswer:
    found: bool | None  # None: the probe could not tell
    outputs: dict[str, Any] = field(default_factory=dict)
    why: str = ""


def proves_ownership(step: Step) -> bool:
    """Whether the probe identifies the resource by this step's key (a tag filter or an
    expectation on the tag): only then may a resource it finds be taken as this step's."""
    return step.probe is not None and any(r.strip() == "step.key" for r, _ in refs.refs_in(step.probe))


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
    mismatches = evaluate(scope.journal_form(step.probe.get("expect") or {}), result)
    if missing or mismatches:
        return ProbeAnswer(False, why="; ".join(missing + [str(m) for m in mismatches]))
    return ProbeAnswer(True, outputs)
