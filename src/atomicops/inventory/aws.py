"""Inventory of an AWS account: what a runbook could have created, minus AWS's own defaults.

```python
from atomicops.inventory import aws as inventory

connect = inventory.clients(region="us-east-1", endpoint_url=None)   # or AwsConnection.client
before = inventory.snapshot(connect)
...                                                                  # apply, then roll back
assert inventory.diff(before, inventory.snapshot(connect)) == {}
```

A snapshot maps a resource type (``"ec2.vpcs"``) to its entries sorted by ``id``; every entry
is JSON-safe and holds only what is stable between two looks (ids, names, attachments, tags),
never states or timestamps. A type that cannot be listed (no permission, not supported by the
endpoint) maps to ``{"error": CODE}`` instead of a list, so a partial picture is visible as
such rather than passing for an empty account.

Each resource type is one row of :data:`RESOURCE_TYPES`; covering a new one is one more row.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jmespath
from botocore.exceptions import BotoCoreError, ClientError

from atomicops.actions.aws import AwsConnection, plain, translate_error
from atomicops.inventory.compare import diff  # noqa: F401 - one diff for every source

ClientFactory = Callable[[str], Any]
"""``service name -> boto3 client``; :meth:`AwsConnection.client` is one."""

Entry = dict[str, Any]
Inventory = dict[str, list[Entry] | dict[str, str]]


@dataclass(frozen=True)
class ResourceType:
    """How to list one type of resource, and what of each item to keep.

    ``call`` is a boto3 ``service.method``, paginated when boto3 has a paginator for it.
    ``items``, ``id``, ``fields``, ``tags`` and ``keep`` are JMESPath: ``items`` over each page,
    the others over one item. A type with a ``parent`` is listed once per parent entry, with
    ``parent_params`` (param -> JMESPath over the parent item) added to the call; its ids are
    prefixed with the parent's id.
    """

    name: str
    call: str
    items: str
    id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    keep: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    tags: str | None = None
    parent: str | None = None
    parent_params: Mapping[str, str] = field(default_factory=dict)
    vpcs: str | None = None
    """JMESPath to the item's VPC ids: an item living only in default VPCs is AWS's own."""
    describe: tuple[str, str, str] | None = None
    """(method, parameter, items): when a list call returns bare ids, the call that turns a
    page of them into items (``keep`` then sees the status: a deleted ECS cluster stays
    listed as INACTIVE for a while)."""
    detail: tuple[str, str, str] | None = None
    """(method, parameter, result): like ``describe`` for APIs that describe one item per
    call (``kms.describe_key``): called with each item's ``id``."""
    document: str | None = None
    """A member of the page holding a JSON document (a resource policy) that ``items`` reads."""
    absent: str | None = None
    """The error code meaning "none here" (a Lambda function without a resource policy)."""
    tag_call: tuple[str, str, str, str] | None = None
    """(method, parameter, value, tags): for APIs whose listing leaves tags out, the call per
    item that reads them, ``parameter`` set to ``value`` (JMESPath over the item); without
    tags ``inventory --orphans`` could not tell the item is ours."""
    made_by: tuple[str, ...] = ()
    """The calls (``service.method``) whose effect this type shows: every call a plan makes
    that creates or adds something must be named by some type (tests/test_inventory_coverage.py)."""


_INGRESS = (
    "IpPermissions[].{protocol: IpProtocol, from: FromPort, to: ToPort,"
    " cidrs: IpRanges[].CidrIp, ipv6: Ipv6Ranges[].CidrIpv6,"
    " groups: UserIdGroupPairs[].GroupId, prefix_lists: PrefixListIds[].PrefixListId}"
)
_ROUTES = (
    "Routes[?Origin != 'CreateRouteTable'].{to: DestinationCidrBlock || DestinationIpv6CidrBlock"
    " || DestinationPrefixListId, via: GatewayId || NatGatewayId || TransitGatewayId"
    " || VpcPeeringConnectionId || NetworkInterfaceId || InstanceId}"
)
_NOT_AWS_ROLE = "!starts_with(Path, '/aws-service-role/') && !starts_with(Path, '/aws-reserved/')"
_BY_ROLE = {"RoleName": "RoleName"}

