"""The inventory sees every kind of thing a plan can make, so `rehearse` cannot call a leak clean.

A static check: every call that creates or adds something, in any plan the project ships or
tests (and in the flagship's Python steps), is named by some inventory type's ``made_by``.
Then, against moto's server, each type the inventory once missed: made -> it shows in the
diff; undone -> the diff is empty again.
"""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from atomicops.actions.aws import AwsConnection, AwsKind
from atomicops.actions.base import ActionContext, Connections
from atomicops.inventory import aws as inventory
from atomicops.inventory.orphans import orphans

ROOT = Path(__file__).parent.parent
PLANS = [
    ROOT / "src/atomicops/bundled/mistersmith/plan.yaml",
    *sorted((ROOT / "examples").glob("*/plan.yaml")),
    *sorted((ROOT / "tests/plans").glob("*.yaml")),
]
CODE = sorted((ROOT / "src/atomicops/bundled/mistersmith/msops").glob("*.py"))
# Verbs of calls that bring something into being or add to it.
MAKES = re.compile(
    r"(create|put|register|run|allocate|associate|attach|authorize|add|subscribe|import|copy|request)_"
)


def _aws_calls(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        target = node.get("aws")
        if isinstance(target, str) and re.fullmatch(r"[a-z0-9-]+\.[a-z0-9_]+", target):
            yield target
        for value in node.values():
            yield from _aws_calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _aws_calls(value)


def _code_calls(text: str) -> Iterator[str]:
    """``x = ....client("svc")`` then ``x.method(``, and ``.client("svc").method(``."""
    names = dict(re.findall(r"(\w+) = [\w.(), \"]*\.client\(\"([a-z0-9-]+)\"\)", text))
    for var, method in re.findall(r"\b(\w+)\.([a-z_]+)\(", text):
        if var in names:
            yield f"{names[var]}.{method}"
    for service, method in re.findall(r"\.client\(\"([a-z0-9-]+)\"\)\.([a-z_]+)\(", text):
        yield f"{service}.{method}"


def test_every_call_that_makes_something_is_seen_by_some_inventory_type():
    calls = {c for p in PLANS for c in _aws_calls(yaml.safe_load(p.read_text()))}
    calls |= {c for f in CODE for c in _code_calls(f.read_text())}
    making = {c for c in calls if MAKES.match(c.split(".", 1)[1])}
    assert {"ec2.create_vpc", "ec2.create_vpc_endpoint", "s3.put_object", "ecr.put_image"} <= making
    seen = {c for t in inventory.RESOURCE_TYPES for c in t.made_by}
    assert sorted(making - seen) == []


# --------------------------------------------------------------------------- against moto


@pytest.fixture
def aws(aws_connection: dict[str, Any]) -> Iterator[AwsConnection]:
    conn = AwsConnection.from_spec(aws_connection)
    yield conn
    conn.close()


def changed(aws: AwsConnection, types: list[str], before: inventory.Inventory) -> dict[str, Any]:
    return inventory.diff(before, inventory.snapshot(aws, types=types))


def test_kms_keys_and_aliases_and_a_key_pending_deletion_is_gone(aws: AwsConnection) -> None:
    kms, types = aws.client("kms"), ["kms.keys", "kms.aliases"]
    before = inventory.snapshot(aws, types=types)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    alias = f"alias/cov-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    assert set(changed(aws, types, before)) == {"kms.keys", "kms.aliases"}
    kms.delete_alias(AliasName=alias)
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)  # what an undo does
    assert changed(aws, types, before) == {}


def test_eventbridge_rules_and_targets(aws: AwsConnection) -> None:
    events, sns, types = aws.client("events"), aws.client("sns"), ["events.rules", "events.targets"]
    topic = sns.create_topic(Name=f"cov-{uuid.uuid4().hex[:8]}")["TopicArn"]
    before = inventory.snapshot(aws, types=types)
    rule = f"cov-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, ScheduleExpression="rate(5 minutes)")
    after_rule = inventory.snapshot(aws, types=types)
    assert set(inventory.diff(before, after_rule)) == {"events.rules"}
    events.put_targets(Rule=rule, Targets=[{"Id": "t1", "Arn": topic}])
    assert set(inventory.diff(after_rule, inventory.snapshot(aws, types=types))) == {"events.targets"}
    events.remove_targets(Rule=rule, Ids=["t1"])
    events.delete_rule(Name=rule)
    sns.delete_topic(TopicArn=topic)
    assert changed(aws, types, before) == {}


def test_sns_subscriptions(aws: AwsConnection) -> None:
    sns, sqs, types = aws.client("sns"), aws.client("sqs"), ["sns.subscriptions"]
    topic = sns.create_topic(Name=f"cov-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"cov-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    before = inventory.snapshot(aws, types=types)
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)["SubscriptionArn"]
    assert set(changed(aws, types, before)) == {"sns.subscriptions"}
    sns.unsubscribe(SubscriptionArn=sub)
    assert changed(aws, types, before) == {}
    sns.delete_topic(TopicArn=topic)
    sqs.delete_queue(QueueUrl=queue)


