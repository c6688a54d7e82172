"""3.4: copy the JetStream discovery stream into the MisterSmithStreams DynamoDB table.

Batched ``batch_write_item`` (25 items per call, the API's limit) from a few concurrent
writers, with ``UnprocessedItems`` retried under exponential backoff; progress reported; a
high-water mark journalled every few batches, so a killed copy resumes after the last sequence
it wrote; the count and checksum computed from the messages as they are copied. The undo
deletes exactly the claimed sequence range by key, in batches, through the same writers (never
a scan, and no read of the range).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from threading import Event
from typing import Any

from atomicops.actions.base import ActionContext, connection_of
from atomicops.errors import ActionError

BATCH = 25  # batch_write_item takes at most 25 requests
MARK_EVERY = 10  # batches between journalled high-water marks
# Concurrent batch_write_item calls. One writer leaves the table idle while the next batch is
# read and encoded, and the reader idle while a batch is in flight; a few overlap the two and
# the calls' round trips. More would mostly raise throttling (retried with backoff).
WRITERS = 4
# A batch is resent while DynamoDB throttles it (UnprocessedItems, or the whole call refused
# with ProvisionedThroughputExceededException once botocore's own retries gave up), waiting
# 0.05 s doubling to LONGEST_WAIT between tries, for as long as the answers make progress;
# STALLED_TRIES answers in a row that write nothing more fail it (transient: the step retry
# runs the copy again; its puts are by key, so a rewrite is harmless). AWS asks for
# exponential back-off.
STALLED_TRIES = 10
LONGEST_WAIT = 20.0
_pause = time.sleep  # tests make the waits instant


# The AWS calls each function makes, for `atomicops policy` (atomicops/policy/calls.py).
AWS_CALLS = {
    "stream_range": [],
    "copy_to_dynamodb": {"dynamodb.batch_write_item": {"TableName": "table"}, "dynamodb.query": {"TableName": "table"}},
    "delete_copied": {"dynamodb.batch_write_item": {"TableName": "table"}, "dynamodb.query": {"TableName": "table"}},
    "verify_copy": {"dynamodb.query": {"TableName": "table"}},
    "probe_copy": {"dynamodb.get_item": {"TableName": "table"}, "dynamodb.query": {"TableName": "table"}},
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
    """One batch_write_item, resending what DynamoDB leaves unprocessed (throttling) while
    it makes progress (see :data:`STALLED_TRIES`)."""
    pending: dict[str, list[dict[str, Any]]] = {table: requests}
    left, stalled, code = len(requests), 0, "Throttled"
    while True:
        try:
            pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            code = "Throttled"
        except ddb.exceptions.ResourceNotFoundException:
            raise ActionError("call", f"table {table} does not exist", code="ResourceNotFoundException") from None
        except ddb.exceptions.ProvisionedThroughputExceededException:
            code = "ProvisionedThroughputExceededException"  # none of it was written: all still pending
        now = sum(len(items) for items in pending.values())
        if not now:
            return
        stalled = 0 if now < left else stalled + 1
        left = now
        if stalled >= STALLED_TRIES:
            raise ActionError("call", f"{table}: {now} item(s) still throttled after {STALLED_TRIES} tries that wrote "
                              "nothing more", code=code, transient=True)
        # Full jitter: the writers throttled together do not come back together.
        _pause(random.uniform(0.5, 1.0) * min(0.05 * 2**stalled, LONGEST_WAIT))


def _write_in_order(
    ddb: Any, table: str, batches: Iterable[tuple[list[dict[str, Any]], int]],
    settled: Callable[[int, int], None], cancel: Event | None = None,
) -> None:
    """Write ``(requests, last_seq)`` batches through ``WRITERS`` concurrent writers while the
    next ones are made (read from the stream, encoded).

    ``settled(last_seq, size)`` is called for each batch in the order given, once it is
    written: when it is called for batch n, every batch before n is written too, so a mark
    taken there never passes a batch still in flight. A failed batch raises here before any
    later batch is settled. Writes already sent finish before this returns or raises (their
    keys are in the claimed range, which the undo deletes); queued ones are dropped."""
    in_flight: deque[tuple[Future[None], int, int]] = deque()

    def settle_oldest() -> None:
        write, last_seq, size = in_flight.popleft()
        write.result()
        settled(last_seq, size)

    pool = ThreadPoolExecutor(WRITERS, thread_name_prefix=f"write-{table}")
    try:
        for requests, last_seq in batches:
            in_flight.append((pool.submit(_write, ddb, table, requests), last_seq, len(requests)))
            while len(in_flight) > WRITERS:
                settle_oldest()
            if cancel is not None and cancel.is_set():
                raise ActionError("call", "copy cancelled", code="Cancelled")
        while in_flight:
            settle_oldest()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _item_hash(seq: int, subject: str, data: bytes) -> bytes:
    return hashlib.sha256(f"{seq}\0{subject}\0".encode() + data).digest()


def _checksum(hashes: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in hashes:
        h.update(part)
    return h.hexdigest()


def _messages(bus: Any, stream: str, first: int, last: int) -> Iterator[Any]:
    """The stream's messages first..last in sequence order; none when the range is empty."""
    if last >= first:
        yield from bus.iter_stream(stream, start_seq=first, end_seq=last)


