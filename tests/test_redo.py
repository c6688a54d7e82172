"""Re-doing what is safe to repeat: a step killed in flight whose call is an upsert or carries
an idempotency token is run again by `resume` (journalled `settled_by: redo`), with no
duplicate and nothing left for a person. Real moto server, real crashes (engine/crash.py)."""

from __future__ import annotations

import boto3
import pytest
from settle_world import SettleWorld

from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.engine.redo import UPSERTS, safe_to_repeat, takes_token
from atomicops.journal.views import store_for
from atomicops.plan.model import Step


@pytest.fixture
def world(tmp_path, moto_endpoint):
    return SettleWorld(tmp_path, moto_endpoint)


@pytest.mark.parametrize(
    ("point", "op", "count", "settled_by"),
    [
        ("after_effect:param/put", "param", "param", ["redo"]),  # an upsert (Overwrite: true)
        ("after_effect:topic/create", "topic", "topics", ["redo"]),  # an upsert by nature
        # A create the catalog knows is looked up first, token or not (moto, like some
        # services, honours few tokens: a second create would leak the first).
        ("after_effect:secret/create", "secret", "secrets", ["probe"]),
        ("after_intent:secret/create", "secret", "secrets", [None]),  # not found: run again
    ],
)
def test_a_step_killed_in_flight_is_re_done_by_resume(world, point, op, count, settled_by):
    env = "redo-" + point.replace(":", "-").replace("/", "-")
    assert world.apply(env, crash=point).returncode == CRASH_EXIT_CODE
    resumed = world.run("resume", "--env", env)
    assert resumed.returncode == 0, resumed.stderr
    assert set(world.status(env).values()) == {"applied"}
    done = world.events(env, "step_done", op)
    assert [d.get("settled_by") for d in done] == settled_by
    assert len(getattr(world, count)()) == 1  # no duplicate
    assert world.run("rollback", "--env", env).returncode == 0
    assert world.nothing_left()
    assert world.coherent(env) == []


def test_a_step_run_again_sends_the_token_of_the_interrupted_intent(world):
    env = "redo-token"
    assert world.apply(env, crash="after_intent:secret/create").returncode == CRASH_EXIT_CODE
    assert world.run("resume", "--env", env).returncode == 0
    intents = world.events(env, "step_intent", "secret")
    assert len(intents) == 2
    assert intents[0]["token"] == intents[1]["token"]  # so the service answers with the first secret
    assert world.run("rollback", "--env", env).returncode == 0


def test_a_resume_killed_while_re_doing_is_resumed_again(world):
    env = "redo-twice"
    assert world.apply(env, crash="after_effect:topic/create").returncode == CRASH_EXIT_CODE
    assert world.run("resume", "--env", env, crash="after_effect:topic/create").returncode == CRASH_EXIT_CODE
    resumed = world.run("resume", "--env", env)
    assert resumed.returncode == 0, resumed.stderr
    assert len(world.topics()) == 1
    # Every re-do sends the first attempt's tags (AWS refuses CreateTopic with other tags).
    intents = [e for e in store_for(str(world.cwd / ".atomicops")).events(env)
               if e.type == "step_intent" and e.op == "topic"]
    assert len(intents) == 3 and {i.data.get("tag_run") for i in intents[1:]} == {intents[0].run_id}
    tags = boto3.client("sns", region_name="us-east-1", endpoint_url=world.endpoint).list_tags_for_resource(
        ResourceArn=world.topics()[0])["Tags"]
    assert {"Key": "atomicops:run", "Value": intents[0].run_id} in tags
    assert world.run("rollback", "--env", env).returncode == 0
    assert world.nothing_left()
    assert world.coherent(env) == []


def test_a_rollback_re_does_a_step_whose_undo_needs_its_outputs_then_undoes_it(world):
    env = "redo-rollback"
    assert world.apply(env, crash="after_effect:topic/create").returncode == CRASH_EXIT_CODE
    assert len(world.topics()) == 1
    rolled = world.run("rollback", "--env", env)
    assert rolled.returncode == 0, rolled.stderr
    assert [d.get("settled_by") for d in world.events(env, "step_done", "topic")] == ["redo"]
    assert world.nothing_left()


# --------------------------------------------------------------------------- the explicit list


def _step(call: str, params: dict) -> Step:
    return Step(name="s", do={"aws": call, "params": params})


