"""The ``nats`` action kind: JetStream streams and consumers, and messages, on a NATS server.

```yaml
do:
  nats:
    stream_add: {name: DISCOVERY, subjects: ["discovery.>"], storage: file}
  connection: bus                # optional: the plan's first ``kind: nats`` connection
undo: {nats: {stream_delete: {name: DISCOVERY}}, connection: bus}
```

An action holds exactly one verb: ``publish``, ``request``, ``stream_add``, ``stream_info``,
``stream_delete``, ``stream_purge``, ``consumer_add``, ``consumer_info``, ``consumer_delete``.
``stream_add`` and ``consumer_add`` take nats-py's ``StreamConfig`` / ``ConsumerConfig`` fields,
with durations in seconds as nats-py has them; static checks read those dataclasses, so no
server is needed. ``consumer_info`` lets a probe find a consumer.

The connection handle (its event loop, ``iter_stream``, error translation) is in
:mod:`atomicops.actions.nats_connection`; this module is the plan-facing part: verbs, static
checks, and the kind. It imports no nats-py: the registry loads every kind for every command,
``validate`` included, and nats-py costs tens of milliseconds to import. nats-py comes in when
a connection opens (:meth:`NatsKind.connect`) or when a check reads a config dataclass
(``stream_add``, ``consumer_add``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from atomicops.actions.base import ActionContext, ActionKind, CheckIssue
from atomicops.actions.common import positive_or_absent, suggest, unknown_keys
from atomicops.actions.nats_config import _check_fields, _check_typed, _field_hints, plain
from atomicops.actions.nats_names import CONNECTION_KEYS, KIND, _token
from atomicops.actions.registry import register
from atomicops.errors import ActionError
from atomicops.plan.refs import is_reference

if TYPE_CHECKING:
    from atomicops.actions.nats_connection import NatsConnection


# --------------------------------------------------------------------------- verbs


@dataclasses.dataclass(frozen=True)
class Verb:
    """What one verb takes: ``required`` and ``allowed`` argument names, or the name of a
    nats-py config dataclass (in ``nats.js.api``) whose fields are the allowed names (plus
    ``extra``)."""

    required: tuple[str, ...]
    allowed: frozenset[str] = frozenset()
    config: str | None = None
    extra: frozenset[str] = frozenset()

    def config_class(self) -> type | None:
        """The config dataclass, imported when a check first reads it (by name, so that
        this table costs no nats-py import)."""
        if self.config is None:
            return None
        from nats.js import api

        cls: type = getattr(api, self.config)
        return cls

    def names(self) -> frozenset[str]:
        config = self.config_class()
        if config is None:
            return self.allowed
        return frozenset(_field_hints(config)) | self.extra


VERBS: dict[str, Verb] = {
    "publish": Verb(
        ("subject",),
        frozenset({"subject", "data", "headers", "jetstream", "stream", "msg_id", "timeout"}),
    ),
    "request": Verb(("subject",), frozenset({"subject", "data", "headers", "timeout"})),
    "stream_add": Verb(("name",), config="StreamConfig"),
    "stream_info": Verb(("name",), frozenset({"name"})),
    "stream_delete": Verb(("name",), frozenset({"name"})),
    "stream_purge": Verb(("name",), frozenset({"name", "subject", "seq", "keep"})),
    "consumer_add": Verb(
        ("stream", "durable_name"), config="ConsumerConfig", extra=frozenset({"stream"})
    ),
    "consumer_delete": Verb(("stream", "name"), frozenset({"stream", "name"})),
    "consumer_info": Verb(("stream", "name"), frozenset({"stream", "name"})),
}

# Verbs that only read (what a rollback trigger may use). ``request`` is not one: what the
# responder does with a request is up to it.
READ_VERBS = frozenset({"stream_info", "consumer_info"})

# Verbs that need only a name also take the bare name: `stream_delete: ORDERS`.
BARE_NAME_VERBS = frozenset({"stream_info", "stream_delete", "stream_purge"})

# Types of the arguments that are not config fields.
_ARG_TYPES: dict[str, Any] = {
    "subject": str,
    "name": str,
    "stream": str,
    "msg_id": str,
    "jetstream": bool,
    "timeout": float,
    "headers": dict[str, str],
    "seq": int,
    "keep": int,
}

# --------------------------------------------------------------------------- static checks


def parse_action(action: Mapping[str, Any]) -> tuple[str, Any]:
    """``(verb, args)`` of a nats action; ValueError with a readable reason if malformed.
    ``args`` is a mapping, or a ``${...}`` string before references are resolved."""
    body = action.get(KIND)
    if not isinstance(body, Mapping) or len(body) != 1:
        raise ValueError(
            "nats takes exactly one verb: {VERB: {...}} with VERB one of "
            + ", ".join(sorted(VERBS))
        )
    ((verb, args),) = body.items()
    if verb not in VERBS:
        raise ValueError(f"unknown nats verb {verb!r}{suggest(str(verb), VERBS)}")
    if args is None:
        args = {}
    if isinstance(args, str) and verb in BARE_NAME_VERBS:
        # `stream_delete: ORDERS` reads as it is meant: the verb needs nothing but the name
        # (a reference too: `stream_info: ${self.stream}` resolves to the name).
        args = {"name": args}
    if not isinstance(args, Mapping) and not is_reference(args):
        raise ValueError(f"the arguments of {verb} must be a mapping")
    return str(verb), args


def _check_args(verb: str, args: Mapping[str, Any]) -> Iterator[CheckIssue]:
    spec = VERBS[verb]
    path: tuple[str | int, ...] = (KIND, verb)
    config = spec.config_class()
    if config is not None:
        extra = {name: _ARG_TYPES[name] for name in spec.extra}
        yield from _check_fields(args, config, path, extra=extra)
    else:
        names = spec.names()
        for key, value in args.items():
            if is_reference(key):
                continue
            if key not in names:
                hint = suggest(str(key), names) or f"; valid: {', '.join(sorted(names))}"
                yield CheckIssue((*path, key), f"unknown argument {key!r} of {verb}{hint}")
            elif key in _ARG_TYPES:
                yield from _check_typed(value, _ARG_TYPES[key], (*path, key))
    missing = [r for r in spec.required if r not in args]
    if missing and not any(is_reference(k) for k in args):
        yield CheckIssue(path, f"{verb} needs {', '.join(missing)}")
    if not positive_or_absent(args.get("timeout")):
        yield CheckIssue((*path, "timeout"), "timeout must be a positive number of seconds")
    for key in ("name", "stream", "durable_name"):
        value = args.get(key)
        if isinstance(value, str) and not is_reference(value) and not _valid_name(value):
            yield CheckIssue(
                (*path, key), f"{key} {value!r} must not be empty or hold '.', '*', '>' or spaces"
            )


def _valid_name(name: str) -> bool:
    try:
        _token(name)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- the kind


@register
class NatsKind(ActionKind):
    """``nats: {VERB: {...}}`` (+ ``connection``)."""

    key = "nats"
    extra_keys = frozenset({"connection"})
    connection_kind = "nats"

    # -- connections

    def connect(self, spec: Mapping[str, Any]) -> NatsConnection:
        # Here, not at the top: the handle's modules import nats-py (see the docstring).
        from atomicops.actions.nats_connection import NatsConnection

        handle = NatsConnection.from_spec(spec)
        try:
            return handle.open()
        except BaseException:
            handle.close()
            raise

    def disconnect(self, handle: Any) -> None:
        handle.close()

    def check_connection(self, spec: Mapping[str, Any]) -> Iterator[CheckIssue]:
        """Static checks of a plan connection mapping of kind ``nats``."""
        yield from unknown_keys(spec, CONNECTION_KEYS, "nats connection")
        for key in ("connect_timeout", "request_timeout"):
            if not positive_or_absent(spec.get(key)):
                yield CheckIssue((key,), f"{key} must be a positive number of seconds")
        url = spec.get("url")
        if (
            isinstance(url, str)
            and not is_reference(url)
            and "://" in url
            and urlsplit(url).scheme not in ("nats", "tls", "ws", "wss")
        ):
            yield CheckIssue(("url",), "url must be nats://host:port (or tls://, ws://, wss://)")

    # -- static checks

    def check(self, action: Mapping[str, Any]) -> Iterator[CheckIssue]:
        body = action.get(self.key)
        if is_reference(body):
            return
        try:
            verb, args = parse_action(action)
        except ValueError as exc:
            yield CheckIssue((self.key,), str(exc))
            return
        connection = action.get("connection")
        if connection is not None and not isinstance(connection, str):
            yield CheckIssue(("connection",), "connection must be the name of a plan connection")
        if is_reference(args):
            return
        yield from _check_args(verb, args)

    # -- execution

    def writes(self, action: Mapping[str, Any]) -> bool:
        body = action.get(KIND)  # the verb alone decides; its arguments' shape is check()'s
        return not (isinstance(body, Mapping) and len(body) == 1 and next(iter(body)) in READ_VERBS)

    def execute(self, action: Mapping[str, Any], ctx: ActionContext) -> Any:
        try:
            verb, args = parse_action(action)
        except ValueError as exc:
            raise ActionError(KIND, str(exc), code="InvalidAction") from None
        if not isinstance(args, Mapping):  # an unresolved reference
            raise ActionError(
                KIND, f"the arguments of {verb} must be a mapping", code="InvalidAction"
            )
        issues = list(_check_args(verb, args))
        if issues:
            raise ActionError(
                KIND, "; ".join(f"{'.'.join(map(str, i.path))}: {i.message}" for i in issues),
                code="InvalidArgument",
            )  # fmt: skip
        handle: NatsConnection = ctx.connections.get(self, action.get("connection"))
        args = dict(args)
        timeout = args.pop("timeout", None) or ctx.timeout
        if verb == "publish":
            return handle.publish(
                args["subject"], args.get("data"), headers=args.get("headers"),
                jetstream=args.get("jetstream"), stream=args.get("stream"),
                # The step's token by default: a retried or resumed publish is stored once
                # (within the stream's duplicate window).
                msg_id=args.get("msg_id") or ctx.idempotency_token, timeout=timeout,
            )  # fmt: skip
        if verb == "request":
            return handle.request(
                args["subject"], args.get("data"), headers=args.get("headers"), timeout=timeout
            )
        if verb == "stream_add":
            return handle.stream_add(_tagged(args, ctx.tags), timeout=timeout)
        if verb == "stream_info":
            return handle.stream_info(args["name"], timeout=timeout)
        if verb == "stream_delete":
            return handle.stream_delete(args["name"], timeout=timeout)
        if verb == "stream_purge":
            return handle.stream_purge(
                args["name"], subject=args.get("subject"), seq=args.get("seq"),
                keep=args.get("keep"), timeout=timeout,
            )  # fmt: skip
        if verb == "consumer_add":
            stream = args.pop("stream")
            return handle.consumer_add(stream, _tagged(args, ctx.tags), timeout=timeout)
        if verb == "consumer_delete":
            return handle.consumer_delete(args["stream"], args["name"], timeout=timeout)
        if verb == "consumer_info":
            return _consumer_info(handle, args["stream"], args["name"], timeout)
        raise ActionError(KIND, f"unknown verb {verb!r}", code="InvalidAction")  # pragma: no cover

    def describe(self, action: Mapping[str, Any]) -> str:
        try:
            verb, args = parse_action(action)
        except ValueError:
            return f"nats {action.get(self.key)}"
        if not isinstance(args, Mapping):
            return f"nats {verb}"
        target = args.get("name") or args.get("subject") or args.get("stream") or ""
        if verb.startswith("consumer_"):
            target = f"{args.get('stream')}/{args.get('durable_name') or args.get('name')}"
        return f"nats {verb} {target}".rstrip()


def _consumer_info(handle: NatsConnection, stream: str, name: str, timeout: float | None) -> Any:
    """``{name, stream_name, config, num_pending, num_ack_pending, delivered, ...}``: what a
    probe needs to find a consumer (``ConsumerNotFound`` when there is none)."""
    limit = handle.request_timeout if timeout is None else float(timeout)

    async def go(nc: Any) -> dict[str, Any]:
        return dict(plain(await nc.jsm(timeout=limit).consumer_info(_token(stream), _token(name))))

    return handle.call(go, f"consumer_info {stream}/{name}", limit)


def _tagged(config: Mapping[str, Any], tags: Mapping[str, str]) -> dict[str, Any]:
    """``config`` with the atomicops tags in its ``metadata`` (streams and consumers carry
    string metadata since nats-server 2.10), so an inventory can tell whose they are.
    Keys the plan sets itself win."""
    out = dict(config)
    metadata = out.get("metadata")
    if tags and (metadata is None or isinstance(metadata, Mapping)):
        out["metadata"] = {**tags, **(metadata or {})}
    return out
