"""The NATS connection handle: one nats-py client on a private event loop, for the engine's
threads and for ``call`` functions doing data work (``iter_stream`` reads a stream in order
without leaving consumers behind).

nats-py is asyncio and the engine is threaded and synchronous. Each handle owns one event loop
on a daemon thread; every call is submitted to that loop and waited for with a timeout, so a
step never hangs on a silent server. Results are plain JSON-safe data. The ``nats`` action kind
(:mod:`atomicops.actions.nats`) is the plan's way in.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import datetime as dt
import enum
import json
import threading
import types
import typing
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from atomicops.actions.base import CheckIssue
from atomicops.actions.common import redact, refuse_unknown_keys, suggest
from atomicops.errors import ActionError
from atomicops.plan.refs import is_reference

KIND = "nats"
T = TypeVar("T")

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 10.0
# Our own deadline on a submitted call sits a little behind nats-py's, so that its more
# precise error (no responders, API error...) normally wins the race.
GRACE = 1.0
CLOSE_TIMEOUT = 5.0

# iter_stream reads through an ephemeral consumer named with this prefix. It is deleted when
# the iteration ends; should the process die first, the server drops it after this idle time.
READER_PREFIX = "atomicops-read-"
READER_IDLE_SECONDS = 30.0

JS_API = "$JS.API"
MSG_ID_HEADER = "Nats-Msg-Id"

CONNECTION_KEYS = frozenset(
    {"kind", "url", "user", "password", "token", "connect_timeout", "request_timeout", "name"}
)

# The JetStream error codes (server/errors.json) a plan is likely to meet, by the name the
# engine matches ``undo_ok_errors`` against: ``StreamNotFound`` fits the default
# ``*NotFound*``. Codes not listed become ``JetStream<err_code>``.
JS_ERRORS: dict[int, str] = {
    10002: "AccountResourcesExceeded",
    10003: "BadRequest",
    10004: "ClusterIncomplete",
    10008: "ClusterNotAvailable",
    10009: "ClusterNotLeader",
    10012: "ConsumerCreateFailed",
    10013: "ConsumerNameInUse",
    10014: "ConsumerNotFound",
    10023: "InsufficientResources",
    10025: "InvalidJSON",
    10026: "MaximumConsumersLimit",
    10027: "MaximumStreamsLimit",
    10028: "MemoryResourcesExceeded",
    10035: "AccountNotFound",
    10037: "NoMessageFound",
    10039: "JetStreamNotEnabledForAccount",
    10043: "SequenceNotFound",
    10047: "StorageResourcesExceeded",
    10049: "StreamCreateFailed",
    10050: "StreamDeleteFailed",
    10052: "StreamInvalidConfig",
    10053: "StreamLimits",
    10054: "MessageExceedsMaximum",
    10056: "StreamNameMismatch",
    10058: "StreamNameInUse",
    10059: "StreamNotFound",
    10060: "ExpectedStreamMismatch",
    10065: "StreamSubjectOverlap",
    10069: "StreamUpdateFailed",
    10070: "WrongLastMsgID",
    10071: "WrongLastSequence",
    10074: "ReplicasNotSupported",
    10076: "JetStreamNotEnabled",
    10077: "StreamStoreFailed",
    10093: "ConsumerFilterNotSubset",
    10094: "ConsumerInvalidPolicy",
    10103: "ConsumerBadDurableName",
    10105: "ConsumerExistingActive",
    10109: "StreamSealed",
    10110: "StreamPurgeFailed",
    10118: "StreamOffline",
    10119: "ConsumerOffline",
    10148: "ConsumerAlreadyExists",
    10149: "ConsumerDoesNotExist",
    10158: "DuplicateMessageConflict",
    10164: "WrongLastSequence",
    10167: "TooManyRequests",
}
# HTTP-like status codes of JetStream API errors that say "try again later".
TRANSIENT_STATUS = frozenset({408, 429, 503})
TRANSIENT_JS_ERRORS = frozenset({10008, 10009, 10004})


class StreamMessage(NamedTuple):
    """One stored message, as :meth:`NatsConnection.iter_stream` yields it."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None


