"""The flagship's stream copy keeps its guarantees with its writers running concurrently: the
journalled mark never passes a batch that is not written, a copy that failed part-way resumes
from its mark to the same count and checksum as one that never stopped (the checksum taken
while copying, never by reading the range again), and the copy's probe says "not applied"
from one look after a kill part-way. Real moto and nats-server; batches are slowed or failed,
and calls counted, with botocore's own event hooks on the connection's client."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from fixtures_streams import make_table

from atomicops.actions.base import ActionContext, connection_of

MESSAGES = 400  # 16 batches of 25


@pytest.fixture
def ctx(stream_ctx: ActionContext) -> ActionContext:
    return stream_ctx


@pytest.fixture
def stream(ctx: ActionContext) -> str:
    name = f"COPY{uuid.uuid4().hex[:6].upper()}"
    bus = connection_of(ctx, "nats")
    bus.stream_add({"name": name, "subjects": [f"{name.lower()}.>"]})
    for i in range(MESSAGES):
        bus.publish(f"{name.lower()}.{('pattern', 'anomaly')[i % 2]}", {"i": i, "text": "x" * (i % 7)}, jetstream=True)
    return name


def first_seq_of(params: dict[str, Any]) -> int:
    (requests,) = params["RequestItems"].values()
    return int(requests[0]["PutRequest"]["Item"]["SequenceNumber"]["N"])


def written_up_to(ddb: Any, table: str, stream: str, last: int) -> int:
    return int(ddb.query(TableName=table, Select="COUNT", ConsistentRead=True,
                         KeyConditionExpression="StreamName = :s AND SequenceNumber <= :b",
                         ExpressionAttributeValues={":s": {"S": stream}, ":b": {"N": str(last)}})["Count"])


def test_a_mark_never_passes_a_batch_in_flight_and_the_resume_ends_as_an_uninterrupted_copy(
    streams: Any, ctx: ActionContext, stream: str, moto_endpoint: str
) -> None:
    ddb, table = make_table(moto_endpoint)
    client = connection_of(ctx, "aws").client("dynamodb")

    def sabotage(params: dict[str, Any], **_: Any) -> None:
        first = first_seq_of(params)
        if first == 226:  # batch 10, the one whose settling journals the first mark: slow,
            time.sleep(0.5)  # so the batches after it are written first
        if first == 276:  # batch 12 fails
            raise RuntimeError("injected: batch 276..300 failed")

    client.meta.events.register("provide-client-params.dynamodb.BatchWriteItem", sabotage)
    progress: list[tuple[int, Any, int]] = []  # (done, mark, items at or below the mark)

    def record(done: int, total: int | None = None, note: str = "", mark: Any = None) -> None:
        progress.append((done, mark, written_up_to(ddb, table, stream, int(mark)) if mark is not None else -1))

    with pytest.raises(RuntimeError, match="injected"):
        streams.copy_to_dynamodb(dataclasses.replace(ctx, progress=record), stream, table, 1, MESSAGES)
    marks = [(mark, below) for _, mark, below in progress if mark is not None]
    assert marks == [(250, 250)]  # batch 10's mark, journalled once 1..250 were all written
    # Settled in order up to the failed batch, none after it; batch 11 settled, no mark with it.
    assert [done for done, _, _ in progress] == list(range(25, 276, 25))
    assert written_up_to(ddb, table, stream, MESSAGES) > 275  # the writers had gone on past the failure

    client.meta.events.unregister("provide-client-params.dynamodb.BatchWriteItem", sabotage)
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    resumed = streams.copy_to_dynamodb(dataclasses.replace(ctx, resume_mark=250), stream, table, 1, MESSAGES)
    assert calls == {"BatchWriteItem": 6}  # 251..400 only
    assert resumed == {"copied": MESSAGES, "checksum": streams.stream_summary(ctx, stream, 1, MESSAGES)[1]}
    verify = streams.verify_copy(ctx, stream, table, 1, MESSAGES)
    assert verify["match"] and verify["table_checksum"] == resumed["checksum"]

    _, other = make_table(moto_endpoint)
    assert streams.copy_to_dynamodb(ctx, stream, other, 1, MESSAGES) == resumed  # never stopped: the same


def test_the_copy_reads_the_range_once(
    streams: Any, ctx: ActionContext, stream: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, table = make_table(moto_endpoint)
    bus = connection_of(ctx, "nats")
    reads: list[tuple[int, int | None]] = []
    iter_stream = bus.iter_stream

    def counted(name: str, start_seq: int = 1, *args: Any, end_seq: int | None = None, **kwargs: Any) -> Any:
        reads.append((start_seq, end_seq))
        return iter_stream(name, start_seq, *args, end_seq=end_seq, **kwargs)

    monkeypatch.setattr(bus, "iter_stream", counted)
    streams.copy_to_dynamodb(ctx, stream, table, 1, MESSAGES)
    assert reads == [(1, MESSAGES)]
    reads.clear()
    # Resumed: the part before the mark is read for the checksum, the rest to be written.
    streams.copy_to_dynamodb(dataclasses.replace(ctx, resume_mark=100), stream, table, 1, MESSAGES)
    assert reads == [(1, 100), (101, MESSAGES)]


def test_the_probe_says_not_applied_from_one_look_after_a_kill_part_way(
    streams: Any, ctx: ActionContext, stream: str, moto_endpoint: str
) -> None:
    _, table = make_table(moto_endpoint)
    streams.copy_to_dynamodb(ctx, stream, table, 1, 200)  # what a copy of 1..400 killed at half wrote
    calls: Counter[str] = Counter()
    connection_of(ctx, "aws").client("dynamodb").meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    answer = streams.probe_copy(ctx, stream, table, 1, MESSAGES)
    assert answer["match"] is False and "table_count" not in answer  # no outputs: not applied
    assert calls == {"GetItem": 1}

    copied = streams.copy_to_dynamodb(dataclasses.replace(ctx, resume_mark=200), stream, table, 1, MESSAGES)
    calls.clear()
    answer = streams.probe_copy(ctx, stream, table, 1, MESSAGES)
    assert answer["match"] is True and answer["table_checksum"] == copied["checksum"]
    assert calls["GetItem"] == 1 and calls["Query"] >= 1  # the full comparison, once the last key is there
