"""`atomicops policy`: what the policy of a plan holds (actions, resources, conditions), without
services. That a run needs exactly these actions is proven with IAM enforced on moto:
tests/test_policy_enforced.py (quickstart) and tests/test_policy_flagship.py (MisterSmith)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from run_cli import cli

from atomicops import api
from atomicops.actions import aws_models
from atomicops.engine import catalog
from atomicops.policy import build
from atomicops.policy.calls import plan_calls
from atomicops.policy.grants import iam_action
from atomicops.policy.probes import PROBE_CALLS

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart"
FLAGSHIP = ROOT / "examples" / "mistersmith"


@pytest.fixture(scope="module")
def quickstart() -> api.LoadedPlan:
    return api.validate(QUICKSTART)


@pytest.fixture(scope="module")
def flagship() -> api.LoadedPlan:
    return api.validate(FLAGSHIP)


def _statements(doc: dict) -> list[dict]:
    out = []
    for s in doc["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        out.append({**s, "Action": actions, "Resource": resources})
    return out


def _granted(doc: dict, action: str) -> list[dict]:
    return [s for s in _statements(doc) if action in s["Action"]]


# --------------------------------------------------------------------------- the built-in probes


def test_every_catalog_entry_says_what_its_probe_calls() -> None:
    assert set(PROBE_CALLS) == set(catalog.CATALOG)
    for call, reads in PROBE_CALLS.items():
        for read in reads:
            service, _, method = read.partition(".")
            assert method in aws_models.operations(service), f"{call}: {read} is no call botocore knows"


def test_every_call_the_catalog_source_makes_is_listed() -> None:
    """A finder that starts calling something new fails here until PROBE_CALLS lists it."""
    source = Path(catalog.__file__).read_text()
    services = {c.partition(".")[0] for c in catalog.CATALOG}
    creates = {c.partition(".")[2] for c in catalog.CATALOG}
    listed = {r.partition(".")[2] for reads in PROBE_CALLS.values() for r in reads}
    named = set(re.findall(r'["\.]([a-z]+(?:_[a-z0-9]+)+)["(]', source)) - creates
    made = {n for n in named if any(n in aws_models.operations(s) for s in services)}
    assert made, "the scan found no calls: the pattern no longer fits catalog.py"
    assert made <= listed, f"catalog.py calls {sorted(made - listed)}, which policy/probes.py does not list"


# --------------------------------------------------------------------------- the quickstart


def test_quickstart_actions_are_every_call_of_a_run(quickstart: api.LoadedPlan) -> None:
    policy = build(quickstart)
    assert policy.actions() == [
        "dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:DescribeTable", "dynamodb:ListTagsOfResource",
        "dynamodb:TagResource",
        "ec2:AuthorizeSecurityGroupIngress", "ec2:CreateSecurityGroup", "ec2:CreateSubnet", "ec2:CreateTags",
        "ec2:CreateVpc", "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet", "ec2:DeleteVpc",
        "ec2:DescribeSecurityGroupRules", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
        "ec2:RevokeSecurityGroupIngress",
    ]  # fmt: skip
    assert policy.unknown == ()


def test_quickstart_rollback_holds_only_the_undos_and_the_reads_back(quickstart: api.LoadedPlan) -> None:
    """A rollback undoes, and first reads each step back (the drift check, engine/drift.py),
    with the steps' probes and the built-in ones: no create, no tagging."""
    policy = build(quickstart)
    assert policy.actions("rollback") == [
        "dynamodb:DeleteTable", "dynamodb:DescribeTable",  # the undo and its waiter (and the probe)
        "dynamodb:ListTagsOfResource",  # the built-in probe: is the table this run's?
        "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet", "ec2:DeleteVpc",
        "ec2:DescribeSecurityGroupRules", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
        "ec2:RevokeSecurityGroupIngress",
    ]  # fmt: skip
    assert all(s["Sid"].startswith("Rollback") for s in _statements(policy.document("rollback")))
    # The full policy holds both: apply's statements and the rollback's.
    sids = [s["Sid"] for s in _statements(policy.document())]
    assert any(s.startswith("Run") for s in sids) and any(s.startswith("Rollback") for s in sids)


