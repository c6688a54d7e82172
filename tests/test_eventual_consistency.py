"""G3 (docs/real-aws.md): a forward step whose call names an id this run just made waits,
briefly, when AWS answers that it does not know the id yet (EC2's ``Invalid*.NotFound``,
IAM's ``NoSuchEntity``); a NotFound for anything else, an undo, and a call whose answer
was lost fail as before."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from atomicops import api
from atomicops.engine import consistency
from atomicops.errors import ActionError, RunFailed

FRESH = frozenset({"sg-0123", "vpc-0abc", "arn:aws:iam::123456789012:role/r"})


@pytest.mark.parametrize(
    ("code", "params", "ambiguous", "waits"),
    [
        ("InvalidGroup.NotFound", {"GroupId": "sg-0123"}, False, True),
        ("InvalidVpcID.NotFound", {"Filters": [{"Name": "vpc-id", "Values": ["vpc-0abc"]}]}, False, True),
        ("NoSuchEntity", {"RoleArn": "arn:aws:iam::123456789012:role/r"}, False, True),
        ("InvalidGroup.NotFound", {"GroupId": "sg-typo"}, False, False),  # not an id of this run
        ("InvalidGroup.NotFound", {}, False, False),
        ("InvalidParameterValue", {"GroupId": "sg-0123"}, False, False),  # another refusal
        ("ResourceNotFoundException", {"GroupId": "sg-0123"}, False, False),  # not documented as eventual
        ("InvalidGroup.NotFound", {"GroupId": "sg-0123"}, True, False),  # the answer was lost
    ],
)
def test_the_rule(code: str, params: dict[str, object], ambiguous: bool, waits: bool) -> None:
    error = ActionError("aws", "x", code=code, ambiguous=ambiguous)
    assert consistency.waits(error, {"aws": "ec2.authorize_security_group_ingress", "params": params}, FRESH) is waits


def test_the_wait_is_about_thirty_seconds_and_scaled_by_the_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATOMICOPS_VISIBILITY_DELAY", raising=False)
    policy = consistency.visibility_retry()
    waits = [min(policy.delay * policy.backoff**i, policy.max_delay) for i in range(policy.attempts - 1)]
    assert 25 <= sum(waits) <= 35 and policy.on == "any"
    monkeypatch.setenv("ATOMICOPS_VISIBILITY_DELAY", "0.01")
    assert consistency.visibility_retry().max_delay == pytest.approx(0.08)


PLAN = """
atomicops: 1
name: visibility
phases: [main]
vars: {aws_endpoint: null, suffix: x}
connections:
  aws: {kind: aws, region: us-east-1, endpoint_url: "${vars.aws_endpoint}"}
operations:
  - id: sg
    phase: main
    title: a group, removed behind the plan's back, then a rule on it
    steps:
      - name: group
        do: {aws: ec2.create_security_group, params: {GroupName: "vis-${vars.suffix}", Description: d}}
        outputs: {group_id: GroupId}
        undo: {aws: ec2.delete_security_group, params: {GroupId: "${self.group_id}"}}
      - name: vanish
        do: {aws: ec2.delete_security_group, params: {GroupId: "${self.group_id}"}}
        irreversible: "the test removes the group so that the next call cannot find it"
      - name: rule
        do:
          aws: ec2.authorize_security_group_ingress
          params: {GroupId: "${self.group_id}", IpPermissions: [{IpProtocol: tcp, FromPort: 1, ToPort: 1, IpRanges: [{CidrIp: 10.0.0.0/8}]}]}
        undo: {aws: ec2.revoke_security_group_ingress, params: {GroupId: "${self.group_id}", IpPermissions: [{IpProtocol: tcp, FromPort: 1, ToPort: 1, IpRanges: [{CidrIp: 10.0.0.0/8}]}]}}
"""


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def event(self, event: object) -> None:
        return None

    def note(self, text: str, *, level: str = "info") -> None:
        self.lines.append(text)


def test_a_step_naming_an_id_of_this_run_waits_then_fails(tmp_path: Path, moto_endpoint: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICOPS_VISIBILITY_DELAY", "0.05")  # 0.05 x 31 = 1.55 s of waiting
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    notes = Notes()
    start = time.monotonic()
    with pytest.raises(RunFailed) as failed:
        api.apply(plan, env="vis", state=str(tmp_path / "j.db"), observer=notes,
                  vars={"aws_endpoint": moto_endpoint, "suffix": uuid.uuid4().hex[:8]})
    assert time.monotonic() - start >= 1.5
    assert "InvalidGroup.NotFound" in str(failed.value)
    assert any("sg/rule: InvalidGroup.NotFound" in line and "visible" in line for line in notes.lines)
    assert api.status(env="vis", state=str(tmp_path / "j.db"))["operations"][0]["status"] == "failed"  # and undone


def test_a_not_found_for_an_id_not_of_this_run_fails_at_once(tmp_path: Path, moto_endpoint: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICOPS_VISIBILITY_DELAY", "5")  # a wait would take minutes
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.replace('GroupId: "${self.group_id}", IpPermissions', "GroupId: sg-0000000000000dead, IpPermissions", 1))
    notes = Notes()
    start = time.monotonic()
    with pytest.raises(RunFailed):
        api.apply(plan, env="vis", state=str(tmp_path / "j.db"), observer=notes,
                  vars={"aws_endpoint": moto_endpoint, "suffix": uuid.uuid4().hex[:8]})
    assert time.monotonic() - start < 5
    assert not any("visible" in line for line in notes.lines)