# --------------------------------------------------------------------------- plain data


def plain(value: Any) -> Any:
    """A JSON-safe copy of a nats-py result: dataclasses as dicts without ``None`` members,
    enums as their values, datetimes as ISO 8601, bytes as text (or base64 when binary)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is not None:
                out[f.name] = plain(item)
        return out
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(plain(k)): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode("ascii")
    return value


def encode_data(data: Any) -> bytes:
    """A message payload: text as UTF-8, mappings/lists/numbers as compact JSON."""
    if data is None:
        return b""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _reply(msg: Msg) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        out["data"] = msg.data.decode("utf-8")
    except UnicodeDecodeError:
        out["data"] = base64.b64encode(msg.data).decode("ascii")
        out["data_encoding"] = "base64"
    try:
        out["json"] = json.loads(msg.data) if msg.data else None
    except ValueError:
        out["json"] = None
    if msg.headers:
        out["headers"] = plain(msg.headers)
    return out


def _str_headers(headers: Mapping[Any, Any] | None) -> dict[str, str] | None:
    if not headers:
        return None
    return {str(plain(k)): str(v) for k, v in headers.items()}


# --------------------------------------------------------------------------- config fields


_HINTS: dict[type, dict[str, Any]] = {}


def _field_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a nats-py config dataclass (its module uses string
    annotations, so they are resolved against that module). Cached: they never change."""
    hints = _HINTS.get(cls)
    if hints is None:
        resolved = typing.get_type_hints(cls)
        hints = _HINTS[cls] = {f.name: resolved[f.name] for f in dataclasses.fields(cls)}
    return hints


def _required_fields(cls: type) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _type_name(hint: Any) -> str:
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):  # noqa: UP006 - nats-py's hints use typing.List
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    if origin in (dict, typing.Dict):  # noqa: UP006
        return "mapping"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(e.value) for e in hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"mapping ({hint.__name__})"
    if hint is float:
        return "number"
    if hint is dt.datetime:
        return "ISO 8601 time"
    return getattr(hint, "__name__", str(hint))


def _check_typed(value: Any, hint: Any, path: tuple[str | int, ...]) -> Iterator[CheckIssue]:
    """Walk a literal value against a nats-py type hint; references (``${...}``) are opaque."""
    if is_reference(value):
        return
    if value is None:
        yield CheckIssue(path, "null is not a valid value; leave the key out instead")
        return
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    wrong = CheckIssue(path, f"expected {_type_name(hint)}, got {type(value).__name__}")
    if hint is Any:
        return
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, (list, tuple)):
            yield wrong
            return
        (item_hint,) = typing.get_args(hint) or (Any,)
        for index, item in enumerate(value):
            yield from _check_typed(item, item_hint, (*path, index))
    elif origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, Mapping):
            yield wrong
            return
        args = typing.get_args(hint)
        for key, item in value.items():
            yield from _check_typed(item, args[1] if len(args) == 2 else Any, (*path, key))
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        if value not in {e.value for e in hint}:
            yield CheckIssue(path, f"{value!r} is not {_type_name(hint)}")
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            yield wrong
            return
        yield from _check_fields(value, hint, path, required=_required_fields(hint))
    elif hint is bool:
        if not isinstance(value, bool):
            yield wrong
    elif hint in (int, float):
        allowed = (int,) if hint is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            yield wrong
    elif (hint is str and not isinstance(value, str)) or (
        hint is dt.datetime and not isinstance(value, (str, dt.datetime))
    ):
        yield wrong


