"""A run's cancellation: the one signal everything the run does looks at to know it must stop.

Two levels, because stopping forward work and stopping the way back are different requests:

* ``stop``: start no new operation; actions in flight see it as ``ctx.cancel`` (an AWS waiter,
  a stream copy, a SQL action not yet begun) and may end early, and the operation they belong
  to is undone as any failed operation is. Set by the first Ctrl-C and when the run loses its
  lease.
* ``abort``: stop undoing too: no new undo starts, an undo in flight finishes or fails, and
  what is left stays applied in the journal for ``rollback`` or ``resume``. Set by a second
  Ctrl-C and when the run loses its lease (its journal writes are refused from then on).

``halt`` is what apply's walk looks at before starting an operation: set with ``stop``, and
alone by :meth:`Cancellation.fired` (a rollback trigger), which must not cut short the
actions in flight (``ctx.cancel`` is ``stop``): they finish, then the run rolls back.
"""

from __future__ import annotations

import threading


class Cancellation:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.abort = threading.Event()
        self.halt = threading.Event()
        self.reason: str | None = None
        self.watching = False  # in a rollback-trigger window: Ctrl-C ends the watch, nothing else

    def interrupt(self) -> None:
        """Ctrl-C: the first stops new work (the run then rolls back), the second the rollback."""
        if self.stop.is_set():
            self.abort.set()
            return
        self.reason = "interrupted"
        self.stop.set()
        self.halt.set()

    def fired(self, reason: str) -> None:
        """A rollback trigger fired: start no new operation; what runs finishes."""
        if self.reason is None:
            self.reason = reason
        self.halt.set()

    def lease_lost(self) -> None:
        self.reason = "lease lost"
        self.stop.set()
        self.halt.set()
        self.abort.set()
