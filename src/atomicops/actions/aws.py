"""The ``aws`` action kind: one boto3 client call, optionally followed by a waiter.

```yaml
do:
  aws: ec2.create_vpc            # boto3's snake_case method name
  params: {CidrBlock: 10.0.0.0/16}
  connection: aws                # optional: the plan's first ``kind: aws`` connection
  wait: {waiter: vpc_available, params: {VpcIds: ["${self.vpc_id}"]}, delay: 2, max_attempts: 60}
```

Static checks read botocore's service models (shipped with botocore, so no network and no
credentials). Execution uses the normal credential chain; sandboxes differ only by the
connection's ``endpoint_url``.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from botocore import xform_name
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ParamValidationError,
    ProxyConnectionError,
    SSLError,
    UnknownServiceError,
    WaiterError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from atomicops.actions import aws_models
from atomicops.actions.base import ActionContext, ActionKind, CheckIssue
from atomicops.actions.common import (
    positive_or_absent,
    redact,
    refuse_unknown_keys,
    suggest,
    unknown_keys,
)
from atomicops.actions.registry import register
from atomicops.errors import ActionError
from atomicops.plan.refs import is_reference

if TYPE_CHECKING:
    from botocore.model import OperationModel, Shape

# botocore's model classes, config, parsers and sessions are imported where a call is made
# or a model is walked: the static check of a known call needs none of them (a warm
# `validate` imports no more of botocore than its exceptions; docs/performance.md, B6).

KIND = "aws"

DEFAULT_WAIT_DELAY = 2
DEFAULT_WAIT_MAX_ATTEMPTS = 150

CONNECTION_KEYS = frozenset(
    {"kind", "region", "endpoint_url", "profile", "connect_timeout", "read_timeout", "max_attempts", "retry_mode",
     "settle_minutes"}
)
# botocore's retry modes a connection may choose (``legacy`` counts attempts differently and
# knows fewer throttling codes). ``adaptive`` adds a client-side rate limiter that slows a
# client down once AWS throttles it: for many writers sharing one client (a data copy).
RETRY_MODES = ("standard", "adaptive")
MAX_SETTLE_MINUTES = 45  # engine/settling.py: the longest an undo waits for AWS to release something
WAIT_KEYS = frozenset({"waiter", "params", "delay", "max_attempts"})

# botocore's own list (retries/standard.py) of codes that mean "slow down, then try again".
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

# Failures that prove the request was never acted on: the connection was never made (so
# nothing was sent), or the service answered that it refused it. Any other failure after
# sending (a read timeout, a connection dropped before the answer, a 500 or 504) leaves
# open whether the call took effect.
NOT_SENT = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError, SSLError)
REFUSED_STATUS = 503  # "ServiceUnavailable": AWS turned the request away

# Calls that change nothing: a lost answer to one of them is safe to ask again.
READ_VERBS = frozenset(
    {"Describe", "List", "Get", "Head", "Search", "Lookup", "Query", "Scan", "Batch", "Check",
     "Validate", "Simulate", "Estimate", "Preview", "Test"}
)  # fmt: skip

# What a rollback trigger may call (boto3 spelling): reads only. ``batch_`` alone is not
# one (batch_write_item), nor are ``check_``/``test_`` (test_invoke_method runs a handler).
READ_ONLY_PREFIXES = (
    "describe_", "get_", "list_", "head_", "search_", "lookup_", "batch_get_", "filter_", "query", "scan",
)  # fmt: skip

# Only calls that bring a resource into being get the atomicops tags. Update, List, Get,
# Assume... also take ``Tags`` on some services, but there the member is a filter, a session
# tag or a replacement set, and adding ours would change what the call means.
TAGGING_VERBS = frozenset(
    {
        "Create", "Put", "Register", "Run", "Import", "Copy", "Restore", "Request", "Allocate",
        "Start", "Submit", "Provision", "Replicate", "Upload", "Purchase", "Activate", "Authorize",
    }
)  # fmt: skip

# Calls that refuse tags in some modes: SSM rejects ``Tags`` together with ``Overwrite``
# ("tags and overwrite can't be used together"); an overwrite keeps the tags it already has.
NO_TAGS_WHEN = {("ssm", "PutParameter"): "Overwrite"}

# EC2 takes tags only through ``TagSpecifications``, which names a resource type. For
# ``CreateXxx`` the type is usually ``xxx`` in kebab case (checked against the model's enum);
# these are the common calls where it is not.
EC2_RESOURCE_TYPES = {
    "RunInstances": "instance",
    "AllocateAddress": "elastic-ip",
    "AuthorizeSecurityGroupIngress": "security-group-rule",
    "AuthorizeSecurityGroupEgress": "security-group-rule",
    "ImportKeyPair": "key-pair",
    "CreateFlowLogs": "vpc-flow-log",
    "CreateManagedPrefixList": "prefix-list",
    "CreateTransitGatewayVpcAttachment": "transit-gateway-attachment",
    "CopyImage": "image",
    "RegisterImage": "image",
    "CopySnapshot": "snapshot",
}


# --------------------------------------------------------------------------- connection


class AwsConnection:
    """One connection's clients, one per service (and retry mode), made on first use.

    boto3 Sessions are not thread-safe but the clients they make are, so client creation is
    serialised and the clients are shared by every step of the run. They are also shared by
    every other AwsConnection of the process with the same settings (:class:`_Clients`): a
    run opens three (preflight's, the run's, the trigger watcher's) and each would otherwise
    build the same clients again (~10-30 ms of CPU each, 28 in the flagship).
    """

    def __init__(
        self,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        *,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        max_attempts: int = 5,
        retry_mode: str | None = None,
    ) -> None:
        """``retry_mode`` None: ``AWS_RETRY_MODE`` or the profile's ``retry_mode`` where
        either says ``standard`` or ``adaptive``, else ``standard``."""
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self._pool = _Clients.take(region, endpoint_url, profile, connect_timeout, read_timeout, max_attempts,
                                   retry_mode)
        self.config = self._pool.config
        self.config_once = self._pool.config_once
        self._closed = False

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> AwsConnection:
        """Build from a plan connection mapping (``{kind: aws, region: ..., ...}``)."""
        refuse_unknown_keys(KIND, "aws connection", spec, CONNECTION_KEYS)
        if spec.get("retry_mode") is not None and spec["retry_mode"] not in RETRY_MODES:
            raise ActionError(KIND, f"aws connection: retry_mode must be one of {', '.join(RETRY_MODES)}, "
                              f"not {spec['retry_mode']!r}", code="InvalidConnection")
        options = {
            k: spec[k] for k in ("connect_timeout", "read_timeout", "max_attempts", "retry_mode")
            if spec.get(k) is not None
        }
        return cls(spec.get("region"), spec.get("endpoint_url"), spec.get("profile"), **options)

    def client(self, service: str, *, resend: bool = True) -> Any:
        """The service's client; ``resend=False``: one whose botocore never sends a call twice."""
        return self._pool.client(service, resend)

    def prepare(self, wanted: Iterable[tuple[str, bool]]) -> None:
        """Build these (service, resend) clients on a background thread, in this order, while
        the caller waits on the network (preflight's requests, AWS answering the first wave).

        Building a client is CPU work under the GIL, so this pays only where the process
        would otherwise wait; a step that needs a client first builds it itself (the one
        lock makes each client once). Failures are left for the step to meet."""
        todo = list(dict.fromkeys(wanted))
        if not todo:
            return
        self._pool.hold()

        def build() -> None:
            try:
                for service, resend in todo:
                    try:
                        self._pool.client(service, resend)
                    except Exception:  # noqa: BLE001, S112 - the step that needs it reports it
                        continue
            finally:
                self._pool.release()

        threading.Thread(target=build, name="aws-clients", daemon=True).start()

    @staticmethod
    def client_for(action: Mapping[str, Any], *, token: bool) -> tuple[str, bool] | None:
        """The (service, resend) client ``action`` will be executed with, from botocore's
        facts alone (no model parsed): ``token`` says whether the engine gives the call an
        idempotency token (a step's effect), as :func:`sends_once` decides."""
        try:
            service, operation = parse_operation(action.get(KIND))
        except ValueError:
            return None
        if service not in aws_models.services():
            return None
        api = aws_models.operations(service).get(operation)
        if api is None:
            return None
        verb = re.match(r"[A-Z][a-z]*", api)
        reads = verb is not None and verb.group(0) in READ_VERBS
        once = token and not reads and not aws_models.takes_token(f"{service}.{operation}")
        return service, not once

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.release()

    def __repr__(self) -> str:
        where = self.endpoint_url or "aws"
        return f"AwsConnection(region={self.region!r}, endpoint={where!r})"


class _Clients:
    """The clients of one set of connection settings, shared by the process's AwsConnections
    with those settings, made under the same ``AWS_*`` environment (credentials, profile and
    config files are read from it, so a changed environment gets new clients).

    An AwsConnection holds its set while open; a set nobody holds is kept for the next
    connection with the same settings (preflight's for the run's), up to :data:`IDLE_KEPT`
    sets, then closed oldest first."""

    IDLE_KEPT = 4
    _lock = threading.Lock()
    _all: ClassVar[dict[tuple[Any, ...], _Clients]] = {}
    _sessions: ClassVar[dict[tuple[Any, ...], tuple[Any, threading.Lock]]] = {}

    def __init__(self, key: tuple[Any, ...], session: Any, lock: threading.Lock, config: Any, config_once: Any) -> None:
        self.key = key
        self.session = session
        self._session_lock = lock  # a botocore session makes one client at a time
        self.config = config
        self.config_once = config_once
        self._clients: dict[tuple[str, bool], Any] = {}
        self._users = 0

    @classmethod
    def take(cls, region: str | None, endpoint_url: str | None, profile: str | None,
             connect_timeout: float, read_timeout: float, max_attempts: int, retry_mode: str | None) -> _Clients:
        environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        key = (region, endpoint_url, profile, connect_timeout, read_timeout, max_attempts, retry_mode, environment)
        with cls._lock:
            pool = cls._all.pop(key, None)
            if pool is None:
                session, lock = cls._session(profile, environment)
                if retry_mode is None:
                    # What the user's environment or profile asks for (botocore reads
                    # AWS_RETRY_MODE, then the profile's retry_mode): the Config we pass
                    # would otherwise win over both.
                    configured = session._session.get_config_variable("retry_mode")
                    retry_mode = configured if configured in RETRY_MODES else "standard"
                config, once = _configs(connect_timeout, read_timeout, max_attempts, retry_mode)
                pool = cls(key, session, lock, config, once)
            cls._all[key] = pool  # newest last: eviction takes the oldest idle set
            pool._users += 1
        return pool

    @classmethod
    def _session(cls, profile: str | None, environment: tuple[Any, ...]) -> tuple[Any, threading.Lock]:
        """One boto3 Session per profile and environment (called under ``cls._lock``): each
        new one parses botocore's endpoint and partition data and resolves credentials again."""
        found = cls._sessions.get((profile, environment))
        if found is None:
            # Imported here: `validate` needs only botocore's models, and boto3 (with
            # s3transfer) would double its import time (docs/performance.md).
            import boto3
            import botocore.session

            # The process's one botocore loader (the one validation used): a client then
            # reuses the service models validation already parsed instead of reading their
            # JSON again. The loader only caches what it read. No region on the session: it
            # is shared by connections to several, each client is given its own.
            core = botocore.session.Session()
            core.register_component("data_loader", aws_models.shared_loader())
            found = (boto3.session.Session(botocore_session=core, profile_name=profile), threading.Lock())
            aws_models.dedupe_search_paths()
            if not cls._sessions:
                _exit_without_collecting()
            if len(cls._sessions) >= 8:
                cls._sessions.pop(next(iter(cls._sessions)))
            cls._sessions[(profile, environment)] = found
        return found

    def hold(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        closing: list[_Clients] = []
        with self._lock:
            self._users -= 1
            idle = [p for p in self._all.values() if p._users <= 0]
            for pool in idle[: max(0, len(idle) - self.IDLE_KEPT)]:
                del self._all[pool.key]
                closing.append(pool)
        for pool in closing:
            pool._close()

    def client(self, service: str, resend: bool) -> Any:
        found = self._clients.get((service, resend))
        if found is not None:
            return found
        with self._session_lock:
            client = self._clients.get((service, resend))
            if client is None:
                client = self.session.client(
                    service,
                    region_name=self.key[0],
                    endpoint_url=self.key[1],
                    config=self.config if resend else self.config_once,
                )
                self._clients[(service, resend)] = client
            return client

    def _close(self) -> None:
        with self._session_lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()


def _exit_without_collecting() -> None:
    """Skip the garbage collector's passes over botocore's models when the process exits.

    A process that built clients holds a few hundred thousand objects (the service models,
    each client's copy of the event handlers), and the interpreter's teardown walks them in
    several full collections: 0.3 s of CPU after the command's work was done, 0.5-0.9 s of
    wall time on a loaded machine, in every `apply` and `rollback` (B1, docs/performance.md).
    Frozen at exit (the last atexit handler to run), they are freed by reference counting
    alone. Nothing of ours waits for that pass: the journal commits every event when it is
    written and connections are closed by the runs that opened them; what sits in a cycle
    (an unclosed socket) is released by the OS with the process."""
    import atexit
    import gc

    atexit.register(gc.freeze)  # registered first among ours, so it runs after the others


def _configs(connect_timeout: float, read_timeout: float, max_attempts: int, retry_mode: str = "standard") -> tuple[Any, Any]:
    """The botocore Config of a connection's clients, and of its clients that send once."""
    from botocore.config import Config

    config = Config(
        # total_max_attempts counts the first try, like ``max_attempts`` in ~/.aws/config;
        # Config's own ``max_attempts`` key would count retries only (5 -> 6 calls).
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra="atomicops",
    )
    # botocore's standard mode resends on a read timeout, a dropped connection and any 5xx,
    # for every call: a CreateVpc whose answer was lost would be made twice. Calls that no
    # token makes idempotent go through clients that send once; the engine decides what to
    # do with a lost answer (engine/executor.py). In adaptive mode their one attempt is still
    # paced by the rate limiter.
    return config, config.merge(Config(retries={"mode": retry_mode, "total_max_attempts": 1}))


# --------------------------------------------------------------------------- botocore models

service_model = aws_models.service_model  # tests and callers name it here


def _kind(shape: Shape | None) -> str | None:
    """A model shape's type (``structure``, ``list``, ``map``, ``string``...)."""
    return getattr(shape, "type_name", None)


def _names(choices: Iterable[str], limit: int = 20) -> str:
    choices = sorted(choices)
    shown = ", ".join(choices[:limit])
    return shown + (f", ... ({len(choices)} in all)" if len(choices) > limit else "")


# --------------------------------------------------------------------------- static checks

_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float, Decimal),
    "double": (int, float, Decimal),
    "boolean": (bool,),
    "timestamp": (str, int, float, dt.datetime, dt.date),
    "blob": (str, bytes, bytearray),
}


