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
    place: dict[str, float] = {}  # where each node sits across its wave, 0..1
    for phase, waves in loaded.forward_waves():
        for wave in waves:
            # Under the operations it depends on (the mean of their places), so that edges
            # cross less; a wave with no placed dependency keeps its alphabetical order.
            def under(op_id: str) -> float:
                seen = [place[d] for d in loaded.deps[op_id] if d in place]
                return sum(seen) / len(seen) if seen else 0.5

            wave = sorted(wave, key=lambda o: (under(o), o))
            for row, op_id in enumerate(wave):
                place[op_id] = (row + 0.5) / len(wave)
                op = plan.operation(op_id)
                nodes.append(Node(id=op_id, phase=phase, title=op.title or "", steps=len(op.steps),
                                  state=state_of(op_id), column=column, row=row))
            column += 1
    edges = [(dep, op.id) for op in plan.operations for dep in sorted(loaded.deps[op.id])]
    return nodes, edges
