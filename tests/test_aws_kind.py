"""The ``aws`` action kind: static checks against botocore's models, and calls to moto's server."""

from __future__ import annotations

import fnmatch
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError

from atomicops.actions.aws import AwsConnection, AwsKind, service_model, translate_error
from atomicops.actions.base import ActionContext, CheckIssue, Connections
from atomicops.errors import ActionError

KIND = AwsKind()
TAGS = {"atomicops:env": "test", "atomicops:op": "vpc", "atomicops:step": "test/vpc/create"}
ASSUME = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
             "Action": "sts:AssumeRole"}
        ],
    }
)  # fmt: skip


def issues(action: Mapping[str, Any]) -> list[CheckIssue]:
    return list(KIND.check(action))


def paths(action: Mapping[str, Any]) -> list[tuple[str | int, ...]]:
    return [issue.path for issue in issues(action)]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- static checks


@pytest.mark.parametrize(
    "action",
    [
        {"aws": "ec2.create_vpc", "params": {"CidrBlock": "10.0.0.0/16"}},
        {"aws": "ec2.describe_vpcs"},
        {
            "aws": "ec2.create_vpc",
            "params": {
                "CidrBlock": "10.0.0.0/16",
                "TagSpecifications": [{"ResourceType": "vpc", "Tags": [{"Key": "a", "Value": "b"}]}],
            },
            "wait": {"waiter": "vpc_available", "params": {"VpcIds": ["vpc-1"]}, "delay": 1},
            "connection": "aws",
        },
        {"aws": "dynamodb.put_item", "params": {"TableName": "t", "Item": {"pk": {"S": "x"}}}},
        {"aws": "sqs.create_queue", "params": {"QueueName": "q", "tags": {"a": "b"}}},
        {"aws": "iam.create_role", "params": {"RoleName": "r", "AssumeRolePolicyDocument": "{}",
                                              "MaxSessionDuration": 3600}},
    ],
)  # fmt: skip
def test_valid_actions_have_no_issues(action: dict[str, Any]) -> None:
    assert issues(action) == []


@pytest.mark.parametrize("target", ["ec2", "ec2.CreateVpc", "ec2.create_vpc.x", "", 42, None])
def test_malformed_operation(target: Any) -> None:
    found = issues({"aws": target})
    assert [i.path for i in found] == [("aws",)]
    assert "service.operation" in found[0].message


def test_unknown_service_suggests_close_names() -> None:
    [issue] = issues({"aws": "dynamdb.create_table"})
    assert issue.path == ("aws",)
    assert "unknown AWS service 'dynamdb'" in issue.message
    assert "'dynamodb'" in issue.message


def test_unknown_operation_suggests_close_names() -> None:
    [issue] = issues({"aws": "ec2.create_vpcs", "params": {"Bogus": 1}})
    assert issue.path == ("aws",)
    assert "'create_vpc'" in issue.message


@pytest.mark.parametrize("method", ["get_paginator", "close", "get_waiter", "can_paginate"])
def test_client_methods_that_are_not_api_calls_are_refused(method: str) -> None:
    assert paths({"aws": f"ec2.{method}"}) == [("aws",)]


def test_unknown_top_level_parameter() -> None:
    [issue] = issues({"aws": "ec2.create_vpc", "params": {"CidrBlok": "10.0.0.0/16"}})
    assert issue.path == ("params", "CidrBlok")
    assert "'CidrBlock'" in issue.message


def test_unknown_parameter_inside_list_of_structures() -> None:
    action = {
        "aws": "ec2.create_vpc",
        "params": {
            "CidrBlock": "10.0.0.0/16",
            "TagSpecifications": [
                {"ResourceType": "vpc", "Tagz": []},
                {"ResourceType": "vpc", "Tags": [{"Key": "a", "Value": "b"}, {"Kee": "c"}]},
            ],
        },
    }
    assert paths(action) == [
        ("params", "TagSpecifications", 0, "Tagz"),
        ("params", "TagSpecifications", 1, "Tags", 1, "Kee"),
    ]


def test_unknown_parameter_inside_map_of_structures() -> None:
    action = {"aws": "dynamodb.put_item", "params": {"TableName": "t", "Item": {"pk": {"Z": "x"}}}}
    [issue] = issues(action)
    assert issue.path == ("params", "Item", "pk", "Z")
    assert "SS" in issue.message  # no close match: the valid names are listed


