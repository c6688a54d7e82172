"""The sandbox's moto does what AWS does where the engine's guarantees depend on it
(src/atomicops/sandbox/moto_server.py): a bucket carries the tags its create request gave."""

from __future__ import annotations

import uuid
from typing import Any

import boto3


def test_a_bucket_carries_the_tags_its_create_request_gave(moto_endpoint: str) -> None:
    s3: Any = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    name = f"fidelity-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"Tags": [{"Key": "atomicops:step", "Value": "e/op/bucket"}]})
    try:
        assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "atomicops:step", "Value": "e/op/bucket"}]
        # A second create in us-east-1 is answered as the first was, and leaves the tags alone.
        s3.create_bucket(Bucket=name)
        assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "atomicops:step", "Value": "e/op/bucket"}]
    finally:
        s3.delete_bucket(Bucket=name)


def test_a_bucket_created_without_tags_has_none(moto_endpoint: str) -> None:
    s3: Any = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    name = f"fidelity-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    try:
        try:
            tags = s3.get_bucket_tagging(Bucket=name)["TagSet"]
        except s3.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "NoSuchTagSet"
            tags = []
        assert tags == []
    finally:
        s3.delete_bucket(Bucket=name)
