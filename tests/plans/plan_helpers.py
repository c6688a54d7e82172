"""Functions the test plans call (``call:`` steps). They live beside the plans on purpose:
a plan's own modules are importable by its ``call`` actions."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

_barrier = threading.Barrier(2, timeout=10)


def rendezvous(ctx: Any) -> dict[str, Any]:
    """Returns only when a second caller arrives: proof that two steps run at the same time."""
    _barrier.wait()
    return {"who": ctx.op}


def pause(ctx: Any) -> dict[str, Any]:
    time.sleep(0.05)
    return {"who": ctx.op}


def noop(ctx: Any, **_: Any) -> dict[str, Any]:
    return {}


def sleepy(ctx: Any, seconds: float = 2.0, release: str = "") -> dict[str, Any]:
    """Long enough to be caught in the act by a second process or a signal. With ``release``
    (a path), it returns as soon as that file exists: a test that must catch the run in the
    act lets it go only when done, however slowly a loaded machine starts the other process."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if release and os.path.exists(release):
            break
        time.sleep(0.05)
    return {"slept": seconds}


_refusals: dict[str, int] = {}


def busy_until(ctx: Any, key: str, refusals: int) -> dict[str, Any]:
    """An undo that AWS-style refuses with DependencyViolation `refusals` times, then works."""
    from atomicops.errors import ActionError

    seen = _refusals.get(key, 0)
    if seen < refusals:
        _refusals[key] = seen + 1
        raise ActionError("call", "resource has a dependent object", code="DependencyViolation")
    return {"tries": seen + 1}


def consumer_of(ctx: Any, stream: str, name: str, key: str) -> dict[str, Any]:
    """A probe: the consumer ``name`` of ``stream`` if its metadata names step ``key`` (the
    nats kind has no consumer_info verb), else nothing."""
    from atomicops.actions.registry import get

    bus = ctx.connections.get(get("nats"), None)
    for info in bus.consumers(stream):
        if info.get("name") == name and (info.get("config") or {}).get("metadata", {}).get("atomicops:step") == key:
            return {"name": name}
    return {"name": None}
