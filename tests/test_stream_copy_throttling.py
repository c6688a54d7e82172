"""G10 (docs/real-aws.md): the stream copy's writer keeps resending a batch while DynamoDB
throttles it and each answer writes more of it, treats ProvisionedThroughputExceededException
as "none of it written", and gives up (transient, so the step retry resumes from the last
mark) only after answers that write nothing more.

moto never throttles, so these answers come from botocore's Stubber on a real client (the
shapes moto cannot produce); the copy itself, end to end on moto, is tests/test_stream_copy.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from atomicops.errors import ActionError

TABLE = "MisterSmithStreams"


def put(seq: int) -> dict[str, Any]:
    return {"PutRequest": {"Item": {"StreamName": {"S": "s"}, "SequenceNumber": {"N": str(seq)}}}}


@pytest.fixture
def ddb() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def waits(streams: Any, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(streams, "_pause", slept.append)
    return slept


def unprocessed(seqs: range) -> dict[str, Any]:
    return {"UnprocessedItems": {TABLE: [put(s) for s in seqs]}} if seqs else {"UnprocessedItems": {}}


def test_a_batch_is_resent_while_it_makes_progress(streams: Any, ddb: tuple[Any, Stubber], waits: list[float]) -> None:
    client, stub = ddb
    batch = [put(s) for s in range(25)]
    # More answers than the old fixed 8 tries, each writing a little: the copy under 5 WCU.
    for left in range(24, 9, -1):
        stub.add_response("batch_write_item", unprocessed(range(left)))
    stub.add_client_error("batch_write_item", "ProvisionedThroughputExceededException", http_status_code=400)
    stub.add_response("batch_write_item", unprocessed(range(0)))
    streams._write(client, TABLE, batch)
    assert len(waits) == 16 and max(waits) <= 0.1  # progress keeps the wait short


def test_a_batch_that_writes_nothing_more_fails_transient_after_backing_off(
    streams: Any, ddb: tuple[Any, Stubber], waits: list[float]
) -> None:
    client, stub = ddb
    stub.add_response("batch_write_item", unprocessed(range(5)))  # progress: 25 -> 5
    for _ in range(streams.STALLED_TRIES):
        stub.add_client_error("batch_write_item", "ProvisionedThroughputExceededException", http_status_code=400)
    with pytest.raises(ActionError) as failed:
        streams._write(client, TABLE, [put(s) for s in range(25)])
    assert failed.value.code == "ProvisionedThroughputExceededException" and failed.value.transient
    assert 5 < max(waits) <= streams.LONGEST_WAIT  # backs off, jittered, toward the longest wait
