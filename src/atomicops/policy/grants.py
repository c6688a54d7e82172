"""The IAM permission each AWS call needs: its action, its resources, its conditions.

The action is the IAM service prefix and the API's operation name (``CreateVpc`` ->
``ec2:CreateVpc``), with the few services whose prefix is not botocore's signing name, and
S3, whose IAM actions are not its API names, written out. A call that carries tags needs
the service's tagging action too (AWS authorizes the tags of a create separately), and a
call that hands a role to a service needs ``iam:PassRole`` on that role.

Resources are ARNs wherever the plan fixes the resource's name (a table, a role, a bucket,
a parameter, a secret, a repository, a log group...); EC2, whose ids exist only at run time,
is scoped by the ``atomicops:env`` tag instead: ``aws:RequestTag`` on what a call creates
(the engine tags every create), ``aws:ResourceTag`` on what a call changes or deletes. What
is left is ``*`` with the reason AWS offers nothing narrower.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from atomicops.actions.aws import with_tags
from atomicops.actions.aws_models import service_model
from atomicops.plan import refs
from atomicops.policy.calls import Call, Purpose

ENV_TAG = "atomicops:env"

# IAM's prefix where it is not botocore's signing name.
PREFIXES = {"monitoring": "cloudwatch", "tagging": "tag"}

# S3's IAM actions are not its API names (HeadBucket is s3:ListBucket...).
S3_ACTIONS = {
    "HeadBucket": "ListBucket", "ListObjects": "ListBucket", "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions", "HeadObject": "GetObject", "DeleteObjects": "DeleteObject",
    "CopyObject": "PutObject", "GetBucketEncryption": "GetEncryptionConfiguration",
    "PutBucketEncryption": "PutEncryptionConfiguration", "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock", "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration", "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "DeleteBucketTagging": "PutBucketTagging", "DeleteObjectTagging": "DeleteObjectTagging",
}  # fmt: skip

OTHER_ACTIONS = {("lambda", "Invoke"): "InvokeFunction"}

# The action that authorizes the tags a create carries, where it is not ``<prefix>:TagResource``.
TAG_ACTIONS = {
    "ec2": "ec2:CreateTags", "rds": "rds:AddTagsToResource", "ssm": "ssm:AddTagsToResource",
    "sqs": "sqs:TagQueue", "elasticloadbalancing": "elasticloadbalancing:AddTags",
    "s3": "s3:PutBucketTagging", "s3:PutObject": "s3:PutObjectTagging",  # by prefix, or by prefix:operation
}  # fmt: skip
TAG_ACTIONS_IAM = {"CreateRole": "iam:TagRole", "CreatePolicy": "iam:TagPolicy",
                   "CreateInstanceProfile": "iam:TagInstanceProfile", "CreateUser": "iam:TagUser"}

@dataclass(frozen=True)
class Dependent:
    """An action AWS checks inside another call with a resource narrower than ``*`` or a
    condition: ``resource`` and the condition's values are formatted with the Where
    (``{partition}``, ``{account}``, ``{region}``)."""

    action: str
    resource: str = "*"
    condition: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    wildcard: str = ""  # why "*", when it is


def _service_linked_role(service: str, role: str) -> Dependent:
    # The service creates its role, as the caller, the first time an account uses it
    # (ECS: AWSServiceRoleForECS at the first CreateCluster; RDS: AWSServiceRoleForRDS at the
    # first cluster or instance). The role's path is fixed, and iam:AWSServiceName names the
    # service, so the grant cannot create any other service's role.
    return Dependent(
        "iam:CreateServiceLinkedRole",
        f"arn:{{partition}}:iam::{{account}}:role/aws-service-role/{service}/{role}",
        (("StringEquals", "iam:AWSServiceName", (service,)),),
    )


# AWS Backup's "Backup vault creation and deletion" page: CreateBackupVault mounts the vault's
# storage and makes a grant on its KMS key as the caller. Without EncryptionKeyArn the key is
# the account's AWS managed aws/backup key, whose id no plan can know: the KMS actions are on
# "*", only through AWS Backup (kms:ViaService). MountCapsule takes no resource at all.
_BACKUP_KMS = (("StringEquals", "kms:ViaService", ("backup.{region}.amazonaws.com",)),)
_BACKUP_KEY = "the vault's key is the AWS managed aws/backup key, whose id no plan knows; only through AWS Backup"

# Actions AWS checks inside another call's request, where the service acts on the caller's
# behalf (the Service Authorization Reference's "dependent actions" of the calls plans use).
# A bare name is granted on "*".
DEPENDENT_ACTIONS: dict[str, tuple[str | Dependent, ...]] = {
    "ecs:CreateCluster": (_service_linked_role("ecs.amazonaws.com", "AWSServiceRoleForECS"),),
    "rds:CreateDBCluster": (_service_linked_role("rds.amazonaws.com", "AWSServiceRoleForRDS"),),
    "rds:CreateDBInstance": (_service_linked_role("rds.amazonaws.com", "AWSServiceRoleForRDS"),),
    "backup:CreateBackupVault": (
        Dependent("backup-storage:MountCapsule", wildcard="backup-storage:MountCapsule takes no resource (permission only)"),
        *(Dependent(f"kms:{use}", condition=_BACKUP_KMS, wildcard=_BACKUP_KEY)
          for use in ("CreateGrant", "GenerateDataKey", "Decrypt", "RetireGrant", "DescribeKey")),
    ),
    # Cloud Map makes and removes the namespace's Route 53 hosted zone as the caller.
    "servicediscovery:CreatePrivateDnsNamespace": (
        "route53:CreateHostedZone", "route53:GetHostedZone", "route53:ListHostedZonesByName",
        "ec2:DescribeVpcs", "ec2:DescribeVpcAttribute"),
    "servicediscovery:DeleteNamespace": ("route53:DeleteHostedZone", "route53:GetHostedZone"),
    "servicediscovery:CreateService": ("route53:GetHostedZone",),
    "servicediscovery:DeleteService": ("route53:GetHostedZone",),
}

# Services whose create calls AWS authorizes on the request's tags (aws:RequestTag).
REQUEST_TAG = frozenset({"ecs", "backup", "servicediscovery", "logs", "ecr", "sns", "lambda", "rds", "dynamodb",
                         "iam", "secretsmanager", "ssm", "kms", "events", "cloudwatch", "elasticloadbalancing"})

# Calls whose resources AWS names by ARN but that the service authorizes on "*" only.
STAR_ONLY = {
    "ecs": {"RegisterTaskDefinition", "DeregisterTaskDefinition", "DescribeTaskDefinition",
            "ListTaskDefinitions", "CreateCluster"},
    "iam": {"ListPolicies"},
    "sns": {"ListTopics"},
    "ssm": {"DescribeParameters"},
    "logs": {"DescribeLogGroups"},
}  # fmt: skip

# EC2 calls that act on resources the environment made, by id: scoped by their tag.
# (Attach, Associate and Authorize also make something new: a tag condition cannot fit both.)
EC2_TAGGED_VERBS = ("Delete", "Modify", "Revoke", "Detach", "Disassociate", "Replace")


@dataclass(frozen=True)
class Where:
    region: str
    account: str = "*"
    partition: str = "aws"
    env: str = "default"


@dataclass(frozen=True)
class Grant:
    action: str
    resources: tuple[str, ...]
    purpose: Purpose
    why: str  # the call it serves
    condition: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (operator, key, values)
    wildcard: str = ""  # why the resource is "*"


def iam_action(service: str, operation: str) -> str:
    signing = service_model(service).signing_name or service
    prefix = PREFIXES.get(signing, signing)
    if prefix == "s3":
        return f"s3:{S3_ACTIONS.get(operation, operation)}"
    return f"{prefix}:{OTHER_ACTIONS.get((service, operation), operation)}"


def grants(call: Call, where: Where, created: Mapping[str, str]) -> Iterator[Grant]:
    """The grants ``call`` needs. ``created``: output reference -> the name or ARN it holds,
    for what the plan makes (``${ops.task-role.role_arn}`` -> the role's ARN)."""
    call = dataclasses.replace(call, params=_known(call.params, created, call.op))
    action = iam_action(call.service, call.operation)
    prefix = action.partition(":")[0]
    resources, why_star = _resources(call, where)
    condition: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    if prefix == "ec2" and resources == ("*",) and call.subject is None:
        condition, why_star = _ec2_condition(call, where, why_star)
    elif resources == ("*",) and call.subject is None and prefix in REQUEST_TAG and call.tagged and _carries_tags(call):
        # A create the plan cannot name an ARN for still carries the engine's tags.
        condition, why_star = (("StringEquals", f"aws:RequestTag/{ENV_TAG}", (where.env,)),), ""
    yield Grant(action, resources, call.purpose, call.why, condition, why_star if resources == ("*",) else "")
    if call.tagged and _carries_tags(call):
        yield _tagging(call, action, prefix, resources, where, condition if prefix != "ec2" else ())
    for dependent in DEPENDENT_ACTIONS.get(action, ()):
        yield _dependent(dependent, action, call, where)
    for role in _passed_roles(call.params, where):
        yield Grant("iam:PassRole", (role,), call.purpose, f"{call.why}: passes the role")
    yield from _kms(call, action, where)


def _dependent(dependent: str | Dependent, action: str, call: Call, w: Where) -> Grant:
    if isinstance(dependent, str):
        dependent = Dependent(dependent, wildcard=f"{action} makes this call as the caller on resources it names itself")
    fill = {"partition": w.partition, "account": w.account, "region": w.region}
    condition = tuple((op, key, tuple(v.format(**fill) for v in values)) for op, key, values in dependent.condition)
    resource = dependent.resource.format(**fill)
    return Grant(dependent.action, (resource,), call.purpose, f"{call.why}: {action} acts as the caller",
                 condition, dependent.wildcard if resource == "*" else "")


# A secret or a SecureString parameter under a key of the account's own: the caller needs the
# key too (under the service's AWS-managed key, aws/secretsmanager or aws/ssm, it does not).
KMS_USES = {
    "secretsmanager:GetSecretValue": ("kms:Decrypt",),
    "secretsmanager:CreateSecret": ("kms:GenerateDataKey", "kms:Decrypt"),
    "secretsmanager:PutSecretValue": ("kms:GenerateDataKey", "kms:Decrypt"),
    "ssm:PutParameter": ("kms:Encrypt",),
    "ssm:GetParameter": ("kms:Decrypt",),
}


def _kms(call: Call, action: str, w: Where) -> Iterator[Grant]:
    uses = KMS_USES.get(action)
    if uses is None:
        return
    key = _name(call.params, "KmsKeyId") or _name(call.params, "KeyId")
    if key is not None:
        arn = key if key.startswith("arn:") else f"arn:{w.partition}:kms:{w.region}:{w.account}:" + (
            key if key.startswith("alias/") else f"key/{key}")
        for use in uses:
            yield Grant(use, (arn,), call.purpose, f"{call.why}: its KMS key")
    elif call.why.startswith("secret ") and "(aws_secret)" in call.why:
        # A secret made outside the plan: its key is not known here. Only through Secrets
        # Manager, which is what kms:ViaService says.
        yield Grant("kms:Decrypt", ("*",), call.purpose, f"{call.why}: its KMS key",
                    (("StringEquals", "kms:ViaService", (f"secretsmanager.{w.region}.amazonaws.com",)),))


# --------------------------------------------------------------------------- resources


def _name(params: Mapping[str, Any], key: str) -> str | None:
    """A literal name, or one with run-time parts as ``*``; None if wholly run-time."""
    value = params.get(key)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value:
        return None
    if refs.is_whole_reference(value):
        return None
    return re.sub(r"\$\{[^}]*\}", "*", value) if refs.is_reference(value) else value


def _names(params: Mapping[str, Any], key: str) -> list[str]:
    """Each literal name of a list parameter (``repositoryNames: [a, b]``); [] if any is
    known only at run time."""
    value = params.get(key)
    if not isinstance(value, list):
        one = _name(params, key)
        return [one] if one else []
    names = [_name({key: v}, key) for v in value]
    return [n for n in names if n] if all(names) else []


def _resources(call: Call, w: Where) -> tuple[tuple[str, ...], str]:
    if call.operation in STAR_ONLY.get(call.service, ()):
        return ("*",), f"{call.service}:{call.operation} takes no resource-level permission"
    arn = f"arn:{w.partition}:{{svc}}:{w.region}:{w.account}:"
    p = call.params
    svc = call.service
    found: list[str] = []
    if svc == "dynamodb" and (n := _name(p, "TableName")):
        found.append(arn.format(svc="dynamodb") + f"table/{n}")
    elif svc == "iam":
        if n := _name(p, "RoleName"):
            found.append(f"arn:{w.partition}:iam::{w.account}:role/{n}")
        elif n := _name(p, "InstanceProfileName"):
            found.append(f"arn:{w.partition}:iam::{w.account}:instance-profile/{n}")
        elif (n := _name(p, "PolicyArn")) and n.startswith("arn:"):
            found.append(n)
        elif n := _name(p, "PolicyName"):
            found.append(f"arn:{w.partition}:iam::{w.account}:policy/{n}")
    elif svc == "s3" and (n := _name(p, "Bucket")):
        key = _name(p, "Key")
        found.append(f"arn:{w.partition}:s3:::{n}" + (f"/{key}" if key else ""))
    elif svc == "ssm" and (n := _name(p, "Name")):
        found.append(arn.format(svc="ssm") + f"parameter/{n.lstrip('/')}")
    elif svc == "secretsmanager" and (n := _name(p, "SecretId") or _name(p, "Name")):
        # Secrets Manager adds six random characters to the name in the ARN.
        found.append(n if n.startswith("arn:") else arn.format(svc="secretsmanager") + f"secret:{n}-??????")
    elif svc == "ecr" and (ns := _names(p, "repositoryName") or _names(p, "repositoryNames")):
        found += [arn.format(svc="ecr") + f"repository/{n}" for n in ns]
    elif svc == "logs" and (n := _name(p, "logGroupName")):
        found += [arn.format(svc="logs") + f"log-group:{n}", arn.format(svc="logs") + f"log-group:{n}:*"]
    elif svc == "lambda" and (n := _name(p, "FunctionName")):
        found.append(n if n.startswith("arn:") else arn.format(svc="lambda") + f"function:{n}")
    elif svc == "sns" and (n := _name(p, "TopicArn")) and n.startswith("arn:"):
        found.append(n)
    elif svc == "sns" and (n := _name(p, "Name")):  # CreateTopic, and its probe's reads
        found.append(arn.format(svc="sns") + n)
    elif svc == "cloudwatch" and (ns := _names(p, "AlarmName") or _names(p, "AlarmNames")):
        found += [arn.format(svc="cloudwatch") + f"alarm:{n}" for n in ns]
    elif svc == "sqs" and (n := _name(p, "QueueName")):
        found.append(arn.format(svc="sqs") + n)
    elif svc == "ecs":
        cluster = _name(p, "cluster") or _name(p, "clusterName") or _name(p, "clusters")
        services = _names(p, "serviceName") or _names(p, "service") or _names(p, "services")
        if services and cluster:
            found += [arn.format(svc="ecs") + f"service/{cluster}/{n}" for n in services]
        elif cluster and not services and "services" not in p and "service" not in p:
            found.append(arn.format(svc="ecs") + f"cluster/{cluster}")
    elif svc == "rds":
        for key, kind in (("DBClusterIdentifier", "cluster"), ("DBInstanceIdentifier", "db"),
                          ("DBClusterSnapshotIdentifier", "cluster-snapshot"), ("DBSubnetGroupName", "subgrp")):
            if n := _name(p, key):
                found.append(arn.format(svc="rds") + f"{kind}:{n}")
            elif refs.is_whole_reference(p.get(key)):
                # Named at run time: any of its kind (AWS checks each resource a call names).
                found.append(arn.format(svc="rds") + f"{kind}:*")
        if call.operation.startswith(("Create", "Restore")) and found:
            # A create is authorized on every resource it names and on defaults it does not
            # (parameter and option groups): those are AWS's, so their names are not the plan's.
            found += [arn.format(svc="rds") + "cluster-pg:*", arn.format(svc="rds") + "pg:*",
                      arn.format(svc="rds") + "og:*", arn.format(svc="rds") + "secgrp:*"]
    elif svc == "backup" and (n := _name(p, "BackupVaultName")):
        found.append(arn.format(svc="backup") + f"backup-vault:{n}")
    if found:
        return tuple(dict.fromkeys(found)), ""
    return ("*",), _why_star(call)


def _why_star(call: Call) -> str:
    if call.operation.startswith(("Describe", "List", "Get", "Search")) and call.service == "ec2":
        return "EC2 Describe* calls take no resource-level permission"
    if call.subject is not None:
        return f"the built-in probe of {call.subject} searches (by tag or by listing): a search has no resource"
    run_time = sorted({r for r, _ in refs.refs_in(dict(call.params))})
    if call.operation.startswith(("List", "Describe", "Search")) and not run_time:
        return "a list or search call has no single resource to scope to"
    if run_time:
        return "the resource is named at run time (" + ", ".join("${" + r + "}" for r in run_time[:3]) + ")"
    return (f"the resource's ARN holds an id {call.service} generates (or the call names none), "
            "so no ARN the plan can write matches it")


def _ec2_condition(call: Call, w: Where, why: str) -> tuple[tuple[tuple[str, str, tuple[str, ...]], ...], str]:
    """EC2 authorizes on the atomicops:env tag: in the request for a create (the engine tags
    every create), on the resource for a change to something the environment made."""
    op = call.operation
    if op.startswith(("Describe", "Get", "List")):
        return (), why
    if call.tagged and _carries_tags(call) and op.startswith(("Create", "Allocate", "Run")):
        return (("StringEquals", f"aws:RequestTag/{ENV_TAG}", (w.env,)),), ""
    if op.startswith(EC2_TAGGED_VERBS):
        return (("StringEquals", f"aws:ResourceTag/{ENV_TAG}", (w.env,)),), ""
    return (), (why + "; and it acts on a resource it creates (AWS checks a new resource's request tags, "
                "an existing one's own) as well as on one the environment made, so no one tag condition fits both")


# --------------------------------------------------------------------------- tags and roles


def _tagged_params(call: Call) -> dict[str, Any]:
    op_model = service_model(call.service).operation_model(call.operation)
    return with_tags(call.service, op_model, call.params, {ENV_TAG: "x"})


def _carries_tags(call: Call) -> bool:
    params = _tagged_params(call)
    if any(k.lower() in ("tags", "tagspecifications", "backupvaulttags", "backupplantags") and v for k, v in params.items()):
        return True
    # S3 takes a bucket's tags only nested in its configuration, an object's in a header.
    return bool((params.get("CreateBucketConfiguration") or {}).get("Tags") or params.get("Tagging"))


def _tagging(call: Call, action: str, prefix: str, resources: tuple[str, ...], w: Where,
             condition: tuple[tuple[str, str, tuple[str, ...]], ...] = ()) -> Grant:
    if prefix == "ec2":
        # Tags of a create come with it: allowed only in the call that creates the resource.
        return Grant("ec2:CreateTags", ("*",), call.purpose, f"{call.why}: tags on create",
                     (("StringEquals", "ec2:CreateAction", (call.operation,)),))
    if prefix == "iam":
        tag_action = TAG_ACTIONS_IAM.get(call.operation)
    else:
        tag_action = TAG_ACTIONS.get(f"{prefix}:{call.operation}") or TAG_ACTIONS.get(prefix)
    tag_action = tag_action or f"{prefix}:TagResource"
    why = "" if resources != ("*",) or condition else f"tags of {action}, whose resource is \"*\" too"
    return Grant(tag_action, resources, call.purpose, f"{call.why}: tags on create", condition, wildcard=why)


_ROLE_KEY = re.compile(r"(?i)^(.*role(arn)?|iamrolearn)$")


def _known(value: Any, created: Mapping[str, str], op: str | None) -> Any:
    """``value`` with each reference to an output of a create the plan names replaced by the
    name or ARN it will hold (``${self.X}`` is the call's own operation's)."""
    if isinstance(value, str) and refs.is_whole_reference(value):
        if op is not None and value.startswith("${self."):
            value = "${ops." + op + "." + value[len("${self."):]
        return created.get(value, value)
    if isinstance(value, Mapping):
        return {k: _known(v, created, op) for k, v in value.items()}
    if isinstance(value, list):
        return [_known(v, created, op) for v in value]
    return value


def _passed_roles(params: Any, w: Where) -> Iterator[str]:
    """Roles handed to a service in ``params``: a role ARN, literal or of a role the plan
    makes; a role known only at run time is any role of the account."""
    if isinstance(params, Mapping):
        for key, value in params.items():
            if isinstance(value, str) and _ROLE_KEY.match(str(key)):
                if value.startswith("arn:") and ":role/" in value:
                    yield value
                elif refs.is_reference(value):
                    yield f"arn:{w.partition}:iam::{w.account}:role/*"
            else:
                yield from _passed_roles(value, w)
    elif isinstance(params, list):
        for item in params:
            yield from _passed_roles(item, w)