def test_missing_required_parameters_at_top_level() -> None:
    for action in ({"aws": "iam.create_role", "params": {}}, {"aws": "iam.create_role"}):
        [issue] = issues(action)
        assert issue.path == ("params",)
        assert "RoleName" in issue.message and "AssumeRolePolicyDocument" in issue.message


def test_missing_required_parameter_in_nested_structure() -> None:
    action = {
        "aws": "dynamodb.create_table",
        "params": {
            "TableName": "t",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk"}],
        },
    }
    [issue] = issues(action)
    assert issue.path == ("params", "AttributeDefinitions", 0)
    assert "AttributeType" in issue.message


@pytest.mark.parametrize(
    ("wrong", "path"),
    [
        ({"MaxSessionDuration": "3600"}, ("params", "MaxSessionDuration")),
        ({"MaxSessionDuration": True}, ("params", "MaxSessionDuration")),
        ({"Description": 12}, ("params", "Description")),
        ({"Tags": {"a": "b"}}, ("params", "Tags")),
        ({"Tags": [["a", "b"]]}, ("params", "Tags", 0)),
    ],
)
def test_literal_values_of_the_wrong_type(wrong: dict[str, Any], path: tuple[Any, ...]) -> None:
    params = {"RoleName": "r", "AssumeRolePolicyDocument": "{}", **wrong}
    assert paths({"aws": "iam.create_role", "params": params}) == [path]


@pytest.mark.parametrize(
    "params",
    [
        "${vars.role_params}",
        {"RoleName": "${vars.role}", "AssumeRolePolicyDocument": "${vars.doc}"},
        {"RoleName": "r", "AssumeRolePolicyDocument": "{}", "MaxSessionDuration": "${vars.s}"},
        {"RoleName": "r", "AssumeRolePolicyDocument": "{}", "Tags": "${vars.tags}"},
        {"RoleName": "r", "AssumeRolePolicyDocument": "{}", "Tags": ["${vars.tag}"]},
        {"RoleName": "r", "AssumeRolePolicyDocument": "{}", "Tags": [{"${vars.k}": "v"}]},
    ],
)
def test_references_are_opaque(params: Any) -> None:
    assert issues({"aws": "iam.create_role", "params": params}) == []


def test_reference_does_not_hide_literal_errors_beside_it() -> None:
    params = {"RoleName": "${vars.role}", "AssumeRolePolicyDocument": "{}", "Pathh": "/"}
    assert paths({"aws": "iam.create_role", "params": params}) == [("params", "Pathh")]


def test_unknown_waiter_lists_the_valid_ones() -> None:
    [issue] = issues({"aws": "ec2.create_vpc", "wait": {"waiter": "vpc_avail"}})
    assert issue.path == ("wait", "waiter")
    assert "'vpc_available'" in issue.message
    assert "subnet_available" in issue.message and "vpc_exists" in issue.message


def test_service_without_waiters() -> None:
    [issue] = issues({"aws": "sqs.create_queue", "params": {"QueueName": "q"},
                      "wait": {"waiter": "queue_exists"}})  # fmt: skip
    assert issue.path == ("wait", "waiter")
    assert "sqs has no waiters" in issue.message


def test_waiter_params_are_checked_against_the_waiter_operation() -> None:
    action = {
        "aws": "ec2.create_vpc",
        "wait": {"waiter": "vpc_available", "params": {"VpcIdz": ["x"]}, "dealy": 1},
    }
    assert sorted(paths(action), key=str) == [("wait", "dealy"), ("wait", "params", "VpcIdz")]


def test_wait_numbers_must_be_positive() -> None:
    action = {"aws": "ec2.create_vpc", "wait": {"waiter": "vpc_available", "max_attempts": 0}}
    assert paths(action) == [("wait", "max_attempts")]


def test_checks_of_a_large_plan_are_fast() -> None:
    actions = [
        {"aws": f"{svc}.{op}", "params": {"X": i}}
        for i in range(100)
        for svc, op in [("ec2", "create_vpc"), ("iam", "create_role"), ("rds", "create_db_cluster")]
    ]
    start = time.perf_counter()
    found = [issue for action in actions for issue in KIND.check(action)]
    assert time.perf_counter() - start < 2.0
    assert len(found) >= 300
    assert service_model.cache_info().hits >= 290  # loaded once per service


def test_connection_spec_checks() -> None:
    spec = {"kind": "aws", "region": "us-east-1", "endpoint": "http://x", "max_attempts": 0}
    assert [i.path for i in KIND.check_connection(spec)] == [("endpoint",), ("max_attempts",)]
    with pytest.raises(ActionError) as info:
        KIND.connect(spec)
    assert info.value.code == "InvalidConnection"


