"""The one small interface every action kind implements.

An action is a mapping in the plan with exactly one *kind key* (``aws``, ``run``, ``call``,
...) plus the kind's own keys (``params``, ``connection``, ``wait``, ...). A kind module
subclasses :class:`ActionKind` and registers itself in :mod:`atomicops.actions.registry`;
the engine never names a kind.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from atomicops.errors import ActionError


@dataclass(frozen=True)
class CheckIssue:
    """A static problem with an action. ``path`` is relative to the action mapping."""

    path: tuple[str | int, ...]
    message: str


class Connections:
    """Connections of one run, opened on first use, shared by steps, closed at the end.

    ``specs`` are the plan's ``connections:`` entries with references resolved.
    """

    def __init__(self, specs: Mapping[str, Mapping[str, Any]]):
        self._specs = dict(specs)
        self._open: dict[str, tuple[ActionKind, Any]] = {}
        self._lock = threading.Lock()
        # One lock per name, held while that connection opens: a slow connect (NATS may take
        # many seconds to give up) holds back only the steps that need the same connection.
        self._connecting: dict[str, threading.Lock] = {}

    def define(self, name: str, spec: Mapping[str, Any]) -> None:
        """Add a connection spec (before it is first used)."""
        with self._lock:
            self._specs[name] = dict(spec)

    def fresh(self) -> Connections:
        """The same connection specs with none of the handles: for a watcher that must never
        wait behind (or hold up) the steps using these (engine/triggers.py)."""
        with self._lock:
            return Connections(self._specs)

    def spec(self, name: str) -> Mapping[str, Any]:
        return self._specs[name]

    def names_of_kind(self, kind: str) -> list[str]:
        return [n for n, s in self._specs.items() if s.get("kind") == kind]

    def get(self, kind: ActionKind, name: str | None) -> Any:
        """The open handle of connection ``name`` (or the default one for the kind)."""
        want = kind.connection_kind
        if want is None:
            raise ActionError(kind.key, "this action kind takes no connection")
        if name is None:
            candidates = self.names_of_kind(want)
            # No connection declared: the kind's defaults (e.g. boto3's credential chain).
            name = candidates[0] if candidates else f"<default {want}>"
        with self._lock:
            if name in self._open:
                return self._open[name][1]
            if name in self._specs:
                spec = self._specs[name]
            elif name.startswith("<default"):
                spec = {"kind": want}
            else:
                # A misspelt name must not quietly fall back to default credentials.
                raise ActionError(kind.key, f"unknown connection {name!r}")
            if spec.get("kind") != want:
                raise ActionError(
                    kind.key, f"connection {name!r} is of kind {spec.get('kind')!r}, not {want!r}"
                )
            connecting = self._connecting.setdefault(name, threading.Lock())
        with connecting:
            with self._lock:
                if name in self._open:  # opened by another step while this one waited
                    return self._open[name][1]
            handle = kind.connect(spec)
            with self._lock:
                self._open[name] = (kind, handle)
            return handle

    def close(self) -> None:
        with self._lock:
            opened, self._open = self._open, {}
        for kind, handle in opened.values():
            try:
                kind.disconnect(handle)
            except Exception:  # noqa: BLE001, S110 - closing must not mask the run's outcome
                pass


@dataclass
class ActionContext:
    """What an action sees of the run. Built by the engine for each action it executes."""

    connections: Connections
    env: str
    run_id: str
    step_key: str | None = None
    op: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    base_dir: str = "."
    progress: Callable[..., None] = lambda done, total=None, note="", mark=None: None
    """``progress(done, total=None, note="", mark=None)``: long work reports how far it got.
    A ``mark`` (a high-water mark such as the last copied sequence number) is journalled, so
    work resumed after a crash can start from it (``resume_mark``)."""
    idempotency_token: str | None = None
    """Stable for one attempt at one step (kept across a resume): for APIs that take one."""
    resume_mark: Any = None
    """The last ``mark`` journalled for this step by an earlier, interrupted attempt."""


def connection_of(ctx: ActionContext, kind: str, name: str | None = None) -> Any:
    """The open handle of a plan connection, for ``call`` functions doing data work:
    ``connection_of(ctx, "aws").client("ecr")``, ``connection_of(ctx, "nats", "bus")``."""
    from atomicops.actions import registry

    return ctx.connections.get(registry.get(kind), name)


class ActionKind(ABC):
    """A kind of action. Stateless apart from connection handles it hands out."""

    key: ClassVar[str]
    """The plan key that selects this kind, e.g. ``"aws"``."""

    extra_keys: ClassVar[frozenset[str]] = frozenset()
    """Keys allowed beside the kind key in an action mapping (``params``, ``wait``...)."""

    connection_kind: ClassVar[str | None] = None
    """The ``kind:`` of plan connection this action uses, if any."""

    def check(self, action: Mapping[str, Any]) -> Iterable[CheckIssue]:
        """Static checks before anything runs. Values may still hold ``${...}`` strings."""
        return ()

    def check_stamp(self) -> str | None:
        """A stamp of everything :meth:`check` reads besides the action (a library's version,
        the modules that check), when the check is a pure function of them and the action:
        validation then remembers, across processes, the actions that passed
        (atomicops/derived.py). None (the default): checked every time, as a kind whose check
        reads files or the environment must be."""
        return None

    @abstractmethod
    def execute(self, action: Mapping[str, Any], ctx: ActionContext) -> Any:
        """Run the (fully resolved) action and return its result as plain data.

        Raise :class:`ActionError` on failure, with ``code`` and ``transient`` set so the
        engine can retry and can match ``undo_ok_errors``.
        """

    def check_connection(self, spec: Mapping[str, Any]) -> Iterable[CheckIssue]:
        """Static checks of a plan connection of this kind (``kind`` included); ``path`` is
        relative to the connection mapping."""
        return ()

    def connect(self, spec: Mapping[str, Any]) -> Any:
        raise ActionError(self.key, "this action kind takes no connection")

    def disconnect(self, handle: Any) -> None:
        return None

    def writes(self, action: Mapping[str, Any]) -> bool:
        """Whether running ``action`` may change something. Rollback triggers are polled over
        and over during a run, so only actions this returns False for may be one. The safe
        answer is True: a kind that cannot tell (``run``, ``call``) keeps it."""
        return True

    def describe(self, action: Mapping[str, Any]) -> str:
        """A one-line human description (``ec2.create_vpc``)."""
        return f"{self.key}: {action.get(self.key)}"
