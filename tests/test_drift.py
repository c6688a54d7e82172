"""`atomicops drift` and rollback's drift check, against moto's server: resources deleted or
replaced out of band (with boto3, as a person in the console would) are reported exactly; a
rollback skips the undo of what is gone, never deletes a replacement, and leaves nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from run_cli import cli

from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.inventory import aws as inventory
from atomicops.journal.integrity import check_journal
from atomicops.journal.views import store_for

PLANS = Path(__file__).parent / "plans"
TYPES = ["ec2.vpcs", "ec2.subnets", "ec2.security_groups", "dynamodb.tables", "iam.roles"]


@pytest.fixture
def world(tmp_path: Path, moto_endpoint: str) -> Any:
    suffix = uuid.uuid4().hex[:8]
    factory = inventory.clients(region="us-east-1", endpoint_url=moto_endpoint)

    class World:
        cwd = tmp_path
        role = f"test-task-{suffix}"
        table = f"test-{suffix}"
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_endpoint)
        ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_endpoint)

        @staticmethod
        def run(*args: str, crash: str | None = None) -> Any:
            return cli(*args, cwd=tmp_path, crash=crash)

        @staticmethod
        def apply(env: str, crash: str | None = None) -> Any:
            return cli("apply", str(PLANS / "network.yaml"), "--env", env, "--var", f"aws_endpoint={moto_endpoint}",
                       "--var", f"suffix={suffix}", cwd=tmp_path, crash=crash)

        @staticmethod
        def inv() -> Any:
            return inventory.snapshot(factory, types=TYPES)

        @staticmethod
        def outputs(env: str, op: str) -> dict[str, Any]:
            doc = json.loads(cli("status", "--json", "--env", env, cwd=tmp_path).stdout)
            return next(o["outputs"] for o in doc["operations"] if o["id"] == op)

        @staticmethod
        def history(env: str) -> list[dict[str, Any]]:
            return json.loads(cli("history", "--json", "--env", env, cwd=tmp_path).stdout)

    return World


def _drift(world: Any, env: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    done = world.run("drift", "--json", "--env", env)
    doc = json.loads(done.stdout)
    return done.returncode, {f"{s['op']}/{s['step']}": s["status"] for s in doc["steps"]}, doc


def test_drift_reports_what_changed_and_rollback_skips_the_gone_and_holds_the_replaced(world):
    env = "drift"
    before = world.inv()
    assert world.apply(env).returncode == 0
    code, statuses, _ = _drift(world, env)
    assert code == 0 and set(statuses.values()) == {"in_sync"}, statuses

    # Out of band: the role deleted; the table replaced by a namesake that is not the run's;
    # subnet-b replaced by a copy carrying the run's own tags (a new id).
    world.iam.delete_role(RoleName=world.role)
    world.ddb.delete_table(TableName=world.table)
    world.ddb.get_waiter("table_not_exists").wait(TableName=world.table)
    world.ddb.create_table(TableName=world.table, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                           KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    old = world.outputs(env, "vpc")
    subnet = world.ec2.describe_subnets(SubnetIds=[old["subnet_b"]])["Subnets"][0]
    world.ec2.delete_subnet(SubnetId=old["subnet_b"])
    copy = world.ec2.create_subnet(VpcId=old["vpc_id"], CidrBlock=subnet["CidrBlock"], AvailabilityZone="us-east-1b",
                                   TagSpecifications=[{"ResourceType": "subnet", "Tags": subnet["Tags"]}])["Subnet"]["SubnetId"]

    code, statuses, doc = _drift(world, env)
    assert code == 1  # drift found (README: 0 in sync, 1 drift, 3 could not read all)
    drifted = {k: v for k, v in statuses.items() if v != "in_sync"}
    assert drifted == {"task-role/role": "gone", "table/create": "changed", "vpc/subnet-b": "changed"}
    replaced = next(s for s in doc["steps"] if s["step"] == "subnet-b")
    assert replaced["differs"] == ["subnet_b"]
    assert (replaced["expected"]["subnet_b"], replaced["actual"]["subnet_b"]) == (old["subnet_b"], copy)

    # The data phase goes first: the namesake table is not deleted, and everything before it waits.
    first = world.run("rollback", "--env", env)
    assert first.returncode == 3, first.stderr
    assert "replaced out of band" in first.stderr
    assert world.ddb.describe_table(TableName=world.table)["Table"]["TableStatus"] == "ACTIVE"

    # A person decides the namesake is someone else's: the rollback goes on. The role is gone
    # (skipped, with why); subnet-b's copy is held for a person, so the VPC waits.
    second = world.run("rollback", "--env", env, "--skip", "table", "--reason", "the namesake is the analytics team's")
    assert second.returncode == 3, second.stderr
    assert world.ec2.describe_subnets(SubnetIds=[copy])["Subnets"], "the copy was deleted"

    # The person removes the copy and says so; the rollback then finishes.
    world.ec2.delete_subnet(SubnetId=copy)
    assert world.run("resolve", "vpc", "subnet-b", "--not-applied", "--reason", "deleted the copy", "--env", env).returncode == 0
    third = world.run("rollback", "--env", env)
    assert third.returncode == 0, third.stderr

    events = world.history(env)
    skipped = [e for e in events if e["type"] == "undo_skipped"]
    assert [(e["op"], e["step"], e["data"].get("drift")) for e in skipped] == [("task-role", "role", "gone")]
    assert "gone out of band (drift)" in skipped[0]["data"]["reason"]
    refused = {(e["op"], e["step"]) for e in events if e["type"] == "undo_refused"}
    assert refused == {("table", "create"), ("vpc", "subnet-b")}
    assert not [e for e in events if e["type"] == "undo_intent" and e["op"] == "task-role"]  # never undone
    assert check_journal(store_for(str(world.cwd / ".atomicops")).events(env)) == []

    # Nothing leaked: what is left is the namesake, which the run did not create.
    left = inventory.diff(before, world.inv())
    assert list(left) == ["dynamodb.tables"] and world.table in json.dumps(left)
    world.ddb.delete_table(TableName=world.table)
    assert inventory.diff(before, world.inv()) == {}


def test_rollback_without_the_drift_check_undoes_as_before(world):
    env = "drift-off"
    before = world.inv()
    assert world.apply(env).returncode == 0
    world.iam.delete_role(RoleName=world.role)
    done = world.run("rollback", "--env", env, "--no-drift-check")
    assert done.returncode == 0, done.stderr
    events = world.history(env)
    assert not [e for e in events if e["type"] in ("drift_checked", "undo_skipped", "undo_refused")]
    gone = [e for e in events if e["type"] == "undo_done" and e["op"] == "task-role"]
    assert gone and gone[0]["data"]["already_gone"]  # through its undo_ok_errors (NoSuchEntity)
    assert inventory.diff(before, world.inv()) == {}


def test_a_kill_after_the_drift_check_loses_nothing_and_in_flight_steps_are_in_progress(world):
    env = "drift-kill"
    before = world.inv()
    # Killed with the table's create intended: drift holds it in progress, judges the rest.
    assert world.apply(env, crash="after_intent:table/create").returncode == CRASH_EXIT_CODE
    code, statuses, _ = _drift(world, env)
    assert code == 3 and statuses.pop("table/create") == "in_progress"
    assert set(statuses.values()) == {"in_sync"}

    world.iam.delete_role(RoleName=world.role)
    killed = world.run("rollback", "--env", env, crash="after_drift_check")
    assert killed.returncode == CRASH_EXIT_CODE
    assert not [e for e in world.history(env) if e["type"] in ("undo_intent", "undo_skipped")]  # decided nothing yet

    resumed = world.run("resume", "--env", env)
    assert resumed.returncode == 0, resumed.stderr
    skipped = [e for e in world.history(env) if e["type"] == "undo_skipped"]
    assert [(e["op"], e["data"].get("drift")) for e in skipped] == [("task-role", "gone")]
    assert inventory.diff(before, world.inv()) == {}
