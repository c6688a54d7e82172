"""A dependency graph of named nodes, and a parallel walk over it.

This module knows nothing of AWS, databases or the journal: nodes are strings, ``deps[n]``
are the nodes ``n`` needs first. The engine uses it twice:

* forward, to apply operations once everything they depend on is applied;
* backward, to undo them. A node may be undone only after everything that depends on it is
  undone, so rollback walks the *inverted* graph::

      forward:   vpc ──> subnets ──> security-group
      rollback:  security-group ──> subnets ──> vpc

  (a VPC cannot be deleted while its subnets exist).
"""

from __future__ import annotations

import graphlib
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Literal

from atomicops.errors import CycleError

Outcome = Literal["done", "failed", "skipped", "not_started"]


@dataclass(frozen=True)
class Graph:
    deps: Mapping[str, frozenset[str]]

    @classmethod
    def build(cls, nodes: Iterable[str], deps: Mapping[str, Iterable[str]]) -> Graph:
        nodes = list(nodes)
        known = set(nodes)
        return cls({n: frozenset(d for d in deps.get(n, ()) if d in known) for n in nodes})

    @property
    def nodes(self) -> list[str]:
        return list(self.deps)

    def find_cycle(self) -> list[str] | None:
        try:
            graphlib.TopologicalSorter(self.deps).prepare()
        except graphlib.CycleError as exc:
            # graphlib reports [a, b, ..., a] where each node is needed by the next one,
            # which reads as the dependency order we print: a -> b -> ... -> a.
            return list(exc.args[1])
        return None

    def check_acyclic(self) -> None:
        cycle = self.find_cycle()
        if cycle:
            raise CycleError(cycle)

    def waves(self) -> list[list[str]]:
        """Groups of nodes that can run together, each after all earlier groups."""
        self.check_acyclic()
        sorter = graphlib.TopologicalSorter(self.deps)
        sorter.prepare()
        out: list[list[str]] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            out.append(ready)
            sorter.done(*ready)
        return out

    def inverted(self) -> Graph:
        rdeps: dict[str, set[str]] = {n: set() for n in self.deps}
        for n, ds in self.deps.items():
            for d in ds:
                rdeps[d].add(n)
        return Graph({n: frozenset(v) for n, v in rdeps.items()})

    def restricted(self, keep: Iterable[str]) -> Graph:
        """The subgraph on ``keep``, keeping order constraints through dropped nodes."""
        keep = set(keep)
        closure = self.ancestor_map()
        return Graph({n: frozenset(closure[n] & keep) for n in self.deps if n in keep})

    def ancestor_map(self) -> dict[str, set[str]]:
        memo: dict[str, set[str]] = {}

        def visit(n: str) -> set[str]:
            if n not in memo:
                memo[n] = set()
                acc: set[str] = set()
                for d in self.deps.get(n, ()):
                    acc.add(d)
                    acc |= visit(d)
                memo[n] = acc
            return memo[n]

        for n in self.deps:
            visit(n)
        return memo

    def ancestors(self, node: str) -> set[str]:
        return self.ancestor_map()[node]

    def descendants(self, node: str) -> set[str]:
        return self.inverted().ancestors(node)


@dataclass
class WalkResult:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)

    def ok(self) -> bool:
        return all(o == "done" for o in self.outcomes.values())


def walk(
    graph: Graph,
    visit: Callable[[str], None],
    *,
    parallelism: int = 10,
    stop: threading.Event | None = None,
    continue_on_failure: bool = False,
) -> WalkResult:
    """Call ``visit(node)`` for every node after its dependencies, up to ``parallelism`` at once.

    A node whose visit raises is ``failed``; nodes that need it are ``skipped``. Unless
    ``continue_on_failure``, a failure (or ``stop`` being set) starts nothing new, and what is
    already running finishes: a half-started operation is never abandoned.
    """
    graph.check_acyclic()
    stop = stop or threading.Event()
    # A failure halts this walk without setting the caller's ``stop``, which actions in flight
    # may be watching (``ctx.cancel``): the operations already running are let finish.
    halted = False
    result = WalkResult({n: "not_started" for n in graph.nodes})
    remaining = {n: set(ds) for n, ds in graph.deps.items()}
    running: dict[Future[None], str] = {}

    def blocked(n: str) -> bool:
        return any(result.outcomes[d] in ("failed", "skipped") for d in graph.deps[n])

    with ThreadPoolExecutor(max_workers=max(1, parallelism), thread_name_prefix="op") as pool:
        while True:
            for n in sorted(remaining):
                if remaining[n] and blocked(n):
                    result.outcomes[n] = "skipped"
            for n in [n for n in sorted(remaining) if result.outcomes[n] == "skipped"]:
                del remaining[n]
            if not stop.is_set() and not halted:
                for n in sorted(remaining):
                    if len(running) >= max(1, parallelism):
                        break
                    if not remaining[n]:
                        del remaining[n]
                        running[pool.submit(visit, n)] = n
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                n = running.pop(fut)
                exc = fut.exception()
                if exc is None:
                    result.outcomes[n] = "done"
                    for deps in remaining.values():
                        deps.discard(n)
                else:
                    result.outcomes[n] = "failed"
                    result.errors[n] = exc
                    if not continue_on_failure:
                        halted = True
    return result
