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
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import api

from atomicops.actions.common import redact, refuse_unknown_keys
from atomicops.actions.nats_config import _reply, build_config, encode_data, plain
from atomicops.actions.nats_errors import translate_error
from atomicops.actions.nats_names import CONNECTION_KEYS, KIND, _token
from atomicops.actions.nats_reader import StreamMessage, _api, _captured, _list, _Reader
from atomicops.errors import ActionError

T = TypeVar("T")

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 10.0
# Our own deadline on a submitted call sits a little behind nats-py's, so that its more
# precise error (no responders, API error...) normally wins the race.
GRACE = 1.0
CLOSE_TIMEOUT = 5.0

MSG_ID_HEADER = "Nats-Msg-Id"


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

