"""Fixtures of the flagship's stream-copy tests: its ``msops.streams`` module, loaded the way a
run loads it, an action context with the sandbox's AWS and NATS, and a table shaped like the
plan's ``MisterSmithStreams``."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from atomicops.actions.base import ActionContext, Connections
from atomicops.actions.call import resolve_target

FLAGSHIP = Path(__file__).resolve().parent.parent / "src" / "atomicops" / "bundled" / "mistersmith"


@pytest.fixture
def streams() -> Any:
    # Loaded the way a run loads it (actions/call.py): another plan's `msops` in sys.modules
    # (a copy of the flagship a test ran from elsewhere) is replaced, not reused.
    return sys.modules[resolve_target("msops.streams:copy_to_dynamodb", str(FLAGSHIP)).__module__]


@pytest.fixture
def stream_ctx(moto_endpoint: str, nats_url: str) -> Iterator[ActionContext]:
    conns = Connections({"aws": {"kind": "aws", "region": "us-east-1", "endpoint_url": moto_endpoint},
                         "bus": {"kind": "nats", "url": nats_url, "connect_timeout": 2}})
    yield ActionContext(connections=conns, env="t", run_id="r")
    conns.close()


def make_table(endpoint: str) -> tuple[Any, str]:
    """A new table with the copy's key (stream name, sequence number): its client and name."""
    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    name = f"Copy{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "StreamName", "AttributeType": "S"}, {"AttributeName": "SequenceNumber", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "StreamName", "KeyType": "HASH"}, {"AttributeName": "SequenceNumber", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST")
    return ddb, name
