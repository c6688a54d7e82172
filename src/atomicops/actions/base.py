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


@dataclass
class ConnectionNotReady(ActionError):
    """A connection built from operations' outputs (``${ops.OP.OUT}``) was needed before
    those operations were applied. ``validate`` refuses a step that could meet it (its
    operation must depend on them); a rollback trigger that meets it waits."""

    connection: str = ""
    waits_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deferred:
    """A plan connection as written, resolved when first used.

    ``resolve`` returns the spec with every reference resolved (vars, secrets, the outputs
    of ``waits_on``) or raises (:class:`ConnectionNotReady` while an output is missing).
    """

    kind: str
    resolve: Callable[[], Mapping[str, Any]]
    waits_on: tuple[str, ...] = ()
    """The operations whose outputs the connection is built from."""
    written: Mapping[str, Any] = field(default_factory=dict)
    """The spec as the plan writes it (the keys in use, references unresolved): what can be
    checked before the operations it waits on are applied."""


class Connections:
    """Connections of one run, resolved and opened on first use, shared by steps, closed at
    the end.

    A connection may be built from what the run itself makes (the Aurora endpoint, written
    ``${ops.aurora.endpoint}``), so its spec is resolved only when the first action needs
    it: :meth:`define` takes a spec already resolved, :meth:`define_deferred` one resolved
    then (once; a resolution that fails is tried again by the next action).
    """

    def __init__(self, specs: Mapping[str, Mapping[str, Any]]):
        self._specs = {name: dict(spec) for name, spec in specs.items()}
        self._deferred: dict[str, Deferred] = {}
        self._open: dict[str, tuple[ActionKind, Any]] = {}
        self._lock = threading.Lock()
        # One lock per name, held while that connection is resolved and opens: a slow
        # connect (NATS may take many seconds to give up) holds back only the steps that
        # need the same connection.
        self._connecting: dict[str, threading.Lock] = {}

    def define(self, name: str, spec: Mapping[str, Any]) -> None:
        """Add a resolved connection spec (before it is first used)."""
        with self._lock:
            self._specs[name] = dict(spec)
            self._deferred.pop(name, None)

    def define_deferred(self, name: str, deferred: Deferred) -> None:
        """Add a connection whose spec is resolved when it is first used."""
        with self._lock:
            self._deferred[name] = deferred
            self._specs.pop(name, None)

    def fresh(self) -> Connections:
        """The same connection specs with none of the handles: for a watcher that must never
        wait behind (or hold up) the steps using these (engine/triggers.py)."""
        with self._lock:
            other = Connections(self._specs)
            other._deferred = dict(self._deferred)
            return other

    def spec(self, name: str) -> Mapping[str, Any]:
        """The resolved spec of ``name`` (resolved now if it was deferred)."""
        with self._lock:
            if name in self._specs:
                return self._specs[name]
            deferred = self._deferred[name]  # KeyError for an unknown name, as before
        resolved = dict(deferred.resolve())
        with self._lock:
            self._specs.setdefault(name, resolved)
            self._deferred.pop(name, None)
            return self._specs[name]

    def kind_of(self, name: str) -> str | None:
        with self._lock:
            if name in self._deferred:
                return self._deferred[name].kind
            kind = self._specs.get(name, {}).get("kind")
            return kind if isinstance(kind, str) else None

    def deferred(self, name: str) -> Deferred | None:
        """How connection ``name`` will be resolved, while it is not yet."""
        with self._lock:
            return self._deferred.get(name)

    def names_of_kind(self, kind: str) -> list[str]:
        with self._lock:
            names = [*self._specs, *self._deferred]
        return [n for n in names if self.kind_of(n) == kind]

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
            known = name in self._specs or name in self._deferred
        if not known and not name.startswith("<default"):
            # A misspelt name must not quietly fall back to default credentials.
            raise ActionError(kind.key, f"unknown connection {name!r}")
        have = self.kind_of(name) if known else want
        if have != want:
            raise ActionError(kind.key, f"connection {name!r} is of kind {have!r}, not {want!r}")
        with self._lock:
            connecting = self._connecting.setdefault(name, threading.Lock())
        with connecting:
            with self._lock:
                if name in self._open:  # opened by another step while this one waited
                    return self._open[name][1]
            spec = self.spec(name) if known else {"kind": want}
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


ENGINE_TAGS = "<atomicops tags>"
"""In a ``call:`` function's ``AWS_CALLS`` (atomicops/policy/calls.py), the value of a
parameter that carries the step's tags, ``ctx.tags``
(``{"s3.put_object": {"Bucket": "bucket", "Tagging": ENGINE_TAGS}}``): `atomicops policy`
then grants the tagging action AWS checks inside that call, as it does for a ``do``."""


def connection_of(ctx: ActionContext, kind: str, name: str | None = None) -> Any:
    """The open handle of a plan connection, for ``call`` functions doing data work:
    ``connection_of(ctx, "aws").client("ecr")``, ``connection_of(ctx, "nats", "bus")``.

    A connection built from operations' outputs opens here, the first time; before those
    operations are applied it raises :class:`ConnectionNotReady`. ``validate`` reads the
    calls of this function with literal arguments from the function's source
    (plan/call_target.py) and checks the operation comes after what the connection is built
    from; a name computed at run time it cannot see.
    """
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

    secret_connection_keys: ClassVar[frozenset[str]] = frozenset()
    """Keys of a plan connection of this kind that hold a secret (a postgres ``password``):
    ``validate`` accepts only a ``${secrets.NAME}`` there, since the plan a run records in
    the journal keeps its connections as written."""

    def connection_in_use(self, spec: Mapping[str, Any], given: Callable[[Any], Any]) -> Mapping[str, Any]:
        """The keys of plan connection ``spec`` that this run connects with, references still
        unresolved. A kind whose connection may be replaced by a var (postgres' ``override``)
        chooses here; ``given(value)`` resolves a value that names only vars. Default: all."""
        return spec

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
