"""`atomicops import`: markdown runbooks to plans. The seed page, broken input, and three
runbooks of tests/runbooks imported, their TODOs filled, and run on moto's server and the
session's PostgreSQL, apply then rollback, with an inventory equal to the one before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atomicops import api
from atomicops.actions import registry
from atomicops.errors import PlanInvalid, UsageError
from atomicops.importer import import_runbook, write
from atomicops.importer.writer import PLAN_FILE, REPORT_FILE
from atomicops.inventory import aws as inventory
from atomicops.inventory import postgres as pg_inventory

RUNBOOKS = Path(__file__).parent / "runbooks"
REPO = Path(__file__).resolve().parents[1]
SEED_NAME = "000_a498ebe7c5e7fe42.txt"
TYPES = ["ec2.vpcs", "ec2.subnets", "ec2.security_groups", "dynamodb.tables", "iam.roles",
         "iam.role_inline_policies", "ssm.parameters", "sqs.queues", "logs.log_groups", "s3.buckets"]


def find_seed() -> Path | None:
    for base in (REPO, *REPO.parents):
        if (base / "shared" / "seed" / SEED_NAME).is_file():
            return base / "shared" / "seed" / SEED_NAME
    return None


def actions_of(plan: dict) -> list[dict]:
    out = []
    for op in plan["operations"]:
        for step in op["steps"]:
            out += [a for a in (step.get("do"), step.get("undo")) if isinstance(a, dict)]
        out += op.get("verify", [])
    return out + plan.get("verify", [])


def imported(tmp_path: Path, name: str) -> Path:
    result = import_runbook(RUNBOOKS / name)
    return write(result, tmp_path / name.removesuffix(".md"))


# --------------------------------------------------------------------------- the seed page


def test_the_seed_page_imports_every_aws_command_or_says_why_not(tmp_path):
    seed = find_seed()
    if seed is None:
        pytest.skip(f"seed {SEED_NAME} not found beside the repository")
    result = import_runbook(seed)
    aws_kind = registry.get("aws")
    aws_actions = [a for a in actions_of(result.plan) if "aws" in a]
    for action in aws_actions:  # each one is what botocore's model accepts
        assert list(aws_kind.check(action)) == [], action
    page = seed.read_text().splitlines()
    not_translated = {i.line for i in result.left if i.kind in ("untranslated", "unpaired-rollback")
                      and "no CREATE command" not in i.message and page[i.line - 1].lstrip().startswith("aws ")}
    f = result.figures
    assert f.aws_commands == f.aws_translated + len(not_translated)
    assert f.aws_translated >= 90 and f.creates_paired >= 35
    # the page's own defects are named at their lines
    by_line = {i.line: i.message for i in result.left}
    assert "--revision" in by_line[771]  # register-task-definition has no --revision
    assert "no ROLLBACK command undoes `aws ec2 authorize-security-group-ingress`" in by_line[237]
    assert "not bash" in by_line[910]  # the expected response pasted into the bash block
    # placeholders the pairing resolved are references, the rest are vars to fill
    vpc = result.plan["operations"][0]
    assert vpc["steps"][0]["outputs"] == {"vpc_id": "Vpc.VpcId"}
    assert vpc["steps"][1]["do"]["params"]["VpcId"] == "${self.vpc_id}"
    assert result.plan["vars"]["account_id"]["todo"].endswith("give <account-id> a value (--var account_id=...)")
    out = write(result, tmp_path / "seed")
    with pytest.raises(PlanInvalid) as refused:
        api.validate(out)
    errors = [p.message for p in refused.value.problems if p.severity == "error"]
    assert len(errors) == f.todos and all(m.startswith("left to do after `atomicops import`: ") for m in errors)
    assert any(f"{seed}:237" in m for m in errors)
    # ... and once a person has filled each one (here: any value, a no-op command), it validates
    assert api.validate(fill_todos(out))


def fill_todos(out: Path) -> Path:
    plan = yaml.safe_load((out / PLAN_FILE).read_text())
    plan["vars"] = {k: "filled" if isinstance(v, dict) else v for k, v in plan["vars"].items()}
    for op in plan["operations"]:
        for step in op["steps"]:
            if "todo" in step["do"]:  # the step's do and undo, written by hand
                step.update(do={"run": ["true"]}, undo={"run": ["true"]})
            if "todo" in step.get("undo", {}):
                step["undo"] = {"run": ["true"]}
        op["verify"] = [c for c in op.get("verify", []) if "todo" not in c]
    plan["verify"] = [c for c in plan.get("verify", []) if "todo" not in c]
    (out / PLAN_FILE).write_text(yaml.safe_dump(plan, sort_keys=False))
    return out


# --------------------------------------------------------------------------- broken input


BROKEN = """\
# Broken

