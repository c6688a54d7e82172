"""Resources carry the run that made them (``atomicops:run``); ``${step.run}`` lets a probe
claim only what the settled step's own run made, not a namesake an earlier run left (a KMS
key pending deletion keeps its tags; so does anything an earlier, killed run leaked)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from lossy_proxy import LossyProxy
from run_cli import cli

from atomicops import api
from atomicops.engine.crash import CRASH_EXIT_CODE

PLAN = """
atomicops: 1
name: run-tag
vars: {aws_endpoint: null}
connections:
  aws: {kind: aws, region: us-east-1, endpoint_url: "${vars.aws_endpoint}"}
operations:
  - id: net
    title: one VPC
    steps:
      - name: vpc
        do: {aws: ec2.create_vpc, params: {CidrBlock: 10.78.0.0/16}}
        outputs: {vpc_id: Vpc.VpcId}
        undo: {aws: ec2.delete_vpc, params: {VpcId: "${self.vpc_id}"}}
        probe:
          aws: ec2.describe_vpcs
          params:
            Filters:
              - {Name: "tag:atomicops:step", Values: ["${step.key}"]}
              - {Name: "tag:atomicops:run", Values: ["${step.run}"]}
          outputs: {vpc_id: "Vpcs[0].VpcId"}
"""


@pytest.fixture
def ec2(moto_endpoint: str) -> Any:
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)


def tags_of(ec2: Any, vpc_id: str) -> dict[str, str]:
    [vpc] = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    return {t["Key"]: t["Value"] for t in vpc.get("Tags", [])}


def under_key(ec2: Any, key: str) -> list[str]:
    found = ec2.describe_vpcs(Filters=[{"Name": "tag:atomicops:step", "Values": [key]}])["Vpcs"]
    return sorted(v["VpcId"] for v in found)


def plant(ec2: Any, key: str) -> str:
    """What an earlier run of the same step left behind: same step key, another run."""
    tags = [{"Key": "atomicops:step", "Value": key}, {"Key": "atomicops:run", "Value": "an-earlier-run"}]
    vpc = ec2.create_vpc(CidrBlock="10.79.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}])
    return str(vpc["Vpc"]["VpcId"])


def test_created_resources_carry_the_run_that_made_them(tmp_path, moto_endpoint, ec2):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    env, state = f"run-{uuid.uuid4().hex[:6]}", str(tmp_path / "j.db")
    report = api.apply(plan, env=env, state=state, vars={"aws_endpoint": moto_endpoint})
    vpc_id = api.status(env=env, state=state)["operations"][0]["outputs"]["vpc_id"]
    try:
        tags = tags_of(ec2, vpc_id)
        assert tags["atomicops:run"] == report.run_id
        assert tags["atomicops:step"] == f"{env}/net/vpc"
    finally:
        api.rollback(env=env, state=state)


def test_a_probe_by_step_run_does_not_claim_what_an_earlier_run_left(tmp_path, moto_endpoint, ec2):
    env, state = f"run-{uuid.uuid4().hex[:6]}", str(tmp_path / "j.db")
    key = f"{env}/net/vpc"
    planted = plant(ec2, key)
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    # The create is lost before it reaches AWS: the probe is asked, must not take the planted
    # VPC for this run's, and the create is sent again.
    proxy = LossyProxy(moto_endpoint, b"Action=CreateVpc", forward=False)
    try:
        api.apply(plan, env=env, state=state, vars={"aws_endpoint": proxy.url})
        made = api.status(env=env, state=state)["operations"][0]["outputs"]["vpc_id"]
        assert made != planted
        assert under_key(ec2, key) == sorted([made, planted])
        api.rollback(env=env, state=state)
        assert under_key(ec2, key) == [planted]
    finally:
        proxy.shutdown()
        proxy.server_close()
        ec2.delete_vpc(VpcId=planted)


def test_resume_probes_with_the_run_of_the_killed_intent(tmp_path, moto_endpoint, ec2):
    """Killed after the create: the VPC carries the killed run's id, and `resume` (a new run)
    must look for that run's VPC, or it would make a second one."""
    env = f"run-{uuid.uuid4().hex[:6]}"
    key = f"{env}/net/vpc"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    killed = cli("apply", str(plan), "--env", env, "--var", f"aws_endpoint={moto_endpoint}",
                 cwd=tmp_path, crash="after_effect:net/vpc")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    [made] = under_key(ec2, key)
    resumed = cli("resume", "--env", env, cwd=tmp_path)
    try:
        assert resumed.returncode == 0, resumed.stderr
        assert under_key(ec2, key) == [made]  # no duplicate
    finally:
        assert cli("rollback", "--env", env, cwd=tmp_path).returncode == 0
    assert under_key(ec2, key) == []