R = ResourceType
RESOURCE_TYPES: tuple[ResourceType, ...] = (
    R("ec2.vpcs", "ec2.describe_vpcs", "Vpcs", "VpcId", keep="!IsDefault",
      fields={"cidr": "CidrBlock"}, tags="Tags", made_by=("ec2.create_vpc",)),
    R("ec2.subnets", "ec2.describe_subnets", "Subnets", "SubnetId", keep="!DefaultForAz",
      fields={"vpc": "VpcId", "cidr": "CidrBlock", "az": "AvailabilityZone"}, tags="Tags",
      made_by=("ec2.create_subnet",)),
    R("ec2.security_groups", "ec2.describe_security_groups", "SecurityGroups", "GroupId",
      keep="GroupName != 'default'",
      fields={"name": "GroupName", "vpc": "VpcId", "ingress": _INGRESS}, tags="Tags",
      made_by=("ec2.create_security_group", "ec2.authorize_security_group_ingress")),
    R("ec2.internet_gateways", "ec2.describe_internet_gateways", "InternetGateways",
      "InternetGatewayId", fields={"vpcs": "Attachments[].VpcId"}, tags="Tags",
      vpcs="Attachments[].VpcId",
      made_by=("ec2.create_internet_gateway", "ec2.attach_internet_gateway")),
    R("ec2.route_tables", "ec2.describe_route_tables", "RouteTables", "RouteTableId",
      keep="!(Associations[?Main])",
      fields={"vpc": "VpcId", "routes": _ROUTES, "subnets": "Associations[?!Main].SubnetId"},
      tags="Tags",
      made_by=("ec2.create_route_table", "ec2.create_route", "ec2.associate_route_table")),
    R("ec2.vpc_endpoints", "ec2.describe_vpc_endpoints", "VpcEndpoints", "VpcEndpointId",
      keep="State != 'deleted' && State != 'Deleted'",
      fields={"vpc": "VpcId", "service": "ServiceName", "type": "VpcEndpointType"},
      tags="Tags", made_by=("ec2.create_vpc_endpoint",)),
    R("ec2.nat_gateways", "ec2.describe_nat_gateways", "NatGateways", "NatGatewayId",
      keep="State != 'deleted' && State != 'failed'",
      fields={"vpc": "VpcId", "subnet": "SubnetId"}, tags="Tags",
      made_by=("ec2.create_nat_gateway",)),
    R("ec2.addresses", "ec2.describe_addresses", "Addresses", "AllocationId || PublicIp",
      tags="Tags", made_by=("ec2.allocate_address",)),
    R("dynamodb.tables", "dynamodb.list_tables", "TableNames", "@",
      made_by=("dynamodb.create_table",)),
    R("glue.databases", "glue.get_databases", "DatabaseList", "Name",
      made_by=("glue.create_database",)),
    R("iam.roles", "iam.list_roles", "Roles", "RoleName", keep=_NOT_AWS_ROLE,
      fields={"path": "Path"}, tag_call=("list_role_tags", "RoleName", "RoleName", "Tags"),
      made_by=("iam.create_role",)),
    R("iam.role_policy_attachments", "iam.list_attached_role_policies", "AttachedPolicies",
      "PolicyArn", parent="iam.roles", parent_params=_BY_ROLE,
      made_by=("iam.attach_role_policy",)),
    R("iam.role_inline_policies", "iam.list_role_policies", "PolicyNames", "@",
      parent="iam.roles", parent_params=_BY_ROLE, made_by=("iam.put_role_policy",)),
    R("iam.policies", "iam.list_policies", "Policies", "Arn", params={"Scope": "Local"},
      fields={"name": "PolicyName"}, made_by=("iam.create_policy",)),
    R("ecs.clusters", "ecs.list_clusters", "clusterArns", "clusterArn", keep="status != 'INACTIVE'",
      describe=("describe_clusters", "clusters", "clusters"), made_by=("ecs.create_cluster",)),
    R("ecs.services", "ecs.list_services", "serviceArns", "serviceArn", keep="status != 'INACTIVE'",
      describe=("describe_services", "services", "services"),
      parent="ecs.clusters", parent_params={"cluster": "clusterArn"},
      made_by=("ecs.create_service",)),
    R("ecs.task_definitions", "ecs.list_task_definitions", "taskDefinitionArns", "@",
      params={"status": "ACTIVE"}, made_by=("ecs.register_task_definition",)),
    R("ecr.repositories", "ecr.describe_repositories", "repositories", "repositoryName",
      tag_call=("list_tags_for_resource", "resourceArn", "repositoryArn", "tags"),
      made_by=("ecr.create_repository",)),
    R("ecr.images", "ecr.describe_images", "imageDetails", "imageDigest",
      fields={"image_tags": "imageTags"},
      parent="ecr.repositories", parent_params={"repositoryName": "repositoryName"},
      made_by=("ecr.put_image",)),
    R("logs.log_groups", "logs.describe_log_groups", "logGroups", "logGroupName",
      made_by=("logs.create_log_group",)),
    R("secretsmanager.secrets", "secretsmanager.list_secrets", "SecretList", "Name",
      tags="Tags", made_by=("secretsmanager.create_secret",)),
    R("ssm.parameters", "ssm.describe_parameters", "Parameters", "Name",
      fields={"type": "Type"}, made_by=("ssm.put_parameter",)),
    R("rds.db_clusters", "rds.describe_db_clusters", "DBClusters", "DBClusterIdentifier",
      fields={"engine": "Engine"}, tags="TagList", made_by=("rds.create_db_cluster",)),
    R("rds.db_instances", "rds.describe_db_instances", "DBInstances", "DBInstanceIdentifier",
      fields={"engine": "Engine", "cluster": "DBClusterIdentifier"}, tags="TagList",
      made_by=("rds.create_db_instance",)),
    R("rds.db_subnet_groups", "rds.describe_db_subnet_groups", "DBSubnetGroups",
      "DBSubnetGroupName", keep="DBSubnetGroupName != 'default'", fields={"vpc": "VpcId"},
      made_by=("rds.create_db_subnet_group",)),
    R("rds.db_cluster_snapshots", "rds.describe_db_cluster_snapshots", "DBClusterSnapshots",
      "DBClusterSnapshotIdentifier", params={"SnapshotType": "manual"},
      made_by=("rds.create_db_cluster_snapshot",)),
    R("sqs.queues", "sqs.list_queues", "QueueUrls", "@",
      tag_call=("list_queue_tags", "QueueUrl", "@", "Tags"), made_by=("sqs.create_queue",)),
    R("sns.topics", "sns.list_topics", "Topics", "TopicArn",
      tag_call=("list_tags_for_resource", "ResourceArn", "TopicArn", "Tags"),
      made_by=("sns.create_topic",)),
    R("sns.subscriptions", "sns.list_subscriptions", "Subscriptions", "SubscriptionArn",
      fields={"topic": "TopicArn", "protocol": "Protocol", "endpoint": "Endpoint"},
      made_by=("sns.subscribe",)),
    R("backup.plans", "backup.list_backup_plans", "BackupPlansList", "BackupPlanId",
      fields={"name": "BackupPlanName"}, made_by=("backup.create_backup_plan",)),
    R("backup.vaults", "backup.list_backup_vaults", "BackupVaultList", "BackupVaultName",
      keep="BackupVaultName != 'Default' && BackupVaultName != 'aws/efs/automatic-backup-vault'",
      made_by=("backup.create_backup_vault",)),
    R("logs.metric_filters", "logs.describe_metric_filters", "metricFilters",
      "join('/', [logGroupName, filterName])", made_by=("logs.put_metric_filter",)),
    R("s3.buckets", "s3.list_buckets", "Buckets", "Name", made_by=("s3.create_bucket",)),
    # Every version and delete marker: in a versioned bucket a deleted object leaves both.
    R("s3.object_versions", "s3.list_object_versions", "[Versions, DeleteMarkers][]",
      "join('@', [Key, VersionId])", parent="s3.buckets", parent_params={"Bucket": "Name"},
      made_by=("s3.put_object", "s3.copy_object", "s3.upload_part")),
    R("lambda.functions", "lambda.list_functions", "Functions", "FunctionName",
      tag_call=("list_tags", "Resource", "FunctionArn", "Tags"),
      made_by=("lambda.create_function",)),
    R("lambda.permissions", "lambda.get_policy", "Policy.Statement", "Sid",
      fields={"principal": "Principal", "action": "Action"}, document="Policy",
      absent="ResourceNotFoundException", parent="lambda.functions",
      parent_params={"FunctionName": "FunctionName"}, made_by=("lambda.add_permission",)),
    R("cloudwatch.alarms", "cloudwatch.describe_alarms", "[MetricAlarms, CompositeAlarms][]",
      "AlarmName", params={"AlarmTypes": ["MetricAlarm", "CompositeAlarm"]},
      made_by=("cloudwatch.put_metric_alarm", "cloudwatch.put_composite_alarm")),
    R("events.rules", "events.list_rules", "Rules", "Name",
      fields={"bus": "EventBusName", "pattern": "EventPattern", "schedule": "ScheduleExpression"},
      tag_call=("list_tags_for_resource", "ResourceARN", "Arn", "Tags"),
      made_by=("events.put_rule",)),
    R("events.targets", "events.list_targets_by_rule", "Targets", "Id",
      fields={"arn": "Arn"}, parent="events.rules", parent_params={"Rule": "Name"},
      made_by=("events.put_targets",)),
    # A key scheduled for deletion is gone for the diff: our undo schedules it (KMS keeps a
    # key at least 7 days), and nothing can use it any more. AWS's own keys are not ours.
    R("kms.keys", "kms.list_keys", "Keys", "KeyId",
      keep="KeyManager == 'CUSTOMER' && KeyState != 'PendingDeletion'"
           " && KeyState != 'PendingReplicaDeletion'",
      fields={"usage": "KeyUsage", "spec": "KeySpec"},
      detail=("describe_key", "KeyId", "KeyMetadata"),
      tag_call=("list_resource_tags", "KeyId", "KeyId", "Tags"), made_by=("kms.create_key",)),
    R("kms.aliases", "kms.list_aliases", "Aliases", "AliasName",
      keep="!starts_with(AliasName, 'alias/aws/')", fields={"key": "TargetKeyId"},
      made_by=("kms.create_alias",)),
    R("servicediscovery.namespaces", "servicediscovery.list_namespaces", "Namespaces", "Id",
      fields={"name": "Name", "type": "Type"},
      made_by=("servicediscovery.create_private_dns_namespace",
               "servicediscovery.create_public_dns_namespace",
               "servicediscovery.create_http_namespace")),
    R("servicediscovery.services", "servicediscovery.list_services", "Services", "Id",
      fields={"name": "Name"}, made_by=("servicediscovery.create_service",)),
)  # fmt: skip
del R


