"""The timeline of a report: each step a bar from its intent to its result, laid in lanes so
that steps that ran at the same time sit one above the other.

Pure: journal events in, bars, markers and phase bands out (no store, no plan, no engine).
A bar's times are the journal's own timestamps (the intent record's and the result
record's), so a bar can never start before the bars it waited for end: the engine writes
the intent of a step only after the result of everything it depends on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from atomicops.journal.store import Event
from atomicops.report.model import Band, Bar, Marker

# What closes an open bar, and the status it leaves.
_DO_RESULTS = {"step_done": "done", "step_failed": "failed"}
_UNDO_RESULTS = {"undo_done": "undone", "undo_failed": "undo_failed"}


def bars_and_markers(events: Sequence[Event], runs: Iterable[str]) -> tuple[list[Bar], list[Marker]]:
    """Every do and undo of ``runs`` as a bar, every failure, fired trigger, checkpoint and
    run start as a marker. ``events`` is the environment's whole journal: a step's phase is
    what its operation's latest start said, whichever run that was."""
    chosen = set(runs)
    phase: dict[str, str] = {}
    open_bars: dict[tuple[str, str, str], Bar] = {}
    bars: list[Bar] = []
    markers: list[Marker] = []
    last_ts: dict[str, float] = {}
    for ev in events:
        if ev.type == "op_started" and ev.op:
            phase[ev.op] = str(ev.data.get("phase", ""))
        if ev.run_id not in chosen:
            continue
        last_ts[ev.run_id] = ev.ts
        _fold(ev, phase, open_bars, bars, markers)
    for bar in bars:
        # Killed in it (or settled later by a resume): the bar ends with its run.
        if bar.status == "in_flight" or (bar.end == bar.start and bar.status != "undo_skipped"):
            bar.end = max(bar.start, last_ts.get(bar.run, bar.start))
    return bars, markers


def _fold(
    ev: Event, phase: dict[str, str], open_bars: dict[tuple[str, str, str], Bar], bars: list[Bar], markers: list[Marker]
) -> None:
    d = ev.data
    where = f"{ev.op}/{ev.step}" if ev.step else (ev.op or "")
    if ev.type in ("step_intent", "undo_intent") and ev.op and ev.step:
        kind = "do" if ev.type == "step_intent" else "undo"
        bar = Bar(op=ev.op, step=ev.step, kind=kind, run=ev.run_id, phase=phase.get(ev.op, ""), start=ev.ts,
                  end=ev.ts, status="in_flight", key=str(d.get("key") or f"{ev.env}/{ev.op}/{ev.step}"))
        if d.get("settled_by"):
            bar.note = "settles an interrupted step by its undo"
        open_bars[(ev.op, ev.step, kind)] = bar
        bars.append(bar)
    elif ev.type in _DO_RESULTS or ev.type in _UNDO_RESULTS:
        kind = "do" if ev.type in _DO_RESULTS else "undo"
        closed = open_bars.pop((ev.op or "", ev.step or "", kind), None)
        if ev.type in ("step_failed", "undo_failed"):
            markers.append(Marker(ev.ts, "failure", f"{'undo of ' if kind == 'undo' else ''}{where} failed",
                                  str(d.get("error") or ""), ev.op, ev.step))
        if closed is None:
            return  # a failure with no step bar (an operation's verify): its marker says it
        bar = closed
        bar.end = ev.ts
        bar.status = {**_DO_RESULTS, **_UNDO_RESULTS}[ev.type]
        if ev.type == "step_done":
            bar.outputs = dict(d.get("outputs") or {})
            if d.get("settled_by"):
                bar.note = f"settled by {d['settled_by']}"
        elif ev.type == "undo_done" and d.get("already_gone"):
            bar.note = "already gone"
        if ev.type in ("step_failed", "undo_failed"):
            bar.error = str(d.get("error") or "")
    elif ev.type == "undo_skipped" and ev.op and ev.step:
        # An irreversible step is passed over: a bar of no length, so the rollback shows it.
        bars.append(Bar(op=ev.op, step=ev.step, kind="undo", run=ev.run_id, phase=phase.get(ev.op, ""), start=ev.ts,
                        end=ev.ts, status="undo_skipped", note=str(d.get("reason") or "")))
    elif ev.type == "step_settled" and ev.op and ev.step:
        settled = open_bars.pop((ev.op, ev.step, "do"), None) or open_bars.pop((ev.op, ev.step, "undo"), None)
        if settled is not None:
            settled.status = "done" if d.get("applied") else "not_applied"
            settled.note = f"settled by {d.get('by')}" + (f": {d['why']}" if d.get("why") else "")
    elif ev.type == "trigger_fired":
        markers.append(Marker(ev.ts, "trigger", f"trigger {d.get('check')} fired ({d.get('during')})",
                              str(d.get("observed") or "")))
    elif ev.type == "run_started":
        markers.append(Marker(ev.ts, "run", f"{d.get('command')} run {ev.run_id}"))
    elif ev.type == "checkpoint":
        markers.append(Marker(ev.ts, "checkpoint", f"checkpoint {d.get('name')}"))


def assign_lanes(bars: list[Bar]) -> int:
    """Put each bar in the lowest lane free when it starts (interval partitioning); return
    the number of lanes. As many lanes as steps ever ran at once, and no two bars of a lane
    overlap."""
    ends: list[float] = []
    for bar in sorted(bars, key=lambda b: (b.start, occupied(b), b.op, b.step)):
        for lane, end in enumerate(ends):
            if end <= bar.start:
                bar.lane, ends[lane] = lane, occupied(bar)
                break
        else:
            bar.lane = len(ends)
            ends.append(occupied(bar))
    return len(ends)


def occupied(bar: Bar) -> float:
    """Where a bar's place in its lane ends: a bar of no length (an undo passed over) still
    takes a sliver, since it is drawn a few pixels wide."""
    return max(bar.end, bar.start + 1e-6)


def phase_bands(bars: Iterable[Bar]) -> list[Band]:
    """Per run, phase and direction, the span from its first bar's start to its last bar's end."""
    spans: dict[tuple[str, str, str], list[float]] = {}
    for bar in bars:
        span = spans.setdefault((bar.run, bar.phase, bar.kind), [bar.start, bar.end])
        span[0], span[1] = min(span[0], bar.start), max(span[1], bar.end)
    return [Band(phase, run, kind, s, e) for (run, phase, kind), (s, e) in sorted(spans.items(), key=lambda kv: kv[1][0])]

