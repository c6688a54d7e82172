"""The built-in probe catalog, entry by entry, against moto's server over HTTP.

For each entry: the create call runs as the engine runs it (with the engine's tags); the
catalog finds it as ``ours`` and the step's outputs read from its answer equal those read from
the create's; after the delete, the catalog says ``absent``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from atomicops.actions.aws import AwsConnection, AwsKind
from atomicops.actions.base import ActionContext, Connections
from atomicops.engine.adoption import ADOPTING_CALLS
from atomicops.engine.catalog import CATALOG, catalog_probe, covers
from atomicops.engine.executor import extract_outputs

REGION = "us-east-1"
ENV = "catalog"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})  # fmt: skip
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})


@dataclass
class World:
    endpoint: str
    aws: AwsConnection
    kind: AwsKind = field(default_factory=AwsKind)

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    def name(self, prefix: str = "c") -> str:
        return f"{prefix}{uuid.uuid4().hex[:8]}"

    def run(self, call: str, params: dict[str, Any], key: str | None = None) -> Any:
        """``call`` as the engine makes it: with the step's tags when ``key`` is given."""
        conns = Connections({"aws": {"kind": "aws", "region": REGION, "endpoint_url": self.endpoint}})
        tags = {"atomicops:env": ENV, "atomicops:op": "op", "atomicops:step": key, "atomicops:run": "run-1"} if key else {}
        ctx = ActionContext(connections=conns, env=ENV, run_id="run-1", step_key=key, tags=tags)
        try:
            return self.kind.execute({"aws": call, "params": params}, ctx)
        finally:
            conns.close()

    def vpc(self) -> str:
        return str(self.client("ec2").create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]["VpcId"])


@pytest.fixture(scope="module")
def world(moto_endpoint: str) -> World:
    return World(moto_endpoint, AwsConnection(REGION, moto_endpoint))


def _ec2(w: World) -> Any:
    return w.client("ec2")


CASES: dict[str, Callable[[World], tuple[dict[str, Any], dict[str, str], Callable[[Any], Any], set[str]]]] = {}


