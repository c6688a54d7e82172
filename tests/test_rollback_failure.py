"""A rollback that fails, on moto's server: an undo failing after its retries is journalled,
the branches that do not stand on it are still undone, exit 3 names what remains and what to
run; a second `rollback` retries only that; `--skip OP --reason` records a person's clean-up.

The failure is injected with ``ATOMICOPS_FAULT=undo:OP[/STEP]`` (engine/faults.py): the first
undo fails, the journal then holds it as failed by the fault, and the next one runs for real.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
from run_cli import cli

from atomicops.engine import faults
from atomicops.errors import EXIT_INVALID, EXIT_ROLLBACK_INCOMPLETE, ActionError, UsageError
from atomicops.inventory import aws as inventory

PLANS = Path(__file__).parent / "plans"
TYPES = ["ec2.vpcs", "ec2.subnets", "ec2.security_groups", "dynamodb.tables", "iam.roles"]
# network.yaml: db-sg stands on vpc and ecs-sg; task-role (same phase) and table (the later
# phase) stand on nothing db-sg holds.
BEHIND_DB_SG = {"db-sg", "ecs-sg", "vpc"}
INDEPENDENT = {"task-role", "table"}


@pytest.fixture
def world(tmp_path, moto_endpoint):
    suffix = uuid.uuid4().hex[:8]
    factory = inventory.clients(region="us-east-1", endpoint_url=moto_endpoint)

    class World:
        env = f"uf-{suffix}"
        cwd = tmp_path
        vars = ["--var", f"aws_endpoint={moto_endpoint}", "--var", f"suffix={suffix}"]
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)

        def run(self, *args: str, fault: str | None = None):
            env = {faults.FAULT_ENV: fault} if fault else {}
            return cli(*args, "--env", self.env, cwd=tmp_path, env=env)

        def inv(self):
            return inventory.snapshot(factory, types=TYPES)

        def statuses(self):
            doc = json.loads(self.run("status", "--json").stdout)
            return {o["id"]: o["status"] for o in doc["operations"]}

        def history(self):
            return json.loads(self.run("history", "--json").stdout)

    w = World()
    w.before = w.inv()
    applied = w.run("apply", str(PLANS / "network.yaml"), *w.vars)
    assert applied.returncode == 0, applied.stderr
    return w


def test_a_failing_undo_exits_3_and_a_second_rollback_retries_only_what_remains(world):
    first = world.run("rollback", "--json", fault="undo:db-sg")
    assert first.returncode == EXIT_ROLLBACK_INCOMPLETE, first.stderr
    doc = json.loads(first.stdout)
    assert doc["type"] == "RollbackIncomplete"
    report = doc["report"]
    assert report["env"] == world.env
    assert set(report["failed"]) == {"db-sg"} and "InjectedFault" in report["failed"]["db-sg"]
    assert set(report["remaining"]) == BEHIND_DB_SG
    assert report["skippable"] == ["db-sg"], "only the failed undo, not what waits behind it"
    # Every branch that does not stand on db-sg was still undone.
    assert INDEPENDENT <= set(report["undone"])
    # The message names what remains and the commands to run next.
    assert "still applied: db-sg, ecs-sg, vpc" in doc["error"]
    assert f"atomicops rollback --env {world.env}" in doc["error"]
    assert "--skip db-sg --reason" in doc["error"]

    statuses = world.statuses()
    assert statuses["db-sg"] == "rollback_failed"
    assert all(statuses[o] == "rolled_back" for o in INDEPENDENT)
    assert world.run("status").returncode == EXIT_ROLLBACK_INCOMPLETE, "status says action is needed"
    seen = world.history()[-1]["seq"]

    # The variable is still set: the fault fired once, so the second rollback finishes.
    second = world.run("rollback", "--json", fault="undo:db-sg")
    assert second.returncode == 0, second.stdout + second.stderr
    assert set(json.loads(second.stdout)["undone"]) == BEHIND_DB_SG
    retried = {ev["op"] for ev in world.history() if ev["seq"] > seen and ev["type"] == "undo_intent"}
    assert retried == BEHIND_DB_SG, "only what remained was undone again"
    assert set(world.statuses().values()) == {"rolled_back"}
    assert inventory.diff(world.before, world.inv()) == {}


def test_skip_records_a_hand_cleanup_with_its_reason_and_undoes_what_it_stood_on(world):
    first = world.run("rollback", fault="undo:db-sg/allow-ecs")
    assert first.returncode == EXIT_ROLLBACK_INCOMPLETE, first.stderr

    assert world.run("rollback", "--skip", "db-sg").returncode == EXIT_INVALID, "--skip needs --reason"
    refused = world.run("rollback", "--skip", "vpc", "--reason", "x")
    assert refused.returncode == EXIT_INVALID and "only an operation whose undo failed" in refused.stderr

    # A person removes the rule and the group by hand, as the failed undo left them.
    group = world.ec2.describe_security_groups(
        Filters=[{"Name": "tag:atomicops:env", "Values": [world.env]}, {"Name": "group-name", "Values": ["db"]}]
    )["SecurityGroups"][0]
    world.ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
    world.ec2.delete_security_group(GroupId=group["GroupId"])

    reason = "revoked the 5432 rule and deleted the db group in the console (ticket OPS-42)"
    skipped = world.run("rollback", "--skip", "db-sg", "--reason", reason)
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped (cleaned up by hand): db-sg" in skipped.stdout

    events = world.history()
    mark = [ev for ev in events if ev["type"] == "op_skipped"]
    assert len(mark) == 1 and mark[0]["op"] == "db-sg"
    assert mark[0]["data"]["reason"] == reason
    assert "@" in mark[0]["data"]["by"], "user@host of who vouched for it"
    assert reason in world.run("history").stdout, "the text history shows the reason in full"
    assert set(world.statuses().values()) == {"rolled_back"}
    assert inventory.diff(world.before, world.inv()) == {}


def test_fault_variable_grammar():
    assert faults.parse("step:a/b, undo:c") == [faults.Fault("step", "a", "b"), faults.Fault("undo", "c")]
    for bad in ("boom:a", "step", "undo:", "step:/x"):
        with pytest.raises(UsageError):
            faults.parse(bad)


def test_an_undo_fault_fires_once_by_the_journal(monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "undo:db")
    with pytest.raises(ActionError) as caught:
        faults.injected("undo", "db", "rule", fired=lambda: ())
    assert caught.value.code == faults.FAULT_CODE
    faults.injected("undo", "db", "group", fired=lambda: {"rule"})  # fired before: silent
    faults.injected("undo", "other", "rule", fired=lambda: ())
    # A step fault without a step fires at the operation's last step only.
    monkeypatch.setenv(faults.FAULT_ENV, "step:db")
    faults.injected("step", "db", "group", last=False)
    with pytest.raises(ActionError):
        faults.injected("step", "db", "rule", last=True)


def test_no_fault_without_the_variable(monkeypatch):
    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    faults.injected("step", "db", "rule", last=True)
    faults.injected("undo", "db", "rule")