# --------------------------------------------------------------------------- snapshot


def clients(
    region: str | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    **options: Any,
) -> ClientFactory:
    """A thread-safe client factory over boto3's normal credential chain.

    ``options`` are the aws connection's ``connect_timeout``, ``read_timeout``, ``max_attempts``.
    """
    return AwsConnection(region, endpoint_url, profile, **options).client


class _Clients:
    """Make any factory safe for the worker threads: one client per service, made once."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._default_vpcs: frozenset[str] | None = None

    def __call__(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._factory(service)
            return self._clients[service]

    def default_vpcs(self) -> frozenset[str]:
        if self._default_vpcs is None:
            pages = _pages(self("ec2"), "describe_vpcs", {"Filters": [
                {"Name": "is-default", "Values": ["true"]}
            ]})  # fmt: skip
            self._default_vpcs = frozenset(v["VpcId"] for p in pages for v in p.get("Vpcs", []))
        return self._default_vpcs


@cache
def _expr(text: str) -> Any:
    return jmespath.compile(text)


def _search(text: str, data: Any) -> Any:
    return _expr(text).search(data)


def _pages(client: Any, method: str, params: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    if client.can_paginate(method):
        yield from client.get_paginator(method).paginate(**params)
    else:
        yield getattr(client, method)(**params)


def _canonical(value: Any) -> Any:
    """JSON-safe, with lists in a fixed order: list order from AWS APIs means nothing here."""
    value = plain(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _tags(value: Any) -> dict[str, str] | None:
    """Tags as one ``{key: value}`` map, whatever shape and casing the service uses."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        out: dict[str, str] = {}
        for tag in value:
            if isinstance(tag, Mapping):
                lower = {str(k).lower(): v for k, v in tag.items()}
                key = lower.get("key", lower.get("tagkey"))
                if key is not None:
                    out[str(key)] = str(lower.get("value", lower.get("tagvalue", "")))
        return dict(sorted(out.items()))
    return None