def _check_value(value: Any, shape: Shape, path: tuple[str | int, ...]) -> Iterator[CheckIssue]:
    """Walk a literal value against its botocore shape; references (``${...}``) are opaque."""
    if is_reference(value) or shape.metadata.get("document"):
        return
    if value is None:
        yield CheckIssue(path, f"null is not a valid {shape.type_name}; leave the key out instead")
        return
    if _kind(shape) == "structure":
        if not isinstance(value, Mapping):
            yield CheckIssue(path, f"expected a mapping ({shape.name}), got {type(value).__name__}")
            return
        members = shape.members
        for key, item in value.items():
            if is_reference(key):
                continue
            if key not in members:
                hint = suggest(str(key), members) or f"; valid: {_names(members)}"
                yield CheckIssue((*path, key), f"unknown parameter {key!r} in {shape.name}{hint}")
                continue
            yield from _check_value(item, members[key], (*path, key))
        # A key that is a reference may turn out to be any member, so nothing is missing yet.
        missing = [m for m in shape.required_members if m not in value]
        if missing and not any(is_reference(k) for k in value):
            yield CheckIssue(
                path, f"missing required parameter(s) in {shape.name}: {', '.join(missing)}"
            )
        if shape.metadata.get("union") and len(value) > 1:
            yield CheckIssue(path, f"{shape.name} takes exactly one of: {_names(members)}")
    elif _kind(shape) == "list":
        if not isinstance(value, (list, tuple)):
            yield CheckIssue(path, f"expected a list ({shape.name}), got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            yield from _check_value(item, shape.member, (*path, index))
    elif _kind(shape) == "map":
        if not isinstance(value, Mapping):
            yield CheckIssue(path, f"expected a mapping ({shape.name}), got {type(value).__name__}")
            return
        for key, item in value.items():
            yield from _check_value(item, shape.value, (*path, key))
    else:
        allowed = _SCALAR_TYPES.get(shape.type_name)
        # bool is an int in Python; botocore refuses it where a number is wanted.
        wrong_bool = isinstance(value, bool) and shape.type_name != "boolean"
        if allowed is not None and (wrong_bool or not isinstance(value, allowed)):
            yield CheckIssue(
                path, f"expected {shape.type_name} ({shape.name}), got {type(value).__name__}"
            )


def _check_params(
    params: Any, service: str, operation: str, path: tuple[str | int, ...]
) -> Iterator[CheckIssue]:
    shape = service_model(service).operation_model(operation).input_shape
    if params is None:
        params = {}
    if is_reference(params):
        return
    if shape is None:
        if isinstance(params, Mapping) and params:
            yield CheckIssue(path, f"{service}.{xform_name(operation)} takes no parameters")
        return
    yield from _check_value(params, shape, path)


def _check_wait(wait: Any, service: str) -> Iterator[CheckIssue]:
    if is_reference(wait):
        return
    if not isinstance(wait, Mapping):
        yield CheckIssue(("wait",), "wait must be a mapping: {waiter: NAME, params: {...}}")
        return
    yield from unknown_keys(wait, WAIT_KEYS, "wait", ("wait",))
    for key in ("delay", "max_attempts"):
        if not positive_or_absent(wait.get(key)):
            yield CheckIssue(("wait", key), f"{key} must be a positive number")
    name = wait.get("waiter")
    if name is None:
        yield CheckIssue(("wait",), "wait needs a waiter name")
        return
    if is_reference(name):
        return
    waiters = aws_models.waiters(service)
    if name not in waiters:
        valid = (
            f"valid waiters of {service}: {_names(waiters, limit=200)}"
            if waiters
            else f"{service} has no waiters"
        )
        yield CheckIssue(
            ("wait", "waiter"), f"unknown waiter {name!r}{suggest(str(name), waiters)} ({valid})"
        )
        return
    yield from _check_params(
        wait.get("params"), service, aws_models.waiter_operation(service, name), ("wait", "params")
    )


def parse_operation(value: Any) -> tuple[str, str]:
    """``"ec2.create_vpc"`` -> ``("ec2", "create_vpc")``; ValueError if malformed."""
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9-]+\.[a-z0-9_]+", value):
        raise ValueError(
            f"expected 'service.operation' in boto3 spelling (e.g. ec2.create_vpc), got {value!r}"
        )
    service, operation = value.split(".")
    return service, operation


