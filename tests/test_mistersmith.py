"""Static checks of the bundled MisterSmith plan (the seed runbook made runnable).

No service is started: these read the loaded plan, ``atomicops plan``'s view of it and
schema.sql. The rehearsal (apply, verify, roll back, leak check) is tested elsewhere.

The tables below are the contract with README.md beside the plan: which seed section each
operation implements, which steps may lack a probe and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore
import botocore.session
import pytest

import atomicops
from atomicops import api
from atomicops.actions.aws import with_tags
from atomicops.engine.ownership import proves_ownership
from atomicops.plan import refs
from atomicops.plan.loader import LoadedPlan
from atomicops.plan.model import Plan

PLAN_DIR = Path(atomicops.__file__).parent / "bundled" / "mistersmith"
REPO = Path(__file__).resolve().parents[1]
SEED_NAME = "000_a498ebe7c5e7fe42.txt"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def loaded() -> LoadedPlan:
    return api.validate(PLAN_DIR)


@pytest.fixture(scope="module")
def plan(loaded: LoadedPlan) -> Plan:
    return loaded.plan


def with_vars(value: Any, plan: Plan) -> Any:
    """``value`` with ``${vars.X}`` resolved; every other reference is left as written."""

    def look(ref: refs.Ref) -> Any:
        if ref.namespace != "vars":
            raise refs.Keep
        return refs.dig(plan.vars, ref.path, ref)

    return refs.resolve(value, look)


@dataclass(frozen=True)
class Call:
    """One action of the plan: where it is, its kind key and what it does."""

    op: str  # operation id, or "<plan>" for plan-level checks
    step: str | None
    role: str  # do, undo, probe, verify
    kind: str
    target: Any  # "ec2.create_vpc", "msops.images:push_image", the SQL text, ...
    action: Mapping[str, Any]

    @property
    def params(self) -> Mapping[str, Any]:
        """An aws action's params, a call's args."""
        return self.action.get("params") or self.action.get("args") or {}


KINDS = ("aws", "sql", "sql_file", "call", "http", "nats", "run")


def kind_of(action: Mapping[str, Any]) -> str:
    found = [k for k in KINDS if k in action]
    assert len(found) == 1, action
    return found[0]


def actions(plan: Plan) -> Iterator[Call]:
    """Every action of every step and check, with ``${vars...}`` resolved."""
    for op in plan.operations:
        for step in op.steps:
            for role in ("do", "undo", "probe"):
                action = getattr(step, role)
                if action:
                    action = with_vars(action, plan)
                    k = kind_of(action)
                    yield Call(op.id, step.name, role, k, action[k], action)
        for check in op.verify:
            check = with_vars(check, plan)
            k = kind_of(check)
            yield Call(op.id, None, "verify", k, check[k], check)
    for check in plan.verify:
        check = with_vars(check, plan)
        k = kind_of(check)
        yield Call("<plan>", None, "verify", k, check[k], check)


def dos(plan: Plan, target: str | None = None) -> list[Call]:
    return [c for c in actions(plan) if c.role == "do" and (target is None or c.target == target)]


def step_of(plan: Plan, op_id: str, name: str | None) -> Any:
    return next(s for s in plan.operation(op_id).steps if s.name == name)


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def flat_waves(view_phases: list[dict[str, Any]]) -> list[list[str]]:
    return [wave for ph in view_phases for wave in ph["waves"]]


def find_seed() -> Path | None:
    for base in (REPO, *REPO.parents):
        candidate = base / "shared" / "seed" / SEED_NAME
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------- validation, graph


def test_the_plan_validates_with_no_errors_and_no_warnings(loaded: LoadedPlan):
    # The one warning allowed says its triggers are not polled yet (gone once they are).
    assert [w.message for w in loaded.warnings if not w.message.startswith("triggers are checked")] == []
    assert loaded.plan.name == "mistersmith-aws"
    # examples/mistersmith is the same directory, for people reading the repository.
    link = REPO / "examples" / "mistersmith"
    if link.exists():
        assert link.resolve() == PLAN_DIR.resolve()


def test_plan_view_has_four_phases_and_rollback_is_the_exact_reverse(loaded: LoadedPlan, tmp_path: Path):
    view = api.plan_view(loaded, state=str(tmp_path / "journal.db"))
    assert [w for w in view["warnings"] if "triggers are checked" not in w] == []  # not polled yet
    assert [ph["phase"] for ph in view["forward"]] == ["infrastructure", "application", "data", "verification"]
    for ph in view["forward"][:3]:
        assert ph["waves"], f"phase {ph['phase']} has no operations"
    forward = flat_waves(view["forward"])
    rollback = flat_waves(view["rollback"])
    assert [ph["phase"] for ph in view["rollback"]] == ["verification", "data", "application", "infrastructure"]
    assert [sorted(w) for w in rollback] == [sorted(w) for w in reversed(forward)]
    every = [op for wave in forward for op in wave]
    assert sorted(every) == sorted(op.id for op in loaded.plan.operations)
    assert set(view["changes"].values()) == {"create"}

    # Every dependency (declared or inferred from ${ops...}) runs in an earlier wave, so it
    # is undone in a later one.
    wave_of = {op: i for i, wave in enumerate(forward) for op in wave}
    for op_id, deps in loaded.deps.items():
        for dep in deps:
            assert wave_of[dep] < wave_of[op_id], f"{op_id} runs no later than {dep}, which it needs"


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ("ecs-sg", "aurora-sg"),  # the Aurora rule refers to the ECS group
        ("aurora-sg", "aurora"),
        ("secrets", "aurora"),  # the master password is stored before the cluster uses it
        ("network", "endpoints"),
        ("endpoints", "services"),  # tasks in private subnets need them to pull and log
        ("service-discovery", "services"),
        ("task-definitions", "services"),
        ("images", "task-definitions"),
        ("execution-role", "task-definitions"),
        ("aurora", "parameters"),  # db-host is the cluster's real endpoint
        ("aurora", "checkpoint"),
        ("checkpoint", "schema"),  # the snapshot is taken before the data changes
        ("schema", "state-import"),
        ("dynamodb", "stream-copy"),
        ("services", "cutover"),
        ("schema", "cutover"),
        ("ecs-cluster", "alarm"),  # the metric filter reads the /ecs/mistersmith log group
        ("artifacts-bucket", "rollback-handler"),
    ],
)
def test_forward_order(loaded: LoadedPlan, tmp_path: Path, first: str, then: str):
    view = api.plan_view(loaded, state=str(tmp_path / "journal.db"))
    forward = {op: i for i, wave in enumerate(flat_waves(view["forward"])) for op in wave}
    rollback = {op: i for i, wave in enumerate(flat_waves(view["rollback"])) for op in wave}
    assert forward[first] < forward[then]
    assert rollback[then] < rollback[first]


# --------------------------------------------------------------------------- seed coverage


@dataclass(frozen=True)
class Want:
    """``count`` do-actions ``target`` in the section's operations whose params satisfy ``where``."""

    target: str
    count: int
    where: Callable[[Mapping[str, Any]], bool] = lambda p: True
    kind: str = "aws"