def test_quickstart_resources(quickstart: api.LoadedPlan) -> None:
    doc = build(quickstart, account="123456789012").document()
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/quickstart-events"
    for action in ("dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:DescribeTable", "dynamodb:TagResource"):
        assert all(s["Resource"] == [table] for s in _granted(doc, action)), action
    for action in ("ec2:CreateVpc", "ec2:CreateSubnet", "ec2:CreateSecurityGroup"):
        [s] = _granted(doc, action)
        assert s["Condition"] == {"StringEquals": {"aws:RequestTag/atomicops:env": "default"}}
    for action in ("ec2:DeleteVpc", "ec2:DeleteSubnet", "ec2:DeleteSecurityGroup", "ec2:RevokeSecurityGroupIngress"):
        [s] = _granted(doc, action)
        assert s["Condition"] == {"StringEquals": {"aws:ResourceTag/atomicops:env": "default"}}
    [tags] = _granted(doc, "ec2:CreateTags")
    assert tags["Condition"]["StringEquals"]["ec2:CreateAction"] == [
        "AuthorizeSecurityGroupIngress", "CreateSecurityGroup", "CreateSubnet", "CreateVpc"]
    # A vars override changes the ARN, an environment the tag condition.
    other = build(api.validate(QUICKSTART, vars={"table": "other-events"}), env="prod").document()
    assert _granted(other, "dynamodb:CreateTable")[0]["Resource"] == ["arn:aws:dynamodb:us-east-1:*:table/other-events"]
    assert _granted(other, "ec2:DeleteVpc")[0]["Condition"] == {"StringEquals": {"aws:ResourceTag/atomicops:env": "prod"}}


def test_every_wildcard_is_explained(quickstart: api.LoadedPlan, flagship: api.LoadedPlan) -> None:
    for loaded in (quickstart, flagship):
        policy = build(loaded)
        for statement in policy.statements:
            if statement.resources == ("*",) and not statement.condition:
                assert all(statement.reasons.get(a) for a in statement.actions), statement
        explained = policy.explain()
        assert all(": " in line for line in explained)


# --------------------------------------------------------------------------- the flagship


def test_every_aws_call_of_the_flagship_is_granted(flagship: api.LoadedPlan) -> None:
    policy = build(flagship)
    found = plan_calls(flagship)
    assert found.unknown == [], "every msops call: function declares its AWS calls"
    missing = {c.name for c in found.calls if iam_action(c.service, c.operation) not in policy.actions()}
    assert not missing
    # The calls the msops functions make are in it too.
    for action in ("ecr:PutImage", "ecr:BatchGetImage", "servicediscovery:CreatePrivateDnsNamespace",
                   "dynamodb:BatchWriteItem", "dynamodb:Query", "s3:PutObject", "s3:PutObjectTagging"):
        assert action in policy.actions(), action
    # The upload's tags ride in its PutObject: granted for that request alone, like a create's.
    assert "s3:PutObjectTagging" in policy.in_request()


def test_flagship_passes_only_its_own_roles(flagship: api.LoadedPlan) -> None:
    doc = build(flagship).document()
    passed = {r for s in _granted(doc, "iam:PassRole") for r in s["Resource"]}
    assert passed == {
        "arn:aws:iam::*:role/MisterSmithECSTaskExecutionRole",
        "arn:aws:iam::*:role/MisterSmithECSTaskRole",
        "arn:aws:iam::*:role/MisterSmithRollbackHandlerRole",
    }


def test_flagship_reads_its_stored_secrets_also_when_rolling_back(flagship: api.LoadedPlan) -> None:
    doc = build(flagship).document("rollback")
    resources = {r for s in _granted(doc, "secretsmanager:GetSecretValue") for r in s["Resource"]}
    assert "arn:aws:secretsmanager:us-east-1:*:secret:mistersmith/db-password-??????" in resources
    assert "arn:aws:secretsmanager:us-east-1:*:secret:mistersmith/nats-credentials-??????" in resources


def test_flagship_names_iam_actions_not_signing_names(flagship: api.LoadedPlan) -> None:
    actions = build(flagship).actions()
    assert "cloudwatch:PutMetricAlarm" in actions and not any(a.startswith("monitoring:") for a in actions)
    assert "tag:GetResources" in actions
    assert "s3:ListBucket" in actions and "s3:HeadBucket" not in actions  # HeadBucket is s3:ListBucket to IAM


# --------------------------------------------------------------------------- renderings, CLI


def test_terraform_rendering(quickstart: api.LoadedPlan) -> None:
    policy = build(quickstart)
    text = policy.terraform()
    assert text.startswith('data "aws_iam_policy_document" "atomicops" {')
    assert text.count("statement {") == len(policy.statements)
    assert '"aws:RequestTag/atomicops:env"' in text


def test_cli_policy(tmp_path: Path) -> None:
    run = lambda *args: cli("policy", *args, cwd=tmp_path)
    doc = run(str(QUICKSTART), "--json")
    assert doc.returncode == 0, doc.stderr
    parsed = json.loads(doc.stdout)
    assert parsed["summary"]["actions"] == 18 and parsed["exit_code"] == 0
    assert parsed["policy"]["Version"] == "2012-10-17"
    plain = run(str(QUICKSTART), "--for", "rollback", "--explain")
    assert plain.returncode == 0
    assert json.loads(plain.stdout)["Statement"]
    assert "ec2:DeleteVpc on tag-scoped" in plain.stderr
    tf = run(str(QUICKSTART), "--format", "terraform")
    assert tf.returncode == 0 and "aws_iam_policy_document" in tf.stdout


