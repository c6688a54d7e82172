"""The AWS connections of one process share their clients when their settings match (a run's
preflight, the run and its trigger watcher each open one), build them ahead on request, and
pick a call's client (resending or send-once) from botocore's facts without building both."""

from __future__ import annotations

import time
from typing import Any

import pytest

from atomicops.actions.aws import AwsConnection, _Clients


def built(conn: AwsConnection) -> set[tuple[str, bool]]:
    return set(conn._pool._clients)


def test_connections_with_the_same_settings_share_clients(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = AwsConnection("us-east-1", moto_endpoint), AwsConnection("us-east-1", moto_endpoint)
    other = AwsConnection("us-east-1", moto_endpoint, max_attempts=1)
    try:
        assert a.client("sts") is b.client("sts")
        assert other.client("sts") is not a.client("sts")
        assert other.client("sts").meta.config.retries["total_max_attempts"] == 1
        assert a.client("sts").get_caller_identity()["Account"]
        # Credentials come from the environment: a changed one gets clients of its own.
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another-key")
        c = AwsConnection("us-east-1", moto_endpoint)
        try:
            assert c.client("sts") is not a.client("sts")
            assert c.client("sts")._request_signer._credentials.access_key == "another-key"
        finally:
            c.close()
    finally:
        for conn in (a, b, other):
            conn.close()


def test_a_closed_connections_clients_serve_the_next_and_idle_sets_are_bounded(moto_endpoint: str) -> None:
    first = AwsConnection("us-east-1", moto_endpoint)
    sts = first.client("sts")
    first.close()
    again = AwsConnection("us-east-1", moto_endpoint)
    try:
        assert again.client("sts") is sts  # preflight's clients, taken by the run
    finally:
        again.close()
    # Sets nobody holds are kept up to IDLE_KEPT, then closed oldest first.
    others = [AwsConnection("us-east-1", moto_endpoint, read_timeout=30 + i) for i in range(_Clients.IDLE_KEPT + 2)]
    for conn in others:
        conn.client("sts")
        conn.close()
    idle = [p for p in _Clients._all.values() if p._users <= 0]
    assert len(idle) <= _Clients.IDLE_KEPT
    assert not others[0]._pool._clients  # the oldest was closed


def test_prepare_builds_clients_in_the_background(moto_endpoint: str) -> None:
    conn = AwsConnection("us-east-1", moto_endpoint, read_timeout=61)
    try:
        conn.prepare([("dynamodb", True), ("logs", False), ("dynamodb", True)])
        deadline = time.monotonic() + 30
        while built(conn) != {("dynamodb", True), ("logs", False)} and time.monotonic() < deadline:
            time.sleep(0.02)
        assert built(conn) == {("dynamodb", True), ("logs", False)}
        assert conn.client("dynamodb").list_tables()["TableNames"] is not None
    finally:
        conn.close()


@pytest.mark.parametrize(("call", "token", "expected"), [
    ("ec2.create_vpc", True, ("ec2", False)),  # no idempotency token: sent once
    ("ec2.create_vpc", False, ("ec2", True)),  # an undo or a check: resending
    ("ec2.describe_vpcs", True, ("ec2", True)),  # a read
    ("ec2.run_instances", True, ("ec2", True)),  # ClientToken makes a resend safe
    ("iam.create_role", True, ("iam", False)),
    ("ec2.no_such_call", True, None),
    ("nosuchservice.create_thing", True, None),
])
def test_a_calls_client_is_chosen_from_the_facts(call: str, token: bool, expected: Any) -> None:
    assert AwsConnection.client_for({"aws": call}, token=token) == expected
