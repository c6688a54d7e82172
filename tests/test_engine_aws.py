"""The engine against moto's server over HTTP: apply, re-apply, atomicity, run rollback,
rollback from the journal alone. Every round trip ends with the account's inventory equal to
the one taken before apply."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import boto3
import pytest

from atomicops import api
from atomicops.errors import RunFailed
from atomicops.inventory import aws as inventory

PLANS = Path(__file__).parent / "plans"
TYPES = [
    "ec2.vpcs", "ec2.subnets", "ec2.security_groups", "ec2.security_group_rules",
    "dynamodb.tables", "iam.roles",
]


@pytest.fixture
def inv(moto_endpoint):
    factory = inventory.clients(region="us-east-1", endpoint_url=moto_endpoint)
    types = [t for t in TYPES if t in {r.name for r in inventory.RESOURCE_TYPES}]
    return lambda: inventory.snapshot(factory, types=types)


@pytest.fixture
def run_vars(moto_endpoint):
    return {"aws_endpoint": moto_endpoint, "suffix": uuid.uuid4().hex[:8]}


def events_of_run(state, env, run_id):
    return [e for e in api.history(env=env, state=state) if e["run"] == run_id]


def test_apply_status_reapply_rollback_leaves_the_account_as_it_was(tmp_path, inv, run_vars, moto_endpoint):
    state = str(tmp_path / "journal.db")
    before = inv()
    report = api.apply(PLANS / "network.yaml", env="t1", state=state, vars=run_vars)
    assert sorted(report.applied) == ["db-sg", "ecs-sg", "table", "task-role", "vpc"]

    during = inv()
    assert inventory.diff(before, during)  # something was created...
    st = api.status(env="t1", state=state)
    ops = {o["id"]: o for o in st["operations"]}
    assert all(o["status"] == "applied" for o in ops.values())
    vpc_id = ops["vpc"]["outputs"]["vpc_id"]
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    tags = {t["Key"]: t["Value"] for t in vpc["Tags"]}
    assert tags["atomicops:env"] == "t1" and tags["atomicops:step"] == "t1/vpc/create-vpc"

    again = api.apply(PLANS / "network.yaml", env="t1", state=state, vars=run_vars)
    assert again.applied == [] and sorted(again.unchanged) == sorted(ops)
    assert not [e for e in events_of_run(state, "t1", again.run_id) if e["type"] == "step_intent"]
    assert inv() == during

    rb = api.rollback(env="t1", state=state)
    assert sorted(rb.undone) == sorted(ops)
    assert inventory.diff(before, inv()) == {}
    # The undo order respected dependencies: the VPC went after everything inside it.
    undone = [e["op"] for e in api.history(env="t1", state=state) if e["type"] == "op_undone"]
    assert undone.index("vpc") > max(undone.index("ecs-sg"), undone.index("db-sg"))
    assert undone.index("db-sg") < undone.index("ecs-sg")  # db-sg's rule references ecs-sg


def test_failure_inside_an_operation_undoes_its_done_steps(tmp_path, inv, run_vars):
    state = str(tmp_path / "journal.db")
    before = inv()
    bad = {**run_vars, "subnet_b_cidr": "192.168.9.0/24"}  # outside the VPC: AWS refuses it
    with pytest.raises(RunFailed) as exc:
        api.apply(PLANS / "network.yaml", env="t2", state=state, vars=bad, targets=["vpc"])
    assert exc.value.exit_code == 1
    assert "subnet-b" in str(exc.value)
    hist = api.history(env="t2", state=state)
    undone = [e["step"] for e in hist if e["type"] == "undo_done"]
    assert undone == ["subnet-a", "create-vpc"]  # newest first
    assert [e["op"] for e in hist if e["type"] == "op_failed"] == ["vpc"]
    assert inventory.diff(before, inv()) == {}
    assert api.status(env="t2", state=state)["operations"][0]["status"] == "failed"


def test_failure_in_a_late_operation_rolls_back_the_whole_run(tmp_path, inv, run_vars):
    state = str(tmp_path / "journal.db")
    before = inv()
    with pytest.raises(RunFailed) as exc:
        api.apply(PLANS / "network.yaml", env="t3", state=state, vars={**run_vars, "fail_late": "yes"})
    assert not exc.value.kept
    report = exc.value.report
    # The failed operation undid itself (atomicity); the run rollback took the others back.
    assert sorted(report.rollback.undone) == ["db-sg", "ecs-sg", "task-role", "vpc"]
    hist = api.history(env="t3", state=state)
    assert ("table", "create") in [(e["op"], e["step"]) for e in hist if e["type"] == "undo_done"]
    assert inventory.diff(before, inv()) == {}
    statuses = {o["id"]: o["status"] for o in api.status(env="t3", state=state)["operations"]}
    assert statuses["table"] == "failed"
    assert {s for op, s in statuses.items() if op != "table"} == {"rolled_back"}


def test_keep_on_failure_leaves_earlier_operations_for_inspection(tmp_path, inv, run_vars):
    state = str(tmp_path / "journal.db")
    before = inv()
    with pytest.raises(RunFailed) as exc:
        api.apply(PLANS / "network.yaml", env="t4", state=state, on_failure="keep",
                  vars={**run_vars, "fail_late": "yes"})
    assert exc.value.kept
    statuses = {o["id"]: o["status"] for o in api.status(env="t4", state=state)["operations"]}
    assert statuses == {"vpc": "applied", "ecs-sg": "applied", "db-sg": "applied", "task-role": "applied", "table": "failed"}
    api.rollback(env="t4", state=state)
    assert inventory.diff(before, inv()) == {}


def test_rollback_needs_only_the_journal(tmp_path, inv, run_vars):
    plan_dir = tmp_path / "plan"
    shutil.copytree(PLANS, plan_dir)
    state = str(tmp_path / "journal.db")
    before = inv()
    api.apply(plan_dir / "network.yaml", env="t5", state=state, vars=run_vars)
    shutil.rmtree(plan_dir)
    rb = api.rollback(env="t5", state=state)
    assert len(rb.undone) == 5
    assert inventory.diff(before, inv()) == {}


def test_rollback_target_takes_its_dependents_along(tmp_path, inv, run_vars):
    state = str(tmp_path / "journal.db")
    before = inv()
    api.apply(PLANS / "network.yaml", env="t6", state=state, vars=run_vars)
    rb = api.rollback(env="t6", state=state, targets=["ecs-sg"])
    assert sorted(rb.undone) == ["db-sg", "ecs-sg"]
    statuses = {o["id"]: o["status"] for o in api.status(env="t6", state=state)["operations"]}
    assert statuses["vpc"] == "applied" and statuses["db-sg"] == "rolled_back"
    # Re-apply restores exactly what was undone.
    again = api.apply(PLANS / "network.yaml", env="t6", state=state, vars=run_vars)
    assert sorted(again.applied) == ["db-sg", "ecs-sg"]
    api.rollback(env="t6", state=state)
    assert inventory.diff(before, inv()) == {}


def test_undo_of_something_already_gone_counts_as_undone(tmp_path, inv, run_vars, moto_endpoint):
    state = str(tmp_path / "journal.db")
    before = inv()
    api.apply(PLANS / "network.yaml", env="t7", state=state, vars=run_vars, targets=["task-role"])
    role = api.status(env="t7", state=state)["operations"][0]["outputs"]["role_name"]
    boto3.client("iam", region_name="us-east-1", endpoint_url=moto_endpoint).delete_role(RoleName=role)
    # The undo itself, not the drift check (which would skip it: tests/test_drift.py).
    api.rollback(env="t7", state=state, drift_check=False)
    done = [e for e in api.history(env="t7", state=state) if e["type"] == "undo_done"]
    assert done[-1]["data"]["already_gone"] is True
    assert inventory.diff(before, inv()) == {}
    # Undo is idempotent: a second rollback finds nothing to do and changes nothing.
    assert api.rollback(env="t7", state=state).undone == []


def test_orphans_are_tagged_resources_the_journal_does_not_hold(tmp_path, inv, run_vars, moto_endpoint):
    state = str(tmp_path / "journal.db")
    api.apply(PLANS / "network.yaml", env="t8", state=state, vars=run_vars, targets=["vpc"])
    snapshot = inventory.snapshot(inventory.clients(region="us-east-1", endpoint_url=moto_endpoint), types=["ec2.vpcs", "ec2.subnets"])
    assert [o for o in api.orphans(snapshot, state=state) if o["step"].startswith("t8/")] == []
    # A VPC made as if by a step the journal never recorded (a kill before its intent was
    # written cannot happen, but a hand-made or foreign-journal resource can).
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    stray = ec2.create_vpc(CidrBlock="10.99.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": [
        {"Key": "atomicops:env", "Value": "t8"}, {"Key": "atomicops:step", "Value": "t8/vpc/extra"}]}])["Vpc"]["VpcId"]
    api.rollback(env="t8", state=state)
    snapshot = inventory.snapshot(inventory.clients(region="us-east-1", endpoint_url=moto_endpoint), types=["ec2.vpcs", "ec2.subnets"])
    mine = [o for o in api.orphans(snapshot, state=state) if o["step"].startswith("t8/")]
    assert [(o["id"], o["journal"]) for o in mine] == [(stray, "unknown")]
    ec2.delete_vpc(VpcId=stray)