def case(call: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        CASES[call] = fn
        return fn

    return register


# Each case returns (params, outputs, delete(result), owned parents). ---------------- EC2


@case("ec2.create_vpc")
def _(w):
    return {"CidrBlock": "10.91.0.0/16"}, {"id": "Vpc.VpcId"}, lambda r: _ec2(w).delete_vpc(VpcId=r["Vpc"]["VpcId"]), set()


@case("ec2.create_subnet")
def _(w):
    vpc = w.vpc()
    return ({"VpcId": vpc, "CidrBlock": "10.90.1.0/24"}, {"id": "Subnet.SubnetId"},
            lambda r: _ec2(w).delete_subnet(SubnetId=r["Subnet"]["SubnetId"]), set())


@case("ec2.create_internet_gateway")
def _(w):
    return ({}, {"id": "InternetGateway.InternetGatewayId"},
            lambda r: _ec2(w).delete_internet_gateway(InternetGatewayId=r["InternetGateway"]["InternetGatewayId"]), set())


@case("ec2.attach_internet_gateway")
def _(w):
    vpc, igw = w.vpc(), _ec2(w).create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    return ({"VpcId": vpc, "InternetGatewayId": igw}, {},
            lambda r: _ec2(w).detach_internet_gateway(VpcId=vpc, InternetGatewayId=igw), {igw})


@case("ec2.create_route_table")
def _(w):
    return ({"VpcId": w.vpc()}, {"id": "RouteTable.RouteTableId"},
            lambda r: _ec2(w).delete_route_table(RouteTableId=r["RouteTable"]["RouteTableId"]), set())


@case("ec2.create_route")
def _(w):
    vpc = w.vpc()
    igw = _ec2(w).create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    _ec2(w).attach_internet_gateway(VpcId=vpc, InternetGatewayId=igw)
    table = _ec2(w).create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    return ({"RouteTableId": table, "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": igw}, {"ok": "Return"},
            lambda r: _ec2(w).delete_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0"), {table})


@case("ec2.associate_route_table")
def _(w):
    vpc = w.vpc()
    subnet = _ec2(w).create_subnet(VpcId=vpc, CidrBlock="10.90.2.0/24")["Subnet"]["SubnetId"]
    table = _ec2(w).create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    return ({"RouteTableId": table, "SubnetId": subnet}, {"id": "AssociationId"},
            lambda r: _ec2(w).disassociate_route_table(AssociationId=r["AssociationId"]), {table})


@case("ec2.create_security_group")
def _(w):
    return ({"GroupName": w.name("sg"), "Description": "d", "VpcId": w.vpc()}, {"id": "GroupId"},
            lambda r: _ec2(w).delete_security_group(GroupId=r["GroupId"]), set())


@case("ec2.authorize_security_group_ingress")
def _(w):
    vpc = w.vpc()
    group = _ec2(w).create_security_group(GroupName=w.name("sg"), Description="d", VpcId=vpc)["GroupId"]
    other = _ec2(w).create_security_group(GroupName=w.name("sg"), Description="d", VpcId=vpc)["GroupId"]
    perms = [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": other}]}]
    return ({"GroupId": group, "IpPermissions": perms}, {"rule": "SecurityGroupRules[0].SecurityGroupRuleId"},
            lambda r: _ec2(w).revoke_security_group_ingress(GroupId=group, IpPermissions=perms), {group})


@case("ec2.create_vpc_endpoint")
def _(w):
    vpc = w.vpc()
    table = _ec2(w).create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    return ({"VpcId": vpc, "VpcEndpointType": "Gateway", "ServiceName": f"com.amazonaws.{REGION}.s3", "RouteTableIds": [table]},
            {"id": "VpcEndpoint.VpcEndpointId"},
            lambda r: _ec2(w).delete_vpc_endpoints(VpcEndpointIds=[r["VpcEndpoint"]["VpcEndpointId"]]), set())


@case("ec2.create_nat_gateway")
def _(w):
    vpc = w.vpc()
    subnet = _ec2(w).create_subnet(VpcId=vpc, CidrBlock="10.90.3.0/24")["Subnet"]["SubnetId"]
    eip = _ec2(w).allocate_address(Domain="vpc")["AllocationId"]
    return ({"SubnetId": subnet, "AllocationId": eip}, {"id": "NatGateway.NatGatewayId"},
            lambda r: _ec2(w).delete_nat_gateway(NatGatewayId=r["NatGateway"]["NatGatewayId"]), set())


@case("ec2.allocate_address")
def _(w):
    return ({"Domain": "vpc"}, {"id": "AllocationId", "ip": "PublicIp"},
            lambda r: _ec2(w).release_address(AllocationId=r["AllocationId"]), set())


# ---------------------------------------------------------------- RDS


def _subnet_group(w: World) -> str:
    vpc = w.vpc()
    subnets = [_ec2(w).create_subnet(VpcId=vpc, CidrBlock=f"10.90.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
               for i, z in ((10, "a"), (11, "b"))]  # fmt: skip
    name = w.name("sng")
    w.client("rds").create_db_subnet_group(DBSubnetGroupName=name, DBSubnetGroupDescription="d", SubnetIds=subnets)
    return name


@case("rds.create_db_subnet_group")
def _(w):
    vpc = w.vpc()
    subnets = [_ec2(w).create_subnet(VpcId=vpc, CidrBlock=f"10.90.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
               for i, z in ((20, "a"), (21, "b"))]  # fmt: skip
    name = w.name("sng")
    return ({"DBSubnetGroupName": name, "DBSubnetGroupDescription": "d", "SubnetIds": subnets},
            {"name": "DBSubnetGroup.DBSubnetGroupName", "arn": "DBSubnetGroup.DBSubnetGroupArn"},
            lambda r: w.client("rds").delete_db_subnet_group(DBSubnetGroupName=name), set())


def _cluster_params(name: str) -> dict[str, Any]:
    return {"DBClusterIdentifier": name, "Engine": "aurora-postgresql", "MasterUsername": "postgres",
            "MasterUserPassword": "secret-password-1"}  # fmt: skip


@case("rds.create_db_cluster")
def _(w):
    name = w.name("cl")
    return (_cluster_params(name), {"arn": "DBCluster.DBClusterArn", "endpoint": "DBCluster.Endpoint"},
            lambda r: w.client("rds").delete_db_cluster(DBClusterIdentifier=name, SkipFinalSnapshot=True), set())


@case("rds.create_db_instance")
def _(w):
    cluster = w.name("cl")
    w.client("rds").create_db_cluster(**_cluster_params(cluster))
    name = w.name("in")
    return ({"DBInstanceIdentifier": name, "DBClusterIdentifier": cluster, "DBInstanceClass": "db.serverless", "Engine": "aurora-postgresql"},
            {"arn": "DBInstance.DBInstanceArn"},
            lambda r: w.client("rds").delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True), set())


@case("rds.create_db_cluster_snapshot")
def _(w):
    cluster = w.name("cl")
    w.client("rds").create_db_cluster(**_cluster_params(cluster))
    name = w.name("snap")
    return ({"DBClusterIdentifier": cluster, "DBClusterSnapshotIdentifier": name}, {"arn": "DBClusterSnapshot.DBClusterSnapshotArn"},
            lambda r: w.client("rds").delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=name), set())


# ---------------------------------------------------------------- ECS, ECR, Logs


@case("ecs.create_cluster")
def _(w):
    name = w.name("ecs")
    return ({"clusterName": name}, {"arn": "cluster.clusterArn"}, lambda r: w.client("ecs").delete_cluster(cluster=name), set())


def _task_def_params(family: str) -> dict[str, Any]:
    return {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
            "containerDefinitions": [{"name": "app", "image": "nginx"}]}  # fmt: skip


@case("ecs.create_service")
def _(w):
    cluster = w.name("ecs")
    w.client("ecs").create_cluster(clusterName=cluster)
    td = w.client("ecs").register_task_definition(**_task_def_params(w.name("fam")))["taskDefinition"]["taskDefinitionArn"]
    name = w.name("svc")
    return ({"cluster": cluster, "serviceName": name, "taskDefinition": td, "desiredCount": 0}, {"arn": "service.serviceArn"},
            lambda r: w.client("ecs").delete_service(cluster=cluster, service=name, force=True), set())


@case("ecs.register_task_definition")
def _(w):
    family = w.name("fam")
    w.client("ecs").register_task_definition(**_task_def_params(family))  # an earlier revision, not this step's
    return (_task_def_params(family), {"arn": "taskDefinition.taskDefinitionArn", "revision": "taskDefinition.revision"},
            lambda r: w.client("ecs").deregister_task_definition(taskDefinition=r["taskDefinition"]["taskDefinitionArn"]), set())


@case("ecr.create_repository")
def _(w):
    name = "ms/" + w.name("repo")
    return ({"repositoryName": name}, {"uri": "repository.repositoryUri", "arn": "repository.repositoryArn"},
            lambda r: w.client("ecr").delete_repository(repositoryName=name, force=True), set())


@case("logs.create_log_group")
def _(w):
    name = "/ecs/" + w.name("lg")
    return {"logGroupName": name}, {}, lambda r: w.client("logs").delete_log_group(logGroupName=name), set()


@case("logs.put_metric_filter")
def _(w):
    group = "/ecs/" + w.name("lg")
    w.run("logs.create_log_group", {"logGroupName": group}, key=f"{ENV}/parent/log-group")  # made by this environment
    name = w.name("mf")
    params = {"logGroupName": group, "filterName": name, "filterPattern": "ERROR",
              "metricTransformations": [{"metricName": "E", "metricNamespace": "N", "metricValue": "1"}]}  # fmt: skip
    return params, {}, lambda r: w.client("logs").delete_metric_filter(logGroupName=group, filterName=name), set()


# ---------------------------------------------------------------- IAM


def _role(w: World) -> str:
    name = w.name("role")
    w.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
    return name


@case("iam.create_role")
def _(w):
    name = w.name("role")
    return ({"RoleName": name, "AssumeRolePolicyDocument": TRUST}, {"arn": "Role.Arn", "name": "Role.RoleName"},
            lambda r: w.client("iam").delete_role(RoleName=name), set())


@case("iam.create_policy")
def _(w):
    name = w.name("pol")
    return ({"PolicyName": name, "PolicyDocument": POLICY}, {"arn": "Policy.Arn"},
            lambda r: w.client("iam").delete_policy(PolicyArn=r["Policy"]["Arn"]), set())


@case("iam.attach_role_policy")
def _(w):
    role = _role(w)
    arn = w.client("iam").create_policy(PolicyName=w.name("pol"), PolicyDocument=POLICY)["Policy"]["Arn"]
    return ({"RoleName": role, "PolicyArn": arn}, {},
            lambda r: w.client("iam").detach_role_policy(RoleName=role, PolicyArn=arn), {role})


@case("iam.put_role_policy")
def _(w):
    role = _role(w)
    return ({"RoleName": role, "PolicyName": "inline", "PolicyDocument": POLICY}, {},
            lambda r: w.client("iam").delete_role_policy(RoleName=role, PolicyName="inline"), {role})


@case("iam.create_instance_profile")
def _(w):
    name = w.name("ip")
    return ({"InstanceProfileName": name}, {"arn": "InstanceProfile.Arn", "id": "InstanceProfile.InstanceProfileId"},
            lambda r: w.client("iam").delete_instance_profile(InstanceProfileName=name), set())


# ---------------------------------------------------------------- Secrets, SSM, DynamoDB, SQS, SNS


@case("secretsmanager.create_secret")
def _(w):
    name = "ms/" + w.name("sec")
    return ({"Name": name, "SecretString": "s3cr3t"}, {"arn": "ARN", "name": "Name", "version": "VersionId"},
            lambda r: w.client("secretsmanager").delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True), set())


@case("ssm.put_parameter")
def _(w):
    name = "/ms/" + w.name("p")
    return ({"Name": name, "Value": "v", "Type": "String"}, {"version": "Version"},
            lambda r: w.client("ssm").delete_parameter(Name=name), set())


@case("dynamodb.create_table")
def _(w):
    name = w.name("t")
    return ({"TableName": name, "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}], "BillingMode": "PAY_PER_REQUEST"},
            {"arn": "TableDescription.TableArn", "name": "TableDescription.TableName"},
            lambda r: w.client("dynamodb").delete_table(TableName=name), set())  # fmt: skip


@case("sqs.create_queue")
def _(w):
    return ({"QueueName": w.name("q")}, {"url": "QueueUrl"}, lambda r: w.client("sqs").delete_queue(QueueUrl=r["QueueUrl"]), set())


@case("sns.create_topic")
def _(w):
    return ({"Name": w.name("topic")}, {"arn": "TopicArn"}, lambda r: w.client("sns").delete_topic(TopicArn=r["TopicArn"]), set())


@case("sns.subscribe")
def _(w):
    topic = w.client("sns").create_topic(Name=w.name("topic"))["TopicArn"]
    queue = w.client("sqs").create_queue(QueueName=w.name("q"))["QueueUrl"]
    queue_arn = w.client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return ({"TopicArn": topic, "Protocol": "sqs", "Endpoint": queue_arn}, {"arn": "SubscriptionArn"},
            lambda r: w.client("sns").unsubscribe(SubscriptionArn=r["SubscriptionArn"]), {topic})


# ---------------------------------------------------------------- S3


@case("s3.create_bucket")
def _(w):
    name = w.name("bucket")
    # S3 takes a bucket's tags only nested here, where the engine does not add them (as in the flagship).
    tags = [{"Key": "atomicops:env", "Value": ENV}, {"Key": "atomicops:step", "Value": f"{ENV}/op/step"}]
    return ({"Bucket": name, "CreateBucketConfiguration": {"Tags": tags}}, {"location": "Location"},
            lambda r: w.client("s3").delete_bucket(Bucket=name), set())


def _bucket(w: World) -> str:
    name = w.name("bucket")
    w.client("s3").create_bucket(Bucket=name)
    return name


@case("s3.put_bucket_versioning")
def _(w):
    b = _bucket(w)
    return ({"Bucket": b, "VersioningConfiguration": {"Status": "Enabled"}}, {},
            lambda r: w.client("s3").put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"}), {b})


@case("s3.put_bucket_encryption")
def _(w):
    b = _bucket(w)
    conf = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]}
    return ({"Bucket": b, "ServerSideEncryptionConfiguration": conf}, {},
            lambda r: w.client("s3").delete_bucket_encryption(Bucket=b), {b})


@case("s3.put_public_access_block")
def _(w):
    b = _bucket(w)
    conf = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    return ({"Bucket": b, "PublicAccessBlockConfiguration": conf}, {},
            lambda r: w.client("s3").delete_public_access_block(Bucket=b), {b})


@case("s3.put_bucket_policy")
def _(w):
    b = _bucket(w)
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*"}]})  # fmt: skip
    return {"Bucket": b, "Policy": policy}, {}, lambda r: w.client("s3").delete_bucket_policy(Bucket=b), {b}


@case("s3.put_bucket_lifecycle_configuration")
def _(w):
    b = _bucket(w)
    conf = {"Rules": [{"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 7}}]}
    return ({"Bucket": b, "LifecycleConfiguration": conf}, {},
            lambda r: w.client("s3").delete_bucket_lifecycle(Bucket=b), {b})


# ---------------------------------------------------------------- Lambda, EventBridge, KMS, CloudWatch


def _zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("h.py", "def handler(e, c):\n    return 1\n")
    return buf.getvalue()


def _lambda_role(w: World) -> str:
    return str(w.client("iam").create_role(RoleName=w.name("lr"), AssumeRolePolicyDocument=TRUST)["Role"]["Arn"])


@case("lambda.create_function")
def _(w):
    name = w.name("fn")
    return ({"FunctionName": name, "Runtime": "python3.12", "Role": _lambda_role(w), "Handler": "h.handler", "Code": {"ZipFile": _zip()}},
            {"arn": "FunctionArn", "name": "FunctionName"},
            lambda r: w.client("lambda").delete_function(FunctionName=name), set())


@case("lambda.add_permission")
def _(w):
    name = w.name("fn")
    w.client("lambda").create_function(FunctionName=name, Runtime="python3.12", Role=_lambda_role(w), Handler="h.handler",
                                       Code={"ZipFile": _zip()})  # fmt: skip
    return ({"FunctionName": name, "StatementId": "allow-events", "Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com"},
            {"sid": "Statement"},
            lambda r: w.client("lambda").remove_permission(FunctionName=name, StatementId="allow-events"), {name})


@case("events.put_rule")
def _(w):
    name = w.name("rule")
    return ({"Name": name, "ScheduleExpression": "rate(5 minutes)"}, {"arn": "RuleArn"},
            lambda r: w.client("events").delete_rule(Name=name), set())


@case("events.put_targets")
def _(w):
    rule = w.name("rule")
    w.client("events").put_rule(Name=rule, ScheduleExpression="rate(5 minutes)")
    topic = w.client("sns").create_topic(Name=w.name("topic"))["TopicArn"]
    return ({"Rule": rule, "Targets": [{"Id": "t1", "Arn": topic}]}, {"failed": "FailedEntryCount"},
            lambda r: w.client("events").remove_targets(Rule=rule, Ids=["t1"]), {rule})


@case("kms.create_key")
def _(w):
    return ({"Description": "k"}, {"id": "KeyMetadata.KeyId", "arn": "KeyMetadata.Arn"},
            lambda r: w.client("kms").schedule_key_deletion(KeyId=r["KeyMetadata"]["KeyId"], PendingWindowInDays=7), set())


@case("kms.create_alias")
def _(w):
    key = w.client("kms").create_key()["KeyMetadata"]["KeyId"]
    alias = "alias/" + w.name("a")
    return {"AliasName": alias, "TargetKeyId": key}, {}, lambda r: w.client("kms").delete_alias(AliasName=alias), {key}


@case("cloudwatch.put_metric_alarm")
def _(w):
    name = w.name("alarm")
    return ({"AlarmName": name, "MetricName": "E", "Namespace": "N", "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1,
             "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold"}, {},
            lambda r: w.client("cloudwatch").delete_alarms(AlarmNames=[name]), set())  # fmt: skip


# ---------------------------------------------------------------- Cloud Map, Backup


@case("servicediscovery.create_private_dns_namespace")
def _(w):
    name = w.name("ns") + ".local"
    sd = w.client("servicediscovery")

    def delete(r: Any) -> None:
        ns = next(n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == name)
        sd.delete_namespace(Id=ns["Id"])

    return {"Name": name, "Vpc": w.vpc()}, {"op": "OperationId"}, delete, set()


@case("servicediscovery.create_public_dns_namespace")
def _(w):
    name = w.name("pns") + ".example.com"
    sd = w.client("servicediscovery")

    def delete(r: Any) -> None:
        ns = next(n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == name)
        sd.delete_namespace(Id=ns["Id"])

    return {"Name": name}, {"op": "OperationId"}, delete, set()


@case("servicediscovery.create_http_namespace")
def _(w):
    name = w.name("hns")
    sd = w.client("servicediscovery")

    def delete(r: Any) -> None:
        ns = next(n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == name)
        sd.delete_namespace(Id=ns["Id"])

    return {"Name": name}, {"op": "OperationId"}, delete, set()


@case("servicediscovery.create_service")
def _(w):
    sd = w.client("servicediscovery")
    op = sd.create_http_namespace(Name=w.name("hns"))["OperationId"]
    ns = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
    name = w.name("svc")
    return ({"Name": name, "NamespaceId": ns}, {"arn": "Service.Arn", "id": "Service.Id"},
            lambda r: sd.delete_service(Id=r["Service"]["Id"]), set())


@case("backup.create_backup_vault")
def _(w):
    name = w.name("vault")
    return ({"BackupVaultName": name, "BackupVaultTags": {"atomicops:step": f"{ENV}/op/step"}}, {"arn": "BackupVaultArn"},
            lambda r: w.client("backup").delete_backup_vault(BackupVaultName=name), set())


@case("backup.create_backup_plan")
def _(w):
    name = w.name("plan")
    vault = w.name("vault")
    w.client("backup").create_backup_vault(BackupVaultName=vault)
    plan = {"BackupPlanName": name, "Rules": [{"RuleName": "daily", "TargetBackupVaultName": vault, "ScheduleExpression": "cron(0 5 ? * * *)"}]}
    return ({"BackupPlan": plan, "BackupPlanTags": {"atomicops:step": f"{ENV}/op/step"}}, {"id": "BackupPlanId", "arn": "BackupPlanArn"},
            lambda r: w.client("backup").delete_backup_plan(BackupPlanId=r["BackupPlanId"]), set())


# ---------------------------------------------------------------- the tests


def test_every_catalog_entry_has_a_case_and_the_guarded_calls_are_covered():
    assert set(CASES) == set(CATALOG)
    assert all(covers(c) for c in ADOPTING_CALLS)


@pytest.mark.parametrize("call", sorted(CASES))
def test_an_entry_finds_what_its_create_made_and_then_that_it_is_gone(world, call):
    key = f"{ENV}/op/step"
    params, outputs, delete, owned = CASES[call](world)
    probe = catalog_probe({"aws": call, "params": params})
    assert probe is not None
    assert probe.lookup(world.aws, step_key=key, env=ENV, owned=owned).state == "absent"

    result = world.run(call, params, key=key)
    if call == "s3.create_bucket":  # moto drops the tags nested in CreateBucketConfiguration; AWS keeps them
        tags = params["CreateBucketConfiguration"]["Tags"]
        world.client("s3").put_bucket_tagging(Bucket=params["Bucket"], Tagging={"TagSet": tags})
    made, missing = extract_outputs(outputs, result)
    assert not missing, missing
    found = probe.lookup(world.aws, step_key=key, env=ENV, run_id="run-1", owned=owned)
    assert found.state == "ours", found
    assert extract_outputs(outputs, found.response)[0] == made

    # Another step of the same environment does not take it as its own.
    if not owned and CATALOG[call].parent_tags is None:
        other = probe.lookup(world.aws, step_key=f"{ENV}/op/other", env=ENV)
        assert other.state in ("foreign", "absent"), other

    delete(result)
    gone = probe.lookup(world.aws, step_key=key, env=ENV, owned=owned)
    assert gone.state == "absent", gone


def test_a_resource_tagged_by_another_run_of_the_step_is_not_this_runs(world):
    params = {"Name": world.name("topic")}
    world.run("sns.create_topic", params, key=f"{ENV}/op/step")
    probe = catalog_probe({"aws": "sns.create_topic", "params": params})
    assert probe is not None
    assert probe.lookup(world.aws, step_key=f"{ENV}/op/step", env=ENV, run_id="run-1").state == "ours"
    assert probe.lookup(world.aws, step_key=f"{ENV}/op/step", env=ENV, run_id="run-2").state == "foreign"


def test_a_child_in_a_parent_nobody_proves_is_unproven(world):
    role = _role(world)  # made outside the tool: no atomicops tags
    params = {"RoleName": role, "PolicyName": "inline", "PolicyDocument": POLICY}
    world.client("iam").put_role_policy(**params)
    probe = catalog_probe({"aws": "iam.put_role_policy", "params": params})
    assert probe is not None
    assert probe.lookup(world.aws, step_key=f"{ENV}/op/step", env=ENV).state == "unproven"
    assert probe.lookup(world.aws, step_key=f"{ENV}/op/step", env=ENV, owned={role}).state == "ours"


def test_a_call_the_catalog_does_not_know_has_no_builtin_probe():
    assert catalog_probe({"aws": "ec2.create_key_pair", "params": {"KeyName": "k"}}) is None
    assert catalog_probe({"sql": "select 1"}) is None
    assert not covers("ec2.create_key_pair")


def test_a_lookup_that_cannot_reach_aws_is_no_answer(closed_endpoint):
    aws = AwsConnection(REGION, closed_endpoint, connect_timeout=1, max_attempts=1)
    probe = catalog_probe({"aws": "sqs.create_queue", "params": {"QueueName": "q"}})
    assert probe is not None
    found = probe.lookup(aws, step_key=f"{ENV}/op/step", env=ENV)
    assert found.state == "unproven" and not found.exists


def test_every_create_call_of_the_flagship_plan_has_a_builtin_probe():
    from atomicops import api
    from atomicops.rehearsal import FLAGSHIP_PLAN

    plan = api.validate(FLAGSHIP_PLAN).plan
    creates = {
        str(s.do["aws"]) for op in plan.operations for s in op.steps
        if not s.read_only and "aws" in s.do
        and str(s.do["aws"]).split(".")[1].split("_")[0] in ("create", "put", "register", "allocate", "authorize",
                                                             "associate", "attach", "subscribe", "add")
    }  # fmt: skip
    assert len(creates) >= 25
    assert sorted(c for c in creates if not covers(c)) == []