def _entry(rtype: ResourceType, item: Any, prefix: str, client: Any) -> Entry:
    entry: Entry = {"id": prefix + str(_search(rtype.id, item))}
    for name, expr in rtype.fields.items():
        entry[name] = _canonical(_search(expr, item))
    tags = None
    if rtype.tags:
        tags = _tags(_search(rtype.tags, item))
    elif rtype.tag_call:
        method, param, value, path = rtype.tag_call
        tags = _tags(_search(path, getattr(client, method)(**{param: _search(value, item)}))) or None
    if tags is not None:
        entry["tags"] = tags
    return entry


def _list(
    rtype: ResourceType, connect: _Clients, extra: Mapping[str, Any]
) -> list[tuple[Any, Entry]]:
    """(raw item, entry) for every kept item of ``rtype``."""
    service, method = rtype.call.split(".")
    client = connect(service)
    prefix = "/".join(str(v) for v in extra.values()) + "/" if extra else ""
    found: list[tuple[Any, Entry]] = []
    try:
        pages = list(_pages(client, method, {**rtype.params, **extra}))
    except ClientError as exc:
        if rtype.absent and exc.response.get("Error", {}).get("Code") == rtype.absent:
            return found
        raise
    for page in pages:
        if rtype.document and isinstance(page.get(rtype.document), str):
            page = {**page, rtype.document: json.loads(page[rtype.document])}
        items = _search(rtype.items, page) or []
        if rtype.describe and items:
            detail, param, path = rtype.describe
            items = _search(path, getattr(client, detail)(**extra, **{param: items})) or []
        if rtype.detail:
            one, param, path = rtype.detail
            items = [_search(path, getattr(client, one)(**{param: _search(rtype.id, i)})) for i in items]
        for item in items:
            if rtype.keep and not _search(rtype.keep, item):
                continue
            if rtype.vpcs:
                vpcs = set(_search(rtype.vpcs, item) or ())
                if vpcs and vpcs <= connect.default_vpcs():
                    continue
            found.append((item, _entry(rtype, item, prefix, client)))
    return found


