"""A call whose answer is lost is not sent again blindly.

A TCP proxy on 127.0.0.1 in front of moto's server forwards a request and then drops the
connection before the answer reaches the client: the create happened, the client cannot
know. CreateVpc takes no idempotency token, so a resend (by botocore's own retries or the
engine's) would make a second VPC under the same step tag. The engine asks the step's probe
instead (its own, or the built-in one of engine/catalog.py). NATS publishes carry the step's token as ``Nats-Msg-Id``, so a resent publish is
stored once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from lossy_proxy import LossyProxy

import atomicops.actions.nats  # noqa: F401 - registers the kind
from atomicops import api
from atomicops.actions.base import ActionContext, Connections
from atomicops.actions.nats import NatsKind
from atomicops.errors import RunFailed

PLAN = """
atomicops: 1
name: lost-answers
vars: {aws_endpoint: null, cidr: 10.77.0.0/16}
connections:
  aws: {kind: aws, region: us-east-1, endpoint_url: "${vars.aws_endpoint}"}
operations:
  - id: net
    title: one VPC
    steps:
      - name: vpc
        do: {aws: ec2.create_vpc, params: {CidrBlock: "${vars.cidr}"}}
        outputs: {vpc_id: Vpc.VpcId}
        undo: {aws: ec2.delete_vpc, params: {VpcId: "${self.vpc_id}"}}
PROBE
"""
PROBE = """        probe:
          aws: ec2.describe_vpcs
          params: {Filters: [{Name: "tag:atomicops:step", Values: ["${step.key}"]}]}
          outputs: {vpc_id: "Vpcs[0].VpcId"}"""


@pytest.fixture
def proxy_for(moto_endpoint: str) -> Iterator[Callable[..., LossyProxy]]:
    proxies: list[LossyProxy] = []

    def make(**kw: Any) -> LossyProxy:
        proxies.append(LossyProxy(moto_endpoint, b"Action=CreateVpc", **kw))
        return proxies[-1]

    yield make
    for p in proxies:
        p.shutdown()
        p.server_close()


def vpcs_of(moto_endpoint: str, key: str) -> list[str]:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    found = ec2.describe_vpcs(Filters=[{"Name": "tag:atomicops:step", "Values": [key]}])["Vpcs"]
    return [v["VpcId"] for v in found]


def write_plan(tmp_path: Path, *, probe: bool) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace("PROBE", PROBE if probe else ""))
    return path


def step_done(state: str, env: str) -> dict[str, Any]:
    [done] = [e for e in api.history(env=env, state=state) if e["type"] == "step_done"]
    return dict(done["data"])


def test_a_create_whose_answer_is_lost_is_settled_by_its_probe_not_resent(tmp_path, proxy_for, moto_endpoint):
    proxy = proxy_for(forward=True)
    env, state = f"lost-{uuid.uuid4().hex[:6]}", str(tmp_path / "j.db")
    api.apply(write_plan(tmp_path, probe=True), env=env, state=state, vars={"aws_endpoint": proxy.url})
    key = f"{env}/net/vpc"
    try:
        assert len(vpcs_of(moto_endpoint, key)) == 1  # not duplicated
        assert proxy.seen == 1  # sent once: neither botocore nor the engine resent it
        done = step_done(state, env)
        assert done["settled_by"] == "probe"
        assert done["outputs"]["vpc_id"] == vpcs_of(moto_endpoint, key)[0]
    finally:
        api.rollback(env=env, state=state)
    assert vpcs_of(moto_endpoint, key) == []


def test_a_create_lost_before_it_reached_aws_is_sent_again_once_the_probe_finds_nothing(tmp_path, proxy_for, moto_endpoint):
    proxy = proxy_for(forward=False)
    env, state = f"lost-{uuid.uuid4().hex[:6]}", str(tmp_path / "j.db")
    api.apply(write_plan(tmp_path, probe=True), env=env, state=state, vars={"aws_endpoint": proxy.url})
    key = f"{env}/net/vpc"
    try:
        assert len(vpcs_of(moto_endpoint, key)) == 1
        assert proxy.seen == 2  # the lost one, then the resend the probe allowed
        assert step_done(state, env)["settled_by"] is None
    finally:
        api.rollback(env=env, state=state)


def test_a_lost_create_with_no_probe_of_its_own_is_settled_by_the_builtin_probe(tmp_path, proxy_for, moto_endpoint):
    proxy = proxy_for(forward=True)
    env, state = f"lost-{uuid.uuid4().hex[:6]}", str(tmp_path / "j.db")
    api.apply(write_plan(tmp_path, probe=False), env=env, state=state, vars={"aws_endpoint": proxy.url})
    key = f"{env}/net/vpc"
    try:
        assert proxy.seen == 1 and len(vpcs_of(moto_endpoint, key)) == 1  # sent once, not duplicated
        done = step_done(state, env)
        assert done["settled_by"] == "probe"
        assert done["outputs"]["vpc_id"] == vpcs_of(moto_endpoint, key)[0]
    finally:
        api.rollback(env=env, state=state)
    assert vpcs_of(moto_endpoint, key) == []


KEY_PAIR_PLAN = """
atomicops: 1
name: lost-key
vars: {aws_endpoint: null, name: k}
connections:
  aws: {kind: aws, region: us-east-1, endpoint_url: "${vars.aws_endpoint}"}