def test_describe() -> None:
    assert KIND.describe({"aws": "ec2.create_vpc", "params": {"CidrBlock": "x"}}) == (
        "aws ec2.create_vpc"
    )


# --------------------------------------------------------------------------- execution


@pytest.fixture
def connections(aws_connection: dict[str, Any]) -> Iterator[Connections]:
    conns = Connections({"aws": aws_connection})
    yield conns
    conns.close()


def context(conns: Connections, tags: Mapping[str, str] | None = None) -> ActionContext:
    return ActionContext(connections=conns, env="test", run_id="run-1", tags=dict(tags or {}))


@pytest.fixture
def ctx(connections: Connections) -> ActionContext:
    return context(connections, TAGS)


def call(ctx: ActionContext, target: str, **params: Any) -> Any:
    return KIND.execute({"aws": target, "params": params}, ctx)


def tag_map(tags: Any) -> dict[str, str]:
    if isinstance(tags, Mapping):
        return dict(tags)
    return {
        next(v for k, v in t.items() if k.lower() == "key"): next(
            v for k, v in t.items() if k.lower() == "value"
        )
        for t in tags
    }


def vpc_tags(ctx: ActionContext, vpc_id: str) -> list[dict[str, str]]:
    return call(ctx, "ec2.describe_vpcs", VpcIds=[vpc_id])["Vpcs"][0].get("Tags", [])


def test_create_vpc_appends_run_tags_to_tag_specifications(ctx: ActionContext) -> None:
    user_tags = [{"Key": "Name", "Value": "main"}, {"Key": "atomicops:step", "Value": "mine"}]
    action = {
        "aws": "ec2.create_vpc",
        "params": {
            "CidrBlock": "10.20.0.0/16",
            "TagSpecifications": [{"ResourceType": "vpc", "Tags": user_tags}],
        },
    }
    vpc_id = KIND.execute(action, ctx)["Vpc"]["VpcId"]
    try:
        tags = vpc_tags(ctx, vpc_id)
        assert tag_map(tags) == {
            "Name": "main",
            "atomicops:env": "test",
            "atomicops:op": "vpc",
            "atomicops:step": "mine",  # the plan's own value wins
        }
        assert len(tags) == 4
        assert action["params"]["TagSpecifications"][0]["Tags"] == user_tags  # not mutated
    finally:
        call(ctx, "ec2.delete_vpc", VpcId=vpc_id)


def test_create_vpc_without_tag_specifications_is_still_tagged(ctx: ActionContext) -> None:
    vpc_id = call(ctx, "ec2.create_vpc", CidrBlock="10.21.0.0/16")["Vpc"]["VpcId"]
    try:
        assert tag_map(vpc_tags(ctx, vpc_id)) == TAGS
    finally:
        call(ctx, "ec2.delete_vpc", VpcId=vpc_id)


def test_no_tags_when_the_context_has_none(connections: Connections) -> None:
    plain_ctx = context(connections)
    vpc_id = call(plain_ctx, "ec2.create_vpc", CidrBlock="10.22.0.0/16")["Vpc"]["VpcId"]
    try:
        assert vpc_tags(plain_ctx, vpc_id) == []
    finally:
        call(plain_ctx, "ec2.delete_vpc", VpcId=vpc_id)


def test_tagging_calls_do_not_get_run_tags(connections: Connections) -> None:
    # An undo of create_tags is delete_tags: adding our tags there would strip the resource's
    # atomicops:* tags, and on create_tags it would re-label the resource with another step.
    creator = context(connections, TAGS)
    other = context(connections, {**TAGS, "atomicops:step": "test/vpc/label"})
    vpc_id = call(creator, "ec2.create_vpc", CidrBlock="10.23.0.0/16")["Vpc"]["VpcId"]
    try:
        call(other, "ec2.create_tags", Resources=[vpc_id], Tags=[{"Key": "team", "Value": "a"}])
        call(other, "ec2.delete_tags", Resources=[vpc_id], Tags=[{"Key": "team"}])
        assert tag_map(vpc_tags(creator, vpc_id)) == TAGS
    finally:
        call(creator, "ec2.delete_vpc", VpcId=vpc_id)


def test_reads_do_not_get_run_tags(ctx: ActionContext) -> None:
    result = call(ctx, "ec2.describe_vpcs", Filters=[{"Name": "tag:nothing", "Values": ["x"]}])
    assert result == {"Vpcs": []}


