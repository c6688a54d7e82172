"""AWS inventory against moto's server: a clean run leaves an equal picture, a leftover shows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from atomicops.actions.aws import AwsConnection, AwsKind
from atomicops.actions.base import ActionContext, Connections
from atomicops.inventory import aws as inventory

KIND = AwsKind()
TAGS = {"atomicops:env": "inv", "atomicops:op": "net", "atomicops:step": "inv/net/vpc"}
ASSUME = json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                    "Action": "sts:AssumeRole"}]}
)  # fmt: skip


@pytest.fixture
def handle(aws_connection: dict[str, Any]) -> Iterator[AwsConnection]:
    conn = AwsConnection.from_spec(aws_connection)
    yield conn
    conn.close()


@pytest.fixture
def ctx(aws_connection: dict[str, Any]) -> Iterator[ActionContext]:
    conns = Connections({"aws": aws_connection})
    yield ActionContext(connections=conns, env="inv", run_id="run-inv", tags=TAGS)
    conns.close()


def call(ctx: ActionContext, target: str, **params: Any) -> Any:
    return KIND.execute({"aws": target, "params": params}, ctx)


def ids(snap: inventory.Inventory, rtype: str) -> list[str]:
    entries = snap[rtype]
    assert isinstance(entries, list), entries
    return [e["id"] for e in entries]


def test_snapshot_is_sorted_json_safe_and_complete(handle: AwsConnection) -> None:
    snap = inventory.snapshot(handle)
    assert list(snap) == sorted(t.name for t in inventory.RESOURCE_TYPES)
    for name, entries in snap.items():
        assert isinstance(entries, list), f"{name}: {entries}"  # moto serves every type
        assert ids(snap, name) == sorted(ids(snap, name))
    assert json.loads(json.dumps(snap)) == snap


def test_defaults_are_left_out(handle: AwsConnection) -> None:
    ec2 = handle.client("ec2")
    default_vpcs = [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]]
    assert default_vpcs, "moto creates a default VPC"
    snap = inventory.snapshot(handle, types=["ec2.vpcs", "ec2.subnets", "ec2.security_groups",
                                             "ec2.route_tables"])  # fmt: skip
    assert not set(default_vpcs) & set(ids(snap, "ec2.vpcs"))
    assert all(e["vpc"] not in default_vpcs for e in snap["ec2.subnets"])  # type: ignore[index]
    assert all(e["name"] != "default" for e in snap["ec2.security_groups"])  # type: ignore[index]
    main = {rt["RouteTableId"] for rt in ec2.describe_route_tables()["RouteTables"]
            if any(a.get("Main") for a in rt.get("Associations", []))}
    assert main and not main & set(ids(snap, "ec2.route_tables"))  # other tests' tables may be listed


def test_create_then_delete_leaves_an_equal_inventory(
    handle: AwsConnection, ctx: ActionContext
) -> None:
    before = inventory.snapshot(handle)
    table = f"inv-{uuid.uuid4().hex[:8]}"

    vpc_id = call(ctx, "ec2.create_vpc", CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    subnet_id = call(ctx, "ec2.create_subnet", VpcId=vpc_id, CidrBlock="10.50.1.0/24")["Subnet"][
        "SubnetId"
    ]
    sg_id = call(ctx, "ec2.create_security_group", GroupName="inv-db", Description="db",
                 VpcId=vpc_id)["GroupId"]  # fmt: skip
    rule = {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
            "IpRanges": [{"CidrIp": "10.50.0.0/16"}]}  # fmt: skip
    call(ctx, "ec2.authorize_security_group_ingress", GroupId=sg_id, IpPermissions=[rule])
    igw_id = call(ctx, "ec2.create_internet_gateway")["InternetGateway"]["InternetGatewayId"]
    call(ctx, "ec2.attach_internet_gateway", InternetGatewayId=igw_id, VpcId=vpc_id)
    rtb_id = call(ctx, "ec2.create_route_table", VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    call(ctx, "ec2.create_route", RouteTableId=rtb_id, DestinationCidrBlock="0.0.0.0/0",
         GatewayId=igw_id)  # fmt: skip
    call(ctx, "dynamodb.create_table", TableName=table,
         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
         BillingMode="PAY_PER_REQUEST")  # fmt: skip

    during = inventory.snapshot(handle)
    change = inventory.diff(before, during)
    assert set(change) == {
        "dynamodb.tables", "ec2.internet_gateways", "ec2.route_tables",
        "ec2.security_groups", "ec2.subnets", "ec2.vpcs",
    }  # fmt: skip
    assert all(set(c) == {"added"} for c in change.values())
    [vpc] = change["ec2.vpcs"]["added"]
    assert vpc == {"id": vpc_id, "cidr": "10.50.0.0/16", "tags": TAGS}
    [sg] = change["ec2.security_groups"]["added"]
    assert sg["id"] == sg_id and sg["vpc"] == vpc_id and sg["tags"] == TAGS
    assert sg["ingress"] == [{"cidrs": ["10.50.0.0/16"], "from": 5432, "groups": [],
                              "ipv6": [], "prefix_lists": [], "protocol": "tcp", "to": 5432}]  # fmt: skip
    assert change["ec2.subnets"]["added"][0]["vpc"] == vpc_id
    assert change["ec2.internet_gateways"]["added"][0]["vpcs"] == [vpc_id]
    assert change["ec2.route_tables"]["added"][0]["routes"] == [{"to": "0.0.0.0/0", "via": igw_id}]
    assert change["dynamodb.tables"]["added"] == [{"id": table}]

    # Rollback, newest first.
    call(ctx, "dynamodb.delete_table", TableName=table)
    call(ctx, "ec2.delete_route_table", RouteTableId=rtb_id)
    call(ctx, "ec2.detach_internet_gateway", InternetGatewayId=igw_id, VpcId=vpc_id)
    call(ctx, "ec2.delete_internet_gateway", InternetGatewayId=igw_id)
    call(ctx, "ec2.revoke_security_group_ingress", GroupId=sg_id, IpPermissions=[rule])
    call(ctx, "ec2.delete_security_group", GroupId=sg_id)
    call(ctx, "ec2.delete_subnet", SubnetId=subnet_id)
    call(ctx, "ec2.delete_vpc", VpcId=vpc_id)

    after = inventory.snapshot(handle)
    assert inventory.diff(before, after) == {}
    assert after == before


def test_a_leftover_shows_in_the_diff_with_its_tags(
    handle: AwsConnection, ctx: ActionContext
) -> None:
    before = inventory.snapshot(handle)
    role = f"inv-role-{uuid.uuid4().hex[:8]}"
    queue = f"inv-queue-{uuid.uuid4().hex[:8]}"
    document = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]})  # fmt: skip
    policy = call(ctx, "iam.create_policy", PolicyName=role, PolicyDocument=document)["Policy"][
        "Arn"
    ]
    call(ctx, "iam.create_role", RoleName=role, AssumeRolePolicyDocument=ASSUME)
    call(ctx, "iam.attach_role_policy", RoleName=role, PolicyArn=policy)
    url = call(ctx, "sqs.create_queue", QueueName=queue)["QueueUrl"]
    try:
        change = inventory.diff(before, inventory.snapshot(handle))
        assert change == {
            "iam.policies": {"added": [{"id": policy, "name": role}]},
            "iam.roles": {"added": [{"id": role, "path": "/", "tags": TAGS}]},
            "iam.role_policy_attachments": {"added": [{"id": f"{role}/{policy}"}]},
            "sqs.queues": {"added": [{"id": url, "tags": TAGS}]},
        }
    finally:
        call(ctx, "sqs.delete_queue", QueueUrl=url)
        call(ctx, "iam.detach_role_policy", RoleName=role, PolicyArn=policy)
        call(ctx, "iam.delete_role", RoleName=role)
        call(ctx, "iam.delete_policy", PolicyArn=policy)
    assert inventory.diff(before, inventory.snapshot(handle)) == {}


def test_a_changed_entry_shows_before_and_after(handle: AwsConnection, ctx: ActionContext) -> None:
    vpc_id = call(ctx, "ec2.create_vpc", CidrBlock="10.51.0.0/16")["Vpc"]["VpcId"]
    sg_id = call(ctx, "ec2.create_security_group", GroupName="inv-web", Description="web",
                 VpcId=vpc_id)["GroupId"]  # fmt: skip
    rule = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}  # fmt: skip
    try:
        before = inventory.snapshot(handle, types=["ec2.security_groups"])
        call(ctx, "ec2.authorize_security_group_ingress", GroupId=sg_id, IpPermissions=[rule])
        change = inventory.diff(before, inventory.snapshot(handle, types=["ec2.security_groups"]))
        [changed] = change["ec2.security_groups"]["changed"]
        assert changed["id"] == sg_id
        assert changed["before"]["ingress"] == []
        assert changed["after"]["ingress"][0]["to"] == 443
    finally:
        call(ctx, "ec2.delete_security_group", GroupId=sg_id)
        call(ctx, "ec2.delete_vpc", VpcId=vpc_id)


def test_a_failing_service_is_recorded_not_raised(moto_endpoint: str, closed_endpoint: str) -> None:
    good = inventory.clients("us-east-1", moto_endpoint)
    dead = inventory.clients("us-east-1", closed_endpoint,
                             connect_timeout=1, max_attempts=1)  # fmt: skip

    def connect(service: str) -> Any:
        return dead(service) if service == "iam" else good(service)

    types = ["iam.roles", "iam.role_policy_attachments", "dynamodb.tables"]
    broken = inventory.snapshot(connect, types=types)
    assert broken["iam.roles"] == {"error": "ConnectionError"}
    assert broken["iam.role_policy_attachments"] == {"error": "ConnectionError"}
    assert isinstance(broken["dynamodb.tables"], list)

    healthy = inventory.snapshot(good, types=types)
    assert inventory.diff(healthy, broken) == {
        "iam.roles": {"unchecked": {"before": None, "after": "ConnectionError"}},
        "iam.role_policy_attachments": {"unchecked": {"before": None, "after": "ConnectionError"}},
    }


def test_unknown_type_is_refused(handle: AwsConnection) -> None:
    with pytest.raises(ValueError, match="ec2.vpc"):
        inventory.snapshot(handle, types=["ec2.vpc"])


# --------------------------------------------------------------------------- diff alone


def test_diff_of_equal_snapshots_is_empty() -> None:
    snap: inventory.Inventory = {
        "ec2.vpcs": [{"id": "vpc-1", "tags": {"a": "b"}}],
        "s3.buckets": [],
    }
    assert inventory.diff(snap, json.loads(json.dumps(snap))) == {}


def test_diff_lists_added_removed_and_changed_per_type() -> None:
    before: inventory.Inventory = {
        "ec2.vpcs": [
            {"id": "vpc-1", "cidr": "10.0.0.0/16"},
            {"id": "vpc-2", "cidr": "10.1.0.0/16"},
        ],
        "s3.buckets": [{"id": "keep"}],
    }
    after: inventory.Inventory = {
        "ec2.vpcs": [
            {"id": "vpc-2", "cidr": "10.9.0.0/16"},
            {"id": "vpc-3", "cidr": "10.2.0.0/16"},
        ],
        "s3.buckets": [{"id": "keep"}],
    }
    assert inventory.diff(before, after) == {
        "ec2.vpcs": {
            "added": [{"id": "vpc-3", "cidr": "10.2.0.0/16"}],
            "removed": [{"id": "vpc-1", "cidr": "10.0.0.0/16"}],
            "changed": [{"id": "vpc-2", "before": {"id": "vpc-2", "cidr": "10.1.0.0/16"},
                         "after": {"id": "vpc-2", "cidr": "10.9.0.0/16"}}],
        }
    }  # fmt: skip


def test_diff_never_calls_an_unlisted_type_clean() -> None:
    before: inventory.Inventory = {"sqs.queues": {"error": "AccessDenied"}, "s3.buckets": []}
    after: inventory.Inventory = {"sqs.queues": {"error": "AccessDenied"}}
    assert inventory.diff(before, after) == {
        "s3.buckets": {"unchecked": {"before": None, "after": "missing"}},
        "sqs.queues": {"unchecked": {"before": "AccessDenied", "after": "AccessDenied"}},
    }
