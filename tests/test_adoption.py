"""No adoption: a create that AWS answers with success for a resource that is already there
(an ECS cluster, an SNS topic, an SQS queue, an inline role policy) must not journal an undo
that would delete a namesake made outside the tool.

The namesake is made first with boto3 (no atomicops tags); the plan's operation makes a VPC
and then meets it. The step fails naming the resource; the VPC is undone; a rollback later
leaves the namesake as it was.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from atomicops import api
from atomicops.engine.adoption import ADOPTING_CALLS
from atomicops.errors import RunFailed

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})  # fmt: skip
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})

PLAN = """
atomicops: 1
name: adoption
vars: {aws_endpoint: null, name: x}
connections:
  aws: {kind: aws, region: us-east-1, endpoint_url: "${vars.aws_endpoint}"}
operations:
  - id: thing
    steps:
      - name: vpc
        do: {aws: ec2.create_vpc, params: {CidrBlock: 10.88.0.0/16}}
        outputs: {vpc_id: Vpc.VpcId}
        undo: {aws: ec2.delete_vpc, params: {VpcId: "${self.vpc_id}"}}
      - name: make
        STEP
"""

STEPS = {
    "ecs": """do: {aws: ecs.create_cluster, params: {clusterName: "${vars.name}"}}
        outputs: {arn: cluster.clusterArn}
        undo: {aws: ecs.delete_cluster, params: {cluster: "${vars.name}"}}""",
    "sns": """do: {aws: sns.create_topic, params: {Name: "${vars.name}"}}
        outputs: {arn: TopicArn}
        undo: {aws: sns.delete_topic, params: {TopicArn: "${self.arn}"}}""",
    "sqs": """do: {aws: sqs.create_queue, params: {QueueName: "${vars.name}"}}
        outputs: {url: QueueUrl}
        undo: {aws: sqs.delete_queue, params: {QueueUrl: "${self.url}"}}""",
    "iam": """do: {aws: iam.put_role_policy, params: {RoleName: "${vars.name}", PolicyName: inline, PolicyDocument: 'DOC'}}
        undo: {aws: iam.delete_role_policy, params: {RoleName: "${vars.name}", PolicyName: inline}}""".replace("DOC", POLICY),
}


class Namesakes:
    """Makes, finds and removes the resources made outside the tool."""

    def __init__(self, endpoint: str):
        self.c = {s: boto3.client(s, region_name="us-east-1", endpoint_url=endpoint) for s in ("ecs", "sns", "sqs", "iam", "ec2")}

    def make(self, kind: str, name: str) -> None:
        if kind == "ecs":
            self.c["ecs"].create_cluster(clusterName=name)
        elif kind == "sns":
            self.c["sns"].create_topic(Name=name)
        elif kind == "sqs":
            self.c["sqs"].create_queue(QueueName=name)
        else:
            self.c["iam"].create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
            self.c["iam"].put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=POLICY)

    def exists(self, kind: str, name: str) -> bool:
        if kind == "ecs":
            found = self.c["ecs"].describe_clusters(clusters=[name])["clusters"]
            return any(c["status"] == "ACTIVE" for c in found)
        if kind == "sns":
            return any(t["TopicArn"].endswith(":" + name) for t in self.c["sns"].list_topics()["Topics"])
        if kind == "sqs":
            return bool(self.c["sqs"].list_queues(QueueNamePrefix=name).get("QueueUrls"))
        return "inline" in self.c["iam"].list_role_policies(RoleName=name)["PolicyNames"]

    def tags(self, kind: str, name: str) -> dict[str, Any]:
        """What the namesake carries: an adopted one would have gained nothing, but must not change."""
        if kind == "ecs":
            found = self.c["ecs"].describe_clusters(clusters=[name], include=["TAGS"])["clusters"]
            return {t["key"]: t["value"] for c in found for t in c.get("tags", [])}
        if kind == "sns":
            arn = next(t["TopicArn"] for t in self.c["sns"].list_topics()["Topics"] if t["TopicArn"].endswith(":" + name))
            return {t["Key"]: t["Value"] for t in self.c["sns"].list_tags_for_resource(ResourceArn=arn)["Tags"]}
        if kind == "sqs":
            url = self.c["sqs"].get_queue_url(QueueName=name)["QueueUrl"]
            return dict(self.c["sqs"].list_queue_tags(QueueUrl=url).get("Tags") or {})
        return {"document": self.c["iam"].get_role_policy(RoleName=name, PolicyName="inline")["PolicyDocument"]}

    def vpcs_of(self, env: str) -> list[str]:
        found = self.c["ec2"].describe_vpcs(Filters=[{"Name": "tag:atomicops:env", "Values": [env]}])["Vpcs"]
        return [v["VpcId"] for v in found]


@pytest.fixture(scope="module")
def namesakes(moto_endpoint: str) -> Namesakes:
    return Namesakes(moto_endpoint)


def write_plan(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace("STEP", STEPS[kind]))
    return path


@pytest.mark.parametrize("kind", sorted(STEPS))
def test_a_namesake_made_outside_the_tool_survives_the_failed_apply_and_the_rollback(tmp_path, moto_endpoint, namesakes, kind):
    name = f"adopt-{uuid.uuid4().hex[:8]}"
    env, state = f"adopt-{kind}-{uuid.uuid4().hex[:6]}", str(tmp_path / "j.db")
    namesakes.make(kind, name)
    before = namesakes.tags(kind, name)

    with pytest.raises(RunFailed) as failed:
        api.apply(write_plan(tmp_path, kind), env=env, state=state, vars={"aws_endpoint": moto_endpoint, "name": name})
    message = str(failed.value.failures[0])
    assert name in message and "already exists and is not this step's" in message, message
    # Refused before its intent: the journal never saw the namesake, so no undo can delete it.
    intents = [e for e in api.history(env=env, state=state) if e["type"] == "step_intent"]
    assert [e["step"] for e in intents] == ["vpc"]
    assert namesakes.vpcs_of(env) == []  # the operation's own VPC was undone

    api.rollback(env=env, state=state)
    assert namesakes.exists(kind, name)
    assert namesakes.tags(kind, name) == before


@pytest.mark.parametrize("kind", ["ecs", "sns", "sqs"])
def test_without_a_namesake_the_create_runs_and_its_rollback_deletes_it(tmp_path, moto_endpoint, namesakes, kind):
    name = f"fresh-{uuid.uuid4().hex[:8]}"
    env, state = f"fresh-{kind}-{uuid.uuid4().hex[:6]}", str(tmp_path / "j.db")
    plan = write_plan(tmp_path, kind)
    api.apply(plan, env=env, state=state, vars={"aws_endpoint": moto_endpoint, "name": name})
    assert namesakes.exists(kind, name)
    assert namesakes.tags(kind, name)["atomicops:step"] == f"{env}/thing/make"
    api.rollback(env=env, state=state)
    assert not namesakes.exists(kind, name)


def test_the_guarded_calls_are_the_ones_aws_lets_succeed_on_an_existing_resource():
    # Explicit on purpose: a call joins this list after checking AWS's behaviour, never by pattern.
    assert ADOPTING_CALLS == {
        "ecs.create_cluster", "sns.create_topic", "sns.subscribe", "sqs.create_queue", "iam.put_role_policy",
        "iam.attach_role_policy", "s3.create_bucket", "logs.put_metric_filter", "cloudwatch.put_metric_alarm",
        "events.put_rule", "events.put_targets",
    }  # fmt: skip