def test_tags_list_with_key_value(ctx: ActionContext) -> None:
    name = unique("role")
    result = call(ctx, "iam.create_role", RoleName=name, AssumeRolePolicyDocument=ASSUME,
                  Tags=[{"Key": "team", "Value": "platform"}])  # fmt: skip
    try:
        tags = call(ctx, "iam.list_role_tags", RoleName=name)["Tags"]
        assert tag_map(tags) == {"team": "platform", **TAGS}
        # JSON-safe result: datetimes are ISO strings, no transport metadata.
        assert isinstance(result["Role"]["CreateDate"], str)
        assert "ResponseMetadata" not in result
        json.dumps(result)
    finally:
        call(ctx, "iam.delete_role", RoleName=name)


def test_tags_list_on_dynamodb_and_waiter(ctx: ActionContext) -> None:
    name = unique("table")
    action = {
        "aws": "dynamodb.create_table",
        "params": {
            "TableName": name,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
        "wait": {"waiter": "table_exists", "params": {"TableName": name}, "delay": 0.2},
    }
    assert issues(action) == []
    arn = KIND.execute(action, ctx)["TableDescription"]["TableArn"]
    try:
        described = call(ctx, "dynamodb.describe_table", TableName=name)
        assert described["Table"]["TableStatus"] == "ACTIVE"
        tags = call(ctx, "dynamodb.list_tags_of_resource", ResourceArn=arn)["Tags"]
        assert tag_map(tags) == TAGS
    finally:
        call(ctx, "dynamodb.delete_table", TableName=name)


def test_tags_map_in_lowercase_member(ctx: ActionContext) -> None:
    name = unique("queue")
    url = call(ctx, "sqs.create_queue", QueueName=name, tags={"team": "platform"})["QueueUrl"]
    try:
        assert call(ctx, "sqs.list_queue_tags", QueueUrl=url)["Tags"] == {
            "team": "platform",
            **TAGS,
        }
    finally:
        call(ctx, "sqs.delete_queue", QueueUrl=url)


def test_tags_list_with_lowercase_key_value(ctx: ActionContext) -> None:
    arn = call(ctx, "ecs.create_cluster", clusterName=unique("cluster"))["cluster"]["clusterArn"]
    try:
        tags = call(ctx, "ecs.list_tags_for_resource", resourceArn=arn)["tags"]
        assert {"key", "value"} == set(tags[0])
        assert tag_map(tags) == TAGS
    finally:
        call(ctx, "ecs.delete_cluster", cluster=arn)


def test_operation_without_tags_member_is_called_as_written(ctx: ActionContext) -> None:
    bucket = unique("bucket")
    call(ctx, "s3.create_bucket", Bucket=bucket)
    try:
        call(ctx, "s3.put_object", Bucket=bucket, Key="k", Body="hello")
        got = call(ctx, "s3.get_object", Bucket=bucket, Key="k")
        assert got["Body"] == "hello"  # streaming body read into text
        json.dumps(got)
    finally:
        call(ctx, "s3.delete_object", Bucket=bucket, Key="k")
        call(ctx, "s3.delete_bucket", Bucket=bucket)


def test_ssm_overwrite_is_not_tagged(ctx: ActionContext) -> None:
    # SSM refuses Tags together with Overwrite; the first put tags, the overwrite keeps them.
    name = "/" + unique("param")
    call(ctx, "ssm.put_parameter", Name=name, Value="a", Type="String")
    try:
        call(ctx, "ssm.put_parameter", Name=name, Value="b", Type="String", Overwrite=True)
        tags = call(ctx, "ssm.list_tags_for_resource", ResourceType="Parameter", ResourceId=name)
        assert tag_map(tags["TagList"]) == TAGS
    finally:
        call(ctx, "ssm.delete_parameter", Name=name)


def test_waiter_failure(ctx: ActionContext) -> None:
    action = {
        "aws": "ec2.create_vpc",
        "params": {"CidrBlock": "10.24.0.0/16"},
        "wait": {"waiter": "vpc_exists", "params": {"VpcIds": ["vpc-0000000000000000a"]},
                 "delay": 0.1, "max_attempts": 2},
    }  # fmt: skip
    with pytest.raises(ActionError) as info:
        KIND.execute(action, ctx)
    assert info.value.code == "WaiterFailed"
    assert "vpc_exists" in info.value.message
    # The call took effect before the wait failed: its result is there to record and undo.
    vpc_id = info.value.result["Vpc"]["VpcId"]
    call(ctx, "ec2.delete_vpc", VpcId=vpc_id)


def test_cancel_stops_a_wait(ctx: ActionContext) -> None:
    ctx.cancel.set()
    action = {
        "aws": "ec2.describe_vpcs",
        "wait": {"waiter": "vpc_exists", "params": {"VpcIds": ["vpc-0000000000000000a"]},
                 "delay": 30, "max_attempts": 10},
    }  # fmt: skip
    start = time.monotonic()
    with pytest.raises(ActionError) as info:
        KIND.execute(action, ctx)
    assert info.value.code == "Cancelled"
    assert time.monotonic() - start < 5


def test_deleting_a_missing_vpc_is_a_not_found_error(ctx: ActionContext) -> None:
    with pytest.raises(ActionError) as info:
        call(ctx, "ec2.delete_vpc", VpcId="vpc-0000000000000000a")
    error = info.value
    assert fnmatch.fnmatchcase(error.code or "", "*NotFound*"), error.code
    assert error.kind == "aws" and not error.transient
    assert error.message.startswith("ec2.delete_vpc: ")


def test_param_validation_error_names_the_parameter_but_not_its_value(ctx: ActionContext) -> None:
    with pytest.raises(ActionError) as info:
        call(ctx, "iam.create_role", RoleName="r", AssumeRolePolicyDocument="{}",
             MaxSessionDuration="hunter2-do-not-print")  # fmt: skip
    error = info.value
    assert error.code == "ParamValidation" and not error.transient
    assert "MaxSessionDuration" in str(error)
    assert "hunter2" not in str(error)


def test_service_error_messages_drop_sensitive_values() -> None:
    op_model = service_model("secretsmanager").operation_model("CreateSecret")
    from atomicops.actions.aws import _sensitive_values

    secrets = _sensitive_values(
        {"Name": "db", "SecretString": "s3cr3t-value"}, op_model.input_shape, set()
    )
    assert secrets == {"s3cr3t-value"}
    failure = ClientError(
        {"Error": {"Code": "ValidationException", "Message": "bad 's3cr3t-value' for db"},
         "ResponseMetadata": {"HTTPStatusCode": 400}},
        "CreateSecret",
    )  # fmt: skip
    error = translate_error(failure, "secretsmanager.create_secret", secrets)
    assert "s3cr3t-value" not in str(error) and "db" in str(error)


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [("ThrottlingException", 400, True), ("InternalError", 500, True),
     ("ServiceUnavailable", 503, True), ("AccessDenied", 403, False)],
)  # fmt: skip
def test_transient_service_errors(code: str, status: int, transient: bool) -> None:
    failure = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "DescribeVpcs",
    )
    assert translate_error(failure, "ec2.describe_vpcs").transient is transient