def test_what_is_safe_to_repeat_is_decided_by_the_list_and_the_model():
    assert safe_to_repeat(_step("ssm.put_parameter", {"Name": "n", "Value": "v", "Overwrite": True}))
    assert safe_to_repeat(_step("ssm.put_parameter", {"Name": "n", "Value": "v"})) is None  # fails the second time
    assert safe_to_repeat(_step("ec2.create_vpc", {"CidrBlock": "10.0.0.0/16"})) is None  # a second VPC
    assert safe_to_repeat(_step("dynamodb.create_table", {})) is None
    assert takes_token("ec2.create_nat_gateway") and takes_token("secretsmanager.create_secret")
    assert not takes_token("ec2.create_vpc") and not takes_token("nosuch.call")
    assert safe_to_repeat(Step(name="s", do={"aws": "sns.create_topic", "params": {}}, read_only=True)) is None
    assert safe_to_repeat(Step(name="s", do={"sql": "INSERT INTO t VALUES (1)"})) is None


@pytest.fixture
def aws(moto_endpoint):
    return lambda service: boto3.client(service, region_name="us-east-1", endpoint_url=moto_endpoint)


def _upsert_calls(aws, suffix):
    """Per listed call, (client, params) on resources made here: each is sent twice below."""
    iam, s3, sns, sqs, logs, events = (aws(s) for s in ("iam", "s3", "sns", "sqs", "logs", "events"))
    role = iam.create_role(RoleName=f"up-{suffix}", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}')
    topic = sns.create_topic(Name=f"up-{suffix}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"up-{suffix}")["QueueUrl"]
    s3.create_bucket(Bucket=f"up-{suffix}")
    logs.create_log_group(logGroupName=f"up-{suffix}")
    events.put_rule(Name=f"up-{suffix}", ScheduleExpression="rate(1 hour)")
    policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}'
    bucket_policy = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject",'
                     f'"Resource":"arn:aws:s3:::up-{suffix}/*"}}]}}')
    managed = iam.create_policy(PolicyName=f"up-{suffix}", PolicyDocument=policy)["Policy"]["Arn"]
    return {
        "ssm.put_parameter": {"Name": f"/up/{suffix}", "Value": "v", "Type": "String", "Overwrite": True},
        "iam.put_role_policy": {"RoleName": role["Role"]["RoleName"], "PolicyName": "p", "PolicyDocument": policy},
        "iam.attach_role_policy": {"RoleName": role["Role"]["RoleName"], "PolicyArn": managed},
        "sns.create_topic": {"Name": f"up-{suffix}"},
        "sns.subscribe": {"TopicArn": topic, "Protocol": "sqs", "Endpoint": f"arn:aws:sqs:us-east-1:123456789012:up-{suffix}"},
        "sns.set_topic_attributes": {"TopicArn": topic, "AttributeName": "DisplayName", "AttributeValue": "up"},
        "sqs.set_queue_attributes": {"QueueUrl": queue, "Attributes": {"VisibilityTimeout": "60"}},
        "s3.put_bucket_policy": {"Bucket": f"up-{suffix}", "Policy": bucket_policy},
        "s3.put_bucket_versioning": {"Bucket": f"up-{suffix}", "VersioningConfiguration": {"Status": "Enabled"}},
        "s3.put_bucket_tagging": {"Bucket": f"up-{suffix}", "Tagging": {"TagSet": [{"Key": "k", "Value": "v"}]}},
        "s3.put_public_access_block": {"Bucket": f"up-{suffix}", "PublicAccessBlockConfiguration": {"BlockPublicAcls": True}},
        "logs.put_retention_policy": {"logGroupName": f"up-{suffix}", "retentionInDays": 7},
        "cloudwatch.put_metric_alarm": {"AlarmName": f"up-{suffix}", "MetricName": "Errors", "Namespace": "up",
                                        "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 1.0,
                                        "ComparisonOperator": "GreaterThanThreshold"},
        "events.put_rule": {"Name": f"up-{suffix}", "ScheduleExpression": "rate(1 hour)"},
        "events.put_targets": {"Rule": f"up-{suffix}", "Targets": [{"Id": "t", "Arn": topic}]},
    }


def test_every_listed_upsert_answers_a_second_call_as_the_first(aws):
    """The list is what is tested: a call added to UPSERTS without an entry here fails."""
    calls = _upsert_calls(aws, "u" + __import__("uuid").uuid4().hex[:8])
    assert set(calls) == set(UPSERTS)
    for call, params in calls.items():
        assert UPSERTS[call](params), call
        service, _, operation = call.partition(".")
        client = aws(service)
        first = getattr(client, operation)(**params)
        second = getattr(client, operation)(**params)  # no error: the world is as one call left it
        for key in ("TopicArn", "SubscriptionArn", "RuleArn", "Version"):
            if key in first and key != "Version":
                assert first[key] == second[key], call