@dataclass(frozen=True)
class Section:
    title: str
    ops: frozenset[str]
    wants: tuple[Want, ...] = ()
    extra: Callable[[Plan], None] | None = None  # further checks, for what a Want cannot say


def ports(p: Mapping[str, Any]) -> set[int]:
    return {perm["FromPort"] for perm in p["IpPermissions"]}


def assumed_by(p: Mapping[str, Any]) -> str:
    return json.loads(p["AssumeRolePolicyDocument"])["Statement"][0]["Principal"]["Service"]


def _sg_rules(plan: Plan) -> None:
    by_port = {
        port: c
        for c in dos(plan, "ec2.authorize_security_group_ingress")
        for port in ports(c.params)
    }
    pg = by_port[5432]
    assert pg.op == "aurora-sg"
    assert pg.params["IpPermissions"][0]["UserIdGroupPairs"] == [{"GroupId": "${ops.ecs-sg.group_id}"}]
    for port in (4222, 8080):
        assert by_port[port].op == "ecs-sg"
        assert by_port[port].params["IpPermissions"][0]["UserIdGroupPairs"] == [{"GroupId": "${self.group_id}"}]
    # The page never revoked 8080: here every rule has its revoke.
    for c in by_port.values():
        undo = step_of(plan, c.op, c.step).undo
        assert undo["aws"] == "ec2.revoke_security_group_ingress"


def _iam(plan: Plan) -> None:
    task_role_attach = step_of(plan, "task-role", "attach")
    assert task_role_attach.do["params"]["PolicyArn"] == "${self.policy_arn}"  # not <policy-arn>
    # ECS reads a container's `secrets:` with the execution role: that one needs the grant.
    reads = step_of(plan, "execution-role", "read-secrets").do["params"]
    role = step_of(plan, "execution-role", "role").do["params"]["RoleName"]
    assert reads["RoleName"] == role == "MisterSmithECSTaskExecutionRole"
    statement = json.loads(reads["PolicyDocument"])["Statement"][0]
    assert statement["Action"] == ["secretsmanager:GetSecretValue"]
    assert statement["Resource"].endswith(":secret:mistersmith/*")
    policy = json.loads(with_vars(step_of(plan, "task-role", "policy").do["params"]["PolicyDocument"], plan))
    bucket = with_vars("${vars.artifacts_bucket}", plan)
    assert any(s["Resource"] == f"arn:aws:s3:::{bucket}/*" for s in policy["Statement"])
    assert dos(plan, "s3.create_bucket")[0].params["Bucket"] == bucket  # the page never made it


def _images(plan: Plan) -> None:
    pushes = [c for c in dos(plan) if c.target == "msops.images:push_image"]
    assert {c.action["args"]["repository"] for c in pushes} == {
        "mistersmith/orchestrator", "mistersmith/agent", "mistersmith/discovery-engine",
    }
    assert {c.op for c in pushes} == {"images"}
    for c in pushes:
        undo = step_of(plan, c.op, c.step).undo
        assert undo["aws"] == "ecr.batch_delete_image"
        assert undo["params"]["repositoryName"] == c.action["args"]["repository"]
        assert "imageDigest" in undo["params"]["imageIds"][0]  # the pushed digest, not the tag


