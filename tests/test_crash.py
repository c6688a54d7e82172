"""Kill the process at named points (os._exit, like SIGKILL) and prove `resume` loses nothing:
no orphan, no duplicate, and a rollback afterwards leaves the account as it was."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
from run_cli import cli

from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.inventory import aws as inventory

# The journal's subject: CI runs this module on both stores (tests/fixtures_journal.py).
pytestmark = pytest.mark.both_stores

PLANS = Path(__file__).parent / "plans"
TYPES = ["ec2.vpcs", "ec2.subnets", "ec2.security_groups", "dynamodb.tables", "iam.roles"]


@pytest.fixture
def world(tmp_path, moto_endpoint):
    suffix = uuid.uuid4().hex[:8]
    factory = inventory.clients(region="us-east-1", endpoint_url=moto_endpoint)
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)

    class World:
        vars = ["--var", f"aws_endpoint={moto_endpoint}", "--var", f"suffix={suffix}"]
        cwd = tmp_path

        @staticmethod
        def inv():
            return inventory.snapshot(factory, types=TYPES)

        @staticmethod
        def vpcs_of(env):
            found = ec2.describe_vpcs(Filters=[{"Name": "tag:atomicops:env", "Values": [env]}])["Vpcs"]
            return [v["VpcId"] for v in found]

        @staticmethod
        def status(env):
            doc = json.loads(cli("status", "--json", "--env", env, cwd=tmp_path).stdout)
            return {o["id"]: o["status"] for o in doc["operations"]}

    return World


@pytest.mark.parametrize(
    "point",
    [
        "after_intent:vpc/create-vpc",  # nothing happened yet: the probe finds nothing, it runs again
        # The VPC exists, unjournalled: the probe finds it by its tag.
        "after_effect:vpc/create-vpc",
        "after_result:vpc/subnet-a",
        "between_operations:vpc",
    ],
)
def test_a_killed_apply_resumes_with_no_orphan_and_no_duplicate(world, point):
    env = "crash-" + point.split(":")[0]
    before = world.inv()
    first = cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd, crash=point)
    assert first.returncode == CRASH_EXIT_CODE, first.stderr
    resumed = cli("resume", "--env", env, cwd=world.cwd)  # no plan file needed
    assert resumed.returncode == 0, resumed.stderr
    assert set(world.status(env).values()) == {"applied"}
    assert len(world.vpcs_of(env)) == 1  # no duplicate, no orphan

    assert cli("rollback", "--env", env, cwd=world.cwd).returncode == 0
    assert inventory.diff(before, world.inv()) == {}


@pytest.mark.parametrize("point", ["inside_undo:vpc/create-vpc", "after_undo:vpc/create-vpc",
                                   "after_undo:db-sg/group"])
def test_a_killed_rollback_resumes_to_the_end(world, point):
    env = "crash-rb-" + point.split(":")[0]
    before = world.inv()
    assert cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd).returncode == 0
    killed = cli("rollback", "--env", env, cwd=world.cwd, crash=point)
    assert killed.returncode == CRASH_EXIT_CODE
    resumed = cli("resume", "--env", env, cwd=world.cwd)
    assert resumed.returncode == 0, resumed.stderr
    assert set(world.status(env).values()) == {"rolled_back"}
    assert inventory.diff(before, world.inv()) == {}


@pytest.mark.parametrize("how", [["resume", "--rollback"], ["rollback"]])
def test_a_probe_reading_other_operations_outputs_settles_a_kill_rolled_back(world, how):
    env = "crash-probe-ops-" + how[-1].strip("-")
    before = world.inv()
    point = "after_effect:db-sg/group"  # the group exists; its probe needs ${ops.vpc.vpc_id}
    assert cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd, crash=point).returncode == CRASH_EXIT_CODE
    done = cli(*how, "--env", env, cwd=world.cwd)
    assert done.returncode == 0, done.stderr
    assert inventory.diff(before, world.inv()) == {}


def settled_by_probe(hist: list[dict]) -> dict[tuple[str, str], dict]:
    """The steps settled by their probe after the kill, with what was journalled: the step the
    kill aimed at, and any step of another operation it caught in flight beside it (the
    operations run in parallel), each one that the killed run began and never ended."""
    settled = {(e["op"], e["step"]): e["data"] for e in hist
               if e["type"] == "step_done" and e["data"].get("settled_by") == "probe"}
    killed = hist[0]["run"]
    began = {(e["op"], e["step"]) for e in hist if e["run"] == killed and e["type"] == "step_intent"}
    ended = {(e["op"], e["step"]) for e in hist if e["run"] == killed and e["type"] in ("step_done", "step_failed")}
    assert set(settled) <= began - ended, (settled, began - ended)
    return settled


def test_apply_after_a_kill_settles_and_continues(world):
    env = "crash-reapply"
    before = world.inv()
    point = "after_effect:vpc/subnet-a"
    assert cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd, crash=point).returncode == CRASH_EXIT_CODE
    again = cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd)
    assert again.returncode == 0, again.stderr
    assert set(world.status(env).values()) == {"applied"}
    assert len(world.vpcs_of(env)) == 1
    hist = json.loads(cli("history", "--json", "--env", env, cwd=world.cwd).stdout)
    assert ("vpc", "subnet-a") in settled_by_probe(hist)
    assert cli("rollback", "--env", env, cwd=world.cwd).returncode == 0
    assert inventory.diff(before, world.inv()) == {}


def test_a_step_without_probe_is_settled_by_the_builtin_probe(world):
    # allow-ecs has no probe: the catalog finds its rule in the group the operation made.
    env = "crash-builtin"
    before = world.inv()
    point = "after_effect:db-sg/allow-ecs"
    assert cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd, crash=point).returncode == CRASH_EXIT_CODE
    resumed = cli("resume", "--env", env, cwd=world.cwd)
    assert resumed.returncode == 0, resumed.stderr
    assert set(world.status(env).values()) == {"applied"}
    hist = json.loads(cli("history", "--json", "--env", env, cwd=world.cwd).stdout)
    assert settled_by_probe(hist)[("db-sg", "allow-ecs")]["outputs"]["rule_id"].startswith("sgr-")
    assert cli("rollback", "--env", env, cwd=world.cwd).returncode == 0
    assert inventory.diff(before, world.inv()) == {}


# A call the catalog does not know, with no probe, no token, and an undo by its own id: only a
# person can tell.
KEY_PAIR_PLAN = """
atomicops: 1
name: key-pair
vars: {aws_endpoint: null, suffix: x}
connections:
  aws: {kind: aws, region: us-east-1, endpoint_url: "${vars.aws_endpoint}"}
