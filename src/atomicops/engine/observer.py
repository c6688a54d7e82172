"""How a run reports progress: every journal event as it is written, plus free-text notes.

The CLI renders these with rich; the Python API passes none and stays quiet.
"""

from __future__ import annotations

from typing import Protocol

from atomicops.journal.store import Event


class Observer(Protocol):
    def event(self, event: Event) -> None: ...

    def note(self, text: str, *, level: str = "info") -> None: ...


class Silent:
    def event(self, event: Event) -> None:
        return None

    def note(self, text: str, *, level: str = "info") -> None:
        return None
