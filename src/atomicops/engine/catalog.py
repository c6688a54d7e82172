"""Built-in probes: how to find, after the fact, what an AWS create call made.

One table, keyed by ``service.operation``, one entry per create call. Each entry finds the
resource from the call's own parameters (a name, an id of the resource it lives in) or from
the ``atomicops:step`` tag the engine adds to every create, and answers in **the shape of the
create call's response**, so the step's ``outputs`` expressions apply unchanged.

A lookup says one of four things:

- ``absent``: nothing there; the call did not take effect.
- ``ours``: it is there and provably this step's: it carries this step's ``atomicops:step``
  tag (and, when it carries an ``atomicops:run`` tag and the run is known, that run's), or it
  lives inside a parent this environment made (a rule in a security group the operation
  created, an inline policy in a role tagged with this environment).
- ``foreign``: something by that name is there but it is not this step's (a namesake made
  outside the tool): a create of ours would have tagged it.
- ``unproven``: it is there (or the lookup failed) and nothing proves whose it is.

Only ``ours`` lets the engine journal a step as done, and only ``absent`` or ``ours`` lets
a create that succeeds on an existing resource go ahead (engine/adoption.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from atomicops.actions.aws import plain

STEP_TAG = "atomicops:step"
RUN_TAG = "atomicops:run"
ENV_TAG = "atomicops:env"

State = Literal["absent", "ours", "foreign", "unproven"]

# Error codes a describe call answers with when the resource is not there.
GONE_CODES = ("NotFound", "NoSuch", "DoesNotExist", "NonExistent", "NotExist")

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Found:
    """One candidate a finder saw."""

    response: dict[str, Any]  # in the create call's response shape
    tags: Mapping[str, str] | None  # None: the resource takes no tags
    parent: str | None = None  # the id or name of the resource it lives in


@dataclass(frozen=True)
class Lookup:
    state: State
    resource: str
    response: dict[str, Any] | None = None
    why: str = ""
    exists: bool = False  # something was found (an unproven lookup may also have failed)


@dataclass(frozen=True)
class Entry:
    call: str
    what: Callable[[Params], str]  # the resource, in words, for messages
    find: Callable[[Any, Params, str], list[Found]]  # connection, params, step key
    parent_tags: Callable[[Any, str], Mapping[str, str]] | None = None


# --------------------------------------------------------------------------- helpers


def _pairs(tags: Iterable[Mapping[str, Any]] | None, key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {str(t[key]): str(t[value]) for t in tags or () if key in t}


def _gone(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code") or "")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return any(g in code for g in GONE_CODES) or code == "404" or status == 404 and not code


def _absent_if_gone(call: Callable[[], Any]) -> Any:
    """The call's answer, or None when the service says the resource is not there."""
    try:
        return call()
    except ClientError as exc:
        if _gone(exc):
            return None
        raise


def _ec2_tagged(describe: str, items: str, wrap: str | None, *, live: Callable[[Mapping[str, Any]], bool] | None = None,
                filter_key: str = "Filters") -> Callable[[Any, Params, str], list[Found]]:
    """EC2 resources found by the engine's step tag (EC2 filters on tags server-side)."""

    def find(aws: Any, p: Params, key: str) -> list[Found]:
        ec2 = aws.client("ec2")
        args = {filter_key: [{"Name": f"tag:{STEP_TAG}", "Values": [key]}]}
        found = []
        for item in plain(getattr(ec2, describe)(**args)[items]):
            if live is not None and not live(item):
                continue
            response = {wrap: item} if wrap else dict(item)
            found.append(Found(response, _pairs(item.get("Tags"))))
        return found

    return find


def _name(*keys: str) -> Callable[[Params], str]:
    def what(p: Params) -> str:
        for k in keys:
            value: Any = p
            for part in k.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            if value:
                return str(value)
        return "?"

    return what


def _described(label: str, *keys: str) -> Callable[[Params], str]:
    name = _name(*keys)
    return lambda p: f"{label} {name(p)}"


# --------------------------------------------------------------------------- EC2