def test_s3_object_versions(aws: AwsConnection) -> None:
    s3, types = aws.client("s3"), ["s3.buckets", "s3.object_versions"]
    bucket = f"cov-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    before = inventory.snapshot(aws, types=types)
    s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    s3.delete_object(Bucket=bucket, Key="k")  # a versioned bucket keeps the version and a marker
    diff = changed(aws, types, before)
    assert set(diff) == {"s3.object_versions"}
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    for marker in s3.list_object_versions(Bucket=bucket).get("DeleteMarkers", []):
        s3.delete_object(Bucket=bucket, Key=marker["Key"], VersionId=marker["VersionId"])
    assert changed(aws, types, before) == {}
    s3.delete_bucket(Bucket=bucket)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    return buf.getvalue()


def test_lambda_permissions(aws: AwsConnection) -> None:
    iam, lam, types = aws.client("iam"), aws.client("lambda"), ["lambda.functions", "lambda.permissions"]
    name = f"cov-{uuid.uuid4().hex[:8]}"
    assume = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                      "Principal": {"Service": "lambda.amazonaws.com"}}]}
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(assume))["Role"]["Arn"]
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler",
                        Code={"ZipFile": _zip()})
    before = inventory.snapshot(aws, types=types)  # a function with no policy lists no permission
    assert isinstance(before["lambda.permissions"], list)
    lam.add_permission(FunctionName=name, StatementId="events", Action="lambda:InvokeFunction",
                       Principal="events.amazonaws.com")
    assert set(changed(aws, types, before)) == {"lambda.permissions"}
    lam.remove_permission(FunctionName=name, StatementId="events")
    assert changed(aws, types, before) == {}
    lam.delete_function(FunctionName=name)
    iam.delete_role(RoleName=name)


def test_vpc_endpoints_and_route_table_associations(aws: AwsConnection) -> None:
    ec2, types = aws.client("ec2"), ["ec2.vpc_endpoints", "ec2.route_tables"]
    vpc = ec2.create_vpc(CidrBlock="10.91.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.91.1.0/24")["Subnet"]["SubnetId"]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    try:
        before = inventory.snapshot(aws, types=types)
        # moto 5.2.5 fails to delete an endpoint made without VpcEndpointType (a 500).
        endpoint = ec2.create_vpc_endpoint(VpcId=vpc, VpcEndpointType="Gateway",
                                           ServiceName="com.amazonaws.us-east-1.s3")["VpcEndpoint"]["VpcEndpointId"]
        association = ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)["AssociationId"]
        assert set(changed(aws, types, before)) == {"ec2.vpc_endpoints", "ec2.route_tables"}
        ec2.disassociate_route_table(AssociationId=association)
        ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint])
        assert changed(aws, types, before) == {}
    finally:
        ec2.delete_route_table(RouteTableId=table)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def test_tagged_keys_roles_queues_and_topics_are_found_as_orphans(aws_connection: dict[str, Any]) -> None:
    """Types whose listing leaves tags out read them per item: a leaked KMS key (the type a
    probe by ``${step.key}`` used to trip on) is an orphan until its deletion is scheduled."""
    conns = Connections({"aws": aws_connection})
    tags = {"atomicops:env": "cov", "atomicops:op": "o", "atomicops:step": f"cov/o/{uuid.uuid4().hex[:8]}"}
    ctx = ActionContext(connections=conns, env="cov", run_id="r", tags=tags)

    def call(target: str, **params: Any) -> Any:
        return AwsKind().execute({"aws": target, "params": params}, ctx)

    name = f"cov-{uuid.uuid4().hex[:8]}"
    assume = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                      "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]}
    types = ["kms.keys", "iam.roles", "sqs.queues", "sns.topics"]
    key = call("kms.create_key")["KeyMetadata"]["KeyId"]
    call("iam.create_role", RoleName=name, AssumeRolePolicyDocument=json.dumps(assume))
    queue = call("sqs.create_queue", QueueName=name)["QueueUrl"]
    topic = call("sns.create_topic", Name=name)["TopicArn"]
    try:
        found = orphans(inventory.snapshot(conns.get(AwsKind(), "aws"), types=types), {})
        mine = {o["type"]: o["id"] for o in found if o["step"] == tags["atomicops:step"]}
        assert mine == {"kms.keys": key, "iam.roles": name, "sqs.queues": queue, "sns.topics": topic}
    finally:
        call("kms.schedule_key_deletion", KeyId=key, PendingWindowInDays=7)
        call("iam.delete_role", RoleName=name)
        call("sqs.delete_queue", QueueUrl=queue)
        call("sns.delete_topic", TopicArn=topic)
    found = orphans(inventory.snapshot(conns.get(AwsKind(), "aws"), types=types), {})
    assert [o for o in found if o["step"] == tags["atomicops:step"]] == []
    conns.close()