def _task_definitions(plan: Plan) -> None:
    for c in dos(plan, "ecs.register_task_definition"):
        p = c.params
        assert p["executionRoleArn"] == "${ops.execution-role.role_arn}"
        assert p["taskRoleArn"] == "${ops.task-role.role_arn}"
        assert p["requiresCompatibilities"] == ["FARGATE"] and p["networkMode"] == "awsvpc"
        for container in p["containerDefinitions"]:
            assert container["image"].startswith("${ops.images.")  # pushed digest, no <account-id>
            for secret in container.get("secrets", []):
                assert secret["valueFrom"] == "${ops.secrets.db_password_arn}"


def _services(plan: Plan) -> None:
    creates = {c.params["serviceName"]: c for c in dos(plan, "ecs.create_service")}
    orchestrator, agent = creates["mistersmith-orchestrator"], creates["mistersmith-agent"]
    assert orchestrator.params["serviceRegistries"] == [{"registryArn": "${ops.service-discovery.registry_arn}"}]
    assert orchestrator.params["taskDefinition"] == "${ops.task-definitions.orchestrator_arn}"  # not :1
    assert agent.params["taskDefinition"] == "${ops.task-definitions.agent_arn}"
    assert "serviceRegistries" not in agent.params
    # <service-discovery-arn>: the namespace and service the agents dial as orchestrator.local.
    namespace = dos(plan, "msops.cloudmap:create_namespace")[0].params
    service = dos(plan, "servicediscovery.create_service")[0].params
    assert namespace["vpc"] == "${ops.network.vpc_id}"
    assert service["NamespaceId"] == "${self.namespace_id}"
    agent_td = next(c for c in dos(plan, "ecs.register_task_definition") if c.params["family"] == "mistersmith-agent")
    url = env_of(agent_td.params["containerDefinitions"][0])["NATS_URL"]
    m = re.match(r"nats://([^:/]+)", url)
    assert m is not None, url
    assert m.group(1) == f"{service['Name']}.{namespace['name']}" == "orchestrator.local"
    # orchestrator.local resolves only with DNS hostnames on in the VPC.
    dns = step_of(plan, "network", "dns-hostnames").do
    assert dns["params"]["EnableDnsHostnames"] == {"Value": True}


def _secrets_and_parameters(plan: Plan) -> None:
    names = {c.params["Name"]: c for c in dos(plan, "ssm.put_parameter")}
    assert names["/mistersmith/config/db-host"].params["Value"] == "${ops.aurora.endpoint}"  # not <aurora-endpoint>
    assert names["/mistersmith/config/nats-url"].params["Value"] == "nats://orchestrator.local:4222"


SCHEMA_TABLES = {"core.agents", "core.discoveries", "core.coordination_state"}
SCHEMA_INDEXES = {
    "idx_agents_type", "idx_agents_status", "idx_discoveries_agent_id", "idx_discoveries_type",
    "idx_discoveries_created_at", "idx_coordination_swarm_id",
}


def schema_objects(sql: str) -> dict[str, Any]:
    sql = re.sub(r"--[^\n]*", "", sql)
    return {
        "schemas": set(re.findall(r"CREATE SCHEMA(?: IF NOT EXISTS)?\s+(\w+)", sql, re.IGNORECASE)),
        "tables": set(re.findall(r"CREATE TABLE(?: IF NOT EXISTS)?\s+([\w.]+)", sql, re.IGNORECASE)),
        "indexes": dict(re.findall(r"CREATE INDEX(?: IF NOT EXISTS)?\s+(\w+)\s+ON\s+([\w.]+)", sql, re.IGNORECASE)),
        "functions": set(re.findall(r"CREATE(?: OR REPLACE)? FUNCTION\s+([\w.]+)\s*\(", sql, re.IGNORECASE)),
        "triggers": {
            name: (table, fn)
            for name, table, fn in re.findall(
                r"CREATE TRIGGER\s+(\w+)\s+.*?\s+ON\s+([\w.]+)\s+.*?EXECUTE (?:FUNCTION|PROCEDURE)\s+([\w.]+)\s*\(",
                sql, re.IGNORECASE | re.DOTALL,
            )
        },
    }


