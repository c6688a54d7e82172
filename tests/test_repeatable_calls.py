"""`safe_to_repeat:` lets a plan author vouch for a step the engine cannot judge (a `call`
into their own code): after a kill, with no probe, `resume` re-does it instead of leaving it
to a person. The flagship's `call` steps carry it, and are written to deserve it: a second
call answers what the first one made."""

from __future__ import annotations

import json
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from run_cli import cli

from atomicops.actions.base import ActionContext, Connections
from atomicops.actions.call import resolve_target
from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.engine.settlement import PERSON, REDO, settlement_of
from atomicops.plan.model import Operation, Step
from atomicops.rehearsal import FLAGSHIP_PLAN

FLAGSHIP_DIR = Path(FLAGSHIP_PLAN).parent if Path(FLAGSHIP_PLAN).is_file() else Path(FLAGSHIP_PLAN)


@pytest.fixture
def msops() -> Any:
    """The flagship's own modules, loaded the way a run loads them (actions/call.py): another
    plan's `msops` in sys.modules is replaced, not reused."""
    return types.SimpleNamespace(
        images=sys.modules[resolve_target("msops.images:push_image", str(FLAGSHIP_DIR)).__module__],
        cloudmap=sys.modules[resolve_target("msops.cloudmap:create_namespace", str(FLAGSHIP_DIR)).__module__],
    )


REPEATABLE = """
atomicops: 1
name: repeatable
operations:
  - id: notes
    steps:
      - name: append   # no probe: only the author's word says a second run is harmless
        do: {run: ["sh", "-c", "grep -qx ours notes.txt 2>/dev/null || echo ours >> notes.txt"]}
        safe_to_repeat: it appends the line only when it is not there yet
        undo: {run: ["rm", "-f", "notes.txt"]}
"""


def test_a_step_the_author_vouches_for_is_re_done_after_a_kill(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(REPEATABLE)
    killed = cli("apply", "plan.yaml", cwd=tmp_path, crash="after_effect:notes/append")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    resumed = cli("resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "notes.txt").read_text() == "ours\n"  # once, not twice
    done = [e for e in json.loads(cli("history", "--json", cwd=tmp_path).stdout) if e["type"] == "step_done"]
    assert [e["data"]["settled_by"] for e in done] == ["redo"]
    shown = json.loads(cli("validate", "plan.yaml", "--json", cwd=tmp_path).stdout)["settlement"]["steps"]
    assert [(r["kind"], r["why"]) for r in shown] == [
        (REDO, "the plan says it is safe to repeat: it appends the line only when it is not there yet")
    ]
    assert cli("rollback", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "notes.txt").exists()


def test_without_the_key_the_same_step_needs_a_person() -> None:
    step = Step(name="s", do={"call": "m:f"}, outputs={"id": "id"}, undo={"call": "m:g", "args": {"id": "${self.id}"}})
    assert settlement_of(step, Operation(id="op", steps=[step])).kind == PERSON
    vouched = step.model_copy(update={"safe_to_repeat": "an upsert"})
    assert settlement_of(vouched, Operation(id="op", steps=[vouched])).kind == REDO


def test_a_read_only_step_takes_no_such_key(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(
        "atomicops: 1\nname: r\noperations:\n  - id: a\n    steps:\n"
        "      - {name: s, read_only: true, do: {run: [\"true\"]}, safe_to_repeat: why not}\n"
    )
    done = cli("validate", "plan.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "plan.yaml:6" in done.stderr and "always safe to repeat" in done.stderr


def _ctx(moto_endpoint: str, key: str, token: str | None = None) -> ActionContext:
    aws = {"kind": "aws", "region": "us-east-1", "endpoint_url": moto_endpoint}
    return ActionContext(Connections({"aws": aws}), env="t", run_id="r1", step_key=key, idempotency_token=token,
                         tags={"atomicops:step": key})


def test_the_flagship_image_push_answers_a_second_push_with_the_first_image(moto_endpoint: str, msops: Any) -> None:
    images = msops.images
    repo = f"repeat/{uuid.uuid4().hex[:8]}"
    client: Any = boto3.client("ecr", region_name="us-east-1", endpoint_url=moto_endpoint)
    client.create_repository(repositoryName=repo)
    ctx = _ctx(moto_endpoint, "t/images/orchestrator")
    first = images.push_image(ctx, repo, "v1", "uri")
    second = images.push_image(ctx, repo, "v1", "uri")
    assert second["digest"] == first["digest"] and second["image"] == first["image"]
    assert len(client.list_images(repositoryName=repo)["imageIds"]) == 1


def test_the_flagship_namespace_create_answers_a_second_create_with_the_first_namespace(
    moto_endpoint: str, msops: Any
) -> None:
    cloudmap = msops.cloudmap
    ec2: Any = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    name = f"r{uuid.uuid4().hex[:6]}.local"
    ctx = _ctx(moto_endpoint, "t/service-discovery/namespace", token=str(uuid.uuid4()))
    first = cloudmap.create_namespace(ctx, name, vpc)
    assert cloudmap.create_namespace(ctx, name, vpc) == first
    # Another step's namesake is still refused, not taken.
    other = _ctx(moto_endpoint, "t/elsewhere/namespace", token=str(uuid.uuid4()))
    try:
        cloudmap.create_namespace(other, name, vpc)
    except Exception as exc:  # noqa: BLE001 - the service's own refusal
        assert "ConflictingDomainExists" in str(exc) or "NamespaceAlreadyExists" in str(exc)
    else:
        raise AssertionError("a namespace another step made was answered as this one's")
