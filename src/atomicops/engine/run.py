"""A run: one command's hold on an environment, and the only writer of its journal.

Every journal write goes through :meth:`Run.record`, which redacts secret values before the
event reaches the store and hands the stored event to the observer. Every write carries the
run's fence: a run that lost its lock cannot write, and it is told to stop (``cancel``).
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import Any

from atomicops.engine.cancel import Cancellation
from atomicops.engine.observer import Observer, Silent
from atomicops.engine.secrets import Redactor
from atomicops.errors import StaleLease
from atomicops.journal.state import EnvState, derive
from atomicops.journal.store import Event, JournalStore, LockHolder

DEFAULT_LEASE_SECONDS = 30.0


def lease_seconds() -> float:
    """How long a run may go without a heartbeat before another may take its environment."""
    return float(os.environ.get("ATOMICOPS_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))


def login_name() -> str:
    """Who runs this command, for the history and the run report ("who ran it")."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return f"uid {os.getuid()}"


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


class Run:
    def __init__(
        self,
        store: JournalStore,
        env: str,
        command: str,
        *,
        observer: Observer | None = None,
        redactor: Redactor | None = None,
        start_data: dict[str, Any] | None = None,
        cancel: Cancellation | None = None,
    ):
        self.store = store
        self.env = env
        self.command = command
        self.id = new_run_id()
        self.observer = observer or Silent()
        self.redactor = redactor or Redactor()
        self._start_data = start_data or {}
        self._write_lock = threading.Lock()
        self._events: list[Event] = []  # the journal as read so far (see state())
        self._events_lock = threading.Lock()
        self.holder = LockHolder(
            lock_id=uuid.uuid4().hex[:12],
            run_id=self.id,
            pid=os.getpid(),
            host=socket.gethostname(),
            started=time.time(),
            command=command,
            lease=lease_seconds(),
        )
        self.took_over: LockHolder | None = None
        self.outcome: str | None = None
        self.fence = 0
        self.cancel = cancel or Cancellation()
        self._stop_beating = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> Run:  # noqa: PYI034 - Run is not subclassed
        self.took_over = self.store.acquire_lock(self.env, self.holder)
        held = self.store.read_lock(self.env)
        if held is None or held.lock_id != self.holder.lock_id:
            # Taken over before this run read its fence: it never held one to write with.
            raise StaleLease(self.env, self.fence, held.fence if held else None)
        self.fence = held.fence
        self._beat = threading.Thread(target=self._heartbeat, name="lease", daemon=True)
        self._beat.start()
        if self.took_over:
            self.observer.note(
                f"took over the lock of run {self.took_over.run_id} "
                f"(pid {self.took_over.pid} on {self.took_over.host} is gone)",
                level="warning",
            )
        self.record(
            "run_started",
            command=self.command,
            pid=self.holder.pid,
            host=self.holder.host,
            user=login_name(),
            took_over=self.took_over.as_dict() if self.took_over else None,
            **self._start_data,
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.outcome is None and not isinstance(exc, StaleLease):
                self.finish("failed" if exc is not None else "succeeded",
                            error=self.redactor.text(str(exc)) if exc is not None else None)
        finally:
            self._stop_beating.set()
            self.store.release_lock(self.env, self.holder.lock_id)

    def _heartbeat(self) -> None:
        # A third of the lease between beats: two can be missed before anyone may take over.
        while not self._stop_beating.wait(self.holder.lease / 3):
            try:
                if not self.store.heartbeat(self.env, self.holder.lock_id):
                    # Taken over: the fence refuses our next write; stop starting work now.
                    self.cancel.lease_lost()
                    return
            except Exception:  # noqa: BLE001, S112 - a missed beat is retried; the fence guards writes
                continue

    def finish(self, outcome: str, **data: Any) -> None:
        self.outcome = outcome
        self.record("run_finished", outcome=outcome, **data)

    def record(self, type: str, *, op: str | None = None, step: str | None = None, **data: Any) -> Event:
        clean = self.redactor.data(data)
        with self._write_lock:
            try:
                event = self.store.append(self.env, self.id, type, op=op, step=step, data=clean, fence=self.fence)
            except StaleLease:
                self.cancel.lease_lost()  # before the heartbeat noticed: the other threads stop too
                raise
        self.observer.event(event)
        return event

    def state(self) -> EnvState:
        """The environment's state from its whole journal, freshly folded (callers may keep
        and change it). The events are read from the store once: each call reads only those
        appended since the last, where re-reading (decoding and hash-checking) every event
        per call made a resume with 1,000 operations in the journal spend a second on it."""
        with self._events_lock:
            last = self._events[-1].seq if self._events else 0
            self._events.extend(self.store.events(self.env, after=last))
            return derive(self.env, list(self._events))
