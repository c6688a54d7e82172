"""The dependency graph and its parallel walk: pure, no services."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atomicops.errors import CycleError
from atomicops.graph import Graph, walk


def test_waves_group_independent_nodes():
    g = Graph.build("abcd", {"b": ["a"], "c": ["a"], "d": ["b", "c"]})
    assert g.waves() == [["a"], ["b", "c"], ["d"]]


def test_cycle_is_reported_in_dependency_order():
    g = Graph.build("abcx", {"a": ["c"], "b": ["a"], "c": ["b"], "x": []})
    cycle = g.find_cycle()
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}
    # Each node in the report is needed by the next one.
    for first, second in zip(cycle, cycle[1:]):
        assert first in g.deps[second]
    with pytest.raises(CycleError) as exc:
        g.waves()
    assert set(exc.value.cycle) == {"a", "b", "c"}


def test_restricted_keeps_order_through_dropped_nodes():
    g = Graph.build("abc", {"b": ["a"], "c": ["b"]})
    assert g.restricted(["a", "c"]).deps == {"a": frozenset(), "c": frozenset({"a"})}


def test_walk_skips_dependents_of_a_failure_and_starts_nothing_new():
    g = Graph.build("abcd", {"b": ["a"], "c": [], "d": ["c"]})
    seen = []

    def visit(n):
        seen.append(n)
        if n == "a":
            raise RuntimeError("boom")

    result = walk(g, visit, parallelism=1)
    assert result.outcomes["a"] == "failed"
    assert result.outcomes["b"] == "skipped"
    assert "b" not in seen
    assert isinstance(result.errors["a"], RuntimeError)


def test_walk_continue_on_failure_still_visits_independent_nodes():
    g = Graph.build("abcd", {"b": ["a"], "d": ["c"]})
    result = walk(g, lambda n: (_ for _ in ()).throw(RuntimeError()) if n == "a" else None,
                  parallelism=2, continue_on_failure=True)
    assert result.outcomes == {"a": "failed", "b": "skipped", "c": "done", "d": "done"}


def test_walk_runs_independent_nodes_concurrently():
    # Three independent nodes meet at a barrier: only a concurrent walk gets them all through.
    barrier = threading.Barrier(3, timeout=5)
    result = walk(Graph.build("abc", {}), lambda n: barrier.wait(), parallelism=3)
    assert result.ok()


def test_walk_honours_parallelism_limit():
    barrier = threading.Barrier(2, timeout=0.5)
    result = walk(Graph.build("ab", {}), lambda n: barrier.wait(), parallelism=1)
    assert not result.ok()  # one at a time: the barrier can never fill


@st.composite
def dags(draw):
    n = draw(st.integers(1, 12))
    names = [f"n{i}" for i in range(n)]
    deps = {name: [names[j] for j in range(i) if draw(st.booleans())] for i, name in enumerate(names)}
    return Graph.build(names, deps)


@settings(max_examples=60, deadline=None)
@given(dags(), st.integers(1, 4), st.data())
def test_rollback_order_is_a_reverse_topological_order_of_what_was_applied(g, parallelism, data):
    applied: list[str] = []
    lock = threading.Lock()

    def record(into):
        def visit(n):
            with lock:
                into.append(n)
        return visit

    walk(g, record(applied), parallelism=parallelism)
    assert sorted(applied) == sorted(g.nodes)
    for n in applied:  # forward: every node after its dependencies
        assert all(applied.index(d) < applied.index(n) for d in g.deps[n])

    subset = data.draw(st.sets(st.sampled_from(applied)))
    undone: list[str] = []
    walk(g.restricted(subset).inverted(), record(undone), parallelism=parallelism)
    assert sorted(undone) == sorted(subset)
    for n in undone:  # backward: a node only after everything in the subset that needs it
        needers = [m for m in subset if n in g.ancestors(m)]
        assert all(undone.index(m) < undone.index(n) for m in needers)
