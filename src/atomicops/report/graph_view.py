"""The operation graph of a report: the plan's operations (the nodes `atomicops graph` draws)
with their dependencies, each coloured by its state, laid out in columns.

Columns are the forward waves, phase after phase (phases are barriers, so a phase's waves
follow the previous phase's): an edge always goes from a column to a later one.
"""

from __future__ import annotations

from collections.abc import Callable

from atomicops.plan.loader import LoadedPlan
from atomicops.report.model import Node


def nodes_and_edges(loaded: LoadedPlan, state_of: Callable[[str], str]) -> tuple[list[Node], list[tuple[str, str]]]:
    plan = loaded.plan
    column = 0
    nodes: list[Node] = []
    for phase, waves in loaded.forward_waves():
        for wave in waves:
            for row, op_id in enumerate(wave):
                op = plan.operation(op_id)
                nodes.append(Node(id=op_id, phase=phase, title=op.title or "", steps=len(op.steps),
                                  state=state_of(op_id), column=column, row=row))
            column += 1
    edges = [(dep, op.id) for op in plan.operations for dep in sorted(loaded.deps[op.id])]
    return nodes, edges