def _sg_rules(aws: Any, p: Params, key: str) -> list[Found]:
    group = p.get("GroupId")
    if not group:
        raise LookupError("the call names its group by GroupName; only GroupId is looked up")
    ec2 = aws.client("ec2")
    rules = plain(ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])["SecurityGroupRules"])
    ingress = [r for r in rules if not r.get("IsEgress")]
    matched: list[dict[str, Any]] = []
    for perm in p.get("IpPermissions") or ():
        proto = str(perm.get("IpProtocol"))
        proto = "-1" if proto in ("-1", "all") else proto
        ports = (perm.get("FromPort", -1), perm.get("ToPort", -1)) if proto != "-1" else (-1, -1)
        sources = (
            [("CidrIpv4", r.get("CidrIp")) for r in perm.get("IpRanges") or ()]
            + [("CidrIpv6", r.get("CidrIpv6")) for r in perm.get("Ipv6Ranges") or ()]
            + [("PrefixListId", r.get("PrefixListId")) for r in perm.get("PrefixListIds") or ()]
            + [("ReferencedGroupInfo.GroupId", r.get("GroupId")) for r in perm.get("UserIdGroupPairs") or ()]
        )
        for field_name, value in sources:
            hit = next((r for r in ingress if str(r.get("IpProtocol")) == proto
                        and (r.get("FromPort", -1), r.get("ToPort", -1)) == ports
                        and _dig(r, field_name) == value), None)  # fmt: skip
            if hit is None:
                return []  # the call adds all its rules or none
            matched.append(hit)
    if not matched:
        return []
    return [Found({"Return": True, "SecurityGroupRules": matched}, _pairs(matched[0].get("Tags")), parent=group)]