operations:
  - id: keys
    steps:
      - name: key
        do: {aws: ec2.create_key_pair, params: {KeyName: "crash-${vars.suffix}"}}
        outputs: {key_id: KeyPairId, key_name: KeyName}   # read from the answer, lost in a crash
        undo: {aws: ec2.delete_key_pair, params: {KeyName: "${self.key_name}"}}
"""


def test_a_step_no_probe_can_settle_is_uncertain_until_resolved(world, moto_endpoint):
    env = "crash-uncertain"
    plan = world.cwd / "keys.yaml"
    plan.write_text(KEY_PAIR_PLAN)
    suffix = world.vars[-1].split("=", 1)[1]
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    assert cli("apply", str(plan), "--env", env, *world.vars, cwd=world.cwd, crash="after_effect:keys/key").returncode == CRASH_EXIT_CODE
    stuck = cli("resume", "--env", env, cwd=world.cwd)
    assert stuck.returncode == 3
    assert "atomicops resolve keys key" in stuck.stderr
    assert world.status(env)["keys"] == "uncertain"

    # The operator looks: the key pair exists. They settle it with its id, and resume finishes.
    [pair] = ec2.describe_key_pairs(KeyNames=[f"crash-{suffix}"])["KeyPairs"]
    ok = cli("resolve", "keys", "key", "--applied", "--output", f"key_id={pair['KeyPairId']}",
             "--output", f"key_name={pair['KeyName']}", "--env", env, cwd=world.cwd)
    assert ok.returncode == 0, ok.stderr
    assert cli("resume", "--env", env, cwd=world.cwd).returncode == 0
    assert set(world.status(env).values()) == {"applied"}
    assert cli("rollback", "--env", env, cwd=world.cwd).returncode == 0
    assert not ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [f"crash-{suffix}"]}])["KeyPairs"]


def test_resume_refuses_a_plan_that_differs_from_the_journal(world, tmp_path):
    env = "crash-mismatch"
    point = "after_effect:vpc/subnet-a"  # vpc is left half-applied
    assert cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd, crash=point).returncode == CRASH_EXIT_CODE
    edited = tmp_path / "edited.yaml"
    edited.write_text((PLANS / "network.yaml").read_text().replace("10.30.1.0/24", "10.30.7.0/24"))
    refused = cli("resume", "--env", env, "--plan", str(edited), *[], cwd=world.cwd)
    assert refused.returncode == 2 and "operation vpc differs" in refused.stderr
    # An apply of the edited plan would settle the half-applied vpc with the wrong steps: refused too.
    refused = cli("apply", str(edited), "--env", env, *world.vars, cwd=world.cwd)
    assert refused.returncode == 2 and "operation vpc differs" in refused.stderr
    assert cli("resume", "--env", env, "--rollback", cwd=world.cwd).returncode == 0
    assert set(world.status(env).values()) == {"rolled_back"}


@pytest.mark.parametrize(
    "point",
    [
        "after_intent:table/rows",
        "after_effect:table/rows",     # committed in PostgreSQL, not journalled
        "after_effect:table/create",
        "after_effect:stream/add",     # the stream exists, not journalled
        "after_effect:stream/reader",
        "after_result:stream/add",
    ],
)
def test_a_killed_apply_of_sql_and_nats_steps_resumes_cleanly(tmp_path, postgres_url, nats_url, point):
    from atomicops import inventory

    suffix = uuid.uuid4().hex[:8]
    env = "data-" + point.replace(":", "-").replace("/", "-")
    vars_ = ["--var", f"database_url={postgres_url}", "--var", f"nats_url={nats_url}", "--var", f"suffix={suffix}"]
    take = lambda: inventory.take(include_aws=False, database_url=postgres_url, nats_url=nats_url)
    before = take()
    killed = cli("apply", str(PLANS / "data.yaml"), "--env", env, *vars_, cwd=tmp_path, crash=point)
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    resumed = cli("resume", "--env", env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(cli("status", "--json", "--env", env, cwd=tmp_path).stdout)
    assert {o["id"]: o["status"] for o in doc["operations"]} == {"table": "applied", "stream": "applied"}
    # No duplicate: exactly three rows, ids as journalled.
    ids = next(o for o in doc["operations"] if o["id"] == "table")["outputs"]["ids"]
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f"SELECT array_agg(id ORDER BY id) FROM crash_{suffix}").fetchone()[0] == ids
    rolled = cli("rollback", "--env", env, cwd=tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    assert inventory.diff(before, take()) == {}
