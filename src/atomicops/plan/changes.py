"""What changed in an operation since it was applied.

An operation's *definition* is what it will run: the plan's text with ``${vars...}`` resolved
(so ``--var svc=orders2`` is a change) and every other reference kept as written (secrets
stay ``${secrets.NAME}``, so a definition can be journalled). The journal records it when
the operation starts; ``plan`` compares it with the plan's now, field by field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from atomicops.errors import AtomicOpsError
from atomicops.journal.sqlite import from_json, to_json
from atomicops.plan import refs
from atomicops.plan.model import Operation


def with_vars(value: Any, vars: Mapping[str, Any]) -> Any:
    """``value`` with its ``${vars...}`` resolved and every other reference kept as written."""

    def look(ref: refs.Ref) -> Any:
        if ref.namespace != "vars":
            raise refs.Keep
        try:
            return refs.dig(vars, ref.path, ref)
        except AtomicOpsError:
            raise refs.Keep from None  # reported by validation, or when the step runs

    return refs.resolve(value, look)


def definition(op: Operation, vars: Mapping[str, Any]) -> dict[str, Any]:
    # As the journal will hold it: JSON's shapes, with a !!binary value kept as bytes (pydantic's
    # JSON mode would decode it as UTF-8 text and fail).
    # An operation with no checkpoint reads as it did before checkpoints existed, so that
    # journals written then still match their plans.
    dumped = op.model_dump(exclude={"checkpoint"} if op.checkpoint is None else None)
    resolved: dict[str, Any] = with_vars(from_json(to_json(dumped)), vars)
    return resolved


def fingerprint(op: Operation, vars: Mapping[str, Any]) -> str:
    """Identifies an operation's definition, to tell when the plan changed since it ran."""
    text = to_json(definition(op, vars))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "old": self.old, "new": self.new}


_ABSENT = "(absent)"


def changes(old: Any, new: Any, path: str = "") -> list[Change]:
    """Every leaf that differs between two definitions; steps are matched by name."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[Change] = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{path}.{key}" if path else str(key)
            out += changes(old.get(key, _ABSENT), new.get(key, _ABSENT), sub)
        return out
    if isinstance(old, list) and isinstance(new, list):
        if _named(old) and _named(new):
            return changes({s["name"]: s for s in old}, {s["name"]: s for s in new}, path)
        out = []
        for i in range(max(len(old), len(new))):
            out += changes(old[i] if i < len(old) else _ABSENT, new[i] if i < len(new) else _ABSENT, f"{path}[{i}]")
        return out
    return [] if old == new and type(old) is type(new) else [Change(path, old, new)]


def _named(items: list[Any]) -> bool:
    names = [i.get("name") for i in items if isinstance(i, Mapping)]
    return len(names) == len(items) and None not in names and len(set(names)) == len(names)


def recorded_definitions(events: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Per operation, the definition journalled when it last started (none before journals
    kept one)."""
    found: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev.type == "op_started" and ev.op and "definition" in ev.data:
            found[ev.op] = ev.data["definition"]
    return found