# --------------------------------------------------------------------------- tags


def _tag_pair_members(shape: Shape) -> tuple[str, str] | None:
    """The (key, value) member names of a tag structure, in the service's own casing."""
    if _kind(shape) != "structure":
        return None
    by_lower = {name.lower(): name for name in shape.members}
    key = by_lower.get("key") or by_lower.get("tagkey")
    value = by_lower.get("value") or by_lower.get("tagvalue")
    if key is None or value is None or set(shape.required_members) - {key, value}:
        return None
    return key, value


def _merge_tag_list(
    current: Any, tags: Mapping[str, str], key: str, value: str
) -> list[Any] | None:
    if current is None:
        current = []
    if not isinstance(current, list):
        return None
    present = {t.get(key) for t in current if isinstance(t, Mapping)}
    return list(current) + [{key: k, value: v} for k, v in tags.items() if k not in present]


def _ec2_resource_type(operation: str, spec_shape: Shape) -> str | None:
    if _kind(spec_shape) != "structure" or "ResourceType" not in spec_shape.members:
        return None
    enum = set(spec_shape.members["ResourceType"].enum or ())
    guess = EC2_RESOURCE_TYPES.get(operation)
    if guess is None and operation.startswith("Create"):
        noun = re.sub(r"(?<!^)(?=[A-Z])", "-", operation[len("Create") :]).lower()
        guess = noun if noun in enum else noun.replace("-", "")
    return guess if guess in enum else None


