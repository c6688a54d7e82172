"""Cloud Map namespaces are created asynchronously: the create call returns an operation id,
and the namespace id is known only once that operation has finished. These functions wait
for it, so the plan's steps see a namespace that exists (or is gone)."""

from __future__ import annotations

import time
from typing import Any

from atomicops.actions.base import ActionContext, connection_of
from atomicops.errors import ActionError

POLL_SECONDS = 1.0
WAIT_SECONDS = 300.0


# The AWS calls each function makes, for `atomicops policy` (atomicops/policy/calls.py).
# CreatePrivateDnsNamespace also needs the Route 53 and EC2 actions Cloud Map uses on the
# caller's behalf (grants.DEPENDENT_ACTIONS); the tags are passed by this module, not the engine.
AWS_CALLS = {
    "create_namespace": ["servicediscovery.create_private_dns_namespace", "servicediscovery.tag_resource",
                         "servicediscovery.get_operation", "servicediscovery.list_namespaces",
                         "servicediscovery.list_tags_for_resource"],
    "find_namespace": ["servicediscovery.list_namespaces", "servicediscovery.list_tags_for_resource"],
    "delete_namespace": ["servicediscovery.delete_namespace", "servicediscovery.get_operation"],
}

def _wait(sd: Any, operation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        op = sd.get_operation(OperationId=operation_id)["Operation"]
        if op["Status"] == "SUCCESS":
            return dict(op)
        if op["Status"] == "FAIL":
            raise ActionError("call", f"Cloud Map operation {operation_id} failed: {op.get('ErrorMessage')}",
                              code=op.get("ErrorCode") or "OperationFailed")
        if time.monotonic() > deadline:
            raise ActionError("call", f"Cloud Map operation {operation_id} still {op['Status']}", code="Timeout", transient=True)
        time.sleep(POLL_SECONDS)


def create_namespace(ctx: ActionContext, name: str, vpc: str) -> dict[str, Any]:
    sd = connection_of(ctx, "aws").client("servicediscovery")
    params: dict[str, Any] = {"Name": name, "Vpc": vpc}
    if ctx.idempotency_token:
        # The same token on a re-run after a crash returns the same operation, not a second namespace.
        params["CreatorRequestId"] = ctx.idempotency_token
    if ctx.tags:
        params["Tags"] = [{"Key": k, "Value": v} for k, v in ctx.tags.items()]
    try:
        op = _wait(sd, sd.create_private_dns_namespace(**params)["OperationId"])
    except sd.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ConflictingDomainExists", "NamespaceAlreadyExists"):
            raise
        # Made by this step before a crash (a re-do): AWS answers the same CreatorRequestId
        # with the first operation, moto refuses it; either way this step's namespace is the
        # answer, and one not tagged by this step is still refused.
        found = find_namespace(ctx, name, ctx.step_key or "")
        if found["namespace_id"] is None:
            raise
        return found
    return {"namespace_id": op["Targets"]["NAMESPACE"]}


def find_namespace(ctx: ActionContext, name: str, step_key: str) -> dict[str, Any]:
    """Probe: the namespace called ``name`` tagged by this step (ours), if any."""
    sd = connection_of(ctx, "aws").client("servicediscovery")
    for page in sd.get_paginator("list_namespaces").paginate():
        for ns in page["Namespaces"]:
            if ns["Name"] != name:
                continue
            tags = sd.list_tags_for_resource(ResourceARN=ns["Arn"]).get("Tags", [])
            if {"Key": "atomicops:step", "Value": step_key} in tags:
                return {"namespace_id": ns["Id"]}
    return {"namespace_id": None}


def delete_namespace(ctx: ActionContext, namespace_id: str) -> dict[str, Any]:
    """Raises with code ``NamespaceNotFound`` when it is already gone (undo counts that as done)."""
    sd = connection_of(ctx, "aws").client("servicediscovery")
    try:
        deleting = sd.delete_namespace(Id=namespace_id)
    except sd.exceptions.NamespaceNotFound:
        raise ActionError("call", f"namespace {namespace_id} not found", code="NamespaceNotFound") from None
    _wait(sd, deleting["OperationId"])
    return {"deleted": namespace_id}
