"""The report page of a plan not yet run (`atomicops plan PLAN --html`): what a change board
reviews. The graph, the forward waves, the rollback order, and for each step what it would
do and how it would be undone. Values are the plan's (vars applied where the plan model
applies them); a secret is only ever a ``${secrets.X}`` reference here, never a value."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from atomicops import clipping
from atomicops.plan.loader import LoadedPlan
from atomicops.report.graph_view import nodes_and_edges
from atomicops.report.model import PlanStep, Report

_ACTION_LIMIT = 300


def build(loaded: LoadedPlan, *, env: str, changes: Mapping[str, str] | None = None) -> Report:
    """``changes``: per operation what an apply would do to it (``plan_view``'s "create",
    "no change"...), its node's state; without it every node is "planned"."""
    plan = loaded.plan
    nodes, edges = nodes_and_edges(loaded, lambda op: (changes or {}).get(op, "planned"))
    waves = [wave for _, phase_waves in loaded.forward_waves() for wave in phase_waves]
    steps = [
        PlanStep(op.id, s.name, action_text(s.do),
                 action_text(s.undo) if s.undo else (f"irreversible: {s.irreversible}" if s.irreversible
                                                    else "nothing to undo (read only)"))
        for op in plan.operations for s in op.steps
    ]  # fmt: skip
    header = [
        ("plan", plan.name),
        ("file", loaded.file),
        ("environment", env),
        ("status", "not yet run: what an apply would do"),
        ("operations / steps", f"{len(plan.operations)} / {len(steps)}"),
        ("phases", " → ".join(plan.phases)),
        ("on failure", plan.on_failure),
        ("warnings", "; ".join(str(w) for w in loaded.warnings) or "none"),
    ]
    return Report(
        title=f"{plan.name} · plan for {env}",
        header=header,
        nodes=nodes,
        edges=edges,
        phases=list(plan.phases),
        waves=waves,
        rollback_order=[list(reversed(w)) for w in reversed(waves)],
        plan_steps=steps,
    )


def action_text(action: Mapping[str, Any] | None) -> str:
    """An action in one line: its kind and call first, then its parameters."""
    if not action:
        return ""
    text = json.dumps(dict(action), sort_keys=False, default=str)
    return clipping.head(text, _ACTION_LIMIT)
