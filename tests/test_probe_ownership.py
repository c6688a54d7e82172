"""engine.ownership.proves_ownership: when a resource a probe finds may be taken as the step's."""

from __future__ import annotations

from typing import Any

from atomicops.engine.ownership import proves_ownership
from atomicops.plan.model import Operation, Step


def step(name: str, probe: dict[str, Any] | None = None, outputs: dict[str, str] | None = None, **extra: Any) -> Step:
    return Step.model_validate({
        "name": name,
        "do": {"aws": "ec2.do_something"},
        "undo": None if extra.get("read_only") else {"aws": "ec2.undo_something"},
        "probe": probe,
        "outputs": outputs or {},
        **extra,
    })  # fmt: skip


RULE = step(
    "rule",
    probe={"aws": "ec2.describe_security_group_rules",
           "params": {"Filters": [{"Name": "group-id", "Values": ["${self.group_id}"]}]},
           "outputs": {"rule": "SecurityGroupRules[0].SecurityGroupRuleId"}},
    outputs={"rule": "SecurityGroupRules[0].SecurityGroupRuleId"},
)  # fmt: skip


def operation(*steps: Step) -> Operation:
    return Operation.model_validate({"id": "sg", "steps": [s.model_dump() for s in steps]})


def test_a_probe_on_the_steps_tag_proves_ownership_with_or_without_the_operation():
    tagged = step("group", probe={
        "aws": "ec2.describe_security_groups",
        "params": {"Filters": [{"Name": "tag:atomicops:step", "Values": ["${step.key}"]}]},
        "outputs": {"group_id": "SecurityGroups[0].GroupId"},
    }, outputs={"group_id": "GroupId"})  # fmt: skip
    assert proves_ownership(tagged)
    assert proves_ownership(tagged, operation(tagged))


def test_a_probe_by_name_alone_does_not():
    by_name = step("group", probe={"aws": "ec2.describe_security_groups",
                                   "params": {"GroupNames": ["web"]}, "outputs": {"group_id": "SecurityGroups[0].GroupId"}},
                   outputs={"group_id": "GroupId"})  # fmt: skip
    assert not proves_ownership(by_name, operation(by_name))
    assert not proves_ownership(step("none"))


def test_a_probe_inside_a_parent_an_earlier_step_of_the_operation_created_proves_ownership():
    group = step("group", outputs={"group_id": "GroupId"})
    assert proves_ownership(RULE, operation(group, RULE))


def test_the_parent_rule_needs_the_operation():
    # Without the operation nothing says where ${self.group_id} came from.
    assert not proves_ownership(RULE)


def test_an_id_a_read_only_step_looked_up_does_not_prove_ownership():
    # A looked-up group may have existed before the run: a probe scoped to it would adopt
    # a rule someone else made.
    lookup = step("group", outputs={"group_id": "SecurityGroups[0].GroupId"}, read_only=True)
    assert not proves_ownership(RULE, operation(lookup, RULE))


def test_an_output_of_a_later_step_does_not_count():
    later = step("group", outputs={"group_id": "GroupId"})
    assert not proves_ownership(RULE, operation(RULE, later))
