"""4.2: the rollback handler's code, zipped and put where create_function reads it."""

from __future__ import annotations

import hashlib
import io
import urllib.parse
import zipfile
from typing import Any

from atomicops.actions.base import ENGINE_TAGS, ActionContext, connection_of

HANDLER_SOURCE = '''"""MisterSmith rollback handler: an alarm notification scales the orchestrator to zero,
stopping the bleeding while an operator runs `atomicops rollback`."""
import os

import boto3


def handler(event, context):
    ecs = boto3.client("ecs")
    ecs.update_service(cluster=os.environ["CLUSTER_NAME"], service="mistersmith-orchestrator", desiredCount=0)
    return {"scaled_to_zero": "mistersmith-orchestrator"}
'''


# The AWS calls each function makes, for `atomicops policy` (atomicops/policy/calls.py).
# (`handler` runs in Lambda with its own role, not as the plan's principal.) The PutObject
# carries the engine's tags, which AWS authorizes as s3:PutObjectTagging inside the call.
AWS_CALLS = {
    "upload_code": {"s3.put_object": {"Bucket": "bucket", "Key": "key", "Tagging": ENGINE_TAGS}},
}

def upload_code(ctx: ActionContext, bucket: str, key: str) -> dict[str, Any]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("rollback.py", date_time=(2025, 1, 1, 0, 0, 0))
        z.writestr(info, HANDLER_SOURCE)
    body = buf.getvalue()
    # S3 takes an object's tags as a query string: the engine cannot add them to a call, so
    # the atomicops tags are set here, and the step's probe finds the object by them.
    put = connection_of(ctx, "aws").client("s3").put_object(
        Bucket=bucket, Key=key, Body=body, Tagging=urllib.parse.urlencode(dict(ctx.tags))
    )
    return {"key": key, "etag": put["ETag"], "sha256": hashlib.sha256(body).hexdigest()}