def _schema(plan: Plan) -> None:
    database, core = (step_of(plan, "schema", n) for n in ("database", "core-schema"))
    assert database.do["sql"].strip() == "CREATE DATABASE mistersmith"
    assert core.do["sql_file"] == "schema.sql" and core.do["database"] == "mistersmith"
    found = schema_objects((PLAN_DIR / core.do["sql_file"]).read_text())
    assert found["schemas"] == {"core"}
    assert found["tables"] == SCHEMA_TABLES
    assert set(found["indexes"]) == SCHEMA_INDEXES
    assert set(found["indexes"].values()) <= SCHEMA_TABLES
    # The trigger function lives in core (the page put it in public, out of DROP SCHEMA's reach).
    assert found["functions"] == {"core.update_updated_at"}
    assert found["triggers"] == {
        "update_agents_updated_at": ("core.agents", "core.update_updated_at"),
        "update_coordination_updated_at": ("core.coordination_state", "core.update_updated_at"),
    }
    # Each undo removes what its step made: the schema (with everything in it), the database.
    assert re.fullmatch(r"DROP SCHEMA IF EXISTS core CASCADE", core.undo["sql"].strip())
    assert core.undo["database"] == "mistersmith"
    assert database.undo["sql"].startswith("DROP DATABASE IF EXISTS mistersmith")


