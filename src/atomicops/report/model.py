"""What a run report shows, as plain data: built from the journal (report/from_journal.py) or
from a plan not yet run (report/from_plan.py), drawn by report/page.py, printed by
`atomicops report --json`. Values here are already masked: nothing downstream sees a secret."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Bar:
    """One step on the timeline, from its intent to its result: a ``do`` or an ``undo``."""

    op: str
    step: str
    kind: str  # do | undo
    run: str
    phase: str
    start: float  # epoch seconds
    end: float
    status: str  # done | failed | undone | undo_failed | undo_skipped | in_flight
    lane: int = 0
    key: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    note: str | None = None  # already gone, settled by a probe, the reason of a skip

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class Marker:
    """A moment on the timeline: a run starting, a step failing, a trigger firing."""

    ts: float
    kind: str  # run | failure | trigger | checkpoint
    label: str
    detail: str = ""
    op: str | None = None
    step: str | None = None


@dataclass
class Band:
    """The span of one phase within one run: the bars of that phase lie inside it."""

    phase: str
    run: str
    kind: str  # do | undo
    start: float
    end: float


@dataclass
class Node:
    """An operation in the graph, where the layout puts it, and its final state."""

    id: str
    phase: str
    title: str
    steps: int
    state: str  # applied | rolled_back | failed | rollback_failed | uncertain | pending | ...
    column: int = 0
    row: int = 0


@dataclass
class RunRow:
    id: str
    command: str
    who: str
    started: float
    finished: float | None
    outcome: str | None
    continues: str | None = None


@dataclass
class VerifyRow:
    check: str
    expected: str
    observed: str
    ok: bool | None  # None: not known from the journal (the check did not run in this run)


@dataclass
class DiffRow:
    source: str  # aws | postgres | nats
    kind: str  # e.g. ec2.vpcs
    change: str  # added | removed | changed | unchecked
    what: str


@dataclass
class HistoryRow:
    seq: int
    ts: float
    run: str
    type: str
    where: str
    detail: str


@dataclass
class PlanStep:
    """For a plan not yet run: what a step would do and how it would be undone."""

    op: str
    step: str
    does: str
    undone_by: str


@dataclass
class Report:
    title: str
    header: list[tuple[str, str]]
    runs: list[RunRow] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)  # (dependency, dependent)
    phases: list[str] = field(default_factory=list)
    verify: list[VerifyRow] | None = None  # None: no verify section
    diff: list[DiffRow] | None = None  # None: not a rehearsal; []: clean
    history: list[HistoryRow] = field(default_factory=list)
    # A plan not yet run: its forward waves, rollback order and steps.
    waves: list[list[str]] = field(default_factory=list)
    rollback_order: list[list[str]] = field(default_factory=list)
    plan_steps: list[PlanStep] = field(default_factory=list)
    lanes: int = 0

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["header"] = [list(pair) for pair in self.header]
        doc["edges"] = [list(e) for e in self.edges]
        return doc
