#!/usr/bin/env bash
# B1 (a): the seed page's sections 1.1-1.5, 2.2-2.4 and 3.2 as written, one AWS CLI process
# per command, with only the fixes it needs to run at all (each marked FIX below):
#
#   bash page.sh forward STATE_FILE     # the CREATE OPERATION blocks, in the page's forward order
#   bash page.sh rollback STATE_FILE    # the ROLLBACK OPERATION blocks, in its rollback order
#
# AWS_ENDPOINT_URL (the moto server), AWS_DEFAULT_REGION and fake credentials come from the
# environment; AWS_CLI names the `aws` executable (bench/runbook.py installs awscli into a
# bench-only venv). The ids the page writes as <vpc-id> etc. are read from each command's
# output with --query and kept in STATE_FILE between the two halves, as a person would copy them.
set -euo pipefail

mode=$1
state=$2
AWS_CLI=${AWS_CLI:-aws}
# FIX: the page talks to real AWS; every command goes to the endpoint instead.
aws() { "$AWS_CLI" --endpoint-url "$AWS_ENDPOINT_URL" --output text "$@"; }
keep() { echo "$1=$2" >>"$state"; }
ACCOUNT=123456789012     # FIX: <account-id> (moto's account)
PASSWORD=${PAGE_PASSWORD:-bench-only-not-a-secret-0123456789}   # FIX: <secure-password>
# FIX (moto only): moto names a cluster's automated snapshot by the minute and keeps it after
# the cluster is deleted, so each run names its cluster apart.
CLUSTER=${AURORA_CLUSTER:-mistersmith-aurora-cluster}

