"""The flagship's stream copy is undone exactly: the claimed sequence range's keys deleted in
batches of 25 without reading the range back first (a paged query of 100,000 items cost as
much as the deletes), nothing outside the range touched, and an undo of a range already
emptied costs one one-item query. Real moto and nats-server; the calls made are counted
with botocore's own event hooks."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from fixtures_streams import make_table

from atomicops.actions.base import ActionContext, connection_of


@pytest.fixture
def ctx(stream_ctx: ActionContext) -> ActionContext:
    return stream_ctx


def counted(ctx: ActionContext) -> tuple[Counter[str], list[dict[str, Any]]]:
    """The DynamoDB calls the connection's client makes from now on, and each Query's params."""
    calls: Counter[str] = Counter()
    queries: list[dict[str, Any]] = []
    client = connection_of(ctx, "aws").client("dynamodb")
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    client.meta.events.register("provide-client-params.dynamodb.Query", lambda params, **_: queries.append(dict(params)))
    return calls, queries


def keys(ddb: Any, table: str) -> set[tuple[str, int]]:
    items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    return {(i["StreamName"]["S"], int(i["SequenceNumber"]["N"])) for i in items}


def test_undo_deletes_the_claimed_keys_in_batches_and_nothing_else(streams: Any, ctx: ActionContext, moto_endpoint: str) -> None:
    stream = f"UNDO{uuid.uuid4().hex[:6].upper()}"
    bus = connection_of(ctx, "nats")
    bus.stream_add({"name": stream, "subjects": [f"{stream.lower()}.>"]})
    for i in range(120):
        bus.publish(f"{stream.lower()}.m", {"i": i}, jetstream=True)
    ddb, table = make_table(moto_endpoint)
    assert streams.copy_to_dynamodb(ctx, stream, table, 1, 100)["copied"] == 100
    # Not ours: another stream's item, and this stream's item past the claimed range.
    ddb.put_item(TableName=table, Item={"StreamName": {"S": "OTHER"}, "SequenceNumber": {"N": "50"}})
    ddb.put_item(TableName=table, Item={"StreamName": {"S": stream}, "SequenceNumber": {"N": "101"}})

    calls, queries = counted(ctx)
    assert streams.delete_copied(ctx, stream, table, 1, 100) == {"deleted": 100}
    assert calls == {"Query": 1, "BatchWriteItem": 4}  # one look, then 100 keys in 4 batches
    assert [q.get("Limit") for q in queries] == [1]  # a look, not a read of the range
    assert keys(ddb, table) == {("OTHER", 50), (stream, 101)}

    # The claim's undo runs after the copy's: the range is empty, one look and done.
    calls.clear()
    queries.clear()
    assert streams.delete_copied(ctx, stream, table, 1, 100) == {"deleted": 0}
    assert calls == {"Query": 1} and [q.get("Limit") for q in queries] == [1]
    assert keys(ddb, table) == {("OTHER", 50), (stream, 101)}


def test_undo_of_a_half_done_copy_deletes_what_it_wrote(streams: Any, ctx: ActionContext, moto_endpoint: str) -> None:
    stream = f"HALF{uuid.uuid4().hex[:6].upper()}"
    bus = connection_of(ctx, "nats")
    bus.stream_add({"name": stream, "subjects": [f"{stream.lower()}.>"]})
    for i in range(60):
        bus.publish(f"{stream.lower()}.m", {"i": i}, jetstream=True)
    ddb, table = make_table(moto_endpoint)
    # A copy killed half-way wrote 1..30 of the claimed 1..60.
    streams.copy_to_dynamodb(ctx, stream, table, 1, 30)
    assert len(keys(ddb, table)) == 30
    assert streams.delete_copied(ctx, stream, table, 1, 60) == {"deleted": 60}
    assert keys(ddb, table) == set()
    verify = streams.verify_copy(ctx, stream, table, 1, 60)
    assert verify["table_count"] == 0 and not verify["match"]
