"""Checks that a journal tells a coherent story, whatever killed the processes writing it.

Used by the crash tests and the crash soak: after any kill and the resume that follows it,
these must all hold.
"""

from __future__ import annotations

from collections.abc import Iterable

from atomicops.journal.store import Event

# What each result event needs before it, for the same operation and step.
_NEEDS = {
    "step_done": ("step_intent",),
    "step_failed": ("step_intent",),
    "step_settled": ("step_intent",),
    "step_uncertain": ("step_intent",),
    "undo_done": ("undo_intent",),
    "undo_failed": ("undo_intent",),
}

# Events after which a step's effect is (or is no longer) in the world.
_APPLIES = ("step_done",)
_REMOVES = ("undo_done", "undo_skipped")


def check_journal(events: Iterable[Event], *, settled: bool = True) -> list[str]:
    """Problems found; ``[]`` when the journal is coherent.

    * sequence numbers strictly increase;
    * every result follows an intent of the same step;
    * no step gets a new intent while an effect of it is still applied (the journal would
      forget that effect);
    * nothing is written by a run after its ``run_finished``;
    * with ``settled``: no step is left in flight (intent without result) or uncertain.
    """
    problems: list[str] = []
    last_seq = 0
    open_intents: dict[tuple[str | None, str | None], str] = {}
    applied: set[tuple[str | None, str | None]] = set()  # steps whose effect the journal holds
    finished: set[str] = set()
    for ev in events:
        if ev.seq <= last_seq:
            problems.append(f"seq {ev.seq} after {last_seq}")
        last_seq = ev.seq
        if ev.run_id in finished:
            problems.append(f"seq {ev.seq}: run {ev.run_id} wrote {ev.type} after it finished")
        key = (ev.op, ev.step)
        # `resolve --not-applied` of a failed undo settles a step that is present, no intent open.
        by_hand = ev.type == "step_settled" and ev.data.get("by") == "resolve" and key in applied
        if ev.type == "step_intent" and key in applied:
            problems.append(f"seq {ev.seq}: step_intent for {ev.op}/{ev.step}, which is still applied")
        if (ev.type in _APPLIES and not ev.data.get("read_only")) or (ev.type == "step_settled" and ev.data.get("applied")):
            applied.add(key)
        elif ev.type in _REMOVES or ev.type == "step_settled":
            applied.discard(key)
        if ev.type in ("step_intent", "undo_intent"):
            open_intents[key] = ev.type
        elif ev.type in _NEEDS:
            # Two results have no intent of their own: `resolve --applied` (the intent was
            # settled as uncertain first) and the failure that follows an effect journalled
            # as done (a create whose wait failed, or found by its probe after an error).
            after_done = ev.type == "step_failed" and ev.data.get("after_effect")
            if open_intents.get(key) not in _NEEDS[ev.type] and not after_done and not by_hand and not (
                ev.type == "step_done" and ev.data.get("settled_by") == "resolve"
            ):
                problems.append(f"seq {ev.seq}: {ev.type} for {ev.op}/{ev.step} without its intent")
            if ev.type != "step_uncertain":
                open_intents.pop(key, None)
            else:
                open_intents[key] = "uncertain"
        elif ev.type == "run_finished":
            finished.add(ev.run_id)
    if settled:
        problems += [f"{op}/{step} left {kind}" for (op, step), kind in open_intents.items()]
    return problems
