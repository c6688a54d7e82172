"""Checkpoints as the journal holds them: named marks, live until a rollback goes back past
them. Folded into :class:`~atomicops.journal.state.EnvState` with the other events.

A mark's ``seq`` is the journal position it stands for: the ``op_applied`` event of the
operation that carries it (a mark is "when that operation completed", even when a resume
records it later), or the last event before a hand mark. ``rollback --to`` undoes the
operations that started after that position.
"""

from __future__ import annotations

from dataclasses import dataclass

from atomicops.journal.store import Event

MARK = "checkpoint"  # name, seq, by (plan | hand | resume), run; the event's op carries it (or None)
DROPPED = "checkpoint_dropped"  # name, reason: a rollback went back past the mark
EVENTS = frozenset({MARK, DROPPED})


@dataclass
class Checkpoint:
    name: str
    seq: int  # the journal position the mark stands for
    event_seq: int  # where the mark itself was written
    ts: float
    run_id: str  # the run that made the state the mark stands for
    op: str | None = None  # the operation that carries it; None for `atomicops checkpoint`
    by: str = "plan"  # plan | hand | resume (a mark a killed run did not get to write)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "seq": self.seq, "event_seq": self.event_seq, "ts": self.ts,
                "run": self.run_id, "op": self.op, "by": self.by}


def fold(marks: dict[str, Checkpoint], ev: Event) -> None:
    """Apply one checkpoint event to the live marks (by name)."""
    d = ev.data
    name = str(d.get("name", ""))
    if ev.type == MARK:
        marks[name] = Checkpoint(name=name, seq=int(d.get("seq") or ev.seq), event_seq=ev.seq, ts=ev.ts,
                                 run_id=str(d.get("run") or ev.run_id), op=ev.op, by=str(d.get("by") or "plan"))
    elif ev.type == DROPPED:
        marks.pop(name, None)