forward() {
  : >"$state"
  # ---- 1.1 VPC
  VPC=$(aws ec2 create-vpc --cidr-block 10.0.0.0/16 \
    --tag-specifications 'ResourceType=vpc,Tags=[{Key=Name,Value=MisterSmith-VPC},{Key=Environment,Value=Production}]' \
    --region us-east-1 --query Vpc.VpcId)
  keep VPC "$VPC"
  SUB1=$(aws ec2 create-subnet --vpc-id "$VPC" --cidr-block 10.0.1.0/24 --availability-zone us-east-1a \
    --tag-specifications 'ResourceType=subnet,Tags=[{Key=Name,Value=MisterSmith-Private-1A}]' --query Subnet.SubnetId)
  keep SUB1 "$SUB1"
  SUB2=$(aws ec2 create-subnet --vpc-id "$VPC" --cidr-block 10.0.2.0/24 --availability-zone us-east-1b \
    --tag-specifications 'ResourceType=subnet,Tags=[{Key=Name,Value=MisterSmith-Private-1B}]' --query Subnet.SubnetId)
  keep SUB2 "$SUB2"
  IGW=$(aws ec2 create-internet-gateway \
    --tag-specifications 'ResourceType=internet-gateway,Tags=[{Key=Name,Value=MisterSmith-IGW}]' \
    --query InternetGateway.InternetGatewayId)
  keep IGW "$IGW"
  aws ec2 attach-internet-gateway --vpc-id "$VPC" --internet-gateway-id "$IGW" >/dev/null

  # ---- 1.4 security groups (FIX: the ECS group first: the Aurora group's rule names it)
  ECS_SG=$(aws ec2 create-security-group --group-name mistersmith-ecs-sg \
    --description "MisterSmith ECS security group" --vpc-id "$VPC" --query GroupId)
  keep ECS_SG "$ECS_SG"
  AURORA_SG=$(aws ec2 create-security-group --group-name mistersmith-aurora-sg \
    --description "MisterSmith Aurora security group" --vpc-id "$VPC" --query GroupId)
  keep AURORA_SG "$AURORA_SG"
  aws ec2 authorize-security-group-ingress --group-id "$AURORA_SG" --protocol tcp --port 5432 --source-group "$ECS_SG" >/dev/null
  aws ec2 authorize-security-group-ingress --group-id "$ECS_SG" --protocol tcp --port 4222 --source-group "$ECS_SG" >/dev/null
  aws ec2 authorize-security-group-ingress --group-id "$ECS_SG" --protocol tcp --port 8080 --source-group "$ECS_SG" >/dev/null

  # ---- 1.5 IAM
  local trust='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
  aws iam create-role --role-name MisterSmithECSTaskExecutionRole --assume-role-policy-document "$trust" >/dev/null
  aws iam attach-role-policy --role-name MisterSmithECSTaskExecutionRole \
    --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy
  aws iam create-role --role-name MisterSmithECSTaskRole --assume-role-policy-document "$trust" >/dev/null
  POLICY=$(aws iam create-policy --policy-name MisterSmithTaskPolicy --query Policy.Arn --policy-document '{
    "Version": "2012-10-17",
    "Statement": [
      {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::mistersmith-artifacts/*"},
      {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": "arn:aws:secretsmanager:*:*:secret:mistersmith/*"},
      {"Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"}
    ]}')
  keep POLICY "$POLICY"
  aws iam attach-role-policy --role-name MisterSmithECSTaskRole --policy-arn "$POLICY"

  # ---- 1.2 Aurora (FIX: <security-group-id> is the Aurora group of 1.4)
  aws rds create-db-subnet-group --db-subnet-group-name mistersmith-aurora-subnet-group \
    --db-subnet-group-description "MisterSmith Aurora subnet group" --subnet-ids "$SUB1" "$SUB2" \
    --tags Key=Name,Value=MisterSmith-Aurora-SubnetGroup >/dev/null
  AURORA_ENDPOINT=$(aws rds create-db-cluster --db-cluster-identifier "$CLUSTER" \
    --engine aurora-postgresql --engine-version 15.4 \
    --serverless-v2-scaling-configuration MinCapacity=0.5,MaxCapacity=4 \
    --master-username postgres --master-user-password "$PASSWORD" \
    --db-subnet-group-name mistersmith-aurora-subnet-group --vpc-security-group-ids "$AURORA_SG" \
    --enable-cloudwatch-logs-exports postgresql --backup-retention-period 7 \
    --preferred-backup-window "03:00-04:00" --preferred-maintenance-window "sun:04:00-sun:05:00" \
    --query DBCluster.Endpoint)
  aws rds create-db-instance --db-instance-identifier mistersmith-aurora-instance-1 \
    --db-cluster-identifier "$CLUSTER" --db-instance-class db.serverless \
    --engine aurora-postgresql >/dev/null

  # ---- 1.3 ECS cluster, log group, ECR
  aws ecs create-cluster --cluster-name mistersmith-cluster --capacity-providers FARGATE FARGATE_SPOT \
    --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1,base=1 \
    --settings name=containerInsights,value=enabled >/dev/null
  aws logs create-log-group --log-group-name /ecs/mistersmith
  for repo in orchestrator agent discovery-engine; do
    aws ecr create-repository --repository-name "mistersmith/$repo" --image-scanning-configuration scanOnPush=true >/dev/null
  done

  # ---- 2.4 secrets and parameters
  aws secretsmanager create-secret --name mistersmith/db-password --secret-string "$PASSWORD" >/dev/null
  aws secretsmanager create-secret --name mistersmith/nats-credentials \
    --secret-string "{\"user\": \"mistersmith\", \"password\": \"$PASSWORD\"}" >/dev/null
  aws ssm put-parameter --name /mistersmith/config/nats-url --value "nats://orchestrator.local:4222" --type String >/dev/null
  aws ssm put-parameter --name /mistersmith/config/db-host --value "$AURORA_ENDPOINT" --type String >/dev/null
  aws ssm put-parameter --name /mistersmith/config/discovery-rate --value "150000" --type String >/dev/null

  # ---- 2.2 task definitions
  local ecr="$ACCOUNT.dkr.ecr.us-east-1.amazonaws.com"
  ORCH_TD=$(aws ecs register-task-definition --family mistersmith-orchestrator --network-mode awsvpc \
    --requires-compatibilities FARGATE --cpu "512" --memory "1024" \
    --execution-role-arn "arn:aws:iam::$ACCOUNT:role/MisterSmithECSTaskExecutionRole" \
    --task-role-arn "arn:aws:iam::$ACCOUNT:role/MisterSmithECSTaskRole" \
    --query taskDefinition.taskDefinitionArn --container-definitions "[
    {
      \"name\": \"orchestrator\",
      \"image\": \"$ecr/mistersmith/orchestrator:latest\",
      \"portMappings\": [{\"containerPort\": 4222, \"protocol\": \"tcp\"}, {\"containerPort\": 8080, \"protocol\": \"tcp\"}],
      \"environment\": [{\"name\": \"NATS_URL\", \"value\": \"nats://localhost:4222\"}, {\"name\": \"AWS_REGION\", \"value\": \"us-east-1\"}],
      \"secrets\": [{\"name\": \"DB_PASSWORD\", \"valueFrom\": \"arn:aws:secretsmanager:us-east-1:$ACCOUNT:secret:mistersmith/db-password\"}],
      \"logConfiguration\": {\"logDriver\": \"awslogs\", \"options\": {\"awslogs-group\": \"/ecs/mistersmith\", \"awslogs-region\": \"us-east-1\", \"awslogs-stream-prefix\": \"orchestrator\"}},
      \"healthCheck\": {\"command\": [\"CMD-SHELL\", \"curl -f http://localhost:8080/health || exit 1\"], \"interval\": 30, \"timeout\": 5, \"retries\": 3, \"startPeriod\": 60}
    }]")
  keep ORCH_TD "$ORCH_TD"
  AGENT_TD=$(aws ecs register-task-definition --family mistersmith-agent --network-mode awsvpc \
    --requires-compatibilities FARGATE --cpu "256" --memory "512" \
    --execution-role-arn "arn:aws:iam::$ACCOUNT:role/MisterSmithECSTaskExecutionRole" \
    --task-role-arn "arn:aws:iam::$ACCOUNT:role/MisterSmithECSTaskRole" \
    --query taskDefinition.taskDefinitionArn --container-definitions "[
    {
      \"name\": \"agent\",
      \"image\": \"$ecr/mistersmith/agent:latest\",
      \"environment\": [{\"name\": \"NATS_URL\", \"value\": \"nats://orchestrator.local:4222\"}, {\"name\": \"AGENT_TYPE\", \"value\": \"worker\"}],
      \"logConfiguration\": {\"logDriver\": \"awslogs\", \"options\": {\"awslogs-group\": \"/ecs/mistersmith\", \"awslogs-region\": \"us-east-1\", \"awslogs-stream-prefix\": \"agent\"}}
    }]")
  keep AGENT_TD "$AGENT_TD"

  # ---- 2.3 services (FIX: the revision registered above, not ":1" (a second run registers :2);
  # FIX: no --service-registries: nothing on the page creates <service-discovery-arn>)
  local net="{\"awsvpcConfiguration\": {\"subnets\": [\"$SUB1\", \"$SUB2\"], \"securityGroups\": [\"$ECS_SG\"], \"assignPublicIp\": \"DISABLED\"}}"
  aws ecs create-service --cluster mistersmith-cluster --service-name mistersmith-orchestrator \
    --task-definition "$ORCH_TD" --desired-count 1 --launch-type FARGATE \
    --network-configuration "$net" --health-check-grace-period-seconds 60 >/dev/null
  aws ecs create-service --cluster mistersmith-cluster --service-name mistersmith-agent \
    --task-definition "$AGENT_TD" --desired-count 3 --launch-type FARGATE \
    --network-configuration "$net" >/dev/null

  # ---- 3.2 DynamoDB (FIX: the GSI's `Keys` is `KeySchema`, and its key `Type` needs a definition)
  aws dynamodb create-table --table-name MisterSmithStreams \
    --attribute-definitions AttributeName=StreamName,AttributeType=S AttributeName=SequenceNumber,AttributeType=N \
    --key-schema AttributeName=StreamName,KeyType=HASH AttributeName=SequenceNumber,KeyType=RANGE \
    --provisioned-throughput ReadCapacityUnits=5,WriteCapacityUnits=5 \
    --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES >/dev/null
  aws dynamodb create-table --table-name MisterSmithDiscoveryCache \
    --attribute-definitions AttributeName=DiscoveryId,AttributeType=S AttributeName=Timestamp,AttributeType=N \
      AttributeName=Type,AttributeType=S \
    --key-schema AttributeName=DiscoveryId,KeyType=HASH AttributeName=Timestamp,KeyType=RANGE \
    --provisioned-throughput ReadCapacityUnits=10,WriteCapacityUnits=10 \
    --global-secondary-indexes '[{
      "IndexName": "TypeIndex",
      "KeySchema": [{"AttributeName": "Type", "KeyType": "HASH"}, {"AttributeName": "Timestamp", "KeyType": "RANGE"}],
      "Projection": {"ProjectionType": "ALL"},
      "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    }]' >/dev/null
  aws dynamodb wait table-exists --table-name MisterSmithStreams
  aws dynamodb wait table-exists --table-name MisterSmithDiscoveryCache
}

rollback() {
  # shellcheck disable=SC1090
  source "$state"
  # ---- 2.3 services: scale to 0, wait, delete
  aws ecs update-service --cluster mistersmith-cluster --service mistersmith-orchestrator --desired-count 0 >/dev/null
  aws ecs update-service --cluster mistersmith-cluster --service mistersmith-agent --desired-count 0 >/dev/null
  aws ecs wait services-stable --cluster mistersmith-cluster --services mistersmith-orchestrator mistersmith-agent
  aws ecs delete-service --cluster mistersmith-cluster --service mistersmith-orchestrator --force >/dev/null
  aws ecs delete-service --cluster mistersmith-cluster --service mistersmith-agent --force >/dev/null
  # ---- 2.2 task definitions (FIX: the revisions registered, not ":1")
  aws ecs deregister-task-definition --task-definition "$ORCH_TD" >/dev/null
  aws ecs deregister-task-definition --task-definition "$AGENT_TD" >/dev/null
  # ---- 1.3
  for repo in orchestrator agent discovery-engine; do
    aws ecr delete-repository --repository-name "mistersmith/$repo" --force >/dev/null
  done
  aws logs delete-log-group --log-group-name /ecs/mistersmith
  aws ecs delete-cluster --cluster mistersmith-cluster >/dev/null
  # ---- 1.2
  aws rds delete-db-instance --db-instance-identifier mistersmith-aurora-instance-1 --skip-final-snapshot >/dev/null
  aws rds delete-db-cluster --db-cluster-identifier "$CLUSTER" --skip-final-snapshot >/dev/null
  aws rds delete-db-subnet-group --db-subnet-group-name mistersmith-aurora-subnet-group
  # ---- 1.4 (as written: the 8080 rule is never revoked)
  aws ec2 revoke-security-group-ingress --group-id "$AURORA_SG" \
    --ip-permissions "[{\"IpProtocol\": \"tcp\", \"FromPort\": 5432, \"ToPort\": 5432, \"UserIdGroupPairs\": [{\"GroupId\": \"$ECS_SG\"}]}]" >/dev/null
  aws ec2 revoke-security-group-ingress --group-id "$ECS_SG" \
    --ip-permissions "[{\"IpProtocol\": \"tcp\", \"FromPort\": 4222, \"ToPort\": 4222, \"UserIdGroupPairs\": [{\"GroupId\": \"$ECS_SG\"}]}]" >/dev/null
  aws ec2 delete-security-group --group-id "$AURORA_SG"
  aws ec2 delete-security-group --group-id "$ECS_SG"
  # ---- 1.1
  aws ec2 detach-internet-gateway --vpc-id "$VPC" --internet-gateway-id "$IGW"
  aws ec2 delete-internet-gateway --internet-gateway-id "$IGW"
  aws ec2 delete-subnet --subnet-id "$SUB1"
  aws ec2 delete-subnet --subnet-id "$SUB2"
  aws ec2 delete-vpc --vpc-id "$VPC"
  # ---- 1.5
  aws iam detach-role-policy --role-name MisterSmithECSTaskExecutionRole \
    --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy
  aws iam detach-role-policy --role-name MisterSmithECSTaskRole --policy-arn "$POLICY"
  aws iam delete-policy --policy-arn "$POLICY"
  aws iam delete-role --role-name MisterSmithECSTaskExecutionRole
  aws iam delete-role --role-name MisterSmithECSTaskRole
  # ---- 2.4
  aws secretsmanager delete-secret --secret-id mistersmith/db-password --force-delete-without-recovery >/dev/null
  aws secretsmanager delete-secret --secret-id mistersmith/nats-credentials --force-delete-without-recovery >/dev/null
  aws ssm delete-parameter --name /mistersmith/config/nats-url
  aws ssm delete-parameter --name /mistersmith/config/db-host
  aws ssm delete-parameter --name /mistersmith/config/discovery-rate
  # ---- 3.2
  aws dynamodb delete-table --table-name MisterSmithStreams >/dev/null
  aws dynamodb delete-table --table-name MisterSmithDiscoveryCache >/dev/null
}

"$mode"
