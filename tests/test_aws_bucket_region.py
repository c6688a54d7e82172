"""G8 (docs/real-aws.md): `s3.create_bucket` gets its LocationConstraint from the connection's
region where the plan does not give one (and none in us-east-1, which refuses it), so the
flagship's bucket step works in any region."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from atomicops.actions.aws import AwsKind
from atomicops.actions.base import ActionContext, Connections


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-1"])
def test_a_bucket_is_created_in_the_connections_region(aws_connection: dict[str, Any], region: str) -> None:
    conns = Connections({"aws": {**aws_connection, "region": region}})
    ctx = ActionContext(connections=conns, env="test", run_id="run-1")
    bucket = f"region-{uuid.uuid4().hex[:8]}"
    try:
        # As the flagship writes it: a configuration with tags only.
        AwsKind().execute({"aws": "s3.create_bucket", "params": {
            "Bucket": bucket, "CreateBucketConfiguration": {"Tags": [{"Key": "k", "Value": "v"}]}}}, ctx)
        s3 = conns.get(AwsKind(), None).client("s3")
        found = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        assert (found or "us-east-1") == region
        s3.delete_bucket(Bucket=bucket)
    finally:
        conns.close()