def test_secrets_and_call_functions(tmp_path: Path) -> None:
    """A secret made outside the plan is read with its key through Secrets Manager only; a
    call: function that declares no AWS calls is named, not guessed."""
    (tmp_path / "ops_here.py").write_text(
        "AWS_CALLS = {'declared': {'sqs.send_message': {'QueueUrl': 'queue'}}}\n"
        "def declared(ctx, queue): return {}\n"
        "def silent(ctx): return {}\n"
    )
    (tmp_path / "plan.yaml").write_text("""
atomicops: 1
name: small
vars: {queue: "https://sqs.us-east-1.amazonaws.com/1/q"}
secrets: {token: {aws_secret: team/token}}
connections: {aws: {kind: aws, region: eu-west-1}}
operations:
  - id: send
    steps:
      - name: send
        do: {call: "ops_here:declared", args: {queue: "${vars.queue}"}}
        irreversible: a sent message stays sent
      - name: other
        do: {call: "ops_here:silent"}
        irreversible: nothing to undo
""")
    policy = build(api.validate(tmp_path / "plan.yaml"))
    doc = policy.document()
    [read] = _granted(doc, "secretsmanager:GetSecretValue")
    assert read["Resource"] == ["arn:aws:secretsmanager:eu-west-1:*:secret:team/token-??????"]
    assert read["Sid"].startswith("Rollback")  # a rollback reads it too
    [decrypt] = _granted(doc, "kms:Decrypt")
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}
    assert "sqs:SendMessage" in policy.actions()
    assert policy.unknown == ("ops_here:silent",)
    assert any("ops_here:silent" in line for line in policy.explain())


def test_split_fits_managed_policies(flagship: api.LoadedPlan) -> None:
    policy = build(flagship)
    parts = policy.documents()
    assert len(parts) > 1, "the flagship's policy is bigger than one managed policy"
    assert all(len(json.dumps(p, separators=(",", ":"))) <= 6144 for p in parts)
    together = [s for p in parts for s in p["Statement"]]
    assert sorted(json.dumps(s, sort_keys=True) for s in together) == sorted(
        json.dumps(s, sort_keys=True) for s in policy.document()["Statement"])
    # Apply's statements and the rollback's are never in one document.
    for part in parts:
        assert len({s["Sid"].startswith("Rollback") for s in part["Statement"]}) == 1


def test_the_flagship_readme_shows_its_policy(flagship: api.LoadedPlan) -> None:
    """examples/mistersmith/README.md shows `atomicops policy examples/mistersmith --explain`:
    `python scripts/policy_readme.py` writes it there."""
    readme = (FLAGSHIP / "README.md").read_text()
    section = readme.split("atomicops policy examples/mistersmith --explain</code></summary>", 1)[1]
    shown = json.loads(section.split("```json\n", 1)[1].split("\n```", 1)[0])
    policy = build(flagship)
    assert shown == policy.document()
    explained = section.split("```text\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert explained[1:] == policy.explain()


def test_flagship_grants_what_aws_checks_as_the_caller(flagship: api.LoadedPlan) -> None:
    """G6 (docs/real-aws.md): moto never asks for these; AWS does, inside the calls that need them."""
    doc = build(flagship).document()
    linked = {(r, json.dumps(s.get("Condition"), sort_keys=True))
              for s in _granted(doc, "iam:CreateServiceLinkedRole") for r in s["Resource"]}
    assert linked == {
        ("arn:aws:iam::*:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS",
         json.dumps({"StringEquals": {"iam:AWSServiceName": "ecs.amazonaws.com"}})),
        ("arn:aws:iam::*:role/aws-service-role/rds.amazonaws.com/AWSServiceRoleForRDS",
         json.dumps({"StringEquals": {"iam:AWSServiceName": "rds.amazonaws.com"}})),
    }
    assert [s["Resource"] for s in _granted(doc, "backup-storage:MountCapsule")] == [["*"]]
    for use in ("kms:CreateGrant", "kms:GenerateDataKey", "kms:Decrypt", "kms:RetireGrant", "kms:DescribeKey"):
        vault_key = [s for s in _granted(doc, use) if s.get("Condition")]
        assert [s["Condition"] for s in vault_key] == [
            {"StringEquals": {"kms:ViaService": "backup.us-east-1.amazonaws.com"}}], use
    explained = build(flagship).explain()
    assert any("kms:CreateGrant on only where: kms:ViaService" in line and "aws/backup" in line for line in explained)
