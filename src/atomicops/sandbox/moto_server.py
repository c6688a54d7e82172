"""moto's server, with the one piece of AWS behaviour the sandbox needs that moto leaves out.

Started as ``python -m atomicops.sandbox.moto_server -H HOST -p PORT`` in place of ``python -m
moto.server``; everything else is moto's own server, spoken to over HTTP like AWS. The change
lives in the emulator's process, never in the client: the engine's boto3 calls are the ones
it makes against AWS.

- ``CreateBucket`` with ``CreateBucketConfiguration.Tags``: S3 tags the bucket in the request
  that creates it; moto ignores those tags. A create killed before its answer then left an
  untagged bucket that no lookup could prove was the step's (the one leak of 200 crash-soak
  trials with every probe stripped). The tags are put in the same request, as S3 does.
- IAM's refusals (``enforce_iam_after``, sandbox/moto.py) to a JSON-protocol service
  (DynamoDB, ECS, Logs, Lambda, Backup...): moto answers with an XML error page, which botocore cannot read
  (the engine then reports "the endpoint answered with a web page"); AWS answers
  ``{"__type": "AccessDeniedException", ...}``, and so does the sandbox.
- With IAM enforced, moto recomputes each request's signature from the path it routed, which
  for REST services with escaped paths (Lambda's ``/2015-03-31/functions/``, Backup's) is not
  the path boto3 signed: every call to them would be refused as ``SignatureDoesNotMatch``. The
  sandbox knows the caller by its access key (an unknown key is still refused) and checks what
  the caller's policies allow, which is what it is for; it does not check signatures.
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


def _speaks_json(response: Any) -> bool:
    """Whether the service answers errors in JSON (its botocore protocol is json or rest-json:
    DynamoDB, ECS, Lambda, Backup...)."""
    if response.headers.get("X-Amz-Target"):
        return True
    try:
        from moto.core.responses import get_service_model

        return str(get_service_model(response.boto3_service_name).protocol) in ("json", "rest-json")
    except Exception:  # noqa: BLE001 - a service botocore does not know answers as moto does
        return False


def install_json_denials() -> None:
    """A refusal to a JSON-protocol call in AWS's JSON form."""
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import JsonRESTError

    original = ActionAuthenticatorMixin._authenticate_and_authorize_action
    if getattr(original, "_atomicops", False):
        return

    def authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        try:
            original(self, iam_request_cls, resource)
        except Exception as exc:
            code = getattr(exc, "error_type", None)
            if not _speaks_json(self) or code not in ("AccessDenied", "InvalidClientTokenId", "SignatureDoesNotMatch"):
                raise
            json_code = "AccessDeniedException" if code == "AccessDenied" else "UnrecognizedClientException"
            raise JsonRESTError(json_code, str(getattr(exc, "message", exc))) from None

    authorize._atomicops = True  # type: ignore[attr-defined]
    ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize  # type: ignore[method-assign]


def install_no_signature_check() -> None:
    from moto.iam.access_control import IAMRequestBase

    IAMRequestBase.check_signature = lambda self: None  # type: ignore[method-assign]


def main() -> None:
    install()
    install_json_denials()
    install_no_signature_check()
    from moto.server import main as serve

    serve()


if __name__ == "__main__":
    main()