def stream_summary(ctx: ActionContext, stream: str, first: int, last: int) -> tuple[int, str]:
    """Count and checksum of the stream's messages first..last, in sequence order."""
    hashes = [_item_hash(m.seq, m.subject, m.data) for m in _messages(connection_of(ctx, "nats"), stream, first, last)]
    return len(hashes), _checksum(hashes)


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


def _request(stream: str, m: Any) -> dict[str, Any]:
    return {"PutRequest": {"Item": {
        "StreamName": {"S": stream},
        "SequenceNumber": {"N": str(m.seq)},
        "Subject": {"S": m.subject},
        "Data": {"B": m.data},
    }}}


def _delete_request(stream: str, seq: int) -> dict[str, Any]:
    return {"DeleteRequest": {"Key": {"StreamName": {"S": stream}, "SequenceNumber": {"N": str(seq)}}}}


def copy_to_dynamodb(ctx: ActionContext, stream: str, table: str, first_seq: int, last_seq: int) -> dict[str, Any]:
    """Copy the stream's messages first..last into the table; their count and checksum.

    The checksum is of the messages as they were read for writing, so the range is read once
    (re-reading it after the copy cost a tenth of the copy; ``verify_copy`` reads both sides
    again). A copy resumed after a crash writes on from the journalled mark and reads the part
    before it for the checksum only.

    Reading and writing overlap (``_write_in_order``), and the journalled mark is the last
    sequence of a batch settled in order, so it never passes a batch still in flight. A kill
    can leave writes past the mark; the resume writes them again (a put is idempotent) and
    the undo deletes the whole claimed range by key, so neither misses them."""
    bus = connection_of(ctx, "nats")
    ddb = connection_of(ctx, "aws").client("dynamodb")
    first, last = int(first_seq), int(last_seq)
    total = max(0, last - first + 1)
    start = first
    if ctx.resume_mark is not None:  # a killed copy: go on after what it wrote
        start = max(first, int(ctx.resume_mark) + 1)
    hashes = [_item_hash(m.seq, m.subject, m.data) for m in _messages(bus, stream, first, min(last, start - 1))]
    done, settled_batches = start - first, 0

    def batches() -> Iterator[tuple[list[dict[str, Any]], int]]:
        for batch in _batches(_messages(bus, stream, start, last), BATCH):
            hashes.extend(_item_hash(m.seq, m.subject, m.data) for m in batch)
            yield [_request(stream, m) for m in batch], batch[-1].seq

    def settled(last_seq: int, size: int) -> None:
        nonlocal done, settled_batches
        done += size
        settled_batches += 1
        mark = last_seq if settled_batches % MARK_EVERY == 0 else None
        ctx.progress(done, total, f"messages copied to {table}", mark=mark)

    _write_in_order(ddb, table, batches(), settled, ctx.cancel)
    ctx.progress(len(hashes), total, f"messages copied to {table}", mark=last)
    return {"copied": len(hashes), "checksum": _checksum(hashes)}


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
        total = last - first + 1

        def batches() -> Iterator[tuple[list[dict[str, Any]], int]]:
            for low in range(first, last + 1, BATCH):
                high = min(low + BATCH - 1, last)
                yield [_delete_request(stream, seq) for seq in range(low, high + 1)], high

        def settled(_: int, size: int) -> None:
            nonlocal deleted
            deleted += size
            ctx.progress(deleted, total, f"keys deleted from {table}")

        _write_in_order(ddb, table, batches(), settled)
    except ddb.exceptions.ResourceNotFoundException:
        raise ActionError("call", f"table {table} does not exist", code="ResourceNotFoundException") from None
    return {"deleted": deleted}


def probe_copy(ctx: ActionContext, stream: str, table: str, first_seq: int, last_seq: int) -> dict[str, Any]:
    """The copy step's probe: ``verify_copy``, unless one look shows the copy is not complete.

    A complete copy holds the range's last message, so when its key is not in the table (the
    usual state after a kill: the writers go in sequence order) one ``get_item`` answers "not
    applied" and the resume goes on from the journalled mark. Reading both sides of the range
    to learn that cost a resume as much as the copy's remaining half. The look can only err
    towards "not applied" (the last message was deleted from the stream, or a later batch
    landed before an earlier one: then the full comparison runs), and that costs the resume
    a second write of the tail, never a copy taken as done that is not."""
    ddb = connection_of(ctx, "aws").client("dynamodb")
    first, last = int(first_seq), int(last_seq)
    if last >= first:
        try:
            found = ddb.get_item(
                TableName=table, ConsistentRead=True, ProjectionExpression="SequenceNumber",
                Key={"StreamName": {"S": stream}, "SequenceNumber": {"N": str(last)}},
            )
        except ddb.exceptions.ResourceNotFoundException:
            raise ActionError("call", f"table {table} does not exist", code="ResourceNotFoundException") from None
        if "Item" not in found:
            return {"match": False, "why": f"sequence {last}, the range's last, is not in {table}"}
    return verify_copy(ctx, stream, table, first, last)


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