## Work

### Things

#### CREATE
```bash
aws ec2 create-vpcc --cidr-block 10.0.0.0/16
aws ec2 create-vpc --cidr-blok 10.0.0.0/16
aws ec2 create-subnet --vpc-id vpc-1 --cidr-block 10.0.1.0/24
```

#### ROLLBACK
```bash
aws ec2 delete-subnet --subnet-id <subnet-id>
```

### Other

#### CREATE
```json
{"not": "read"}
```

```bash
# the response:
{
  "Vpc": {"VpcId": "vpc-1"}
}
VPC_ID=$(aws ec2 create-vpc --cidr-block 10.0.0.0/16
```
"""


def test_broken_input_is_reported_with_its_line_and_refused_by_validate(tmp_path):
    runbook = tmp_path / "broken.md"
    runbook.write_text(BROKEN)
    result = import_runbook(runbook)
    by_line = {i.line: i.message for i in result.left}
    assert "unknown operation" in by_line[9] and "create-vpc" in by_line[9]
    assert "--cidr-blok" in by_line[10]
    assert "a `json` block, not bash: not read" in by_line[23]
    assert "not bash" in by_line[28]
    assert "`$(` is never closed" in by_line[31]
    # the subnet's undo was paired and its id comes from the create's response
    subnet = result.plan["operations"][0]["steps"][2]
    assert subnet["outputs"] == {"subnet_id": "Subnet.SubnetId"}
    assert subnet["undo"]["params"] == {"SubnetId": "${self.subnet_id}"}
    out = write(result, tmp_path / "out")
    with pytest.raises(PlanInvalid) as refused:
        api.validate(out)
    messages = [p.message for p in refused.value.problems]
    assert any(f"{runbook}:9" in m and "create-vpcc" in m for m in messages)
    assert any(f"{runbook}:10" in m and "--cidr-blok" in m for m in messages)
    assert any(f"{runbook}:31" in m and "never closed" in m for m in messages)


def test_nothing_is_half_written(tmp_path):
    out = tmp_path / "kept"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds other files"):
        write(import_runbook(RUNBOOKS / "small.md"), out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]  # no temporary directory left
    again = tmp_path / "again"
    write(import_runbook(RUNBOOKS / "small.md"), again)
    write(import_runbook(RUNBOOKS / "shorthand.md"), again)  # an import's directory is replaced whole
    assert "dynamodb.create_table" in (again / PLAN_FILE).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "kept"]


# --------------------------------------------------------------------------- three runbooks, run


def test_the_small_runbook_validates_once_its_placeholder_is_given(tmp_path):
    out = imported(tmp_path, "small.md")
    with pytest.raises(PlanInvalid) as refused:
        api.validate(out)
    assert [p.message for p in refused.value.problems if p.severity == "error"] == [
        f"left to do after `atomicops import`: {RUNBOOKS / 'small.md'}:13: give <name> a value (--var name=...)"]
    loaded = api.validate(out, vars={"name": "x"})
    assert loaded.plan.vars["vpc_cidr"] == "10.61.0.0/16"  # `export VPC_CIDR=...`: a var with its value
    assert loaded.plan.operations[0].steps[0].do["params"]["CidrBlock"] == "${vars.vpc_cidr}"
    assert loaded.deps["application-security-group"] == {"vpc"}  # from ${ops.vpc.vpc_id}


def test_a_runbook_that_translates_and_pairs_whole_validates_with_no_edit(tmp_path):
    runbook = tmp_path / "whole.md"
    runbook.write_text((RUNBOOKS / "small.md").read_text().replace("<name>", "whole"))
    result = import_runbook(runbook)
    assert [i for i in result.left if i.todo] == [] and result.figures.todos == 0
    loaded = api.validate(write(result, tmp_path / "out"))
    assert [op.id for op in loaded.plan.operations] == ["vpc", "application-security-group"]
    assert loaded.plan.connections["aws"].model_dump() == {
        "kind": "aws", "region": "${vars.region}", "endpoint_url": "${vars.aws_endpoint}"}


@pytest.fixture
def aws_inventory(moto_endpoint):
    factory = inventory.clients(region="us-east-1", endpoint_url=moto_endpoint)
    return lambda: inventory.snapshot(factory, types=TYPES)


def round_trip(plan: Path, state: str, vars: dict, inv) -> None:
    before = inv()
    report = api.apply(plan, env="imp", state=state, vars=vars)
    assert report.applied
    assert inventory.diff(before, inv())
    api.rollback(env="imp", state=state)
    assert inventory.diff(before, inv()) == {}


def test_the_small_and_shorthand_runbooks_run_and_roll_back_clean(tmp_path, moto_endpoint, aws_inventory):
    small = imported(tmp_path, "small.md")
    round_trip(small, str(tmp_path / "a.db"), {"aws_endpoint": moto_endpoint, "name": "imp-small"}, aws_inventory)
    shorthand = imported(tmp_path, "shorthand.md")
    plan = yaml.safe_load((shorthand / PLAN_FILE).read_text())
    table = plan["operations"][0]["steps"][0]["do"]
    assert table["params"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert table["params"]["GlobalSecondaryIndexes"][0]["IndexName"] == "by-kind"
    assert table["wait"] == {"waiter": "table_exists", "params": {"TableName": "${vars.prefix}-events"}}
    role = plan["operations"][1]["steps"][0]["do"]["params"]
    assert json.loads(role["AssumeRolePolicyDocument"])["Statement"][0]["Action"] == "sts:AssumeRole"  # file://
    assert plan["operations"][2]["steps"][0]["do"]["params"]["Overwrite"] is False  # --no-overwrite
    assert plan["operations"][2]["steps"][2]["do"]["params"]["tags"] == {"team": "data", "env": "${vars.prefix}"}
    round_trip(shorthand, str(tmp_path / "b.db"), {"aws_endpoint": moto_endpoint, "prefix": "imp-short"}, aws_inventory)


def test_the_psql_and_docker_runbook_runs_and_rolls_back_clean(tmp_path, moto_endpoint, aws_inventory, pg_database, monkeypatch):
    out = imported(tmp_path, "data.md")
    plan = yaml.safe_load((out / PLAN_FILE).read_text())
    schema = plan["operations"][1]
    assert schema["steps"][0]["do"] == {"sql": "CREATE TABLE imported_jobs (id serial PRIMARY KEY, name text NOT NULL)", "connection": "db"}
    assert schema["steps"][0]["undo"]["sql"] == "DROP TABLE imported_jobs"
    assert schema["steps"][1]["undo"]["sql"].startswith("DELETE FROM imported_jobs")
    image = plan["operations"][2]["steps"][0]
    assert image["do"]["run"] == ["docker", "build", "-t", "imported-worker:1", "."]
    assert image["undo"]["run"] == ["docker", "rmi", "imported-worker:1"]
    # No docker daemon in CI: a `docker` on PATH that keeps the images it is asked to build
    # as files, so the rollback's `docker rmi` is seen to remove what the build made.
    images = tmp_path / "images"
    images.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(f'#!/bin/sh\ncase "$1" in build) touch "{images}/$3";; rmi) rm "{images}/$2";; esac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    vars = {"aws_endpoint": moto_endpoint, "bucket": "imported-artifacts", "database_url": pg_database}
    rows_before = pg_inventory.snapshot(pg_database)
    round_trip(out, str(tmp_path / "c.db"), vars, aws_inventory)
    assert list(images.iterdir()) == []
    assert pg_inventory.snapshot(pg_database) == rows_before


# --------------------------------------------------------------------------- the command


def test_the_command_writes_the_plan_and_prints_what_is_left(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "atomicops.cli", "import", str(RUNBOOKS / "data.md"),
                           "-o", str(tmp_path / "out"), "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["figures"]["todos"] == 1
    assert [i["message"] for i in doc["left"] if i["todo"]] == ["<bucket>: set var bucket (also used at line 14)"]
    assert (tmp_path / "out" / REPORT_FILE).read_text().startswith(f"# Import of {RUNBOOKS / 'data.md'}")
    bad = subprocess.run([sys.executable, "-m", "atomicops.cli", "import", str(RUNBOOKS / "data.md"),
                          "-o", str(tmp_path / "x"), "--words", "build=CREATE"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--words takes ROLE=WORD" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_without_awscli_the_command_says_what_to_install(tmp_path):
    # awscli is an extra: hide it from the process, as on a machine without it
    script = ("import sys; sys.modules['awscli.clidriver'] = None\n"
              "from atomicops.cli import main\n"
              f"sys.argv = ['atomicops', 'import', {str(RUNBOOKS / 'small.md')!r}, '-o', {str(tmp_path / 'out')!r}]\n"
              "main()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "pip install 'atomicops[import]'" in proc.stderr
    assert not (tmp_path / "out").exists()
