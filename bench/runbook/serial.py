"""B1 (b): the same calls as page.sh, made serially by one boto3 process, no journal: the
limit for doing this work serially.

    python serial.py forward STATE_FILE
    python serial.py rollback STATE_FILE

AWS_ENDPOINT_URL (the moto server), AWS_DEFAULT_REGION and fake credentials come from the
environment. The ids the rollback needs are kept in STATE_FILE (JSON) between the two halves.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import boto3

ACCOUNT = "123456789012"
PASSWORD = os.environ.get("PAGE_PASSWORD", "bench-only-not-a-secret-0123456789")
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
TASK_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::mistersmith-artifacts/*"},
    {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": "arn:aws:secretsmanager:*:*:secret:mistersmith/*"},
    {"Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"},
]})
EXEC_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
# moto names a cluster's automated snapshot by the minute and keeps it: each run names its own.
CLUSTER = os.environ.get("AURORA_CLUSTER", "mistersmith-aurora-cluster")
ECR = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
LOGS = {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/mistersmith", "awslogs-region": "us-east-1"}}


class Clients:
    """One client per service, made when first used (as a script would)."""

    def __init__(self) -> None:
        self.session = boto3.session.Session()
        self.made: dict[str, Any] = {}

    def __getattr__(self, service: str) -> Any:
        if service not in self.made:
            self.made[service] = self.session.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        return self.made[service]


def tags(kind: str, **pairs: str) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in pairs.items()]}]


def rule(port: int, group: str) -> list[dict[str, Any]]:
    return [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "UserIdGroupPairs": [{"GroupId": group}]}]


def forward(aws: Clients) -> dict[str, str]:
    s: dict[str, str] = {}
    ec2 = aws.ec2
    # 1.1
    s["vpc"] = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=tags("vpc", Name="MisterSmith-VPC", Environment="Production"))["Vpc"]["VpcId"]
    s["sub1"] = ec2.create_subnet(VpcId=s["vpc"], CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a",
                                  TagSpecifications=tags("subnet", Name="MisterSmith-Private-1A"))["Subnet"]["SubnetId"]
    s["sub2"] = ec2.create_subnet(VpcId=s["vpc"], CidrBlock="10.0.2.0/24", AvailabilityZone="us-east-1b",
                                  TagSpecifications=tags("subnet", Name="MisterSmith-Private-1B"))["Subnet"]["SubnetId"]
    s["igw"] = ec2.create_internet_gateway(TagSpecifications=tags("internet-gateway", Name="MisterSmith-IGW"))["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(VpcId=s["vpc"], InternetGatewayId=s["igw"])
    # 1.4
    s["ecs_sg"] = ec2.create_security_group(GroupName="mistersmith-ecs-sg", Description="MisterSmith ECS security group", VpcId=s["vpc"])["GroupId"]
    s["aurora_sg"] = ec2.create_security_group(GroupName="mistersmith-aurora-sg", Description="MisterSmith Aurora security group", VpcId=s["vpc"])["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=s["aurora_sg"], IpPermissions=rule(5432, s["ecs_sg"]))
    ec2.authorize_security_group_ingress(GroupId=s["ecs_sg"], IpPermissions=rule(4222, s["ecs_sg"]))
    ec2.authorize_security_group_ingress(GroupId=s["ecs_sg"], IpPermissions=rule(8080, s["ecs_sg"]))
    # 1.5
    iam = aws.iam
    iam.create_role(RoleName="MisterSmithECSTaskExecutionRole", AssumeRolePolicyDocument=TRUST)
    iam.attach_role_policy(RoleName="MisterSmithECSTaskExecutionRole", PolicyArn=EXEC_POLICY)
    iam.create_role(RoleName="MisterSmithECSTaskRole", AssumeRolePolicyDocument=TRUST)
    s["policy"] = iam.create_policy(PolicyName="MisterSmithTaskPolicy", PolicyDocument=TASK_POLICY)["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="MisterSmithECSTaskRole", PolicyArn=s["policy"])
    # 1.2
    rds = aws.rds
    rds.create_db_subnet_group(DBSubnetGroupName="mistersmith-aurora-subnet-group", DBSubnetGroupDescription="MisterSmith Aurora subnet group",
                               SubnetIds=[s["sub1"], s["sub2"]], Tags=[{"Key": "Name", "Value": "MisterSmith-Aurora-SubnetGroup"}])
    endpoint = rds.create_db_cluster(
        DBClusterIdentifier=CLUSTER, Engine="aurora-postgresql", EngineVersion="15.4",
        ServerlessV2ScalingConfiguration={"MinCapacity": 0.5, "MaxCapacity": 4}, MasterUsername="postgres",
        MasterUserPassword=PASSWORD, DBSubnetGroupName="mistersmith-aurora-subnet-group", VpcSecurityGroupIds=[s["aurora_sg"]],
        EnableCloudwatchLogsExports=["postgresql"], BackupRetentionPeriod=7, PreferredBackupWindow="03:00-04:00",
        PreferredMaintenanceWindow="sun:04:00-sun:05:00")["DBCluster"]["Endpoint"]
    rds.create_db_instance(DBInstanceIdentifier="mistersmith-aurora-instance-1", DBClusterIdentifier=CLUSTER,
                           DBInstanceClass="db.serverless", Engine="aurora-postgresql")
    # 1.3
    aws.ecs.create_cluster(clusterName="mistersmith-cluster", capacityProviders=["FARGATE", "FARGATE_SPOT"],
                           defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1, "base": 1}],
                           settings=[{"name": "containerInsights", "value": "enabled"}])
    aws.logs.create_log_group(logGroupName="/ecs/mistersmith")
    for repo in ("orchestrator", "agent", "discovery-engine"):
        aws.ecr.create_repository(repositoryName=f"mistersmith/{repo}", imageScanningConfiguration={"scanOnPush": True})
    # 2.4
    sm, ssm = aws.secretsmanager, aws.ssm
    sm.create_secret(Name="mistersmith/db-password", SecretString=PASSWORD)
    sm.create_secret(Name="mistersmith/nats-credentials", SecretString=json.dumps({"user": "mistersmith", "password": PASSWORD}))
    ssm.put_parameter(Name="/mistersmith/config/nats-url", Value="nats://orchestrator.local:4222", Type="String")
    ssm.put_parameter(Name="/mistersmith/config/db-host", Value=endpoint, Type="String")
    ssm.put_parameter(Name="/mistersmith/config/discovery-rate", Value="150000", Type="String")
    # 2.2
    ecs = aws.ecs
    roles = {"executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/MisterSmithECSTaskExecutionRole",
             "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/MisterSmithECSTaskRole"}
    s["orch_td"] = ecs.register_task_definition(
        family="mistersmith-orchestrator", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="512", memory="1024", **roles,
        containerDefinitions=[{
            "name": "orchestrator", "image": f"{ECR}/mistersmith/orchestrator:latest",
            "portMappings": [{"containerPort": 4222, "protocol": "tcp"}, {"containerPort": 8080, "protocol": "tcp"}],
            "environment": [{"name": "NATS_URL", "value": "nats://localhost:4222"}, {"name": "AWS_REGION", "value": "us-east-1"}],
            "secrets": [{"name": "DB_PASSWORD", "valueFrom": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:mistersmith/db-password"}],
            "logConfiguration": {**LOGS, "options": {**LOGS["options"], "awslogs-stream-prefix": "orchestrator"}},
            "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost:8080/health || exit 1"], "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 60},
        }])["taskDefinition"]["taskDefinitionArn"]
    s["agent_td"] = ecs.register_task_definition(
        family="mistersmith-agent", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512", **roles,
        containerDefinitions=[{
            "name": "agent", "image": f"{ECR}/mistersmith/agent:latest",
            "environment": [{"name": "NATS_URL", "value": "nats://orchestrator.local:4222"}, {"name": "AGENT_TYPE", "value": "worker"}],
            "logConfiguration": {**LOGS, "options": {**LOGS["options"], "awslogs-stream-prefix": "agent"}},
        }])["taskDefinition"]["taskDefinitionArn"]
    # 2.3
    net = {"awsvpcConfiguration": {"subnets": [s["sub1"], s["sub2"]], "securityGroups": [s["ecs_sg"]], "assignPublicIp": "DISABLED"}}
    ecs.create_service(cluster="mistersmith-cluster", serviceName="mistersmith-orchestrator", taskDefinition=s["orch_td"], desiredCount=1,
                       launchType="FARGATE", networkConfiguration=net, healthCheckGracePeriodSeconds=60)
    ecs.create_service(cluster="mistersmith-cluster", serviceName="mistersmith-agent", taskDefinition=s["agent_td"], desiredCount=3,
                       launchType="FARGATE", networkConfiguration=net)
    # 3.2
    ddb = aws.dynamodb
    ddb.create_table(
        TableName="MisterSmithStreams",
        AttributeDefinitions=[{"AttributeName": "StreamName", "AttributeType": "S"}, {"AttributeName": "SequenceNumber", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "StreamName", "KeyType": "HASH"}, {"AttributeName": "SequenceNumber", "KeyType": "RANGE"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    ddb.create_table(
        TableName="MisterSmithDiscoveryCache",
        AttributeDefinitions=[{"AttributeName": "DiscoveryId", "AttributeType": "S"}, {"AttributeName": "Timestamp", "AttributeType": "N"},
                              {"AttributeName": "Type", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "DiscoveryId", "KeyType": "HASH"}, {"AttributeName": "Timestamp", "KeyType": "RANGE"}],
        ProvisionedThroughput={"ReadCapacityUnits": 10, "WriteCapacityUnits": 10},
        GlobalSecondaryIndexes=[{"IndexName": "TypeIndex",
                                 "KeySchema": [{"AttributeName": "Type", "KeyType": "HASH"}, {"AttributeName": "Timestamp", "KeyType": "RANGE"}],
                                 "Projection": {"ProjectionType": "ALL"},
                                 "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}}])
    ddb.get_waiter("table_exists").wait(TableName="MisterSmithStreams")
    ddb.get_waiter("table_exists").wait(TableName="MisterSmithDiscoveryCache")
    return s


def rollback(aws: Clients, s: dict[str, str]) -> None:
    ecs = aws.ecs
    for svc in ("mistersmith-orchestrator", "mistersmith-agent"):
        ecs.update_service(cluster="mistersmith-cluster", service=svc, desiredCount=0)
    ecs.get_waiter("services_stable").wait(cluster="mistersmith-cluster", services=["mistersmith-orchestrator", "mistersmith-agent"])
    for svc in ("mistersmith-orchestrator", "mistersmith-agent"):
        ecs.delete_service(cluster="mistersmith-cluster", service=svc, force=True)
    ecs.deregister_task_definition(taskDefinition=s["orch_td"])
    ecs.deregister_task_definition(taskDefinition=s["agent_td"])
    for repo in ("orchestrator", "agent", "discovery-engine"):
        aws.ecr.delete_repository(repositoryName=f"mistersmith/{repo}", force=True)
    aws.logs.delete_log_group(logGroupName="/ecs/mistersmith")
    ecs.delete_cluster(cluster="mistersmith-cluster")
    rds = aws.rds
    rds.delete_db_instance(DBInstanceIdentifier="mistersmith-aurora-instance-1", SkipFinalSnapshot=True)
    rds.delete_db_cluster(DBClusterIdentifier=CLUSTER, SkipFinalSnapshot=True)
    rds.delete_db_subnet_group(DBSubnetGroupName="mistersmith-aurora-subnet-group")
    ec2 = aws.ec2
    ec2.revoke_security_group_ingress(GroupId=s["aurora_sg"], IpPermissions=rule(5432, s["ecs_sg"]))
    ec2.revoke_security_group_ingress(GroupId=s["ecs_sg"], IpPermissions=rule(4222, s["ecs_sg"]))
    ec2.delete_security_group(GroupId=s["aurora_sg"])
    ec2.delete_security_group(GroupId=s["ecs_sg"])
    ec2.detach_internet_gateway(VpcId=s["vpc"], InternetGatewayId=s["igw"])
    ec2.delete_internet_gateway(InternetGatewayId=s["igw"])
    ec2.delete_subnet(SubnetId=s["sub1"])
    ec2.delete_subnet(SubnetId=s["sub2"])
    ec2.delete_vpc(VpcId=s["vpc"])
    iam = aws.iam
    iam.detach_role_policy(RoleName="MisterSmithECSTaskExecutionRole", PolicyArn=EXEC_POLICY)
    iam.detach_role_policy(RoleName="MisterSmithECSTaskRole", PolicyArn=s["policy"])
    iam.delete_policy(PolicyArn=s["policy"])
    iam.delete_role(RoleName="MisterSmithECSTaskExecutionRole")
    iam.delete_role(RoleName="MisterSmithECSTaskRole")
    sm, ssm = aws.secretsmanager, aws.ssm
    sm.delete_secret(SecretId="mistersmith/db-password", ForceDeleteWithoutRecovery=True)
    sm.delete_secret(SecretId="mistersmith/nats-credentials", ForceDeleteWithoutRecovery=True)
    for name in ("nats-url", "db-host", "discovery-rate"):
        ssm.delete_parameter(Name=f"/mistersmith/config/{name}")
    aws.dynamodb.delete_table(TableName="MisterSmithStreams")
    aws.dynamodb.delete_table(TableName="MisterSmithDiscoveryCache")


def main() -> int:
    mode, state = sys.argv[1], Path(sys.argv[2])
    aws = Clients()
    if mode == "forward":
        state.write_text(json.dumps(forward(aws)))
    else:
        rollback(aws, json.loads(state.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
