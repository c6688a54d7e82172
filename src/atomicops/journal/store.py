"""The journal store contract: an append-only event log per environment, plus its lock.

The engine talks only to :class:`JournalStore`. A store is chosen by URL in
:func:`atomicops.journal.open_store` (``sqlite:///path`` or ``postgresql://...``; a third store
needs no engine change). State is never stored: it is derived from the events by
:mod:`atomicops.journal.state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self


@dataclass(frozen=True)
class Event:
    seq: int
    env: str
    run_id: str
    ts: float
    type: str
    op: str | None = None
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LockHolder:
    """Who holds an environment's lock. ``lock_id`` is what ``unlock`` must name."""

    lock_id: str
    run_id: str
    pid: int
    host: str
    started: float
    command: str = ""
    lease: float = 0.0
    """Seconds without a heartbeat after which the holder counts as gone (0: no lease)."""
    heartbeat: float = 0.0
    fence: int = 0
    """Set by the store on acquire; rises with every new holder of the environment. Appends
    carrying an older fence are refused, so a holder that was paused past its lease and
    taken over cannot write after it wakes up."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "lock_id": self.lock_id,
            "run_id": self.run_id,
            "pid": self.pid,
            "host": self.host,
            "started": self.started,
            "command": self.command,
            "lease": self.lease,
            "heartbeat": self.heartbeat,
            "fence": self.fence,
        }


class JournalStore(Protocol):
    url: str

    def append(
        self,
        env: str,
        run_id: str,
        type: str,
        *,
        op: str | None = None,
        step: str | None = None,
        data: dict[str, Any] | None = None,
        fence: int,
    ) -> Event:
        """Durably append one event (it is on disk when this returns) and return it.

        Refuse (:class:`atomicops.errors.StaleLease`) unless the environment's lock carries
        ``fence``: only the run holding the lock writes.
        """
        ...

    def events(self, env: str, *, after: int = 0) -> list[Event]:
        """Every event of ``env`` with ``seq > after``, oldest first."""
        ...

    def environments(self) -> list[str]: ...

    def import_events(self, env: str, events: list[Event], *, fence: int) -> None:
        """Write events read from another store, their seqs and timestamps kept, for
        ``atomicops state copy``. Refused (:class:`atomicops.errors.CopyRefused`) when ``env``
        already has events here or a seq is taken; by the lock's holder only, like append."""
        ...

    def acquire_lock(self, env: str, holder: LockHolder) -> LockHolder | None:
        """Take the lock for ``holder``.

        Returns ``None`` when it was free, or the previous holder when that holder was gone
        (same host and pid gone, or no heartbeat within its lease) and the lock was taken
        over. Raises :class:`atomicops.errors.Locked` when a live holder has it. The holder
        that :meth:`read_lock` returns afterwards carries the fence number assigned.
        """
        ...

    def heartbeat(self, env: str, lock_id: str) -> bool:
        """Renew the lease; False when ``lock_id`` no longer holds the lock."""
        ...

    def release_lock(self, env: str, lock_id: str) -> None:
        """Release the lock if ``lock_id`` still holds it (a no-op otherwise)."""
        ...

    def read_lock(self, env: str) -> LockHolder | None: ...

    def break_lock(
        self, env: str, lock_id: str | None = None, *, force: bool = False
    ) -> LockHolder | None:
        """Clear the lock and return who held it. Refuses (:class:`atomicops.errors.HolderAlive`)
        when the holder is provably still running on this host, unless ``force``."""
        ...

    def close(self) -> None: ...


class ClosedOnExit:
    """A store's ``with`` block: the store is closed on the way out. Each store writes its own
    ``close``; this is the part both stores would otherwise spell alike."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
