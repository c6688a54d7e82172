"""The diff of two inventory snapshots, the same for every source (AWS, PostgreSQL, NATS).

A snapshot maps a type to its entries (each with an ``id``), or to ``{"error": code}`` when
the type could not be listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What changed between two snapshots, per type; ``{}`` when nothing did.

    ``{type: {"added": [entry], "removed": [entry], "changed": [{"id", "before", "after"}]}}``
    (empty lists left out). A type that could not be listed on either side appears as
    ``{type: {"unchecked": {"before": code_or_None, "after": code_or_None}}}``: nothing can be
    said about it, and a clean diff must not pretend otherwise.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if not isinstance(old, list) or not isinstance(new, list):
            out[name] = {"unchecked": {"before": _why(old), "after": _why(new)}}
            continue
        old_by_id = {e["id"]: e for e in old}
        new_by_id = {e["id"]: e for e in new}
        change: dict[str, Any] = {
            "added": [new_by_id[i] for i in sorted(new_by_id.keys() - old_by_id.keys())],
            "removed": [old_by_id[i] for i in sorted(old_by_id.keys() - new_by_id.keys())],
            "changed": [
                {"id": i, "before": old_by_id[i], "after": new_by_id[i]}
                for i in sorted(old_by_id.keys() & new_by_id.keys())
                if old_by_id[i] != new_by_id[i]
            ],
        }
        change = {k: v for k, v in change.items() if v}
        if change:
            out[name] = change
    return out


def _why(side: Any) -> str | None:
    if isinstance(side, list):
        return None
    if isinstance(side, Mapping):
        return str(side.get("error"))
    return "missing"