def with_tags(
    service: str, op_model: OperationModel, params: Mapping[str, Any], tags: Mapping[str, str]
) -> dict[str, Any]:
    """``params`` plus ``tags`` wherever the operation takes resource tags.

    Keys the user already set win: a plan may set ``atomicops:step`` itself. The shape of the
    tags member (list of pairs or map, and the pairs' casing) is read from the model.
    """
    out = dict(params)
    shape = op_model.input_shape
    verb = re.match(r"[A-Z][a-z]*", op_model.name)
    if (
        not tags
        or shape is None
        or "Tag" in op_model.name  # TagResource, CreateTags, DeleteTags...: their tags are data
        or verb is None
        or verb.group(0) not in TAGGING_VERBS
    ):
        return out
    blocker = NO_TAGS_WHEN.get((service, op_model.name))
    if blocker and out.get(blocker):
        return out

    for name, member in shape.members.items():
        if name.lower() != "tags" or is_reference(out.get(name)):
            continue
        if _kind(member) == "map" and member.value.type_name == "string":
            current = out.get(name) or {}
            if isinstance(current, Mapping):
                out[name] = {**{k: v for k, v in tags.items() if k not in current}, **current}
        elif _kind(member) == "list" and (pair := _tag_pair_members(member.member)):
            merged = _merge_tag_list(out.get(name), tags, *pair)
            if merged is not None:
                out[name] = merged

    spec_member = shape.members.get("TagSpecifications")
    if _kind(spec_member) == "list" and not is_reference(out.get("TagSpecifications")):
        spec_shape = spec_member.member
        inner = spec_shape.members.get("Tags") if _kind(spec_shape) == "structure" else None
        pair = _tag_pair_members(inner.member) if inner is not None and _kind(inner) == "list" else None
        if pair:
            specs = out.get("TagSpecifications")
            if specs:
                new_specs = []
                for spec in specs:
                    if isinstance(spec, Mapping) and not is_reference(spec.get("Tags")):
                        merged = _merge_tag_list(spec.get("Tags"), tags, *pair)
                        spec = {**spec, "Tags": merged} if merged is not None else spec
                    new_specs.append(spec)
                out["TagSpecifications"] = new_specs
            elif resource_type := _ec2_resource_type(op_model.name, spec_shape):
                key, value = pair
                out["TagSpecifications"] = [
                    {
                        "ResourceType": resource_type,
                        "Tags": [{key: k, value: v} for k, v in tags.items()],
                    }
                ]
    return out