def _error_code(error: Exception) -> str:
    if isinstance(error, (ClientError, BotoCoreError)):
        return translate_error(error, "inventory").code or type(error).__name__
    return type(error).__name__


def _take(
    rtype: ResourceType, children: list[ResourceType], connect: _Clients
) -> dict[str, list[Entry] | dict[str, str]]:
    """One type and the types listed per entry of it (its children)."""
    out: dict[str, list[Entry] | dict[str, str]] = {}
    try:
        found = _list(rtype, connect, {})
    except (ClientError, BotoCoreError) as exc:
        error = {"error": _error_code(exc)}
        out[rtype.name] = error
        for child in children:
            out[child.name] = dict(error)
        return out
    out[rtype.name] = sorted((e for _, e in found), key=lambda e: e["id"])
    for child in children:
        entries: list[Entry] = []
        try:
            for item, _ in found:
                extra = {p: _search(expr, item) for p, expr in child.parent_params.items()}
                entries.extend(e for _, e in _list(child, connect, extra))
        except (ClientError, BotoCoreError) as exc:
            out[child.name] = {"error": _error_code(exc)}
        else:
            out[child.name] = sorted(entries, key=lambda e: e["id"])
    return out


def snapshot(
    connect: ClientFactory | AwsConnection,
    *,
    types: Iterable[str] | None = None,
    workers: int = 8,
) -> Inventory:
    """The inventory of the account ``connect`` reaches: ``{type: [entry, ...]}``.

    ``connect`` is ``service -> client`` (see :func:`clients`) or an :class:`AwsConnection`,
    e.g. the handle the aws action kind opened for the run. ``types`` limits the types taken
    (children such as ``iam.role_policy_attachments`` need their parent listed too).
    """
    factory = connect.client if isinstance(connect, AwsConnection) else connect
    shared = _Clients(factory)
    wanted = set(types) if types is not None else {t.name for t in RESOURCE_TYPES}
    unknown = wanted - {t.name for t in RESOURCE_TYPES}
    if unknown:
        raise ValueError(f"unknown resource type(s): {', '.join(sorted(unknown))}")
    roots = [t for t in RESOURCE_TYPES if t.parent is None and t.name in wanted]
    children = {
        root.name: [t for t in RESOURCE_TYPES if t.parent == root.name and t.name in wanted]
        for root in roots
    }
    result: Inventory = {}
    # Types are independent, and an account-wide look is dozens of calls: list them in
    # parallel (botocore clients are thread-safe).
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for part in pool.map(lambda root: _take(root, children[root.name], shared), roots):
            result.update(part)
    return dict(sorted(result.items()))
