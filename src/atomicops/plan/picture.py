"""Pictures of a plan's operation graph: Mermaid and Graphviz dot, phases as clusters."""

from __future__ import annotations

import re

from atomicops.plan.loader import LoadedPlan


def _node(op_id: str) -> str:
    return "op_" + re.sub(r"\W", "_", op_id)


def to_mermaid(loaded: LoadedPlan) -> str:
    plan = loaded.plan
    lines = ["flowchart TD"]
    for phase in plan.phases:
        lines.append(f'  subgraph {_node("phase_" + phase)}["phase: {phase}"]')
        for op in plan.operations:
            if plan.phase_of(op) == phase:
                label = f"{op.id}<br/>{len(op.steps)} step(s)"
                lines.append(f'    {_node(op.id)}["{label}"]')
        lines.append("  end")
    for op in plan.operations:
        for dep in sorted(loaded.deps[op.id]):
            lines.append(f"  {_node(dep)} --> {_node(op.id)}")
    return "\n".join(lines) + "\n"


def to_dot(loaded: LoadedPlan) -> str:
    plan = loaded.plan
    lines = ["digraph plan {", "  rankdir=LR;", "  node [shape=box];"]
    for i, phase in enumerate(plan.phases):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f'    label="phase: {phase}";')
        for op in plan.operations:
            if plan.phase_of(op) == phase:
                lines.append(f'    {_node(op.id)} [label="{op.id}\\n{len(op.steps)} step(s)"];')
        lines.append("  }")
    for op in plan.operations:
        for dep in sorted(loaded.deps[op.id]):
            lines.append(f"  {_node(dep)} -> {_node(op.id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
