"""JetStream inventory: every stream with its subjects, counts and a checksum of its content,
and every consumer, so that ``rehearse`` can prove a rollback left the bus as it found it.

``snapshot(url)`` reads every stored message once, through an ephemeral reader that is
deleted afterwards (see :meth:`NatsConnection.iter_stream`): the cost is one pass over all
stream data (network and SHA-256), in batches of 256 messages. ``checksums=False`` skips it
for streams too large to read, keeping counts and sequences.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from atomicops.actions.nats_connection import NatsConnection
from atomicops.actions.nats_names import READER_PREFIX
from atomicops.errors import ActionError
from atomicops.inventory.compare import diff  # noqa: F401 - one diff for every source

Entry = dict[str, Any]
Inventory = dict[str, list[Entry] | dict[str, str]]

STREAMS = "jetstream.streams"
CONSUMERS = "jetstream.consumers"

# Server-managed metadata (``_nats.ver``, ``_nats.level``...) changes with the server version,
# not with anything a plan did.
SERVER_METADATA_PREFIX = "_nats."
CONSUMER_FIELDS = (
    "durable_name", "deliver_policy", "ack_policy", "filter_subject", "filter_subjects",
    "deliver_subject", "deliver_group", "max_deliver",
)  # fmt: skip


def snapshot(
    target: str | NatsConnection,
    *,
    checksums: bool = True,
    connect_timeout: float = 5.0,
) -> Inventory:
    """``{"jetstream.streams": [entry], "jetstream.consumers": [entry]}``, sorted by id.

    ``target`` is a ``nats://`` URL or an open :class:`NatsConnection` (e.g. the handle the
    nats action kind opened for the run). Consumers are listed before streams are read, and
    the readers this module creates are never listed, so a snapshot does not see itself.
    A type that cannot be listed is ``{"error": code}``.
    """
    own = isinstance(target, str)
    if isinstance(target, str):
        conn = NatsConnection(target, connect_timeout=connect_timeout)
    else:
        conn = target
    try:
        return _take(conn, checksums)
    except ActionError as exc:
        # The bus could not be listed (down, no JetStream...): say so rather than report
        # an empty bus, which a diff would take for "everything was removed".
        error = {"error": exc.code or "ActionError"}
        return {CONSUMERS: dict(error), STREAMS: dict(error)}
    finally:
        if own:
            conn.close()


def _take(conn: NatsConnection, checksums: bool) -> Inventory:
    consumers: list[Entry] = []
    streams: list[Entry] = []
    for info in conn.streams():
        name = str(info["config"]["name"])
        try:
            consumers.extend(_consumer_entry(name, c) for c in conn.consumers(name)
                             if not str(c.get("name", "")).startswith(READER_PREFIX))  # fmt: skip
            streams.append(_stream_entry(conn, info, checksums))
        except ActionError as exc:
            if exc.code != "StreamNotFound":
                raise
            # Deleted while we looked: it is not there. Drop what we took of it.
            consumers = [c for c in consumers if c["stream"] != name]
    return {
        CONSUMERS: sorted(consumers, key=lambda e: e["id"]),
        STREAMS: sorted(streams, key=lambda e: e["id"]),
    }


def _stream_entry(conn: NatsConnection, info: Mapping[str, Any], checksums: bool) -> Entry:
    config, state = info["config"], info["state"]
    name = str(config["name"])
    entry: Entry = {
        "id": name,
        "subjects": sorted(config.get("subjects") or []),
        "storage": config.get("storage"),
        "retention": config.get("retention"),
        "messages": int(state.get("messages", 0)),
        "first_seq": int(state.get("first_seq", 0)),
        "last_seq": int(state.get("last_seq", 0)),
        "bytes": int(state.get("bytes", 0)),
    }
    metadata = {k: v for k, v in (config.get("metadata") or {}).items()
                if not k.startswith(SERVER_METADATA_PREFIX)}  # fmt: skip
    if metadata:
        entry["metadata"] = dict(sorted(metadata.items()))
    if checksums:
        entry["checksum"] = content_checksum(conn, name, end_seq=entry["last_seq"])
    return entry


def content_checksum(conn: NatsConnection, stream: str, *, end_seq: int | None = None) -> str:
    """``sha256:<hex>`` over (sequence, subject, data) of every message up to ``end_seq``.

    Each field is length-prefixed, so no two different contents hash alike by shifting bytes
    between subject and data. Headers are left out: the same data republished by a copy job
    may carry different ``Nats-Msg-Id`` headers and is still the same content.
    """
    digest = hashlib.sha256()
    for message in conn.iter_stream(stream, end_seq=end_seq):
        subject = message.subject.encode("utf-8")
        digest.update(message.seq.to_bytes(8, "big"))
        digest.update(len(subject).to_bytes(4, "big") + subject)
        digest.update(len(message.data).to_bytes(8, "big") + message.data)
    return "sha256:" + digest.hexdigest()


def _consumer_entry(stream: str, info: Mapping[str, Any]) -> Entry:
    config = info.get("config") or {}
    entry: Entry = {"id": f"{stream}/{info['name']}", "stream": stream}
    for key in CONSUMER_FIELDS:
        if config.get(key) is not None:
            entry[key] = config[key]
    return entry


# --------------------------------------------------------------------------- diff
