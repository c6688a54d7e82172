"""The actions whose kind check passed, remembered between validations.

Checking an ``aws`` action walks its parameters against botocore's model of the call, so a
plan of 188 calls reads 16 service models (docs/performance.md, B6). A kind whose check is a
pure function of the action and of what its :meth:`~atomicops.actions.base.ActionKind.check_stamp`
covers lets validation skip an action it has seen pass under the same stamp: the action is
kept as a digest of itself (with vars applied) in ``checks-KIND.json`` (atomicops/derived.py).
Only passes are remembered; an action with an issue is checked, and reported, every time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atomicops import derived
from atomicops.actions.base import ActionKind

MAX_REMEMBERED = 100_000  # per kind; past it, only what the last validation passed is kept


class PassedChecks:
    def __init__(self) -> None:
        self._stamps: dict[str, str | None] = {}
        self._passed: dict[str, set[str]] = {}
        self._added: dict[str, set[str]] = {}

    def _known(self, kind: ActionKind) -> set[str] | None:
        if kind.key not in self._stamps:
            stamp = self._stamps[kind.key] = kind.check_stamp()
            stored = derived.load(f"checks-{kind.key}", stamp) if stamp is not None else None
            self._passed[kind.key] = set(stored) if isinstance(stored, list) else set()
        return self._passed[kind.key] if self._stamps[kind.key] is not None else None

    def holds(self, kind: ActionKind, action: Mapping[str, Any]) -> bool:
        """Whether ``action`` passed ``kind``'s check before, under the same stamp."""
        known = self._known(kind)
        return known is not None and _digest(kind, action) in known

    def add(self, kind: ActionKind, action: Mapping[str, Any]) -> None:
        known = self._known(kind)
        if known is not None:
            digest = _digest(kind, action)
            known.add(digest)
            self._added.setdefault(kind.key, set()).add(digest)

    def save(self) -> None:
        """Write the kinds that passed something new (a failed write only loses the cache)."""
        for key, added in self._added.items():
            stamp = self._stamps[key]
            keep = self._passed[key] if len(self._passed[key]) <= MAX_REMEMBERED else added
            if stamp is not None:
                derived.save(f"checks-{key}", stamp, sorted(keep))
        self._added.clear()


def _digest(kind: ActionKind, action: Mapping[str, Any]) -> str:
    return derived.digest([kind.key, action])