def with_bucket_region(service: str, operation: str, params: dict[str, Any], region: str | None) -> dict[str, Any]:
    """``CreateBucket`` outside us-east-1 needs ``LocationConstraint`` = the region, and in
    us-east-1 refuses it (IllegalLocationConstraintException either way): fill it from the
    connection's region where the plan did not say, as ``aws s3 mb`` does, so one plan
    creates its bucket in any region."""
    if service != "s3" or operation != "CreateBucket" or not region or region == "us-east-1":
        return params
    config = params.get("CreateBucketConfiguration")
    config = dict(config) if isinstance(config, Mapping) else {}
    if "LocationConstraint" in config or "Location" in config:  # said, or a directory bucket
        return params
    return {**params, "CreateBucketConfiguration": {**config, "LocationConstraint": region}}


# --------------------------------------------------------------------------- results, errors


def plain(value: Any) -> Any:
    """A JSON-safe copy of a botocore response (or any part of one)."""
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    from botocore.response import StreamingBody

    if isinstance(value, StreamingBody):
        data = value.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(data).decode("ascii")
    return value


def _sensitive_values(value: Any, shape: Shape | None, found: set[str]) -> set[str]:
    """String values the model marks ``sensitive`` (passwords, secret strings...)."""
    if shape is None or value is None:
        return found
    if shape.metadata.get("sensitive"):
        if isinstance(value, str) and value:
            found.add(value)
        elif isinstance(value, (Mapping, list, tuple)):
            _all_strings(value, found)
        return found
    if _kind(shape) == "structure" and isinstance(value, Mapping):
        for key, item in value.items():
            _sensitive_values(item, shape.members.get(key), found)
    elif _kind(shape) == "list" and isinstance(value, (list, tuple)):
        for item in value:
            _sensitive_values(item, shape.member, found)
    elif _kind(shape) == "map" and isinstance(value, Mapping):
        for item in value.values():
            _sensitive_values(item, shape.value, found)
    return found


