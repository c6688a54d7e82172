"""A run's cancellation: the one signal everything the run does looks at to know it must stop.

Two levels, because stopping forward work and stopping the way back are different requests:

* ``stop``: start no new operation; actions in flight see it as ``ctx.cancel`` (an AWS waiter,
  a stream copy, a SQL action not yet begun) and may end early, and the operation they belong
  to is undone as any failed operation is. Set by the first Ctrl-C and when the run loses its
  lease.
* ``abort``: stop undoing too: no new undo starts, an undo in flight finishes or fails, and
  what is left stays applied in the journal for ``rollback`` or ``resume``. Set by a second
  Ctrl-C and when the run loses its lease (its journal writes are refused from then on).
"""

from __future__ import annotations

import threading


class Cancellation:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.abort = threading.Event()
        self.reason: str | None = None

    def interrupt(self) -> None:
        """Ctrl-C: the first stops new work (the run then rolls back), the second the rollback."""
        if self.stop.is_set():
            self.abort.set()
            return
        self.reason = "interrupted"
        self.stop.set()

    def lease_lost(self) -> None:
        self.reason = "lease lost"
        self.stop.set()
        self.abort.set()
