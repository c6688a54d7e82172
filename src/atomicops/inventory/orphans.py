"""Orphans: resources tagged by atomicops whose step the journal does not hold as applied.

Every resource atomicops creates carries ``atomicops:env``, ``atomicops:op`` and
``atomicops:step`` (set in the create call itself). Whatever carries them while the journal
of that environment says the step is not applied (never journalled, undone, or a run killed
before it could write) is left over, and this finds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atomicops.journal.state import EnvState

STEP_TAG = "atomicops:step"
ENV_TAG = "atomicops:env"


def orphans(snapshot: Mapping[str, Any], states: Mapping[str, EnvState]) -> list[dict[str, Any]]:
    """Entries of an AWS inventory whose ``atomicops:step`` is not applied in its journal."""
    found = []
    for kind, entries in snapshot.items():
        if not isinstance(entries, list):
            continue
        for entry in entries:
            tags = entry.get("tags") or {}
            key = tags.get(STEP_TAG)
            if not key:
                continue
            env, _, rest = key.partition("/")
            op, _, step = rest.partition("/")
            state = states.get(tags.get(ENV_TAG) or env)
            step_state = state.ops[op].steps.get(step) if state and op in state.ops else None
            if step_state is None or not step_state.present:
                found.append({"type": kind, "id": entry["id"], "step": key,
                              "journal": step_state.status if step_state else "unknown"})
    return sorted(found, key=lambda o: (o["type"], o["id"]))
