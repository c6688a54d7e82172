"""moto's server, with the one piece of AWS behaviour the sandbox needs that moto leaves out.

Started as ``python -m atomicops.sandbox.moto_server -H HOST -p PORT`` in place of ``python -m
moto.server``; everything else is moto's own server, spoken to over HTTP like AWS. The change
lives in the emulator's process, never in the client: the engine's boto3 calls are the ones
it makes against AWS.

- ``CreateBucket`` with ``CreateBucketConfiguration.Tags``: S3 tags the bucket in the request
  that creates it; moto ignores those tags. A create killed before its answer then left an
  untagged bucket that no lookup could prove was the step's (the one leak of 200 crash-soak
  trials with every probe stripped). The tags are put in the same request, as S3 does.
"""

from __future__ import annotations

from typing import Any


def _creation_tags(body: bytes | str | None) -> dict[str, str]:
    """The tags of a CreateBucketConfiguration body, ``{}`` when it has none."""
    import xmltodict

    if not body:
        return {}
    try:
        config = xmltodict.parse(body).get("CreateBucketConfiguration") or {}
    except Exception:  # noqa: BLE001 - not XML, or not a configuration: moto answers for it
        return {}
    tags = (config.get("Tags") or {}).get("Tag") or []
    if isinstance(tags, dict):  # one tag is not a list in xmltodict's reading
        tags = [tags]
    return {str(t.get("Key")): str(t.get("Value") or "") for t in tags if isinstance(t, dict) and t.get("Key")}


def install() -> None:
    """Wrap moto's bucket PUT so a create puts its configuration's tags too."""
    from moto.s3.responses import S3Response

    original = S3Response._bucket_response_put
    if getattr(original, "_atomicops", False):
        return

    def bucket_put(self: Any, request: Any, bucket_name: str, querystring: dict[str, Any]) -> Any:
        answer = original(self, request, bucket_name, querystring)
        if not querystring:  # a PUT on the bucket itself, no subresource: CreateBucket
            tags = _creation_tags(self.body)
            if tags:
                self.backend.put_bucket_tagging(bucket_name, tags)
        return answer

    bucket_put._atomicops = True  # type: ignore[attr-defined]
    S3Response._bucket_response_put = bucket_put  # type: ignore[method-assign]


def main() -> None:
    install()
    from moto.server import main as serve

    serve()


if __name__ == "__main__":
    main()
