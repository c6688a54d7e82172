"""2.1 without docker: push a small but real OCI image through the ECR registry API.

A layer (a gzipped tar holding one file), an image config and a manifest, uploaded the way
``docker push`` does it: layer upload in parts, then ``put_image`` with the manifest. The
result is an image ECS can reference by tag or digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any

from botocore.exceptions import ClientError

from atomicops.actions.base import ActionContext, connection_of

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
STEP_ANNOTATION = "atomicops:step"
PART_SIZE = 5 * 1024 * 1024  # ECR wants every part but the last to be at least 5 MiB
_NO_LAYER_UPLOAD: set[str] = set()  # endpoints found to lack layer upload (asked once)


# The AWS calls each function makes, for `atomicops policy` (atomicops/policy/calls.py).
AWS_CALLS = {
    "push_image": {call: {"repositoryName": "repository"} for call in (
        "ecr.initiate_layer_upload", "ecr.upload_layer_part", "ecr.complete_layer_upload", "ecr.put_image",
        "ecr.batch_get_image")},
    "find_image": {"ecr.batch_get_image": {"repositoryName": "repository"}},
}

def _layer(repository: str) -> tuple[bytes, str]:
    """A gzipped tar with /etc/mistersmith-release; returns it and the digest of the tar."""
    content = json.dumps({"image": repository, "built_by": "atomicops"}).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("etc/mistersmith-release")
        info.size, info.mtime, info.mode = len(content), 0, 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    # mtime=0: the same input gives the same bytes, so the same digest on every run.
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _upload_blob(ecr: Any, repository: str, blob: bytes) -> str | None:
    """Upload one blob; None when the registry has no layer upload (moto's ECR lacks it)."""
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    if ecr.meta.endpoint_url in _NO_LAYER_UPLOAD:
        return None
    try:
        upload_id = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 500 or exc.response.get("Error", {}).get("Code") in ("NotImplemented", "500"):
            _NO_LAYER_UPLOAD.add(ecr.meta.endpoint_url)
            return None
        raise
    for start in range(0, len(blob), PART_SIZE):
        part = blob[start : start + PART_SIZE]
        ecr.upload_layer_part(
            repositoryName=repository, uploadId=upload_id, partFirstByte=start,
            partLastByte=start + len(part) - 1, layerPartBlob=part,
        )
    ecr.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[digest])
    return digest


def push_image(ctx: ActionContext, repository: str, tag: str, uri: str) -> dict[str, Any]:
    ecr = connection_of(ctx, "aws").client("ecr")
    layer, diff_id = _layer(repository)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()
    blobs_uploaded = _upload_blob(ecr, repository, layer) is not None
    if blobs_uploaded:
        _upload_blob(ecr, repository, config)
    else:
        ctx.progress(0, None, "this registry takes no layer uploads: pushing the manifest only")
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": len(layer)}],
        # ECR images take no resource tags: the step's key in the manifest is what tells
        # this step's image from one that was already there under the same tag.
        "annotations": {STEP_ANNOTATION: ctx.step_key or ""},
    }, sort_keys=True)
    try:
        image = ecr.put_image(repositoryName=repository, imageManifest=manifest, imageManifestMediaType=MANIFEST_TYPE,
                              imageTag=tag)["image"]
    except ecr.exceptions.ImageAlreadyExistsException:
        # Pushed before, byte for byte (a re-do after a crash): the same manifest, so the same
        # digest. Answered as the first push was, which makes this push safe to repeat.
        found = find_image(ctx, repository, tag, uri, ctx.step_key or "")
        if not found:
            raise
        return {**found, "tag": tag, "layers_uploaded": blobs_uploaded}
    digest = image["imageId"]["imageDigest"]
    return {"digest": digest, "image": f"{uri}@{digest}", "tag": tag, "layers_uploaded": blobs_uploaded}


def find_image(ctx: ActionContext, repository: str, tag: str, uri: str, step_key: str) -> dict[str, Any]:
    """Probe: the image tagged ``tag`` when its manifest carries this step's key, else ``{}``."""
    ecr = connection_of(ctx, "aws").client("ecr")
    try:
        images = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}])["images"]
    except ecr.exceptions.RepositoryNotFoundException:
        return {}
    for image in images:
        annotations = json.loads(image["imageManifest"]).get("annotations") or {}
        if annotations.get(STEP_ANNOTATION) == step_key:
            digest = image["imageId"]["imageDigest"]
            return {"digest": digest, "image": f"{uri}@{digest}"}
    return {}