def _all_strings(value: Any, found: set[str]) -> None:
    if isinstance(value, str) and value:
        found.add(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _all_strings(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _all_strings(item, found)


# botocore's validation report quotes each bad value ("..., value: hunter2, type: <class...");
# keep the names and types, drop the values.
_REPORT_VALUE = re.compile(
    r", value: .*?(?=, type: <class '|, valid min (?:value|length): |, valid types: )", re.DOTALL
)


def param_report(error: ParamValidationError) -> str:
    return _REPORT_VALUE.sub("", str(error.kwargs.get("report", error)))


_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _readable(message: str, status: int) -> str:
    """An answer that is no AWS error document (an HTML page from a proxy, a load balancer or
    an emulator's crash) reaches botocore's message whole: keep one line of it."""
    if not message.lstrip().startswith("<") and "<html" not in message.lower():
        return message
    title = _TITLE.search(message)
    summary = " ".join(title.group(1).split()) if title else f"HTTP {status}"
    return f"{summary[:120]} (the endpoint answered with a web page, not an AWS error)"


def may_have_taken_effect(error: Exception) -> bool:
    """Whether a failed call may still have done its work (see :data:`NOT_SENT`)."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code") or "")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 and status != REFUSED_STATUS and code not in THROTTLING_CODES
    if isinstance(error, NOT_SENT):
        return False
    from botocore.parsers import ResponseParserError

    # An answer botocore could not read (a proxy's page for XML services) says nothing either.
    return isinstance(error, (BotoConnectionError, HTTPClientError, ResponseParserError))


def sends_once(op_model: OperationModel, ctx: ActionContext) -> bool:
    """A step's call that changes something and takes no idempotency token: sending it twice
    may do it twice (CreateVpc, CreateRole, CreateTable...)."""
    if ctx.idempotency_token is None:  # read-only steps, undos, checks
        return False
    verb = re.match(r"[A-Z][a-z]*", op_model.name)
    if verb is not None and verb.group(0) in READ_VERBS:
        return False
    shape = op_model.input_shape
    members = shape.members.values() if shape is not None else ()
    return not any(m.metadata.get("idempotencyToken") for m in members)


# A write call that answers HTTP 200 while refusing part or all of its work lists the refused
# items in a top-level member of its answer: DeleteVpcEndpoints' ``Unsuccessful``,
# BatchDeleteImage's ``failures``, PutTargets' ``FailedEntries``, SQS's ``Failed``... The rule
# is read from botocore's output shape: a list member with one of these names whose items
# carry an error code (directly or in an ``Error`` structure). Lists with no code (ECS's
# ``failures`` hold a free-text ``reason``) and reads (``BatchGet*``, whose misses are an
# answer, not a failure) are left alone; DynamoDB's ``UnprocessedItems`` is a map of
# throttled writes to resend, not a refusal, and is its caller's business.
_FAILURE_LIST = re.compile(r"(?i)^(unsuccessful|failures|failed[a-z]*)$")
_FAILURE_CODE = ("ErrorCode", "errorCode", "FailureCode", "failureCode", "Code", "code")
_FAILURE_MESSAGE = ("ErrorMessage", "errorMessage", "FailureReason", "failureReason", "FailureDescription",
                    "Message", "message")  # fmt: skip
_FAILURE_NESTED = ("Error", "error")
_READ_BATCH = re.compile(r"Batch(Get|Check|Describe|Detect)")
_failure_members: dict[tuple[str, str], tuple[str, ...]] = {}


def failure_members(op_model: OperationModel) -> tuple[str, ...]:
    """The members of ``op_model``'s answer that list per-item failures (see above)."""
    key = (op_model.service_model.service_name, op_model.name)
    found = _failure_members.get(key)
    if found is None:
        verb = re.match(r"[A-Z][a-z]*", op_model.name)
        reads = verb is not None and verb.group(0) in READ_VERBS - {"Batch"}
        shape = op_model.output_shape
        found = ()
        if shape is not None and not reads and not _READ_BATCH.match(op_model.name):
            found = tuple(
                name for name, member in shape.members.items()
                if _FAILURE_LIST.match(name) and _kind(member) == "list" and _kind(member.member) == "structure"
                and _carries_code(member.member)
            )  # fmt: skip
        _failure_members[key] = found
    return found


def _carries_code(item: Shape) -> bool:
    members = item.members  # type: ignore[attr-defined]
    if any(name in members for name in _FAILURE_CODE):
        return True
    return any(
        name in members and _kind(members[name]) == "structure"
        and any(code in members[name].members for code in _FAILURE_CODE)
        for name in _FAILURE_NESTED
    )  # fmt: skip


def partial_failure(op_model: OperationModel, result: Mapping[str, Any], what: str,
                    secrets: Iterable[str] = ()) -> ActionError | None:
    """An ActionError for the first refused item of a call's answer, or None: the item's own
    code (``InvalidVpcEndpoint.NotFound``, ``ImageNotFound``), so an undo's "already gone"
    codes still apply and any other refusal fails the undo that met it, not a later one.

    ``applied`` says the call did part of its work (another list of the answer is not empty:
    BatchDeleteImage's ``imageIds``), so a step's effect is journalled for its undo."""
    members = failure_members(op_model)
    failed = [item for name in members for item in (result.get(name) or []) if isinstance(item, Mapping)]
    if not failed:
        return None
    first = failed[0]
    detail = next((first[n] for n in _FAILURE_NESTED if isinstance(first.get(n), Mapping)), first)
    code = next((str(detail[n]) for n in _FAILURE_CODE if detail.get(n)), "PartialFailure")
    message = next((str(detail[n]) for n in _FAILURE_MESSAGE if detail.get(n)), code)
    more = f" (and {len(failed) - 1} more refused item(s))" if len(failed) > 1 else ""
    done = any(isinstance(value, list) and value for name, value in result.items() if name not in members)
    return ActionError(
        KIND,
        f"{what}: {redact(message, secrets)}{more}",
        code=code,
        transient=code in THROTTLING_CODES,
        result=result,
        applied=done,
    )


def translate_error(error: Exception, what: str, secrets: Iterable[str] = ()) -> ActionError:
    """An ActionError for a botocore failure of ``what`` (``service.operation``)."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code") or "Unknown")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        message = redact(_readable(str(info.get("Message") or code), int(status)), secrets)
        return ActionError(
            KIND,
            f"{what}: {message}",
            code=code,
            transient=code in THROTTLING_CODES or int(status) >= 500,
            result={"Error": plain(info)},
        )
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        endpoint = error.kwargs.get("endpoint_url") or "the endpoint"
        return ActionError(
            KIND,
            f"{what}: cannot reach {endpoint}: {type(error).__name__}",
            code="ConnectionError",
            transient=True,
        )
    if isinstance(error, ParamValidationError):
        return ActionError(KIND, f"{what}: {param_report(error)}", code="ParamValidation")
    from botocore.parsers import ResponseParserError

    if isinstance(error, ResponseParserError):
        return ActionError(
            KIND, f"{what}: {redact(_readable(str(error), 0), secrets)}", code="ResponseParserError",
            transient=True,
        )
    if isinstance(error, UnknownServiceError):
        return ActionError(KIND, f"{what}: unknown service", code="InvalidAction")
    if isinstance(error, BotoCoreError):
        # NoCredentialsError, NoRegionError, ProfileNotFound...: configuration, not data.
        return ActionError(
            KIND, f"{what}: {redact(str(error), secrets)}", code=type(error).__name__
        )
    raise error


# --------------------------------------------------------------------------- the kind


@register
class AwsKind(ActionKind):
    """``aws: service.operation`` + ``params`` (+ ``connection``, + ``wait``)."""

    key = "aws"
    extra_keys = frozenset({"params", "connection", "wait"})
    connection_kind = "aws"

    # -- connections

    def connect(self, spec: Mapping[str, Any]) -> AwsConnection:
        return AwsConnection.from_spec(spec)

    def disconnect(self, handle: Any) -> None:
        handle.close()

    def check_connection(self, spec: Mapping[str, Any]) -> Iterator[CheckIssue]:
        """Static checks of a plan connection mapping of kind ``aws``."""
        yield from unknown_keys(spec, CONNECTION_KEYS, "aws connection")
        for key in ("connect_timeout", "read_timeout", "max_attempts"):
            if not positive_or_absent(spec.get(key)):
                yield CheckIssue((key,), f"{key} must be a positive number")
        # Read by the engine's rollback, not by the clients (engine/settling.py).
        minutes = spec.get("settle_minutes")
        if not positive_or_absent(minutes) or (isinstance(minutes, (int, float)) and minutes > MAX_SETTLE_MINUTES):
            yield CheckIssue(("settle_minutes",), f"settle_minutes must be a number of minutes, 0 < N <= {MAX_SETTLE_MINUTES:g}")
        mode = spec.get("retry_mode")
        if mode is not None and not is_reference(mode) and mode not in RETRY_MODES:
            yield CheckIssue(("retry_mode",), f"retry_mode must be one of {', '.join(RETRY_MODES)}, not {mode!r}"
                             " (unset: AWS_RETRY_MODE or the profile's retry_mode, else standard)")

    # -- static checks

    def check_stamp(self) -> str | None:
        return aws_models.stamp()

    def writes(self, action: Mapping[str, Any]) -> bool:
        try:
            _, operation = parse_operation(action.get(self.key))
        except ValueError:
            return True
        return not operation.startswith(READ_ONLY_PREFIXES)

    def check(self, action: Mapping[str, Any]) -> Iterator[CheckIssue]:
        target = action.get(self.key)
        if is_reference(target):
            return
        try:
            service, operation = parse_operation(target)
        except ValueError as exc:
            yield CheckIssue((self.key,), str(exc))
            return
        if service not in aws_models.services():
            yield CheckIssue(
                (self.key,), f"unknown AWS service {service!r}{suggest(service, aws_models.services())}"
            )
            return
        operations = aws_models.operations(service)
        if operation not in operations:
            yield CheckIssue(
                (self.key,),
                f"unknown operation {operation!r} of {service}{suggest(operation, operations)}",
            )
            return
        connection = action.get("connection")
        if connection is not None and not isinstance(connection, str):
            yield CheckIssue(("connection",), "connection must be the name of a plan connection")
        params = action.get("params")
        if params is not None and not isinstance(params, Mapping) and not is_reference(params):
            yield CheckIssue(("params",), "params must be a mapping")
        else:
            yield from _check_params(params, service, operations[operation], ("params",))
        if "wait" in action:
            yield from _check_wait(action["wait"], service)

    # -- execution

    def execute(self, action: Mapping[str, Any], ctx: ActionContext) -> Any:
        what = str(action.get(self.key))
        try:
            service, operation = parse_operation(action.get(self.key))
        except ValueError as exc:
            raise ActionError(KIND, str(exc), code="InvalidAction") from None
        handle = ctx.connections.get(self, action.get("connection"))
        # Which client (resending or send-once) from botocore's facts, so that a service whose
        # calls in a run all send once (iam, s3, ssm in the flagship) never builds the other.
        choice = AwsConnection.client_for(action, token=ctx.idempotency_token is not None)
        try:
            client = handle.client(service, resend=choice is None or choice[1])
        except Exception as exc:  # noqa: BLE001 - translate_error re-raises what it cannot map
            raise translate_error(exc, what) from None
        api_name = client.meta.method_to_api_mapping.get(operation)
        once = api_name is not None and sends_once(client.meta.service_model.operation_model(api_name), ctx)
        if once != (choice is not None and not choice[1]):  # the facts disagree with the model
            client = handle.client(service, resend=not once)

        # method_to_api_mapping holds API calls only, so `ec2.close` or `s3.get_paginator`
        # can never be reached through a plan.
        if api_name is None:
            raise ActionError(KIND, f"{what}: unknown operation", code="InvalidAction")
        op_model = client.meta.service_model.operation_model(api_name)

        params = action.get("params") or {}
        if not isinstance(params, Mapping):
            raise ActionError(KIND, f"{what}: params must be a mapping", code="ParamValidation")
        params = copy.deepcopy(dict(params))
        if ctx.tags:
            params = with_tags(service, op_model, params, ctx.tags)
        params = with_bucket_region(service, op_model.name, params, client.meta.region_name)
        if ctx.idempotency_token:
            # botocore would fill these with a fresh uuid4 on every call; a token derived
            # from the step makes a retried or resumed create return the first resource.
            for name, member in op_model.input_shape.members.items():
                if member.metadata.get("idempotencyToken") and name not in params:
                    params[name] = ctx.idempotency_token
        secrets = _sensitive_values(params, op_model.input_shape, set())

        try:
            response = getattr(client, operation)(**params)
        except Exception as exc:  # noqa: BLE001 - translate_error re-raises what it cannot map
            error = translate_error(exc, what, secrets)
            error.ambiguous = once and may_have_taken_effect(exc)
            raise error from None
        response.pop("ResponseMetadata", None)
        result = plain(response)
        refused = partial_failure(op_model, result, what, secrets)
        if refused is not None:
            raise refused

        wait = action.get("wait")
        if wait:
            try:
                self._wait(client, service, wait, ctx)
            except ActionError as exc:
                # The call itself took effect: hand its result over so the engine can still
                # record outputs and the undo.
                exc.result = result
                exc.applied = True
                raise
        return result

    def _wait(self, client: Any, service: str, wait: Mapping[str, Any], ctx: ActionContext) -> None:
        name = str(wait.get("waiter"))
        what = f"{service} waiter {name}"
        delay = float(wait.get("delay") or DEFAULT_WAIT_DELAY)
        attempts = int(wait.get("max_attempts") or DEFAULT_WAIT_MAX_ATTEMPTS)
        params = dict(wait.get("params") or {})
        try:
            waiter = client.get_waiter(name)
        except ValueError:
            raise ActionError(KIND, f"{what}: unknown waiter", code="InvalidAction") from None
        deadline = time.monotonic() + ctx.timeout if ctx.timeout else None

        # One poll per waiter call (MaxAttempts=1) and our own sleep between polls, so that a
        # cancelled run or a step timeout stops the wait instead of botocore's time.sleep.
        for attempt in range(1, attempts + 1):
            try:
                waiter.wait(**params, WaiterConfig={"Delay": delay, "MaxAttempts": 1})
                return
            except WaiterError as exc:
                reason = str(exc.kwargs.get("reason", ""))
                if not reason.startswith("Max attempts exceeded"):  # a failure state, or an error
                    raise ActionError(KIND, f"{what}: {reason}", code="WaiterFailed") from None
            except Exception as exc:  # noqa: BLE001 - translate_error re-raises what it cannot map
                raise translate_error(exc, what) from None
            if attempt == attempts:
                break
            if deadline is not None and time.monotonic() + delay > deadline:
                raise ActionError(KIND, f"{what}: step timeout reached", code="WaiterFailed")
            if ctx.cancel.wait(delay):
                raise ActionError(KIND, f"{what}: cancelled", code="Cancelled")
        raise ActionError(
            KIND,
            f"{what}: not satisfied after {attempts} attempt(s), {delay:g} s apart",
            code="WaiterFailed",
        )

    def describe(self, action: Mapping[str, Any]) -> str:
        return f"aws {action.get(self.key)}"
