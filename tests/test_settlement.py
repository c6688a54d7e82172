"""Say it before it happens: `validate` and `plan` show how each step would be settled after a
crash, and `validate --strict` refuses a plan with a step that would need a person."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from run_cli import cli

from atomicops.engine.settlement import (
    BUILT_IN_PROBE,
    OWN_PROBE,
    PERSON,
    PROBE_BEFORE,
    READ_ONLY,
    REDO,
    UNDO,
    settlement_of,
    undo_settles,
)
from atomicops.plan.model import Operation, Step

PLANS = Path(__file__).parent / "plans"


def _op(*steps: dict[str, Any]) -> Operation:
    return Operation(id="op", steps=[Step(**s) for s in steps])


def kind(**step: Any) -> str:
    op = _op({"name": "s", **step})
    return settlement_of(op.steps[0], op).kind


def test_each_kind_of_settlement():
    tagged = {"aws": "ec2.describe_vpcs", "params": {"Filters": [{"Name": "tag:atomicops:step", "Values": ["${step.key}"]}]}}
    vpc = {"aws": "ec2.create_vpc", "params": {"CidrBlock": "10.0.0.0/16"}}
    key_pair = {"aws": "ec2.create_key_pair", "params": {"KeyName": "k"}}  # not in the catalog, no token
    assert kind(do=vpc, probe=tagged, outputs={"id": "Vpc.VpcId"}) == OWN_PROBE
    assert kind(do=vpc, outputs={"id": "Vpc.VpcId"}) == BUILT_IN_PROBE  # the catalog knows create_vpc
    # An upsert is repeated rather than looked up, even where the catalog knows the call.
    assert kind(do={"aws": "ssm.put_parameter", "params": {"Name": "n", "Value": "v", "Overwrite": True}}) == REDO
    assert kind(do={"aws": "ec2.create_launch_template", "params": {"LaunchTemplateName": "t"}}) == REDO  # ClientToken
    assert kind(do={"aws": "ec2.create_nat_gateway", "params": {"SubnetId": "s"}}) == BUILT_IN_PROBE  # known: looked up first
    assert kind(do={"aws": "glue.create_database", "params": {"DatabaseInput": {"Name": "d"}}},
                undo={"aws": "glue.delete_database", "params": {"Name": "d"}}) == UNDO
    assert kind(do=key_pair, outputs={"id": "KeyPairId"},
                undo={"aws": "ec2.delete_key_pair", "params": {"KeyPairId": "${self.id}"}}) == PERSON
    assert kind(do=key_pair) == PERSON  # no probe, no undo
    # A probe that cannot prove the resource is this step's settles "not found", and "found"
    # only when it found nothing just before the intent.
    assert kind(do=vpc, probe={"aws": "ec2.describe_vpcs"}) == PROBE_BEFORE
    # ...and overrides an undo by name, which could delete a namesake that was there before.
    assert kind(do={"aws": "dynamodb.create_table", "params": {"TableName": "t"}},
                probe={"aws": "dynamodb.describe_table", "params": {"TableName": "t"}},
                undo={"aws": "dynamodb.delete_table", "params": {"TableName": "t"}}) == PROBE_BEFORE
    assert kind(do={"aws": "ec2.describe_vpcs"}, read_only=True) == READ_ONLY
    # A do that is the very read its probe makes (the flagship's claim of a stream range).
    claim = {"call": "m:stream_range", "args": {"stream": "S"}}
    assert kind(do=claim, probe={**claim, "outputs": {"first": "first_seq"}}, outputs={"first": "first_seq"},
                undo={"call": "m:delete", "args": {"first": "${self.first}"}}) == REDO


def test_an_undo_made_of_value_outputs_settles_but_not_one_made_of_result_outputs():
    by_value = Step(name="s", do={"aws": "dynamodb.create_table"}, outputs={"name": "t-${vars.suffix}"},
                    undo={"aws": "dynamodb.delete_table", "params": {"TableName": "${self.name}"}})
    by_result = Step(name="s", do={"aws": "dynamodb.create_table"}, outputs={"name": "TableDescription.TableName"},
                     undo={"aws": "dynamodb.delete_table", "params": {"TableName": "${self.name}"}})
    irreversible = Step(name="s", do={"aws": "dynamodb.create_table"}, irreversible="kept",
                        undo={"aws": "dynamodb.delete_table", "params": {"TableName": "t"}})
    assert undo_settles(by_value) and not undo_settles(by_result) and not undo_settles(irreversible)


def test_a_rollback_may_settle_differently_from_a_resume():
    op = _op({"name": "s", "do": {"aws": "ssm.put_parameter", "params": {"Name": "n", "Value": "v", "Overwrite": True}},
              "undo": {"aws": "ssm.delete_parameter", "params": {"Name": "n"}}})
    s = settlement_of(op.steps[0], op)
    assert (s.kind, s.on_rollback) == (REDO, UNDO)


def test_validate_and_plan_show_the_settlement_per_step(tmp_path):
    plan = str(PLANS / "settle.yaml")
    doc = json.loads(cli("validate", plan, "--json", cwd=tmp_path).stdout)
    assert doc["settlement"]["counts"] == {BUILT_IN_PROBE: 1, REDO: 2, UNDO: 1}
    by_step = {f"{r['op']}/{r['step']}": r["kind"] for r in doc["settlement"]["steps"]}
    assert by_step == {"param/put": REDO, "topic/create": REDO, "secret/create": BUILT_IN_PROBE, "database/create": UNDO}
    text = cli("validate", plan, cwd=tmp_path).stdout
    assert "1 built-in probe, 2 re-do, 1 undo" in text and "database/create: undo" in text
    view = json.loads(cli("plan", plan, "--json", cwd=tmp_path).stdout)
    assert view["settlement"]["steps"] == doc["settlement"]["steps"]
    assert "after a crash" in cli("plan", plan, cwd=tmp_path).stdout


def test_validate_strict_names_each_step_that_needs_a_person_with_its_file_and_line(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "atomicops: 1\n"
        "name: strict\n"
        "connections:\n"
        "  aws: {kind: aws, region: us-east-1}\n"
        "operations:\n"
        "  - id: keys\n"
        "    steps:\n"
        "      - name: pair\n"
        "        do: {aws: ec2.create_key_pair, params: {KeyName: k}}\n"
        "        outputs: {key_id: KeyPairId}\n"
        "        undo: {aws: ec2.delete_key_pair, params: {KeyPairId: '${self.key_id}'}}\n"
        "      - name: param\n"
        "        do: {aws: ssm.put_parameter, params: {Name: n, Value: v, Type: String, Overwrite: true}}\n"
        "        irreversible: kept on purpose\n"
    )
    assert cli("validate", str(plan), cwd=tmp_path).returncode == 0  # without --strict: shown, not refused
    strict = cli("validate", "--strict", str(plan), cwd=tmp_path)
    assert strict.returncode == 2
    assert f"{plan}:8: operation keys: step pair" in strict.stderr and "key_id" in strict.stderr
    assert "param" not in strict.stderr.split("step pair")[1]  # the re-doable step is not named
    doc = json.loads(cli("validate", "--strict", str(plan), "--json", cwd=tmp_path).stdout)
    assert doc["exit_code"] == 2 and doc["type"] == "NeedsPerson"
    assert [(p["line"], p["op"]) for p in doc["problems"]] == [(8, "keys")]
    good = cli("validate", "--strict", str(PLANS / "settle.yaml"), cwd=tmp_path)
    assert good.returncode == 0, good.stderr
