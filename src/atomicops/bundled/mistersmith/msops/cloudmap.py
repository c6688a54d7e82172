"""Cloud Map namespaces are created asynchronously: the create call returns an operation id,
and the namespace id is known only once that operation has finished."""

from __future__ import annotations

import time
from typing import Any

from atomicops.actions.base import ActionContext, connection_of
from atomicops.errors import ActionError

POLL_SECONDS = 2.0
WAIT_SECONDS = 300.0


def _finished_operation(ctx: ActionContext, operation_id: str) -> dict[str, Any]:
    sd = connection_of(ctx, "aws").client("servicediscovery")
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


def namespace_of_operation(ctx: ActionContext, operation_id: str) -> dict[str, Any]:
    op = _finished_operation(ctx, operation_id)
    return {"namespace_id": op["Targets"]["NAMESPACE"]}


def delete_namespace_of_operation(ctx: ActionContext, operation_id: str) -> dict[str, Any]:
    """Undo of create_private_dns_namespace: delete the namespace that operation made.

    Raises with code ``NamespaceNotFound`` when it is already gone (undo counts that as done).
    """
    sd = connection_of(ctx, "aws").client("servicediscovery")
    try:
        namespace_id = _finished_operation(ctx, operation_id)["Targets"]["NAMESPACE"]
    except sd.exceptions.OperationNotFound:
        raise ActionError("call", f"operation {operation_id} not found", code="OperationNotFound") from None
    try:
        deleting = sd.delete_namespace(Id=namespace_id)
    except sd.exceptions.NamespaceNotFound:
        raise ActionError("call", f"namespace {namespace_id} not found", code="NamespaceNotFound") from None
    _finished_operation(ctx, deleting["OperationId"])
    return {"deleted": namespace_id}
