"""3.4: copy the JetStream discovery stream into the MisterSmithStreams DynamoDB table.

Batched ``batch_write_item`` (25 items per call, the API's limit) with ``UnprocessedItems``
retried under exponential backoff; progress reported; a high-water mark journalled every few
batches, so a killed copy resumes after the last sequence it wrote. The undo deletes exactly
the claimed sequence range by key, in batches (never a scan, and no read of the range).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

from atomicops.actions.base import ActionContext, connection_of
from atomicops.errors import ActionError

BATCH = 25  # batch_write_item takes at most 25 requests
MARK_EVERY = 10  # batches between journalled high-water marks
MAX_TRIES = 8


# The AWS calls each function makes, for `atomicops policy` (atomicops/policy/calls.py).
AWS_CALLS = {
    "stream_range": [],
    "copy_to_dynamodb": {"dynamodb.batch_write_item": {"TableName": "table"}, "dynamodb.query": {"TableName": "table"}},
    "delete_copied": {"dynamodb.batch_write_item": {"TableName": "table"}, "dynamodb.query": {"TableName": "table"}},
    "verify_copy": {"dynamodb.query": {"TableName": "table"}},
}

def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write(ddb: Any, table: str, requests: list[dict[str, Any]]) -> None:
    """One batch_write_item, retrying what DynamoDB leaves unprocessed (throttling)."""
    pending: dict[str, list[dict[str, Any]]] = {table: requests}
    for attempt in range(MAX_TRIES):
        try:
            result = ddb.batch_write_item(RequestItems=pending)
        except ddb.exceptions.ResourceNotFoundException:
            raise ActionError("call", f"table {table} does not exist", code="ResourceNotFoundException") from None
        pending = result.get("UnprocessedItems") or {}
        if not pending:
            return
        time.sleep(min(0.05 * 2**attempt, 5.0))
    raise ActionError("call", f"{table}: items still unprocessed after {MAX_TRIES} tries", code="Throttled", transient=True)


def _item_hash(seq: int, subject: str, data: bytes) -> bytes:
    return hashlib.sha256(f"{seq}\0{subject}\0".encode() + data).digest()


def _checksum(hashes: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in hashes:
        h.update(part)
    return h.hexdigest()


def stream_summary(ctx: ActionContext, stream: str, first: int, last: int) -> tuple[int, str]:
    """Count and checksum of the stream's messages first..last, in sequence order."""
    bus = connection_of(ctx, "nats")
    count, hashes = 0, []
    if last >= first:
        for msg in bus.iter_stream(stream, start_seq=first, end_seq=last):
            count += 1
            hashes.append(_item_hash(msg.seq, msg.subject, msg.data))
    return count, _checksum(hashes)


def _table_items(ddb: Any, table: str, stream: str, first: int, last: int) -> Iterator[dict[str, Any]]:
    pages = ddb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="StreamName = :s AND SequenceNumber BETWEEN :a AND :b",
        ExpressionAttributeValues={":s": {"S": stream}, ":a": {"N": str(first)}, ":b": {"N": str(last)}},
        ConsistentRead=True,
    )
    for page in pages:
        yield from page.get("Items", [])


def stream_range(ctx: ActionContext, stream: str) -> dict[str, Any]:
    """The sequences the copy will take: the stream as it is now."""
    state = connection_of(ctx, "nats").stream_state(stream)
    return {"first_seq": int(state["first_seq"]), "last_seq": int(state["last_seq"]), "messages": int(state["messages"])}