def _check_fields(
    value: Mapping[str, Any],
    cls: type,
    path: tuple[str | int, ...],
    *,
    required: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Iterator[CheckIssue]:
    hints = {**_field_hints(cls), **(extra or {})}
    for key, item in value.items():
        if is_reference(key):
            continue
        if key not in hints:
            hint = suggest(str(key), hints) or f"; valid: {', '.join(sorted(hints))}"
            yield CheckIssue((*path, key), f"unknown field {key!r} of {cls.__name__}{hint}")
            continue
        yield from _check_typed(item, hints[key], (*path, key))
    missing = [r for r in required if r not in value]
    if missing and not any(is_reference(k) for k in value):
        yield CheckIssue(path, f"missing required field(s) of {cls.__name__}: {', '.join(missing)}")


def build_config(cls: type[api.Base], values: Mapping[str, Any]) -> Any:
    """A nats-py config dataclass from plain data: enums from their values, nested configs
    (placement, sources, subject transforms...) from mappings. ValueError/TypeError if bad."""
    hints = _field_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise TypeError(f"unknown field(s) of {cls.__name__}: {', '.join(unknown)}")
    return cls(**{k: _convert(v, hints[k]) for k, v in values.items()})


def _convert(value: Any, hint: Any) -> Any:
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    if value is None:
        return None
    if origin in (list, typing.List) and isinstance(value, (list, tuple)):  # noqa: UP006
        (item_hint,) = typing.get_args(hint) or (Any,)
        return [_convert(v, item_hint) for v in value]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if isinstance(hint, type) and issubclass(hint, api.Base) and isinstance(value, Mapping):
        return build_config(hint, value)
    return value


# --------------------------------------------------------------------------- errors


def js_error_code(err_code: int | None, status: int | None) -> str:
    """The name of a JetStream API error (``10059`` -> ``StreamNotFound``)."""
    if err_code is not None:
        return JS_ERRORS.get(err_code, f"JetStream{err_code}")
    if status == 404:
        return "NotFound"
    if status == 503:
        return "JetStreamUnavailable"
    return f"JetStreamStatus{status}" if status else "JetStreamError"


def translate_error(error: BaseException, what: str, secrets: Iterable[str] = ()) -> ActionError:
    """An ActionError for a nats-py failure of ``what`` (``stream_info ORDERS``)."""
    if isinstance(error, ActionError):
        return error
    if isinstance(error, nats.js.errors.APIError):
        status = error.code
        code = js_error_code(error.err_code, status)
        description = error.description or code
        detail = f" (err_code {error.err_code})" if error.err_code is not None else ""
        return ActionError(
            KIND,
            redact(f"{what}: {description}{detail}", secrets),
            code=code,
            transient=status in TRANSIENT_STATUS or error.err_code in TRANSIENT_JS_ERRORS,
            result={"error": plain({"code": status, "err_code": error.err_code,
                                    "description": error.description})},
        )  # fmt: skip
    if isinstance(error, nats.js.errors.NoStreamResponseError):
        return ActionError(
            KIND, f"{what}: no stream captures the subject (no JetStream responder)",
            code="NoResponders",
        )  # fmt: skip
    if isinstance(error, nats.errors.NoRespondersError):
        return ActionError(KIND, f"{what}: nothing subscribes to the subject", code="NoResponders")
    if isinstance(error, (TimeoutError, asyncio.TimeoutError, nats.errors.TimeoutError)):
        return ActionError(KIND, f"{what}: no answer in time", code="Timeout", transient=True)
    if isinstance(error, nats.errors.AuthorizationError):
        return ActionError(KIND, f"{what}: authorization violation", code="AuthorizationError")
    if isinstance(
        error,
        (
            nats.errors.ConnectionClosedError,
            nats.errors.NoServersError,
            nats.errors.StaleConnectionError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.ConnectionDrainingError,
            ConnectionError,
            OSError,
        ),
    ):
        return ActionError(
            KIND,
            redact(f"{what}: connection lost ({type(error).__name__})", secrets),
            code="ConnectionError",
            transient=True,
        )
    if isinstance(error, nats.errors.BadSubjectError):
        return ActionError(KIND, f"{what}: invalid subject", code="InvalidSubject")
    if isinstance(error, nats.errors.MaxPayloadError):
        return ActionError(KIND, f"{what}: message larger than the server's max_payload",
                           code="MaxPayload")  # fmt: skip
    if isinstance(error, (ValueError, TypeError)):
        return ActionError(KIND, redact(f"{what}: {error}", secrets), code="InvalidArgument")
    if isinstance(error, nats.errors.Error):
        name = type(error).__name__.removesuffix("Error") or "NatsError"
        return ActionError(KIND, redact(f"{what}: {error}", secrets), code=name)
    raise error


# --------------------------------------------------------------------------- connection


class NatsConnection:
    """A connection to one NATS server, usable from any number of threads.

    It owns a private asyncio loop on a daemon thread; the nats-py client lives on that loop
    only, and callers submit coroutines to it and wait with a timeout. If the server drops
    the connection, the next call connects again (nats-py's own reconnect loop is off: it
    retries for minutes while calls wait, where a step would rather fail fast and retry).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        name: str = "atomicops",
    ) -> None:
        self.url = url if "://" in url else f"nats://{url}"
        parts = urlsplit(self.url)
        # Messages name host and port only: the URL may carry user:password@.
        self.where = f"{parts.hostname or '127.0.0.1'}:{parts.port or 4222}"
        self.connect_timeout = float(connect_timeout)
        self.request_timeout = float(request_timeout)
        self.name = name
        self._user, self._password, self._token = user, password, token
        self._secrets = frozenset(s for s in (password, token, parts.password) if s)
        self._nc: Client | None = None
        self._connect_lock = asyncio.Lock()
        self._state_lock = threading.Lock()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name=f"nats-{self.where}", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> NatsConnection:
        """Build from a plan connection mapping (``{kind: nats, url: ..., ...}``)."""
        refuse_unknown_keys(KIND, "nats connection", spec, CONNECTION_KEYS)
        options: dict[str, Any] = {
            k: spec[k]
            for k in ("user", "password", "token", "connect_timeout", "request_timeout", "name")
            if spec.get(k) is not None
        }
        if "url" in spec and not spec["url"]:
            # A plan var left unset must not quietly reach whatever NATS runs on this machine.
            raise ActionError(
                KIND, "the nats connection has no url (is its var set?)", code="InvalidConnection"
            )
        return cls(str(spec.get("url") or DEFAULT_URL), **options)

    def __repr__(self) -> str:
        return f"NatsConnection({self.where!r})"

    # -- the loop

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            # Whatever a cancelled call left behind ends here, not in a warning at exit.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def call(
        self,
        operation: Callable[[Client], Awaitable[T]],
        what: str,
        timeout: float | None = None,
    ) -> T:
        """Run ``operation(client)`` on the connection's loop; wait at most about ``timeout``.

        Raises :class:`ActionError` (``ConnectionError``, ``Timeout``, JetStream codes...).
        """
        limit = self.request_timeout if timeout is None else float(timeout)
        if threading.current_thread() is self._thread:
            # .result() here would wait for the very loop that has to produce it.
            raise RuntimeError("NatsConnection.call from its own event loop would deadlock")

        async def run() -> T:
            client = await self._client()
            return await operation(client)

        with self._state_lock:
            if self._closed:
                raise ActionError(
                    KIND, f"{what}: connection to {self.where} is closed", code="ConnectionClosed"
                )
            future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        # Connecting may come first, so its budget is added to the call's.
        connected = self._nc is not None and self._nc.is_connected
        budget = limit + GRACE + (0 if connected else self.connect_timeout * 2 + GRACE)
        try:
            return future.result(budget)
        except concurrent.futures.CancelledError:
            raise ActionError(
                KIND, f"{what}: connection to {self.where} was closed", code="ConnectionClosed"
            ) from None
        except TimeoutError as exc:
            if not future.done():
                future.cancel()
                raise ActionError(
                    KIND, f"{what}: no answer within {limit:g} s", code="Timeout", transient=True
                ) from None
            raise translate_error(exc, what, self._secrets) from None
        except Exception as exc:  # noqa: BLE001 - translate_error re-raises what it cannot map
            raise translate_error(exc, what, self._secrets) from None

    async def _client(self) -> Client:
        nc = self._nc
        if nc is not None and nc.is_connected:
            return nc
        async with self._connect_lock:
            if self._nc is not None and self._nc.is_connected:
                return self._nc
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.close()
            self._nc = None
            self._nc = await self._connect()
            return self._nc

    async def _connect(self) -> Client:
        errors: list[BaseException] = []

        async def on_error(error: Exception) -> None:
            # nats-py reports each failed attempt here (and logs it by default); they
            # become the cause in our own error instead.
            errors.append(error)

        nc = Client()
        try:
            await asyncio.wait_for(
                nc.connect(
                    servers=[self.url],
                    name=self.name,
                    connect_timeout=self.connect_timeout,  # type: ignore[arg-type]
                    # Fail fast: no reconnect loop, and the fewest attempts nats-py allows
                    # (1 means two tries; 0 would mean forever).
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.1,  # type: ignore[arg-type]
                    error_cb=on_error,
                    user=self._user,
                    password=self._password,
                    token=self._token,
                ),
                timeout=self.connect_timeout * 2 + GRACE,
            )
        except BaseException as exc:  # also the cancellation of a call that timed out
            try:
                await nc.close()
            except Exception:  # noqa: BLE001, S110 - the connect error is what matters
                pass
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise self._connect_error([*errors, exc]) from None
        return nc

    def _connect_error(self, causes: list[BaseException]) -> ActionError:
        # The server answers bad credentials with -ERR 'Authorization Violation' and closes
        # the socket; which of the two the client notices first varies, so look at all.
        if any(
            isinstance(c, nats.errors.AuthorizationError) or "authorization" in str(c).lower()
            for c in causes
        ):
            return ActionError(
                KIND,
                f"cannot connect to NATS at {self.where}: authorization violation "
                "(check user/password/token)",
                code="AuthorizationError",
            )
        cause = causes[0]  # the first failure says most (refused, timed out...)
        if isinstance(cause, (TimeoutError, asyncio.TimeoutError)):
            reason = f"no answer within {self.connect_timeout:g} s"
        else:
            reason = type(cause).__name__
            text = str(cause)
            if text:
                reason += f": {text}"
        return ActionError(
            KIND,
            redact(f"cannot connect to NATS at {self.where}: {reason}", self._secrets),
            code="ConnectionError",
            transient=True,
        )

    def open(self) -> NatsConnection:
        """Connect now (calls would connect on first use); raise ActionError if it fails."""
        self.call(_nothing, f"connect to {self.where}", timeout=self.connect_timeout)
        return self

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Flush and close the client, stop the loop and its thread. Idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        # Both are queued even if the loop thread has not started running yet.
        future = asyncio.run_coroutine_threadsafe(self._shutdown(timeout), self._loop)
        try:
            future.result(timeout + GRACE)
        except Exception:  # noqa: BLE001, S110 - closing must not mask the caller's outcome
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    async def _shutdown(self, timeout: float) -> None:
        nc, self._nc = self._nc, None
        if nc is None or nc.is_closed:
            return
        # Flush (a PING/PONG round trip), so whatever was published has reached the server,
        # then close. Not drain(): it waits until every subscription's queue is consumed,
        # and a subscription nobody reads (a reader broken off mid-batch) never is.
        try:
            if nc.is_connected:
                await nc.flush(timeout=timeout)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001, S110 - closing anyway
            pass
        await nc.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- messages

    def publish(
        self,
        subject: str,
        data: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        jetstream: bool | None = None,
        stream: str | None = None,
        msg_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Publish one message; ``{stream, seq}`` from JetStream's ack, or ``{}`` for core NATS.

        ``jetstream=None`` publishes through JetStream when a stream captures ``subject`` and
        as a core message otherwise; ``True`` fails with ``NoResponders`` when no stream
        does, before anything is sent; ``False`` always sends a core message (and skips the
        stream lookup, one request, that the other two make). ``msg_id`` sets
        ``Nats-Msg-Id``, so a retried publish within the stream's duplicate window is stored
        once (the ack says ``duplicate``). ``stream`` makes the server refuse the message
        unless that stream is the one that captures it.
        """
        payload = encode_data(data)
        hdrs = {str(k): str(v) for k, v in (headers or {}).items()}
        if msg_id:
            hdrs[MSG_ID_HEADER] = str(msg_id)
        limit = self.request_timeout if timeout is None else float(timeout)

        async def go(nc: Client) -> dict[str, Any]:
            # Which stream takes the subject is asked first, even when JetStream is asked
            # for: a JetStream publish that no stream takes goes to the core subscribers of
            # the subject anyway and then waits out the whole timeout for an ack.
            captured = False if jetstream is False else await _captured(nc, subject, limit)
            if jetstream and not captured:
                raise nats.js.errors.NoStreamResponseError
            if captured:
                js = nc.jetstream(timeout=limit)
                ack = await js.publish(
                    subject, payload, timeout=limit, stream=stream, headers=hdrs or None
                )
                return dict(plain(ack))
            await nc.publish(subject, payload, headers=hdrs or None)
            # A flush (PING/PONG) proves the server has the message before we report success.
            await nc.flush(timeout=limit)  # type: ignore[arg-type]
            return {}

        return self.call(go, f"publish {subject}", limit)

    def request(
        self,
        subject: str,
        data: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send a request and wait for one reply: ``{data, json, headers?}``."""
        payload = encode_data(data)
        hdrs = {str(k): str(v) for k, v in (headers or {}).items()} or None
        limit = self.request_timeout if timeout is None else float(timeout)

        async def go(nc: Client) -> dict[str, Any]:
            return _reply(await nc.request(subject, payload, timeout=limit, headers=hdrs))

        return self.call(go, f"request {subject}", limit)

    # -- streams

    def stream_add(
        self, config: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Create a stream (idempotent for an identical config); its info as plain data."""
        name = str(config.get("name"))
        what = f"stream_add {name}"
        try:
            built = build_config(api.StreamConfig, config)
        except (TypeError, ValueError) as exc:
            raise ActionError(KIND, f"{what}: {exc}", code="InvalidArgument") from None
        limit = self._limit(timeout)

        async def go(nc: Client) -> dict[str, Any]:
            return dict(plain(await nc.jsm(timeout=limit).add_stream(built)))

        return self.call(go, what, limit)

    def stream_info(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        """``{config, state: {messages, bytes, first_seq, last_seq, ...}, created, ...}``."""
        limit = self._limit(timeout)

        async def go(nc: Client) -> dict[str, Any]:
            return dict(plain(await nc.jsm(timeout=limit).stream_info(name)))

        return self.call(go, f"stream_info {name}", limit)

    def stream_state(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        """The stream's ``state`` (messages, bytes, first_seq, last_seq, consumer_count...)."""
        return dict(self.stream_info(name, timeout=timeout)["state"])

    def stream_delete(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        limit = self._limit(timeout)

        async def go(nc: Client) -> dict[str, Any]:
            await _api(nc, f"STREAM.DELETE.{_token(name)}", None, limit)
            return {"deleted": True}

        return self.call(go, f"stream_delete {name}", limit)

    def stream_purge(
        self,
        name: str,
        *,
        subject: str | None = None,
        seq: int | None = None,
        keep: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Remove messages (all, or up to ``seq``, or all but ``keep``): ``{purged: n}``."""
        limit = self._limit(timeout)
        request = {"filter": subject, "seq": seq, "keep": keep}
        request = {k: v for k, v in request.items() if v is not None}

        async def go(nc: Client) -> dict[str, Any]:
            resp = await _api(nc, f"STREAM.PURGE.{_token(name)}", request, limit)
            return {"purged": int(resp.get("purged", 0))}

        return self.call(go, f"stream_purge {name}", limit)

    def streams(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """Info of every stream of the account, by name."""
        limit = self._limit(timeout)

        async def go(nc: Client) -> list[dict[str, Any]]:
            items = await _list(nc, "STREAM.LIST", "streams", limit)
            infos = [plain(api.StreamInfo.from_response(i)) for i in items]
            return sorted(infos, key=lambda i: str(i["config"].get("name")))

        return self.call(go, "list streams", limit)

    # -- consumers

    def consumer_add(
        self, stream: str, config: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Create a (durable) consumer on ``stream``; its info as plain data."""
        what = f"consumer_add {stream}/{config.get('durable_name') or config.get('name')}"
        try:
            built = build_config(api.ConsumerConfig, config)
        except (TypeError, ValueError) as exc:
            raise ActionError(KIND, f"{what}: {exc}", code="InvalidArgument") from None
        limit = self._limit(timeout)

        async def go(nc: Client) -> dict[str, Any]:
            info = await nc.jsm(timeout=limit).add_consumer(_token(stream), config=built)
            return dict(plain(info))

        return self.call(go, what, limit)

    def consumer_delete(
        self, stream: str, name: str, *, timeout: float | None = None
    ) -> dict[str, Any]:
        limit = self._limit(timeout)

        async def go(nc: Client) -> dict[str, Any]:
            await _api(nc, f"CONSUMER.DELETE.{_token(stream)}.{_token(name)}", None, limit)
            return {"deleted": True}

        return self.call(go, f"consumer_delete {stream}/{name}", limit)

    def consumers(self, stream: str, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """Info of every consumer of ``stream``, by name."""
        limit = self._limit(timeout)

        async def go(nc: Client) -> list[dict[str, Any]]:
            items = await _list(nc, f"CONSUMER.LIST.{_token(stream)}", "consumers", limit)
            infos = [plain(api.ConsumerInfo.from_response(i)) for i in items]
            return sorted(infos, key=lambda i: str(i["name"]))

        return self.call(go, f"list consumers of {stream}", limit)

    # -- reading a stream

    def iter_stream(
        self,
        stream: str,
        start_seq: int = 1,
        batch: int = 256,
        *,
        end_seq: int | None = None,
        timeout: float | None = None,
    ) -> Generator[StreamMessage, None, None]:
        """Every message of ``stream`` from ``start_seq`` in sequence order, in batches.

        The iteration ends at ``end_seq`` or, by default, at the stream's last sequence when
        it began, so it terminates while producers keep publishing. Deleted sequences are
        skipped. It reads through an ephemeral, unacknowledged pull consumer that is deleted
        when the iteration ends (exhausted, broken off or failed); a killed process leaves
        it for the server to drop after ``READER_IDLE_SECONDS``. Nothing durable is created.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        state = self.stream_state(stream, timeout=timeout)
        last = int(state.get("last_seq", 0))
        if end_seq is not None:
            last = min(last, int(end_seq))
        first = max(int(start_seq), int(state.get("first_seq", 0)), 1)
        if int(state.get("messages", 0)) == 0 or first > last:
            return
        limit = self._limit(timeout)
        reader = _Reader(stream, first)
        try:
            self.call(lambda nc: reader.open(nc, limit), f"read {stream}", limit)
            while True:
                want = min(batch, last - reader.position + 1)

                async def next_batch(
                    nc: Client, size: int = want
                ) -> tuple[list[StreamMessage], bool]:
                    return await reader.next_batch(nc, size, limit)

                messages, exhausted = self.call(next_batch, f"read {stream}", limit)
                for message in messages:
                    if message.seq > last:
                        return
                    yield message
                    if message.seq == last:
                        return
                if exhausted or not messages:
                    return
        finally:
            if not self._closed:
                try:
                    self.call(reader.close, f"delete reader of {stream}", limit)
                except (ActionError, RuntimeError):
                    # The server drops an idle reader by itself (inactive_threshold). A
                    # RuntimeError: the abandoned generator was collected on the loop thread.
                    pass

    def _limit(self, timeout: float | None) -> float:
        return self.request_timeout if timeout is None else float(timeout)


async def _nothing(nc: Client) -> None:
    return None


def _token(name: str) -> str:
    """A stream or consumer name as one subject token; anything else would address a
    different API subject (``a.b`` -> STREAM.INFO.a.b), so it is refused here."""
    if not name or any(c in name for c in ". *>\t\r\n"):
        raise ValueError(f"invalid name {name!r}: no '.', '*', '>' or whitespace allowed")
    return name


async def _api(
    nc: Client, subject: str, payload: Mapping[str, Any] | None, timeout: float
) -> dict[str, Any]:
    """One JetStream API request; raises nats-py's APIError subclasses on an error reply."""
    data = json.dumps(payload).encode() if payload is not None else b""
    try:
        msg = await nc.request(f"{JS_API}.{subject}", data, timeout=timeout)
    except nats.errors.NoRespondersError:
        raise nats.js.errors.ServiceUnavailableError(
            code=503, description="no JetStream answered (is JetStream enabled on the server?)"
        ) from None
    resp = json.loads(msg.data)
    if "error" in resp:
        nats.js.errors.APIError.from_error(resp["error"])
    return dict(resp)


async def _list(nc: Client, subject: str, key: str, timeout: float) -> list[dict[str, Any]]:
    """Every page of a JetStream list API (they answer ``limit`` items at a time)."""
    items: list[dict[str, Any]] = []
    while True:
        resp = await _api(nc, subject, {"offset": len(items)}, timeout)
        page = resp.get(key) or []
        items.extend(page)
        if not page or len(items) >= int(resp.get("total", 0)):
            return items


async def _captured(nc: Client, subject: str, timeout: float) -> bool:
    """Whether some stream stores messages published to ``subject``."""
    try:
        resp = await _api(nc, "STREAM.NAMES", {"subject": subject}, timeout)
    except nats.js.errors.ServiceUnavailableError:
        return False  # no JetStream at all: a core publish is all there is
    return bool(resp.get("streams"))


class _Reader:
    """An ephemeral pull consumer read with ``no_wait`` requests on a private inbox.

    nats-py's ``fetch`` falls back to a long-poll when a batch comes up short; reading with
    ``no_wait`` only, the server answers each request at once (messages, then a 404 status
    when it runs out), so a read never waits for messages that will not come.
    """

    def __init__(self, stream: str, start_seq: int) -> None:
        self.stream = _token(stream)
        self.position = start_seq
        self.name = ""
        self.inbox = ""
        self.sub: Any = None

    async def open(self, nc: Client, timeout: float) -> None:
        self.name = READER_PREFIX + uuid.uuid4().hex
        self.inbox = nc.new_inbox()
        self.sub = await nc.subscribe(self.inbox)
        config = api.ConsumerConfig(
            name=self.name,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.position,
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=READER_IDLE_SECONDS,
            mem_storage=True,
            num_replicas=1,
        )
        await nc.jsm(timeout=timeout).add_consumer(self.stream, config=config)

    async def next_batch(
        self, nc: Client, size: int, timeout: float
    ) -> tuple[list[StreamMessage], bool]:
        """Up to ``size`` messages; ``True`` when the stream had no more."""
        request = json.dumps({"batch": size, "no_wait": True}).encode()
        await nc.publish(
            f"{JS_API}.CONSUMER.MSG.NEXT.{self.stream}.{self.name}", request, reply=self.inbox
        )
        out: list[StreamMessage] = []
        while len(out) < size:
            msg = await self.sub.next_msg(timeout=timeout)
            if not msg.reply:
                # A status from the server, not a stored message (those carry their
                # metadata in a $JS.ACK reply subject, whatever the ack policy).
                status = str(msg.headers.get("Status")) if msg.headers else ""
                if status in ("404", "408"):  # no (more) messages
                    return out, True
                if status == "100":  # heartbeat / flow control
                    continue
                description = msg.headers.get("Description") if msg.headers else None
                code = int(status) if status.isdigit() else None
                raise nats.js.errors.APIError(code=code, description=description)
            meta = msg.metadata
            headers = _str_headers(msg.headers)
            out.append(StreamMessage(meta.sequence.stream, msg.subject, msg.data, headers))
            self.position = meta.sequence.stream + 1
            if meta.num_pending == 0:
                return out, True
        return out, False

    async def close(self, nc: Client) -> None:
        try:
            if self.sub is not None:
                await self.sub.unsubscribe()
        finally:
            if self.name:
                try:
                    await _api(nc, f"CONSUMER.DELETE.{self.stream}.{self.name}", None, 5.0)
                except nats.js.errors.NotFoundError:
                    pass  # already gone (stream deleted, or the server timed it out)
