"""NATS and JetStream failures as :class:`ActionError`: JetStream's error codes by the names
``undo_ok_errors`` match (``StreamNotFound`` fits ``*NotFound*``), transient ones marked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import nats.errors
import nats.js.errors

from atomicops.actions.common import redact
from atomicops.actions.nats_config import plain
from atomicops.actions.nats_names import KIND
from atomicops.errors import ActionError

# The JetStream error codes (server/errors.json) a plan is likely to meet, by the name the
# engine matches ``undo_ok_errors`` against: ``StreamNotFound`` fits the default
# ``*NotFound*``. Codes not listed become ``JetStream<err_code>``.
JS_ERRORS: dict[int, str] = {
    10002: "AccountResourcesExceeded",
    10003: "BadRequest",
    10004: "ClusterIncomplete",
    10008: "ClusterNotAvailable",
    10009: "ClusterNotLeader",
    10012: "ConsumerCreateFailed",
    10013: "ConsumerNameInUse",
    10014: "ConsumerNotFound",
    10023: "InsufficientResources",
    10025: "InvalidJSON",
    10026: "MaximumConsumersLimit",
    10027: "MaximumStreamsLimit",
    10028: "MemoryResourcesExceeded",
    10035: "AccountNotFound",
    10037: "NoMessageFound",
    10039: "JetStreamNotEnabledForAccount",
    10043: "SequenceNotFound",
    10047: "StorageResourcesExceeded",
    10049: "StreamCreateFailed",
    10050: "StreamDeleteFailed",
    10052: "StreamInvalidConfig",
    10053: "StreamLimits",
    10054: "MessageExceedsMaximum",
    10056: "StreamNameMismatch",
    10058: "StreamNameInUse",
    10059: "StreamNotFound",
    10060: "ExpectedStreamMismatch",
    10065: "StreamSubjectOverlap",
    10069: "StreamUpdateFailed",
    10070: "WrongLastMsgID",
    10071: "WrongLastSequence",
    10074: "ReplicasNotSupported",
    10076: "JetStreamNotEnabled",
    10077: "StreamStoreFailed",
    10093: "ConsumerFilterNotSubset",
    10094: "ConsumerInvalidPolicy",
    10103: "ConsumerBadDurableName",
    10105: "ConsumerExistingActive",
    10109: "StreamSealed",
    10110: "StreamPurgeFailed",
    10118: "StreamOffline",
    10119: "ConsumerOffline",
    10148: "ConsumerAlreadyExists",
    10149: "ConsumerDoesNotExist",
    10158: "DuplicateMessageConflict",
    10164: "WrongLastSequence",
    10167: "TooManyRequests",
}
# HTTP-like status codes of JetStream API errors that say "try again later".
TRANSIENT_STATUS = frozenset({408, 429, 503})
TRANSIENT_JS_ERRORS = frozenset({10008, 10009, 10004})


def js_error_code(err_code: int | None, status: int | None) -> str:
    """The name of a JetStream API error (``10059`` -> ``StreamNotFound``)."""
    if err_code is not None:
        return JS_ERRORS.get(err_code, f"JetStream{err_code}")
    if status == 404:
        return "NotFound"
    if status == 503:
        return "JetStreamUnavailable"
    return f"JetStreamStatus{status}" if status else "JetStreamError"


def translate_error(error: BaseException, what: str, secrets: Iterable[str] = ()) -> ActionError:
    """An ActionError for a nats-py failure of ``what`` (``stream_info ORDERS``)."""
    if isinstance(error, ActionError):
        return error
    if isinstance(error, nats.js.errors.APIError):
        status = error.code
        code = js_error_code(error.err_code, status)
        description = error.description or code
        detail = f" (err_code {error.err_code})" if error.err_code is not None else ""
        return ActionError(
            KIND,
            redact(f"{what}: {description}{detail}", secrets),
            code=code,
            transient=status in TRANSIENT_STATUS or error.err_code in TRANSIENT_JS_ERRORS,
            result={"error": plain({"code": status, "err_code": error.err_code,
                                    "description": error.description})},
        )  # fmt: skip
    if isinstance(error, nats.js.errors.NoStreamResponseError):
        return ActionError(
            KIND, f"{what}: no stream captures the subject (no JetStream responder)",
            code="NoResponders",
        )  # fmt: skip
    if isinstance(error, nats.errors.NoRespondersError):
        return ActionError(KIND, f"{what}: nothing subscribes to the subject", code="NoResponders")
    if isinstance(error, (TimeoutError, asyncio.TimeoutError, nats.errors.TimeoutError)):
        return ActionError(KIND, f"{what}: no answer in time", code="Timeout", transient=True)
    if isinstance(error, nats.errors.AuthorizationError):
        return ActionError(KIND, f"{what}: authorization violation", code="AuthorizationError")
    if isinstance(
        error,
        (
            nats.errors.ConnectionClosedError,
            nats.errors.NoServersError,
            nats.errors.StaleConnectionError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.ConnectionDrainingError,
            ConnectionError,
            OSError,
        ),
    ):
        return ActionError(
            KIND,
            redact(f"{what}: connection lost ({type(error).__name__})", secrets),
            code="ConnectionError",
            transient=True,
        )
    if isinstance(error, nats.errors.BadSubjectError):
        return ActionError(KIND, f"{what}: invalid subject", code="InvalidSubject")
    if isinstance(error, nats.errors.MaxPayloadError):
        return ActionError(KIND, f"{what}: message larger than the server's max_payload",
                           code="MaxPayload")  # fmt: skip
    if isinstance(error, (ValueError, TypeError)):
        return ActionError(KIND, redact(f"{what}: {error}", secrets), code="InvalidArgument")
    if isinstance(error, nats.errors.Error):
        name = type(error).__name__.removesuffix("Error") or "NatsError"
        return ActionError(KIND, redact(f"{what}: {error}", secrets), code=name)
    raise error

