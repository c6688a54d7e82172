"""Registry of action kinds: the plan key -> the kind that runs it.

Adding a kind is one new module under ``atomicops/actions/`` with a subclass of
:class:`~atomicops.actions.base.ActionKind` and one line in :data:`_BUILTIN_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from atomicops.actions.base import ActionKind

_BUILTIN_MODULES = (
    "atomicops.actions.aws",
    "atomicops.actions.run",
    "atomicops.actions.call",
    "atomicops.actions.http",
    "atomicops.actions.sql",
    "atomicops.actions.nats",
)

_KINDS: dict[str, ActionKind] = {}
_loaded = False


class DuplicateKind(ValueError):
    pass


def register(kind_cls: type[ActionKind]) -> type[ActionKind]:
    """Class decorator: make ``kind_cls`` the implementation of its ``key``."""
    key = kind_cls.key
    if key in _KINDS and type(_KINDS[key]) is not kind_cls:
        raise DuplicateKind(f"action kind {key!r} is already registered by {_KINDS[key]!r}")
    _KINDS[key] = kind_cls()
    return kind_cls


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def kinds() -> Mapping[str, ActionKind]:
    _load()
    return _KINDS


def get(key: str) -> ActionKind:
    return kinds()[key]


def kind_of(action: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """The kind key of an action mapping, and every kind key found (to report ambiguity)."""
    found = [k for k in action if k in kinds()]
    return (found[0] if len(found) == 1 else None), found
