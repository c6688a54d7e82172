"""Probes that find a resource by its name and take it as this step's only when it carries
the step's ``atomicops:step`` tag.

For these resources AWS has no single read-only call that both finds the resource by name
and returns its tags (the describe call returns no tags; the tags call wants an ARN that
holds the account id, which the plan does not know), and the Resource Groups Tagging API
does not cover them everywhere. So: describe by name, then read the tags by the ARN the
describe returned. A namesake that existed before the run has no such tag and is not found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from atomicops.actions.aws import plain
from atomicops.actions.base import ActionContext, connection_of

STEP_TAG = "atomicops:step"


@dataclass(frozen=True)
class Kind:
    service: str
    records: Callable[[Any, str], Iterator[dict[str, Any]]]  # client, name -> candidates
    arn: str  # the record's key holding its ARN
    tags: Callable[[Any, str], dict[str, str]]  # client, ARN -> tags


def _pairs(tags: list[dict[str, str]], key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {t[key]: t[value] for t in tags}


def _iam_policies(iam: Any, name: str) -> Iterator[dict[str, Any]]:
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        yield from (p for p in page["Policies"] if p["PolicyName"] == name)


def _backup_plans(backup: Any, name: str) -> Iterator[dict[str, Any]]:
    for page in backup.get_paginator("list_backup_plans").paginate():
        yield from (p for p in page["BackupPlansList"] if p["BackupPlanName"] == name)


KINDS: dict[str, Kind] = {
    "iam-policy": Kind(
        "iam", _iam_policies, "Arn",
        lambda iam, arn: _pairs(iam.list_policy_tags(PolicyArn=arn)["Tags"]),
    ),
    "ecr-repository": Kind(
        "ecr", lambda ecr, name: iter(ecr.describe_repositories(repositoryNames=[name])["repositories"]),
        "repositoryArn",
        lambda ecr, arn: _pairs(ecr.list_tags_for_resource(resourceArn=arn)["tags"]),
    ),
    "rds-subnet-group": Kind(
        "rds", lambda rds, name: iter(rds.describe_db_subnet_groups(DBSubnetGroupName=name)["DBSubnetGroups"]),
        "DBSubnetGroupArn",
        lambda rds, arn: _pairs(rds.list_tags_for_resource(ResourceName=arn)["TagList"]),
    ),
    "backup-vault": Kind(
        "backup", lambda backup, name: iter([backup.describe_backup_vault(BackupVaultName=name)]),
        "BackupVaultArn",
        lambda backup, arn: dict(backup.list_tags(ResourceArn=arn)["Tags"]),
    ),
    "backup-plan": Kind(
        "backup", _backup_plans, "BackupPlanArn",
        lambda backup, arn: dict(backup.list_tags(ResourceArn=arn)["Tags"]),
    ),
}  # fmt: skip


# The AWS calls `find` makes for each kind, for `atomicops policy` (atomicops/policy/calls.py).
_FIND_CALLS: dict[str, dict[str, dict[str, str]]] = {
    "iam-policy": {"iam.list_policies": {}, "iam.list_policy_tags": {"PolicyName": "name"}},
    "ecr-repository": {"ecr.describe_repositories": {"repositoryName": "name"},
                       "ecr.list_tags_for_resource": {"repositoryName": "name"}},
    "rds-subnet-group": {"rds.describe_db_subnet_groups": {"DBSubnetGroupName": "name"},
                         "rds.list_tags_for_resource": {"DBSubnetGroupName": "name"}},
    "backup-vault": {"backup.describe_backup_vault": {"BackupVaultName": "name"},
                     "backup.list_tags": {"BackupVaultName": "name"}},
    "backup-plan": {"backup.list_backup_plans": {}, "backup.list_tags": {}},
}
AWS_CALLS = {"find": lambda args: _FIND_CALLS.get(args.get("kind"), {c: {} for k in _FIND_CALLS.values() for c in k})}

def find(ctx: ActionContext, kind: str, name: str, step_key: str) -> dict[str, Any]:
    """Probe: the describe record of the ``kind`` resource called ``name`` that this step
    tagged, or ``{}`` (the probe's outputs then find nothing: not applied)."""
    spec = KINDS[kind]
    client = connection_of(ctx, "aws").client(spec.service)
    try:
        for record in spec.records(client, name):
            if spec.tags(client, record[spec.arn]).get(STEP_TAG) == step_key:
                return dict(plain(record))
    except ClientError as exc:
        # Gone is an answer (not applied); anything else is not, and must not read as one.
        code = exc.response.get("Error", {}).get("Code", "")
        if "NotFound" not in code and not code.startswith("NoSuch"):
            raise
    return {}