def _dig(item: Mapping[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _route_table(aws: Any, table_id: str) -> dict[str, Any] | None:
    tables = _absent_if_gone(lambda: aws.client("ec2").describe_route_tables(RouteTableIds=[table_id])["RouteTables"])
    return plain(tables[0]) if tables else None


def _route(aws: Any, p: Params, key: str) -> list[Found]:
    table = _route_table(aws, p["RouteTableId"])
    if table is None:
        return []
    for field_name in ("DestinationCidrBlock", "DestinationIpv6CidrBlock", "DestinationPrefixListId"):
        routes = table.get("Routes", [])
        if p.get(field_name) and any(r.get(field_name) == p[field_name] and r.get("State") != "blackhole" for r in routes):
            return [Found({"Return": True}, None, parent=p["RouteTableId"])]
    return []


def _association(aws: Any, p: Params, key: str) -> list[Found]:
    table = _route_table(aws, p["RouteTableId"])
    if table is None:
        return []
    for a in table.get("Associations", []):
        target = a.get("SubnetId") if p.get("SubnetId") else a.get("GatewayId")
        state = (a.get("AssociationState") or {}).get("State", "associated")
        if target == (p.get("SubnetId") or p.get("GatewayId")) and state in ("associated", "associating"):
            response = {"AssociationId": a["RouteTableAssociationId"], "AssociationState": a.get("AssociationState") or {"State": "associated"}}
            return [Found(response, None, parent=p["RouteTableId"])]
    return []


def _igw_attachment(aws: Any, p: Params, key: str) -> list[Found]:
    gateways = _absent_if_gone(lambda: aws.client("ec2").describe_internet_gateways(InternetGatewayIds=[p["InternetGatewayId"]])["InternetGateways"])
    for gw in gateways or ():
        if any(a.get("VpcId") == p["VpcId"] for a in gw.get("Attachments", [])):
            return [Found({}, None, parent=p["InternetGatewayId"])]
    return []


def _ec2_tags_of(describe: str, items: str, ids: str) -> Callable[[Any, str], Mapping[str, str]]:
    def tags(aws: Any, resource_id: str) -> Mapping[str, str]:
        found = getattr(aws.client("ec2"), describe)(**{ids: [resource_id]})[items]
        return _pairs(found[0].get("Tags")) if found else {}

    return tags


def _live_endpoint(item: Mapping[str, Any]) -> bool:
    return str(item.get("State", "")).lower() in ("pendingacceptance", "pending", "available")


# --------------------------------------------------------------------------- RDS


def _rds(describe: str, items: str, ident: str, wrap: str, status: str) -> Callable[[Any, Params, str], list[Found]]:
    def find(aws: Any, p: Params, key: str) -> list[Found]:
        rds = aws.client("rds")
        answer = _absent_if_gone(lambda: getattr(rds, describe)(**{ident: p[ident]})[items])
        found = []
        for item in plain(answer or []):
            if str(item.get(status, "")).lower() in ("deleting", "deleted"):
                continue
            tags = item.get("TagList")
            if tags is None:
                arn = next((v for k, v in item.items() if k.endswith("Arn")), None)
                tags = rds.list_tags_for_resource(ResourceName=arn)["TagList"] if arn else []
            found.append(Found({wrap: item}, _pairs(tags)))
        return found

    return find


# --------------------------------------------------------------------------- ECS


def _ecs_cluster(aws: Any, p: Params, key: str) -> list[Found]:
    name = p.get("clusterName") or "default"
    clusters = plain(aws.client("ecs").describe_clusters(clusters=[name], include=["TAGS"])["clusters"])
    return [Found({"cluster": c}, _pairs(c.get("tags"), "key", "value")) for c in clusters if c.get("status") == "ACTIVE"]


def _ecs_service(aws: Any, p: Params, key: str) -> list[Found]:
    args = {"cluster": p.get("cluster") or "default", "services": [p["serviceName"]], "include": ["TAGS"]}
    services = plain(_absent_if_gone(lambda: aws.client("ecs").describe_services(**args)["services"]) or [])
    return [Found({"service": s}, _pairs(s.get("tags"), "key", "value")) for s in services if s.get("status") == "ACTIVE"]


def _task_definition(aws: Any, p: Params, key: str) -> list[Found]:
    # Every call registers a new revision: the one this step made is the one with its tag.
    ecs = aws.client("ecs")
    arns = ecs.list_task_definitions(familyPrefix=p["family"], status="ACTIVE", sort="DESC", maxResults=50)["taskDefinitionArns"]
    found = []
    for arn in arns:
        described = plain(ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"]))
        tags = _pairs(described.get("tags"), "key", "value")
        if tags.get(STEP_TAG) == key and described["taskDefinition"].get("family") == p["family"]:
            found.append(Found({"taskDefinition": described["taskDefinition"], "tags": described.get("tags", [])}, tags))
    return found


# --------------------------------------------------------------------------- the rest, by service


def _ecr_repository(aws: Any, p: Params, key: str) -> list[Found]:
    ecr = aws.client("ecr")
    repos = _absent_if_gone(lambda: ecr.describe_repositories(repositoryNames=[p["repositoryName"]])["repositories"])
    return [Found({"repository": plain(r)}, _pairs(ecr.list_tags_for_resource(resourceArn=r["repositoryArn"])["tags"])) for r in repos or ()]


def _log_group_tags(aws: Any, name: str) -> Mapping[str, str]:
    return dict(aws.client("logs").list_tags_log_group(logGroupName=name).get("tags", {}))


def _log_group(aws: Any, p: Params, key: str) -> list[Found]:
    logs = aws.client("logs")
    name = p["logGroupName"]
    groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return [Found({}, _log_group_tags(aws, name)) for g in groups if g["logGroupName"] == name]


def _metric_filter(aws: Any, p: Params, key: str) -> list[Found]:
    logs = aws.client("logs")
    args = {"logGroupName": p["logGroupName"], "filterNamePrefix": p["filterName"]}
    filters = _absent_if_gone(lambda: logs.describe_metric_filters(**args)["metricFilters"])
    return [Found({}, None, parent=p["logGroupName"]) for f in filters or () if f["filterName"] == p["filterName"]]


def _role_tags(aws: Any, name: str) -> Mapping[str, str]:
    return _pairs(aws.client("iam").get_role(RoleName=name)["Role"].get("Tags"))


def _iam_role(aws: Any, p: Params, key: str) -> list[Found]:
    role = _absent_if_gone(lambda: aws.client("iam").get_role(RoleName=p["RoleName"])["Role"])
    return [Found({"Role": plain(role)}, _pairs(role.get("Tags")))] if role else []


def _iam_policy(aws: Any, p: Params, key: str) -> list[Found]:
    iam = aws.client("iam")
    found = []
    for page in iam.get_paginator("list_policies").paginate(Scope="Local", PathPrefix=p.get("Path") or "/"):
        for policy in page["Policies"]:
            if policy["PolicyName"] == p["PolicyName"]:
                tags = _pairs(iam.list_policy_tags(PolicyArn=policy["Arn"])["Tags"])
                found.append(Found({"Policy": plain(policy)}, tags))
    return found


def _attached_policy(aws: Any, p: Params, key: str) -> list[Found]:
    iam = aws.client("iam")
    attached = _absent_if_gone(lambda: iam.list_attached_role_policies(RoleName=p["RoleName"])["AttachedPolicies"])
    return [Found({}, None, parent=p["RoleName"]) for a in attached or () if a["PolicyArn"] == p["PolicyArn"]]


def _inline_policy(aws: Any, p: Params, key: str) -> list[Found]:
    iam = aws.client("iam")
    policy = _absent_if_gone(lambda: iam.get_role_policy(RoleName=p["RoleName"], PolicyName=p["PolicyName"]))
    return [Found({}, None, parent=p["RoleName"])] if policy else []


def _instance_profile(aws: Any, p: Params, key: str) -> list[Found]:
    iam = aws.client("iam")
    name = p["InstanceProfileName"]
    profile = _absent_if_gone(lambda: iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"])
    if not profile:
        return []
    return [Found({"InstanceProfile": plain(profile)}, _pairs(profile.get("Tags")))]


def _secret(aws: Any, p: Params, key: str) -> list[Found]:
    secret = _absent_if_gone(lambda: aws.client("secretsmanager").describe_secret(SecretId=p["Name"]))
    if not secret or secret.get("DeletedDate"):
        return []  # one scheduled for deletion is on its way out, not this step's result
    current = next((v for v, stages in (secret.get("VersionIdsToStages") or {}).items() if "AWSCURRENT" in stages), None)
    response = {"ARN": secret["ARN"], "Name": secret["Name"], "VersionId": current}
    return [Found(response, _pairs(secret.get("Tags")))]


def _parameter(aws: Any, p: Params, key: str) -> list[Found]:
    ssm = aws.client("ssm")
    filters = [{"Key": "Name", "Option": "Equals", "Values": [p["Name"]]}]
    found = []
    for item in ssm.describe_parameters(ParameterFilters=filters)["Parameters"]:
        # An overwrite adds no tags (SSM refuses them with Overwrite): nothing proves whose it is.
        tags = None if p.get("Overwrite") else _pairs(ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=p["Name"])["TagList"])
        found.append(Found({"Version": item.get("Version"), "Tier": item.get("Tier", "Standard")}, tags))
    return found


def _table(aws: Any, p: Params, key: str) -> list[Found]:
    ddb = aws.client("dynamodb")
    table = _absent_if_gone(lambda: ddb.describe_table(TableName=p["TableName"])["Table"])
    if not table or table.get("TableStatus") == "DELETING":
        return []
    tags = _pairs(ddb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags"))
    return [Found({"TableDescription": plain(table)}, tags)]


def _queue(aws: Any, p: Params, key: str) -> list[Found]:
    sqs = aws.client("sqs")
    url = _absent_if_gone(lambda: sqs.get_queue_url(QueueName=p["QueueName"])["QueueUrl"])
    return [Found({"QueueUrl": url}, dict(sqs.list_queue_tags(QueueUrl=url).get("Tags") or {}))] if url else []


def _sns_tags(aws: Any, arn: str) -> Mapping[str, str]:
    return _pairs(aws.client("sns").list_tags_for_resource(ResourceArn=arn).get("Tags"))


def _topic(aws: Any, p: Params, key: str) -> list[Found]:
    sns = aws.client("sns")
    found = []
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page["Topics"]:
            if topic["TopicArn"].rsplit(":", 1)[-1] == p["Name"]:
                found.append(Found({"TopicArn": topic["TopicArn"]}, _sns_tags(aws, topic["TopicArn"])))
    return found


def _subscription(aws: Any, p: Params, key: str) -> list[Found]:
    sns = aws.client("sns")
    found = []
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=p["TopicArn"]):
        for sub in page["Subscriptions"]:
            if sub["Protocol"] == p["Protocol"] and sub.get("Endpoint") == p.get("Endpoint"):
                found.append(Found({"SubscriptionArn": sub["SubscriptionArn"]}, None, parent=p["TopicArn"]))
    return found


def _bucket_tags(aws: Any, bucket: str) -> Mapping[str, str]:
    try:
        return _pairs(aws.client("s3").get_bucket_tagging(Bucket=bucket)["TagSet"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchTagSet":
            return {}
        raise


def _bucket(aws: Any, p: Params, key: str) -> list[Found]:
    s3 = aws.client("s3")
    bucket = p["Bucket"]
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status == 404 or _gone(exc):
            return []
        if status == 403:  # someone else's bucket: bucket names are global
            return [Found({"Location": f"/{bucket}"}, {})]
        raise
    region = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    location = f"/{bucket}" if region in (None, "", "us-east-1") else f"http://{bucket}.s3.amazonaws.com/"
    # The engine cannot tag a bucket (S3 takes tags only nested in CreateBucketConfiguration):
    # a bucket without tags proves nothing unless the call itself carried them.
    tagged = bool((p.get("CreateBucketConfiguration") or {}).get("Tags"))
    return [Found({"Location": location}, _bucket_tags(aws, bucket) if tagged else None)]


def _bucket_setting(read: str, matches: Callable[[Any, Params], bool]) -> Callable[[Any, Params, str], list[Found]]:
    """A bucket setting (``put_bucket_*``) is there when reading it back gives what was put."""

    def find(aws: Any, p: Params, key: str) -> list[Found]:
        current = _absent_if_gone(lambda: getattr(aws.client("s3"), read)(Bucket=p["Bucket"]))
        if current is None or not matches(plain(current), p):
            return []
        return [Found({}, None, parent=p["Bucket"])]

    return find


def _same_json(a: Any, b: Any) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except (TypeError, ValueError):
        return False


def _subset(want: Any, have: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(_subset(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(_subset(w, h) for w, h in zip(want, have, strict=True))
    return bool(want == have)


def _lambda_tags(aws: Any, name: str) -> Mapping[str, str]:
    return dict(aws.client("lambda").get_function(FunctionName=name).get("Tags") or {})


def _function(aws: Any, p: Params, key: str) -> list[Found]:
    function = _absent_if_gone(lambda: aws.client("lambda").get_function(FunctionName=p["FunctionName"]))
    if not function:
        return []
    return [Found(plain(function["Configuration"]), dict(function.get("Tags") or {}))]


def _permission(aws: Any, p: Params, key: str) -> list[Found]:
    args = {"FunctionName": p["FunctionName"], **({"Qualifier": p["Qualifier"]} if p.get("Qualifier") else {})}
    policy = _absent_if_gone(lambda: aws.client("lambda").get_policy(**args)["Policy"])
    if not policy:
        return []
    doc = json.loads(policy) if isinstance(policy, str) else policy
    return [Found({"Statement": json.dumps(s)}, None, parent=p["FunctionName"])
            for s in doc.get("Statement", []) if s.get("Sid") == p["StatementId"]]  # fmt: skip


def _bus(p: Params) -> dict[str, Any]:
    return {"EventBusName": p["EventBusName"]} if p.get("EventBusName") else {}


def _rule(aws: Any, p: Params, key: str) -> list[Found]:
    events = aws.client("events")
    rule = _absent_if_gone(lambda: events.describe_rule(Name=p["Name"], **_bus(p)))
    if not rule:
        return []
    return [Found({"RuleArn": rule["Arn"]}, _pairs(events.list_tags_for_resource(ResourceARN=rule["Arn"]).get("Tags")))]


def _rule_tags(aws: Any, name: str) -> Mapping[str, str]:
    events = aws.client("events")
    arn = events.describe_rule(Name=name)["Arn"]
    return _pairs(events.list_tags_for_resource(ResourceARN=arn).get("Tags"))


def _targets(aws: Any, p: Params, key: str) -> list[Found]:
    events = aws.client("events")
    targets = _absent_if_gone(lambda: events.list_targets_by_rule(Rule=p["Rule"], **_bus(p))["Targets"])
    have = {t["Id"]: t.get("Arn") for t in targets or ()}
    wanted = {t["Id"]: t.get("Arn") for t in p.get("Targets") or ()}
    if not wanted or any(have.get(i) != arn for i, arn in wanted.items()):
        return []
    return [Found({"FailedEntryCount": 0, "FailedEntries": []}, None, parent=p["Rule"])]


def _kms_tags(aws: Any, key_id: str) -> Mapping[str, str]:
    return _pairs(aws.client("kms").list_resource_tags(KeyId=key_id).get("Tags"), "TagKey", "TagValue")


def _kms_key(aws: Any, p: Params, key: str) -> list[Found]:
    # KMS cannot filter keys by tag: each key's tags are read (an account holds few keys
    # compared with the calls a run makes).
    kms = aws.client("kms")
    found = []
    for page in kms.get_paginator("list_keys").paginate():
        for k in page["Keys"]:
            try:
                tags = _kms_tags(aws, k["KeyId"])
            except ClientError as exc:
                if "AccessDenied" in str(exc.response.get("Error", {}).get("Code")):
                    continue  # a key whose tags this account may not read was not made by this step
                raise
            if tags.get(STEP_TAG) != key:
                continue
            meta = plain(kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"])
            if meta.get("KeyState") not in ("PendingDeletion", "PendingReplicaDeletion"):
                found.append(Found({"KeyMetadata": meta}, tags))
    return found


def _alias(aws: Any, p: Params, key: str) -> list[Found]:
    kms = aws.client("kms")
    for page in kms.get_paginator("list_aliases").paginate():
        for alias in page["Aliases"]:
            if alias["AliasName"] == p["AliasName"]:
                return [Found({}, None, parent=alias.get("TargetKeyId"))]
    return []


def _alarm(aws: Any, p: Params, key: str) -> list[Found]:
    cw = aws.client("cloudwatch")
    alarms = cw.describe_alarms(AlarmNames=[p["AlarmName"]])["MetricAlarms"]
    return [Found({}, _pairs(cw.list_tags_for_resource(ResourceARN=a["AlarmArn"]).get("Tags"))) for a in alarms]


def _sd_tags(aws: Any, arn: str) -> Mapping[str, str]:
    return _pairs(aws.client("servicediscovery").list_tags_for_resource(ResourceARN=arn).get("Tags"))


def _namespace(aws: Any, p: Params, key: str) -> list[Found]:
    sd = aws.client("servicediscovery")
    found = []
    for page in sd.get_paginator("list_namespaces").paginate():
        for ns in page["Namespaces"]:
            if ns["Name"] != p["Name"]:
                continue
            ops = sd.list_operations(Filters=[{"Name": "NAMESPACE_ID", "Values": [ns["Id"]], "Condition": "EQ"},
                                              {"Name": "TYPE", "Values": ["CREATE_NAMESPACE"], "Condition": "EQ"}])  # fmt: skip
            found.append(Found({"OperationId": _creating_operation(sd, ops.get("Operations", []), ns["Id"])},
                               _sd_tags(aws, ns["Arn"])))
    return found


def _creating_operation(sd: Any, operations: list[dict[str, Any]], namespace_id: str) -> str | None:
    """The operation that created ``namespace_id``, checked by its target: AWS filters the list
    by namespace, moto does not, and another namespace's operation would answer for this one."""
    for op in operations:
        if sd.get_operation(OperationId=op["Id"])["Operation"].get("Targets", {}).get("NAMESPACE") == namespace_id:
            return str(op["Id"])
    return None


def _sd_service(aws: Any, p: Params, key: str) -> list[Found]:
    sd = aws.client("servicediscovery")
    filters = [{"Name": "NAMESPACE_ID", "Values": [p["NamespaceId"]], "Condition": "EQ"}] if p.get("NamespaceId") else []
    found = []
    for page in sd.get_paginator("list_services").paginate(Filters=filters):
        for svc in page["Services"]:
            if svc["Name"] == p["Name"]:
                full = plain(sd.get_service(Id=svc["Id"])["Service"])
                found.append(Found({"Service": full}, _sd_tags(aws, svc["Arn"])))
    return found


def _vault(aws: Any, p: Params, key: str) -> list[Found]:
    backup = aws.client("backup")
    vault = _absent_if_gone(lambda: backup.describe_backup_vault(BackupVaultName=p["BackupVaultName"]))
    if not vault:
        return []
    response = {k: plain(vault.get(k)) for k in ("BackupVaultName", "BackupVaultArn", "CreationDate")}
    return [Found(response, dict(backup.list_tags(ResourceArn=vault["BackupVaultArn"]).get("Tags") or {}))]


def _backup_plan(aws: Any, p: Params, key: str) -> list[Found]:
    backup = aws.client("backup")
    name = (p.get("BackupPlan") or {}).get("BackupPlanName")
    found = []
    for page in backup.get_paginator("list_backup_plans").paginate():
        for plan in page["BackupPlansList"]:
            if plan["BackupPlanName"] == name and not plan.get("DeletionDate"):
                response = {k: plain(plan.get(k)) for k in ("BackupPlanId", "BackupPlanArn", "CreationDate", "VersionId")}
                found.append(Found(response, dict(backup.list_tags(ResourceArn=plan["BackupPlanArn"]).get("Tags") or {})))
    return found


# --------------------------------------------------------------------------- the table

ENTRIES: tuple[Entry, ...] = (
    # EC2: tagged resources are found by the step tag; the rest inside their parent.
    Entry("ec2.create_vpc", lambda p: "VPC " + str(p.get("CidrBlock", "")), _ec2_tagged("describe_vpcs", "Vpcs", "Vpc")),
    Entry("ec2.create_subnet", _described("subnet", "CidrBlock"), _ec2_tagged("describe_subnets", "Subnets", "Subnet")),
    Entry("ec2.create_internet_gateway", lambda p: "internet gateway",
          _ec2_tagged("describe_internet_gateways", "InternetGateways", "InternetGateway")),
    Entry("ec2.attach_internet_gateway", _described("attachment of internet gateway", "InternetGatewayId"), _igw_attachment,
          _ec2_tags_of("describe_internet_gateways", "InternetGateways", "InternetGatewayIds")),
    Entry("ec2.create_route_table", _described("route table in", "VpcId"), _ec2_tagged("describe_route_tables", "RouteTables", "RouteTable")),
    Entry("ec2.create_route", _described("route to", "DestinationCidrBlock", "DestinationIpv6CidrBlock", "DestinationPrefixListId"),
          _route, _ec2_tags_of("describe_route_tables", "RouteTables", "RouteTableIds")),
    Entry("ec2.associate_route_table", _described("route table association of", "SubnetId", "GatewayId"), _association,
          _ec2_tags_of("describe_route_tables", "RouteTables", "RouteTableIds")),
    Entry("ec2.create_security_group", _described("security group", "GroupName"),
          _ec2_tagged("describe_security_groups", "SecurityGroups", None)),
    Entry("ec2.authorize_security_group_ingress", _described("ingress rule of security group", "GroupId", "GroupName"), _sg_rules,
          _ec2_tags_of("describe_security_groups", "SecurityGroups", "GroupIds")),
    Entry("ec2.create_vpc_endpoint", _described("VPC endpoint", "ServiceName"),
          _ec2_tagged("describe_vpc_endpoints", "VpcEndpoints", "VpcEndpoint", live=_live_endpoint)),
    Entry("ec2.create_nat_gateway", _described("NAT gateway in", "SubnetId"),
          _ec2_tagged("describe_nat_gateways", "NatGateways", "NatGateway", filter_key="Filter",
                      live=lambda g: g.get("State") in ("pending", "available"))),
    Entry("ec2.allocate_address", lambda p: "Elastic IP", _ec2_tagged("describe_addresses", "Addresses", None)),
    # RDS
    Entry("rds.create_db_subnet_group", _described("DB subnet group", "DBSubnetGroupName"),
          _rds("describe_db_subnet_groups", "DBSubnetGroups", "DBSubnetGroupName", "DBSubnetGroup", "SubnetGroupStatus")),
    Entry("rds.create_db_cluster", _described("DB cluster", "DBClusterIdentifier"),
          _rds("describe_db_clusters", "DBClusters", "DBClusterIdentifier", "DBCluster", "Status")),
    Entry("rds.create_db_instance", _described("DB instance", "DBInstanceIdentifier"),
          _rds("describe_db_instances", "DBInstances", "DBInstanceIdentifier", "DBInstance", "DBInstanceStatus")),
    Entry("rds.create_db_cluster_snapshot", _described("DB cluster snapshot", "DBClusterSnapshotIdentifier"),
          _rds("describe_db_cluster_snapshots", "DBClusterSnapshots", "DBClusterSnapshotIdentifier", "DBClusterSnapshot", "Status")),
    # ECS, ECR
    Entry("ecs.create_cluster", _described("ECS cluster", "clusterName"), _ecs_cluster),
    Entry("ecs.create_service", _described("ECS service", "serviceName"), _ecs_service),
    Entry("ecs.register_task_definition", _described("task definition revision of", "family"), _task_definition),
    Entry("ecr.create_repository", _described("ECR repository", "repositoryName"), _ecr_repository),
    # CloudWatch Logs
    Entry("logs.create_log_group", _described("log group", "logGroupName"), _log_group),
    Entry("logs.put_metric_filter", _described("metric filter", "filterName"), _metric_filter, _log_group_tags),
    # IAM
    Entry("iam.create_role", _described("IAM role", "RoleName"), _iam_role),
    Entry("iam.create_policy", _described("IAM policy", "PolicyName"), _iam_policy),
    Entry("iam.attach_role_policy", lambda p: f"attachment of {p.get('PolicyArn')} to role {p.get('RoleName')}",
          _attached_policy, _role_tags),
    Entry("iam.put_role_policy", lambda p: f"inline policy {p.get('PolicyName')} of role {p.get('RoleName')}", _inline_policy, _role_tags),
    Entry("iam.create_instance_profile", _described("instance profile", "InstanceProfileName"), _instance_profile),
    # Secrets Manager, SSM, DynamoDB, SQS, SNS
    Entry("secretsmanager.create_secret", _described("secret", "Name"), _secret),
    Entry("ssm.put_parameter", _described("SSM parameter", "Name"), _parameter),
    Entry("dynamodb.create_table", _described("DynamoDB table", "TableName"), _table),
    Entry("sqs.create_queue", _described("SQS queue", "QueueName"), _queue),
    Entry("sns.create_topic", _described("SNS topic", "Name"), _topic),
    Entry("sns.subscribe", lambda p: f"{p.get('Protocol')} subscription of {p.get('TopicArn')}", _subscription, _sns_tags),
    # S3
    Entry("s3.create_bucket", _described("S3 bucket", "Bucket"), _bucket),
    Entry("s3.put_bucket_versioning", _described("versioning of bucket", "Bucket"),
          _bucket_setting("get_bucket_versioning", lambda c, p: c.get("Status") == (p.get("VersioningConfiguration") or {}).get("Status")),
          _bucket_tags),
    Entry("s3.put_bucket_encryption", _described("encryption of bucket", "Bucket"),
          _bucket_setting("get_bucket_encryption", lambda c, p: _subset(
              p.get("ServerSideEncryptionConfiguration"), c.get("ServerSideEncryptionConfiguration"))), _bucket_tags),
    Entry("s3.put_public_access_block", _described("public access block of bucket", "Bucket"),
          _bucket_setting("get_public_access_block", lambda c, p: _subset(
              p.get("PublicAccessBlockConfiguration"), c.get("PublicAccessBlockConfiguration"))), _bucket_tags),
    Entry("s3.put_bucket_policy", _described("policy of bucket", "Bucket"),
          _bucket_setting("get_bucket_policy", lambda c, p: _same_json(c.get("Policy"), p.get("Policy"))), _bucket_tags),
    Entry("s3.put_bucket_lifecycle_configuration", _described("lifecycle rules of bucket", "Bucket"),
          _bucket_setting("get_bucket_lifecycle_configuration", lambda c, p: {r.get("ID") for r in c.get("Rules", [])}
                          == {r.get("ID") for r in (p.get("LifecycleConfiguration") or {}).get("Rules", [])}), _bucket_tags),
    # Lambda, EventBridge
    Entry("lambda.create_function", _described("Lambda function", "FunctionName"), _function),
    Entry("lambda.add_permission", lambda p: f"permission {p.get('StatementId')} of function {p.get('FunctionName')}",
          _permission, _lambda_tags),
    Entry("events.put_rule", _described("EventBridge rule", "Name"), _rule),
    Entry("events.put_targets", _described("targets of EventBridge rule", "Rule"), _targets, _rule_tags),
    # KMS, CloudWatch
    Entry("kms.create_key", lambda p: "KMS key", _kms_key),
    Entry("kms.create_alias", _described("KMS alias", "AliasName"), _alias, _kms_tags),
    Entry("cloudwatch.put_metric_alarm", _described("CloudWatch alarm", "AlarmName"), _alarm),
    # Cloud Map, AWS Backup
    Entry("servicediscovery.create_private_dns_namespace", _described("Cloud Map namespace", "Name"), _namespace),
    Entry("servicediscovery.create_public_dns_namespace", _described("Cloud Map namespace", "Name"), _namespace),
    Entry("servicediscovery.create_http_namespace", _described("Cloud Map namespace", "Name"), _namespace),
    Entry("servicediscovery.create_service", _described("Cloud Map service", "Name"), _sd_service),
    Entry("backup.create_backup_vault", _described("backup vault", "BackupVaultName"), _vault),
    Entry("backup.create_backup_plan", _described("backup plan", "BackupPlan.BackupPlanName"), _backup_plan),
)  # fmt: skip

CATALOG: dict[str, Entry] = {}
for _entry in ENTRIES:
    if _entry.call in CATALOG:  # one entry per call: a second would be a silent override
        raise ValueError(f"duplicate catalog entry {_entry.call}")
    CATALOG[_entry.call] = _entry


def covers(call: str) -> bool:
    """Whether the catalog knows how to find what ``service.operation`` makes."""
    return call in CATALOG


@dataclass(frozen=True)
class CatalogProbe:
    """The built-in probe of one resolved ``do`` action."""

    entry: Entry
    params: dict[str, Any]
    connection: str | None = None

    @property
    def call(self) -> str:
        return self.entry.call

    @property
    def resource(self) -> str:
        return self.entry.what(self.params)

    def lookup(self, aws: Any, *, step_key: str, env: str, run_id: str | None = None,
               owned: Iterable[str] = ()) -> Lookup:  # fmt: skip
        """``aws``: the connection (``.client(service)``). ``run_id``: the run whose create is
        looked for (a resource tagged by another run is not this one's); None: any run.
        ``owned``: ids and names of resources this operation made (parents of what it adds)."""
        resource = self.resource
        try:
            candidates = self.entry.find(aws, self.params, step_key)
        except ClientError as exc:
            if _gone(exc):
                return Lookup("absent", resource, why=str(exc.response.get("Error", {}).get("Code")))
            return Lookup("unproven", resource, why=f"{self.call} lookup failed: {exc}")
        except BotoCoreError as exc:  # unreachable endpoint, no credentials...: no answer
            return Lookup("unproven", resource, why=f"{self.call} lookup failed: {exc}")
        except (LookupError, KeyError, TypeError, ValueError) as exc:
            return Lookup("unproven", resource, why=f"{self.call} lookup cannot work from these parameters: {exc}")
        if not candidates:
            return Lookup("absent", resource, why="not found")
        owned_set = set(owned)
        verdicts = [self._verdict(aws, c, step_key, env, run_id, owned_set) for c in candidates]
        for state in ("ours", "foreign", "unproven"):
            for candidate, (verdict, why) in zip(candidates, verdicts, strict=True):
                if verdict == state:
                    return Lookup(state, resource, candidate.response if state == "ours" else None, why, exists=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _verdict(self, aws: Any, found: Found, key: str, env: str, run_id: str | None,
                 owned: set[str]) -> tuple[State, str]:  # fmt: skip
        tags = found.tags
        if tags is not None and tags.get(STEP_TAG) == key:
            made_by = tags.get(RUN_TAG)
            if run_id and made_by and made_by != run_id:
                return "foreign", f"it carries this step's tag but was made by run {made_by}"
            return "ours", "it carries this step's tag"
        if found.parent is not None and self._owned_parent(aws, found.parent, env, owned):
            return "ours", f"it lives in {found.parent}, which this environment made"
        if tags is not None:
            return "foreign", "it exists without this step's atomicops:step tag"
        return "unproven", "it exists and takes no tags; nothing shows this environment made what it lives in"

    def _owned_parent(self, aws: Any, parent: str, env: str, owned: set[str]) -> bool:
        if any(parent == o or o.endswith(("/" + parent, ":" + parent)) for o in owned):
            return True
        if self.entry.parent_tags is None:
            return False
        try:
            return self.entry.parent_tags(aws, parent).get(ENV_TAG) == env
        except (ClientError, BotoCoreError, LookupError, KeyError):
            return False


def catalog_probe(do_action: Mapping[str, Any]) -> CatalogProbe | None:
    """The built-in probe for a resolved ``do`` action, or None if the catalog has none."""
    call = do_action.get("aws")
    if not isinstance(call, str) or call not in CATALOG:
        return None
    params = do_action.get("params") or {}
    if not isinstance(params, Mapping):
        return None
    connection = do_action.get("connection")
    return CatalogProbe(CATALOG[call], dict(params), connection if isinstance(connection, str) else None)