operations:
  - id: keys
    steps:
      - name: key
        do: {aws: ec2.create_key_pair, params: {KeyName: "${vars.name}"}}
        outputs: {key_id: KeyPairId}
        undo: {aws: ec2.delete_key_pair, params: {KeyName: "${vars.name}"}}
"""


def test_a_lost_create_nothing_can_probe_fails_the_step_instead_of_resending(tmp_path, moto_endpoint):
    # The catalog has no entry for key pairs and the step no probe: no resend, no guess.
    proxy = LossyProxy(moto_endpoint, b"Action=CreateKeyPair", forward=True)
    env, state, name = f"lost-{uuid.uuid4().hex[:6]}", str(tmp_path / "j.db"), f"lost-{uuid.uuid4().hex[:8]}"
    plan = tmp_path / "keys.yaml"
    plan.write_text(KEY_PAIR_PLAN)
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    try:
        with pytest.raises(RunFailed) as exc:
            api.apply(plan, env=env, state=state, vars={"aws_endpoint": proxy.url, "name": name})
        assert exc.value.exit_code == 1
        assert "may have taken effect" in str(exc.value.report.failures[0])
        made = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]
        assert proxy.seen == 1 and len(made) == 1  # one key pair, left for `inventory --orphans`
    finally:
        proxy.shutdown()
        proxy.server_close()
        ec2.delete_key_pair(KeyName=name)


def test_a_resent_publish_is_stored_once_by_the_steps_token(nats_connection):
    kind = NatsKind()
    conns = Connections({"bus": nats_connection})
    ctx = ActionContext(connections=conns, env="t", run_id="r", idempotency_token=str(uuid.uuid4()))
    name = f"LOST_{uuid.uuid4().hex[:8]}"
    try:
        kind.execute({"nats": {"stream_add": {"name": name, "subjects": [f"{name}.>"], "storage": "memory"}}}, ctx)
        first = kind.execute({"nats": {"publish": {"subject": f"{name}.x", "data": "once"}}}, ctx)
        again = kind.execute({"nats": {"publish": {"subject": f"{name}.x", "data": "once"}}}, ctx)
        assert first["seq"] == again["seq"] == 1 and again.get("duplicate") is True
        info = kind.execute({"nats": {"stream_info": {"name": name}}}, ctx)
        assert info["state"]["messages"] == 1
    finally:
        kind.execute({"nats": {"stream_delete": {"name": name}}}, ctx)
        conns.close()