def _dynamodb(plan: Plan) -> None:
    tables = {c.params["TableName"]: c.params for c in dos(plan, "dynamodb.create_table")}
    gsi = tables["MisterSmithDiscoveryCache"]["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in gsi] == ["TypeIndex"]
    assert "Keys" not in gsi[0]
    assert gsi[0]["KeySchema"] == [
        {"AttributeName": "Type", "KeyType": "HASH"},
        {"AttributeName": "Timestamp", "KeyType": "RANGE"},
    ]
    # DynamoDB wants every key attribute (table and index) defined, and only those.
    for name, p in tables.items():
        keys = {k["AttributeName"] for k in p["KeySchema"]}
        for index in p.get("GlobalSecondaryIndexes", []):
            keys |= {k["AttributeName"] for k in index["KeySchema"]}
        assert {a["AttributeName"] for a in p["AttributeDefinitions"]} == keys, name


def _cutover(plan: Plan) -> None:
    revision, roll_out = step_of(plan, "cutover", "revision"), step_of(plan, "cutover", "roll-out")
    p = revision.do["params"]
    assert p["family"] == "mistersmith-orchestrator"
    assert "revision" not in {k.lower() for k in p}  # `--revision 2` is no flag: AWS numbers them
    env = env_of(p["containerDefinitions"][0])
    assert {"DATABASE_URL", "DYNAMODB_STREAMS_TABLE", "DYNAMODB_CACHE_TABLE"} <= set(env)
    assert "${ops.aurora.endpoint}" in env["DATABASE_URL"]
    assert not re.search(r"//[^/@]*:[^/@]*@", env["DATABASE_URL"]), "a password in DATABASE_URL"
    assert roll_out.do["aws"] == "ecs.update_service"
    assert roll_out.do["params"]["taskDefinition"] == "${self.revision_arn}"
    assert roll_out.undo["aws"] == "ecs.update_service"
    assert roll_out.undo["params"]["taskDefinition"] == "${ops.task-definitions.orchestrator_arn}"
    assert revision.undo == {"aws": "ecs.deregister_task_definition", "params": {"taskDefinition": "${self.revision_arn}"}}


def _state_sync(plan: Plan) -> None:
    imp = step_of(plan, "state-import", "import")
    assert imp.do["call"] == "msops.state:import_state"
    # The undo deletes the rows the import wrote, by id (the page: "rows from the last hour").
    assert "id = ANY(%(ids)s" in imp.undo["sql"] and imp.undo["params"] == {"ids": "${self.ids}"}
    assert "interval" not in imp.undo["sql"].lower() and "now()" not in imp.undo["sql"].lower()
    copy = step_of(plan, "stream-copy", "copy")
    assert copy.do["call"] == "msops.streams:copy_to_dynamodb"
    assert with_vars(copy.do["args"]["table"], plan) == "MisterSmithStreams"
    # Deletes exactly the range copied (query + batches), not a scan of the whole table.
    assert copy.undo["call"] == "msops.streams:delete_copied"
    assert copy.undo["args"]["first_seq"] == "${self.first_seq}" and copy.undo["args"]["last_seq"] == "${self.last_seq}"


def _checkpoint(plan: Plan) -> None:
    backup = dos(plan, "backup.create_backup_plan")[0].params["BackupPlan"]
    assert backup["BackupPlanName"].startswith("MisterSmithMigrationCheckpoint")
    vault = backup["Rules"][0]["TargetBackupVaultName"]
    assert vault != "Default"
    assert dos(plan, "backup.create_backup_vault")[0].params["BackupVaultName"] == vault
    snapshot = step_of(plan, "checkpoint", "cluster-snapshot").do
    assert snapshot["wait"]["waiter"] == "db_cluster_snapshot_available"


def _alarm(plan: Plan) -> None:
    alarm = dos(plan, "cloudwatch.put_metric_alarm")[0].params
    assert (alarm["Namespace"], alarm["MetricName"]) != ("AWS/ECS", "4XXError")  # ECS emits no such metric
    metric_filter = dos(plan, "logs.put_metric_filter")[0].params
    emitted = metric_filter["metricTransformations"][0]
    assert (alarm["Namespace"], alarm["MetricName"]) == (emitted["metricNamespace"], emitted["metricName"])
    assert alarm["AlarmActions"] == ["${self.topic_arn}"]
    assert dos(plan, "sns.create_topic")[0].params["Name"] == "mistersmith-alerts"
    fn = dos(plan, "lambda.create_function")[0].params
    assert fn["FunctionName"] == "MisterSmithRollbackHandler"
    assert fn["Runtime"] != "python3.9"
    assert fn["Role"] == "${self.role_arn}"  # the page's lambda-rollback-role never existed
    assert fn["Code"]["S3Key"] == "${self.code_key}"  # uploaded by the step before
    assert plan.triggers is not None
    assert plan.triggers.checks[0]["params"]["AlarmNames"] == [alarm["AlarmName"]]


def _verification(plan: Plan) -> None:
    checks = {c.get("name"): c for c in plan.verify}
    health = checks["orchestrator-health"]
    assert health["http"]["url"] == "${vars.orchestrator_url}/health"  # no <alb-endpoint>
    assert health["expect"]["json.status"] == "healthy"  # the page's expected response
    assert "core.agents" in checks["agents-query"]["sql"] and checks["agents-query"]["database"] == "mistersmith"
    assert checks["aurora-endpoints"]["aws"] == "rds.describe_db_clusters"
    assert checks["message-flow"]["call"] == "msops.flow:publish_and_receive"
    assert checks["message-flow"]["expect"] == {"received": True}
    ecs = checks["ecs-services"]
    assert ecs["aws"] == "ecs.describe_services"
    assert set(ecs["params"]["services"]) == {"mistersmith-orchestrator", "mistersmith-agent"}


ECS_TASKS = "ecs-tasks.amazonaws.com"

COVERAGE: dict[str, Section] = {
    "1.1": Section("VPC Creation/Deletion", frozenset({"network"}), (
        Want("ec2.create_vpc", 1, lambda p: p["CidrBlock"] == "10.0.0.0/16"),
        Want("ec2.create_subnet", 2, lambda p: p["CidrBlock"] in ("10.0.1.0/24", "10.0.2.0/24")),
        Want("ec2.create_internet_gateway", 1),
        Want("ec2.attach_internet_gateway", 1, lambda p: p["VpcId"] == "${self.vpc_id}"),
    )),
    "1.2": Section("Aurora Serverless v2 Cluster", frozenset({"aurora"}), (
        Want("rds.create_db_subnet_group", 1, lambda p: p["DBSubnetGroupName"] == "mistersmith-aurora-subnet-group"),
        Want("rds.create_db_cluster", 1, lambda p: p["Engine"] == "aurora-postgresql"
             and p["VpcSecurityGroupIds"] == ["${ops.aurora-sg.group_id}"]),
        Want("rds.create_db_instance", 1, lambda p: p["DBInstanceClass"] == "db.serverless"),
    )),
    "1.3": Section("ECS Cluster Setup", frozenset({"ecs-cluster", "ecr"}), (
        Want("ecs.create_cluster", 1, lambda p: p["clusterName"] == "mistersmith-cluster"),
        Want("logs.create_log_group", 1, lambda p: p["logGroupName"] == "/ecs/mistersmith"),
        Want("ecr.create_repository", 3, lambda p: p["repositoryName"] in (
            "mistersmith/orchestrator", "mistersmith/agent", "mistersmith/discovery-engine")),
    )),
    "1.4": Section("Security Groups", frozenset({"ecs-sg", "aurora-sg"}), (
        Want("ec2.create_security_group", 2, lambda p: p["GroupName"] in ("mistersmith-aurora-sg", "mistersmith-ecs-sg")),
        Want("ec2.authorize_security_group_ingress", 3, lambda p: ports(p) <= {5432, 4222, 8080}),
    ), _sg_rules),
    "1.5": Section("IAM Roles and Policies", frozenset({"execution-role", "task-role"}), (
        Want("iam.create_role", 2, lambda p: assumed_by(p) == ECS_TASKS and p["RoleName"] in (
            "MisterSmithECSTaskExecutionRole", "MisterSmithECSTaskRole")),
        Want("iam.create_policy", 1, lambda p: p["PolicyName"] == "MisterSmithTaskPolicy"),
        Want("iam.attach_role_policy", 2, lambda p: p["RoleName"] in ("MisterSmithECSTaskExecutionRole", "MisterSmithECSTaskRole")),
    ), _iam),
    "2.1": Section("Container Image Build/Push", frozenset({"images"}), (
        Want("msops.images:push_image", 3, kind="call"),
    ), _images),
    "2.2": Section("Task Definition Registration", frozenset({"task-definitions"}), (
        Want("ecs.register_task_definition", 2, lambda p: p["family"] in ("mistersmith-orchestrator", "mistersmith-agent")),
    ), _task_definitions),
    "2.3": Section("Service Deployment", frozenset({"services", "service-discovery"}), (
        Want("ecs.create_service", 2),
        Want("msops.cloudmap:create_namespace", 1, lambda p: p["name"] == "local", kind="call"),
        Want("servicediscovery.create_service", 1, lambda p: p["Name"] == "orchestrator"),
    ), _services),
    "2.4": Section("Environment Variables", frozenset({"secrets", "parameters"}), (
        Want("secretsmanager.create_secret", 2, lambda p: p["Name"] in ("mistersmith/db-password", "mistersmith/nats-credentials")),
        Want("ssm.put_parameter", 3, lambda p: p["Name"].startswith("/mistersmith/config/")),
    ), _secrets_and_parameters),
    "3.1": Section("PostgreSQL Schema Migration", frozenset({"schema"}), (), _schema),
    "3.2": Section("JetStream to DynamoDB Migration", frozenset({"dynamodb"}), (
        Want("dynamodb.create_table", 2, lambda p: p["TableName"] in ("MisterSmithStreams", "MisterSmithDiscoveryCache")),
    ), _dynamodb),
    "3.3": Section("Connection String Updates", frozenset({"cutover"}), (
        Want("ecs.register_task_definition", 1, lambda p: p["family"] == "mistersmith-orchestrator"),
        Want("ecs.update_service", 1, lambda p: p["service"] == "mistersmith-orchestrator"),
    ), _cutover),
    "3.4": Section("State Synchronization", frozenset({"state-import", "stream-copy"}), (
        Want("msops.state:import_state", 1, kind="call"),
        Want("msops.streams:copy_to_dynamodb", 1, kind="call"),
    ), _state_sync),
    "4.1": Section("State Checkpoints", frozenset({"checkpoint"}), (
        Want("backup.create_backup_plan", 1),
        Want("rds.create_db_cluster_snapshot", 1),
    ), _checkpoint),
    "4.2": Section("Automated Rollback Triggers", frozenset({"alarm", "rollback-handler"}), (
        Want("cloudwatch.put_metric_alarm", 1, lambda p: p["AlarmName"] == "MisterSmith-HighErrorRate"),
        Want("lambda.create_function", 1),
    ), _alarm),
    # 5.x are the plan-level verify checks (run at the end of apply and by `atomicops verify`).
    "5.1": Section("Health Check Endpoints", frozenset(), extra=_verification),
    "5.2": Section("Database Connectivity", frozenset()),
    "5.3": Section("Message Flow Verification", frozenset()),
    "5.4": Section("ECS Task Status", frozenset()),
}

# Operations the page does not have, each fixing one of its defects (README.md explains them).
ADDED_BY_THE_PLAN = {
    "endpoints": "private subnets with no NAT: interface endpoints for ECR, Logs, Secrets Manager",
    "artifacts-bucket": "the policy and the Lambda name mistersmith-artifacts; the page never created it",
}

# Plan-level checks for 5.1-5.4: section -> (check name, kind).
VERIFY_CHECKS = {
    "5.1": [("orchestrator-health", "http")],
    "5.2": [("aurora-endpoints", "aws"), ("agents-query", "sql")],
    "5.3": [("message-flow", "call")],
    "5.4": [("ecs-services", "aws")],
}


@pytest.mark.parametrize("section", sorted(COVERAGE))
def test_every_seed_section_is_covered(plan: Plan, section: str):
    spec = COVERAGE[section]
    op_ids = {op.id for op in plan.operations}
    assert spec.ops <= op_ids
    for want in spec.wants:
        calls = [c for c in dos(plan, want.target) if c.kind == want.kind and c.op in spec.ops]
        matching = [c for c in calls if want.where(c.params)]
        assert len(matching) == want.count, (
            f"{section}: expected {want.count} x {want.target} in {sorted(spec.ops)}, found "
            f"{[(c.op, c.step) for c in matching]} (all: {[(c.op, c.step) for c in calls]})"
        )
    if spec.extra is not None:
        spec.extra(plan)
    if section.startswith("5."):
        checks = {c.get("name"): kind_of(c) for c in plan.verify}
        for name, kind in VERIFY_CHECKS[section]:
            assert checks.get(name) == kind, f"{section}: no plan-level {kind} check {name!r}"


def test_every_operation_comes_from_a_seed_section_or_fixes_one(plan: Plan):
    covered = set().union(*(s.ops for s in COVERAGE.values()))
    assert not covered & set(ADDED_BY_THE_PLAN)
    assert {op.id for op in plan.operations} == covered | set(ADDED_BY_THE_PLAN)


def test_the_coverage_table_names_every_section_of_the_seed():
    seed = find_seed()
    if seed is None:
        pytest.skip(f"seed {SEED_NAME} not found beside the repository")
    headings = dict(re.findall(r"^### (\d\.\d) (.+?)\s*$", seed.read_text(), re.MULTILINE))
    assert set(headings) == set(COVERAGE)
    for number, title in headings.items():
        assert COVERAGE[number].title.lower() in title.lower(), number


def test_readme_documents_every_operation_and_section():
    readme = (PLAN_DIR / "README.md").read_text()
    for op_id in [*set().union(*(s.ops for s in COVERAGE.values())), *ADDED_BY_THE_PLAN]:
        assert f"`{op_id}`" in readme, f"README.md does not mention operation `{op_id}`"
    for section in COVERAGE:
        assert section in readme


# --------------------------------------------------------------------------- undo and probes


def test_every_side_effect_has_an_undo_and_nothing_is_irreversible(plan: Plan):
    for op in plan.operations:
        for step in op.steps:
            where = f"{op.id}/{step.name}"
            assert step.irreversible is None, where
            if step.read_only:
                assert step.undo is None, where
            else:
                assert step.undo is not None, f"{where} has a side effect and no undo"


# read_only steps: they must really only read.
READ_ONLY = {
    ("aurora", "cluster-available"): "rds.describe_db_clusters",
}


def test_read_only_steps_only_read(plan: Plan):
    found = {(op.id, s.name): s.do[kind_of(s.do)] for op in plan.operations for s in op.steps if s.read_only}
    assert found == READ_ONLY


# Steps with a side effect and no probe, with the reason. After a crash inside one of them
# `resume` can only mark it `uncertain` (settled by hand with `atomicops resolve`). Today every
# step has a probe. A new step without one fails this test until it gets a probe or is listed
# here with its reason; a listed step that gains a probe must be removed from the list.
NO_PROBE: dict[tuple[str, str], str] = {}


def test_steps_without_a_probe_are_exactly_the_listed_ones(plan: Plan):
    missing = {(op.id, s.name) for op in plan.operations for s in op.steps if not s.read_only and s.probe is None}
    assert missing == set(NO_PROBE), {
        "new steps without a probe": sorted(missing - set(NO_PROBE)),
        "listed but now probed (remove from NO_PROBE)": sorted(set(NO_PROBE) - missing),
    }


# Probes that do not prove ownership by the engine's rule (``proves_ownership``), with the
# reason. Such a probe can take a namesake that existed before the run for the step's work.
# A new probe that proves nothing fails this test until it does or is listed here.
NOT_OWNED: dict[tuple[str, str], str] = {
    ("alarm", "error-metric"): "a metric filter takes no tags, and its log group is ecs-cluster's, not this operation's",
    ("schema", "database"): "a database takes no tags, and CREATE DATABASE must be alone in its action, so no mark can go with it",
    ("stream-copy", "claim-range"): "it has no effect outside the journal: it records the range the copy will write",
}


def test_every_probe_proves_ownership_by_the_engines_rule_but_the_listed_ones(plan: Plan):
    unproved = {
        (op.id, s.name) for op in plan.operations for s in op.steps
        if s.probe is not None and not proves_ownership(s, op)
    }  # fmt: skip
    assert unproved == set(NOT_OWNED), {
        "probes that prove no ownership": sorted(unproved - set(NOT_OWNED)),
        "listed but now proving it (remove from NOT_OWNED)": sorted(set(NOT_OWNED) - unproved),
    }


def test_no_step_would_need_a_person_after_a_crash_even_with_every_probe_removed(plan: Plan):
    """Issue 10's bar, shown before anything runs: without its hand-written probes the plan
    is settled by the built-in catalog, re-dos (AWS tokens, upserts, `safe_to_repeat`) and
    undos by name (`bench/crash_soak.py --strip-probes all` measures it after real kills)."""
    from atomicops.engine.settlement import PERSON, settlement_of

    person = []
    for op in plan.operations:
        bare = op.model_copy(update={"steps": [s.model_copy(update={"probe": None}) for s in op.steps]})
        ways = {s.name: settlement_of(s, bare) for s in bare.steps}
        person += [f"{op.id}/{name}" for name, way in ways.items() if PERSON in (way.kind, way.on_rollback)]
    assert person == []


def _takes_tags(shape: Any, depth: int = 0) -> bool:
    """Whether an input shape has a tags member (``Tags``, ``tags``, ``BackupVaultTags``,
    ``TagSpecifications``...), at the top or one structure down (S3's bucket tags)."""
    for name, member in getattr(shape, "members", {}).items():
        if (name.lower().endswith("tags") or name == "TagSpecifications") and member.type_name in ("list", "map"):
            return True
        if depth == 0 and member.type_name == "structure" and _takes_tags(member, 1):
            return True
    return False


def test_every_create_call_that_takes_tags_carries_the_step_tag(plan: Plan):
    """Guarantee 8: the engine adds the atomicops tags where the API's tags member is a plain
    ``Tags``/``tags``/``TagSpecifications``; where it is named otherwise the plan sets them."""
    session = botocore.session.get_session()
    tags = {"atomicops:env": "e", "atomicops:op": "o", "atomicops:step": "e/o/s"}
    untagged = []
    for op in plan.operations:
        for st in op.steps:
            if st.read_only or "aws" not in st.do:
                continue
            service, _, name = st.do["aws"].partition(".")
            model = session.get_service_model(service)
            op_model = model.operation_model(model.operation_names[[botocore.xform_name(n) for n in model.operation_names].index(name)])
            if not _takes_tags(op_model.input_shape):
                continue
            params = with_tags(service, op_model, st.do.get("params") or {}, tags)
            if "e/o/s" not in json.dumps(params) and "${step.key}" not in json.dumps(params):
                untagged.append(f"{op.id}/{st.name}: {st.do['aws']}")
    assert not untagged


def test_probes_that_find_by_tag_find_this_step(plan: Plan):
    for c in actions(plan):
        if c.role != "probe" or c.kind != "aws":
            continue
        filters = c.params.get("Filters") or []
        for f in filters:
            if f["Name"].startswith("tag:atomicops:"):
                assert f == {"Name": "tag:atomicops:step", "Values": ["${step.key}"]}, (c.op, c.step)


# undo -> the waiter it must wait on before the next undo may run.
UNDO_WAITS = {
    "rds.delete_db_instance": "db_instance_deleted",  # before the cluster can go
    "rds.delete_db_cluster": "db_cluster_deleted",  # before the subnet group and security group
    "ecs.delete_service": "services_inactive",  # before the cluster can go
    "dynamodb.delete_table": "table_not_exists",
}


def test_undos_wait_where_aws_needs_it(plan: Plan):
    seen = set()
    for c in actions(plan):
        if c.role == "undo" and c.kind == "aws" and c.target in UNDO_WAITS:
            seen.add(c.target)
            assert c.action.get("wait", {}).get("waiter") == UNDO_WAITS[c.target], (c.op, c.step)
    assert seen == set(UNDO_WAITS)
    # Undo runs newest first: instance, then cluster, then subnet group.
    steps = [s.name for s in plan.operation("aurora").steps]
    assert steps.index("subnet-group") < steps.index("cluster") < steps.index("instance")
    # force=True: the services are deleted with their tasks (no scale-to-zero dance).
    for c in actions(plan):
        if c.role == "undo" and c.target == "ecs.delete_service":
            assert c.params["force"] is True


def test_creates_that_return_before_the_resource_is_usable_wait(plan: Plan):
    waits = {c.target: c.action.get("wait", {}).get("waiter") for c in dos(plan) if c.kind == "aws"}
    assert waits["rds.create_db_instance"] == "db_instance_available"
    assert waits["dynamodb.create_table"] == "table_exists"
    available = step_of(plan, "aurora", "cluster-available")
    assert available.do["wait"]["waiter"] == "db_cluster_available"


# --------------------------------------------------------------------------- secrets


SECRET_REF = re.compile(r"\$\{\s*secrets\.")

# The only places a secret value goes: where it is stored, and the cluster's master password.
SECRET_PLACES = {
    ("secrets", "db-password", "do", "params.SecretString"),
    ("secrets", "nats-credentials", "do", "params.SecretString"),
    ("aurora", "cluster", "do", "params.MasterUserPassword"),
}


def strings(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from strings(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, (*path, str(i)))


def test_secrets_are_referenced_only_where_they_are_stored_or_used_as_the_master_password(plan: Plan):
    found = set()
    dumped = plan.model_dump(mode="json", exclude={"operations"})
    # Outside the operations, only the connection to the cluster the password protects.
    assert {".".join(path) for path, text in strings(dumped) if SECRET_REF.search(text)} == {"connections.db.password"}
    for op in plan.operations:
        for check in op.verify:
            assert not any(SECRET_REF.search(t) for _, t in strings(check)), op.id
        for step in op.steps:
            for role in ("do", "undo", "probe"):
                for path, text in strings(getattr(step, role) or {}):
                    if SECRET_REF.search(text):
                        found.add((op.id, step.name, role, ".".join(path)))
    assert found == SECRET_PLACES
    store_calls = {(c.op, c.step): c for c in dos(plan, "secretsmanager.create_secret")}
    cluster = dos(plan, "rds.create_db_cluster")[0]
    assert cluster.params["MasterUserPassword"] == "${secrets.db_password}"
    assert store_calls[("secrets", "db-password")].params["SecretString"] == "${secrets.db_password}"
    nats = json.loads(store_calls[("secrets", "nats-credentials")].params["SecretString"])
    assert nats == {"user": "mistersmith", "password": "${secrets.nats_password}"}


def test_each_password_is_generated_once_and_stored_where_the_plan_writes_it(plan: Plan):
    assert set(plan.secrets) == {"db_password", "nats_password"}
    written = {c.params["Name"] for c in dos(plan, "secretsmanager.create_secret")}
    for name, spec in plan.secrets.items():
        assert spec.generate is not None and spec.generate >= 32, name
        assert spec.store is not None and spec.store.partition("#")[0] in written, name
    # No password travels elsewhere: no command lines at all, no password in the task env.
    assert not [c for c in actions(plan) if c.kind == "run"]
    for c in dos(plan, "ecs.register_task_definition"):
        for container in c.params["containerDefinitions"]:
            for value in env_of(container).values():
                assert not SECRET_REF.search(value)
                assert "password" not in value.lower()


def test_no_seed_placeholder_is_left(plan: Plan):
    """Every <vpc-id>, <policy-arn>, <account-id>... of the page is an output or a reference."""
    for path, text in strings(plan.model_dump(mode="json")):
        assert not re.search(r"<[a-z0-9-]+>", text), f"placeholder in {'.'.join(path)}: {text}"
