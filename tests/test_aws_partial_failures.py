"""G4 (docs/real-aws.md): a call that answers 200 while refusing items in its answer
(DeleteVpcEndpoints' ``Unsuccessful``, BatchDeleteImage's ``failures``) fails with the item's
own code, so an undo's "already gone" codes still apply and any other refusal fails the undo
where it happened instead of being journalled as undone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.parsers import create_parser

from atomicops import api
from atomicops.actions.aws import AwsKind, failure_members, partial_failure, service_model
from atomicops.actions.base import ActionContext, Connections
from atomicops.errors import ActionError, RollbackIncomplete

KIND = AwsKind()
MISSING_DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("target", "members"),
    [
        ("ec2.DeleteVpcEndpoints", ("Unsuccessful",)),
        ("ecr.BatchDeleteImage", ("failures",)),
        ("events.PutTargets", ("FailedEntries",)),
        ("sqs.DeleteMessageBatch", ("Failed",)),
        ("dynamodb.BatchWriteItem", ()),  # UnprocessedItems: throttled, to resend, not refused
        ("ecr.BatchCheckLayerAvailability", ()),  # a read: a missing layer is its answer
        ("ecr.BatchGetImage", ()),
        ("ecs.RunTask", ()),  # `failures` with a free-text reason and no code
        ("ec2.DeleteVpc", ()),
    ],
)
def test_which_answers_carry_refused_items_is_read_from_the_model(target: str, members: tuple[str, ...]) -> None:
    service, operation = target.split(".")
    assert failure_members(service_model(service).operation_model(operation)) == members


# The answer EC2 gives when one of the endpoints cannot be deleted (the shape moto never
# produces: its DeleteVpcEndpoints always answers an empty list), parsed by botocore itself.
EC2_ANSWER = b"""<?xml version="1.0" encoding="UTF-8"?>
<DeleteVpcEndpointsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>b59c2643-789a-4bf7-aac4-example</requestId>
  <unsuccessful>
    <item>
      <error><code>InvalidVpcEndpoint.NotFound</code><message>The VPC endpoint 'vpce-0aa' does not exist</message></error>
      <resourceId>vpce-0aa</resourceId>
    </item>
    <item>
      <error><code>DependencyViolation</code><message>in use</message></error>
      <resourceId>vpce-0bb</resourceId>
    </item>
  </unsuccessful>
</DeleteVpcEndpointsResponse>"""


def test_an_ec2_unsuccessful_item_becomes_its_own_error_code() -> None:
    op_model = service_model("ec2").operation_model("DeleteVpcEndpoints")
    parsed = create_parser("ec2").parse(
        {"body": EC2_ANSWER, "headers": {}, "status_code": 200}, op_model.output_shape
    )
    parsed.pop("ResponseMetadata", None)
    error = partial_failure(op_model, parsed, "ec2.delete_vpc_endpoints")
    assert error is not None
    assert error.code == "InvalidVpcEndpoint.NotFound" and not error.transient and not error.applied
    assert "does not exist" in error.message and "1 more" in error.message
    assert partial_failure(op_model, {"Unsuccessful": []}, "ec2.delete_vpc_endpoints") is None


@pytest.fixture
def ctx(aws_connection: dict[str, Any]) -> Iterator[ActionContext]:
    conns = Connections({"aws": aws_connection})
    yield ActionContext(connections=conns, env="test", run_id="run-1")
    conns.close()


def test_batch_delete_image_failures_on_moto_raise_with_their_code(ctx: ActionContext) -> None:
    repo = f"partial-{uuid.uuid4().hex[:8]}"
    KIND.execute({"aws": "ecr.create_repository", "params": {"repositoryName": repo}}, ctx)
    delete = {"aws": "ecr.batch_delete_image", "params": {"repositoryName": repo}}
    with pytest.raises(ActionError) as missing:
        KIND.execute({**delete, "params": {**delete["params"], "imageIds": [{"imageDigest": MISSING_DIGEST}]}}, ctx)
    assert missing.value.code == "ImageNotFound"
    with pytest.raises(ActionError) as bad:
        KIND.execute({**delete, "params": {**delete["params"], "imageIds": [{"imageDigest": "sha256:nothex"}]}}, ctx)
    assert bad.value.code == "InvalidImageDigest"
    KIND.execute({"aws": "ecr.delete_repository", "params": {"repositoryName": repo, "force": True}}, ctx)


PLAN = """
atomicops: 1
name: partial-failures
phases: [main]
vars: {aws_endpoint: null, repo: x, digest: x}
connections:
  aws: {kind: aws, region: us-east-1, endpoint_url: "${vars.aws_endpoint}"}
operations:
  - id: images
    phase: main
    title: a repository and an undo that deletes an image by digest
    steps:
      - name: repository
        do: {aws: ecr.create_repository, params: {repositoryName: "${vars.repo}"}}
        outputs: {name: repository.repositoryName}
        undo: {aws: ecr.delete_repository, params: {repositoryName: "${self.name}", force: true}}
      - name: scanning
        do: {aws: ecr.put_image_scanning_configuration, params: {repositoryName: "${self.name}", imageScanningConfiguration: {scanOnPush: true}}}
        undo: {aws: ecr.batch_delete_image, params: {repositoryName: "${self.name}", imageIds: [{imageDigest: "${vars.digest}"}]}}
"""


def test_a_refused_item_fails_the_undo_where_it_happened_and_a_missing_one_is_gone(
    tmp_path: Path, moto_endpoint: str
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    state = str(tmp_path / "journal.db")
    for env, digest in (("gone", MISSING_DIGEST), ("refused", "sha256:nothex")):
        run_vars = {"aws_endpoint": moto_endpoint, "repo": f"partial-{uuid.uuid4().hex[:8]}", "digest": digest}
        api.apply(plan, env=env, state=state, vars=run_vars)
        if env == "gone":
            api.rollback(env=env, state=state)
            done = {e["step"]: e["data"] for e in api.history(env=env, state=state) if e["type"] == "undo_done"}
            assert done["scanning"]["already_gone"] is True and done["scanning"]["code"] == "ImageNotFound"
            continue
        with pytest.raises(RollbackIncomplete):
            api.rollback(env=env, state=state)
        failed = [e for e in api.history(env=env, state=state) if e["type"] == "undo_failed"]
        assert [(e["step"], e["data"]["code"]) for e in failed] == [("scanning", "InvalidImageDigest")]
