"""JetStream API requests, and reading a stream in order through an ephemeral consumer that
leaves nothing behind (what ``NatsConnection.iter_stream`` uses)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import api

from atomicops.actions.nats_config import _str_headers
from atomicops.actions.nats_names import READER_PREFIX, _token

# A reader (named with READER_PREFIX) is deleted when the iteration ends; should the process
# die first, the server drops it after this idle time.
READER_IDLE_SECONDS = 30.0

JS_API = "$JS.API"


class StreamMessage(NamedTuple):
    """One stored message, as :meth:`NatsConnection.iter_stream` yields it."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None


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