def test_connection_refused_is_a_quick_transient_error(closed_endpoint: str) -> None:
    closed = closed_endpoint
    conns = Connections({"aws": {"kind": "aws", "region": "us-east-1", "endpoint_url": closed,
                                 "connect_timeout": 1, "max_attempts": 1}})  # fmt: skip
    start = time.monotonic()
    try:
        with pytest.raises(ActionError) as info:
            call(context(conns), "ec2.describe_vpcs")
    finally:
        conns.close()
    assert time.monotonic() - start < 5
    error = info.value
    assert error.code == "ConnectionError" and error.transient
    assert closed in error.message


def test_clients_are_made_once_per_service_across_threads(aws_connection: dict[str, Any]) -> None:
    handle = AwsConnection.from_spec(aws_connection)
    made: list[Any] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        made.append(handle.client("ec2"))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(made) == 8 and all(c is made[0] for c in made)
        assert made[0].meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    finally:
        handle.close()


def test_an_error_page_instead_of_an_aws_error_becomes_one_short_line(ctx: ActionContext) -> None:
    # moto 5.2.5 answers schedule_key_deletion given a key ARN with its HTML 500 page.
    arn = call(ctx, "kms.create_key")["KeyMetadata"]["Arn"]
    with pytest.raises(ActionError) as err:
        call(ctx, "kms.schedule_key_deletion", KeyId=arn, PendingWindowInDays=7)
    message = str(err.value)
    assert "<" not in message and "\n" not in message
    assert "500 Internal Server Error" in message and "kms.schedule_key_deletion" in message
    key_id = call(ctx, "kms.describe_key", KeyId=arn)["KeyMetadata"]["KeyId"]
    call(ctx, "kms.schedule_key_deletion", KeyId=key_id, PendingWindowInDays=7)
