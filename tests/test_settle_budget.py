"""G2 (docs/real-aws.md): how long an undo waits for AWS to release what a deleted resource
held is a setting: `rollback --settle-minutes N`, else the aws connection's `settle_minutes`,
else 15 minutes against real AWS and 3 on an emulator."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from atomicops import api
from atomicops.actions.aws import AwsKind
from atomicops.actions.base import Connections
from atomicops.engine.settling import settle_minutes, settling_retry
from tests.run_cli import cli


def total_wait(minutes: float) -> float:
    policy = settling_retry(minutes)
    return sum(min(policy.delay * policy.backoff**i, policy.max_delay) for i in range(policy.attempts - 1))


def test_the_budget_fills_the_minutes_and_the_test_knob_scales_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATOMICOPS_SETTLE_DELAY", raising=False)
    assert 180 <= total_wait(3) <= 215  # today's sandbox budget: 12 tries, 184 s
    assert 900 <= total_wait(15) <= 935
    assert total_wait(45) >= 45 * 60 and settling_retry(45).attempts <= 100
    monkeypatch.setenv("ATOMICOPS_SETTLE_DELAY", "0.02")  # 1/100 of every wait
    assert total_wait(15) == pytest.approx(9.04, abs=0.4)


@pytest.mark.parametrize(
    ("spec", "action", "override", "minutes"),
    [
        ({"endpoint_url": "http://127.0.0.1:5000"}, {"aws": "ec2.delete_vpc"}, None, 3),  # an emulator
        ({"region": "eu-west-1"}, {"aws": "ec2.delete_vpc"}, None, 15),  # real AWS
        ({"settle_minutes": 25}, {"aws": "ec2.delete_vpc"}, None, 25),
        ({"settle_minutes": 25}, {"aws": "ec2.delete_vpc"}, 7, 7),  # --settle-minutes wins
        ({}, {"sql": "drop table t"}, None, 3),
    ],
)
def test_where_the_budget_comes_from(spec: dict[str, object], action: dict[str, object], override: float | None,
                                     minutes: float) -> None:
    conns = Connections({"aws": {"kind": "aws", **spec}})
    assert settle_minutes(conns, action, override) == minutes


def test_settle_minutes_is_checked_with_the_connection() -> None:
    check = AwsKind().check_connection
    assert [i.path for i in check({"kind": "aws", "settle_minutes": 90})] == [("settle_minutes",)]
    assert [i.path for i in check({"kind": "aws", "settle_minutes": "soon"})] == [("settle_minutes",)]
    assert list(check({"kind": "aws", "settle_minutes": 20})) == []


PLAN = """
atomicops: 1
name: settle
phases: [main]
vars: {aws_endpoint: null, name: x}
connections:
  aws: {kind: aws, region: us-east-1, endpoint_url: "${vars.aws_endpoint}", settle_minutes: 2}
operations:
  - id: vpc
    phase: main
    title: a VPC that something else will stand in
    steps:
      - name: vpc
        do: {aws: ec2.create_vpc, params: {CidrBlock: 10.77.0.0/16}}
        outputs: {vpc_id: Vpc.VpcId}
        undo: {aws: ec2.delete_vpc, params: {VpcId: "${self.vpc_id}"}}
"""


def test_rollback_waits_the_budget_it_was_given(tmp_path: Path, moto_endpoint: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    state = str(tmp_path / "j.db")
    api.apply(plan, env="s", state=state, vars={"aws_endpoint": moto_endpoint, "name": uuid.uuid4().hex[:8]})
    vpc_id = api.status(env="s", state=state)["operations"][0]["outputs"]["vpc_id"]
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]  # DependencyViolation
    fast = {"ATOMICOPS_SETTLE_DELAY": "0.002"}  # 1/1000 of every wait
    by_connection = cli("rollback", "--env", "s", "--state", state, cwd=tmp_path, env=fast)
    assert by_connection.returncode == 3, by_connection.stderr
    assert "DependencyViolation; waiting up to 2 min" in by_connection.stderr
    by_flag = cli("rollback", "--env", "s", "--state", state, "--settle-minutes", "0.5", cwd=tmp_path, env=fast)
    assert by_flag.returncode == 3 and "waiting up to 0.5 min" in by_flag.stderr
    assert cli("rollback", "--settle-minutes", "60", "--state", state, cwd=tmp_path).returncode == 2
    ec2.delete_subnet(SubnetId=subnet)
    assert api.rollback(env="s", state=state).undone == ["vpc"]