def copy_to_dynamodb(ctx: ActionContext, stream: str, table: str, first_seq: int, last_seq: int) -> dict[str, Any]:
    bus = connection_of(ctx, "nats")
    ddb = connection_of(ctx, "aws").client("dynamodb")
    first, last = int(first_seq), int(last_seq)
    total = max(0, last - first + 1)
    start = first
    if ctx.resume_mark is not None:  # a killed copy: go on after what it wrote
        start = max(first, int(ctx.resume_mark) + 1)
    done = start - first
    if last >= start:
        messages = bus.iter_stream(stream, start_seq=start, end_seq=last)
        for n, batch in enumerate(_batches(messages, BATCH), 1):
            _write(ddb, table, [
                {"PutRequest": {"Item": {
                    "StreamName": {"S": stream},
                    "SequenceNumber": {"N": str(m.seq)},
                    "Subject": {"S": m.subject},
                    "Data": {"B": m.data},
                }}}
                for m in batch
            ])
            done += len(batch)
            mark = batch[-1].seq if n % MARK_EVERY == 0 else None
            ctx.progress(done, total, f"messages copied to {table}", mark=mark)
            if ctx.cancel.is_set():
                raise ActionError("call", "copy cancelled", code="Cancelled")
    count, checksum = stream_summary(ctx, stream, first, last)
    ctx.progress(count, total, f"messages copied to {table}", mark=last)
    return {"copied": count, "checksum": checksum}


def _anything_copied(ddb: Any, table: str, stream: str, first: int, last: int) -> bool:
    """One item of the range is there (a single one-item query, not a read of the range)."""
    found = ddb.query(
        TableName=table,
        KeyConditionExpression="StreamName = :s AND SequenceNumber BETWEEN :a AND :b",
        ExpressionAttributeValues={":s": {"S": stream}, ":a": {"N": str(first)}, ":b": {"N": str(last)}},
        ProjectionExpression="SequenceNumber",
        Limit=1,
    )
    return bool(found.get("Items"))


def delete_copied(ctx: ActionContext, stream: str, table: str, first_seq: int, last_seq: int) -> dict[str, Any]:
    """Delete the claimed range's keys, in batches of 25, without reading the items first.

    The keys are known (the stream's name and each sequence of the claimed range), and a
    DeleteRequest of an absent key is a no-op, so this deletes exactly what the copy may have
    written and nothing else; reading the range back first (a paged query) cost as much as
    the deletes. An empty range (the copy step's undo already ran, or it never wrote) is
    found with one one-item query and costs nothing more."""
    ddb = connection_of(ctx, "aws").client("dynamodb")
    first, last = int(first_seq), int(last_seq)
    deleted = 0
    try:
        if last < first or not _anything_copied(ddb, table, stream, first, last):
            return {"deleted": 0}
        keys = (
            {"DeleteRequest": {"Key": {"StreamName": {"S": stream}, "SequenceNumber": {"N": str(seq)}}}}
            for seq in range(first, last + 1)
        )
        total = last - first + 1
        for batch in _batches(keys, BATCH):
            _write(ddb, table, batch)
            deleted += len(batch)
            ctx.progress(deleted, total, f"keys deleted from {table}")
    except ddb.exceptions.ResourceNotFoundException:
        raise ActionError("call", f"table {table} does not exist", code="ResourceNotFoundException") from None
    return {"deleted": deleted}


def verify_copy(ctx: ActionContext, stream: str, table: str, first_seq: int | None = None,
                last_seq: int | None = None) -> dict[str, Any]:
    """Count and checksum of the stream range against the items in the table."""
    ddb = connection_of(ctx, "aws").client("dynamodb")
    if first_seq is None or last_seq is None:
        state = connection_of(ctx, "nats").stream_state(stream)
        first_seq, last_seq = int(state["first_seq"]), int(state["last_seq"])
    first, last = int(first_seq), int(last_seq)
    stream_count, stream_checksum = stream_summary(ctx, stream, first, last)
    hashes, table_count = [], 0
    try:
        for item in _table_items(ddb, table, stream, first, last):
            table_count += 1
            hashes.append(_item_hash(int(item["SequenceNumber"]["N"]), item["Subject"]["S"], bytes(item["Data"]["B"])))
    except ddb.exceptions.ResourceNotFoundException:
        raise ActionError("call", f"table {table} does not exist", code="ResourceNotFoundException") from None
    table_checksum = _checksum(hashes)
    return {
        "match": stream_count == table_count and stream_checksum == table_checksum,
        "stream_count": stream_count,
        "table_count": table_count,
        "stream_checksum": stream_checksum,
        "table_checksum": table_checksum,
    }
