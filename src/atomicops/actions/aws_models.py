"""What atomicops needs to know of botocore's service models, read once.

The static checks of the ``aws`` kind and the settling rules (engine/redo.py) ask small
questions of the models: which services exist, a service's operations in boto3 spelling,
its waiters and the call each one polls, which calls carry an idempotency token. Reading a
model to answer them means parsing its JSON (ec2's is 2 MB), so the answers, the *facts*,
are kept between processes (atomicops/derived.py) under a stamp of botocore's version and
of the files that decide them. Only a check of a call's parameters needs the model itself
(``service_model``), and validation remembers those checks once they pass.

The process has one botocore session and one loader: validation, settling and the AWS
connections' clients (actions/aws.py) share the service models parsed once.
"""

from __future__ import annotations

import atexit
import os
import threading
from functools import cache, lru_cache
from typing import Any

import botocore
from botocore import xform_name

from atomicops import derived

_NAME = "botocore-facts"
_lock = threading.Lock()


@lru_cache(maxsize=1)
def session() -> Any:
    """The process's botocore session (imported on first use: a warm validate never needs it)."""
    import botocore.session

    return botocore.session.get_session()


def shared_loader() -> Any:
    return session().get_component("data_loader")


def dedupe_search_paths() -> None:
    """boto3 appends its own data directory to the loader's search path for each Session it
    makes; with one loader shared by every connection of the process, keep it once."""
    with _lock:
        paths = shared_loader().search_paths
        paths[:] = list(dict.fromkeys(paths))


@cache
def service_model(service: str) -> Any:
    """botocore's ServiceModel for ``service`` (loaded from disk once per process)."""
    return session().get_service_model(service)


@lru_cache(maxsize=1)
def stamp() -> str:
    """What the facts and the ``aws`` kind's checks depend on, as one digest."""
    # Models come with botocore, or from AWS_DATA_PATH and ~/.aws/models (botocore's loader
    # reads both); the facts are computed here and checked in aws.py.
    here = os.path.dirname(os.path.abspath(__file__))
    return derived.stamp(
        botocore.__version__,
        os.environ.get("AWS_DATA_PATH"),
        files=[
            os.path.join(os.path.expanduser("~"), ".aws", "models"),
            os.path.join(here, "aws_models.py"),
            os.path.join(here, "aws.py"),
        ],
    )


class _Facts:
    """The facts of every service asked about, loaded from the cache and added to."""

    def __init__(self) -> None:
        self.key = stamp()
        data = derived.load(_NAME, self.key)
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            data = {"services": None, "models": {}}
        self.data: dict[str, Any] = data
        self._dirty = False

    def services(self) -> tuple[str, ...]:
        if self.data.get("services") is None:
            self.data["services"] = sorted(shared_loader().list_available_services("service-2"))
            self._changed()
        return tuple(self.data["services"])

    def of(self, service: str) -> dict[str, Any]:
        facts = self.data["models"].get(service)
        if facts is None:
            facts = self.data["models"][service] = _read(service)
            self._changed()
        return facts

    def _changed(self) -> None:
        if not self._dirty:
            self._dirty = True
            atexit.register(self.save)

    def save(self) -> None:
        if self._dirty:
            derived.save(_NAME, self.key, self.data)
            self._dirty = False


def _read(service: str) -> dict[str, Any]:
    """A service's facts, from its raw model (no ServiceModel objects are built)."""
    loader = shared_loader()
    model = loader.load_service_model(service, "service-2")
    shapes = model.get("shapes", {})
    operations: dict[str, str] = {}
    tokens: list[str] = []
    for name, spec in model.get("operations", {}).items():
        operations[xform_name(name)] = name
        members = shapes.get((spec.get("input") or {}).get("shape"), {}).get("members", {})
        if any(m.get("idempotencyToken") for m in members.values()):
            tokens.append(name)
    from botocore.exceptions import DataNotFoundError

    try:
        waiters = loader.load_service_model(service, "waiters-2").get("waiters", {})
    except DataNotFoundError:
        waiters = {}
    return {
        "operations": operations,
        "tokens": tokens,
        "waiters": {xform_name(n): [n, w.get("operation")] for n, w in waiters.items()},
    }


@lru_cache(maxsize=1)
def _facts() -> _Facts:
    return _Facts()


def services() -> tuple[str, ...]:
    """Every service botocore knows (boto3's names: ``ec2``, ``rds``...)."""
    with _lock:
        return _facts().services()


def operations(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name, as boto3 builds a client's methods."""
    with _lock:
        return _facts().of(service)["operations"]  # type: ignore[no-any-return]


def waiters(service: str) -> dict[str, str]:
    """boto3 waiter name -> the model's waiter name."""
    with _lock:
        return {snake: name for snake, (name, _) in _facts().of(service)["waiters"].items()}


def waiter_operation(service: str, waiter: str) -> str:
    """The API operation a waiter (boto3 name) polls."""
    with _lock:
        return str(_facts().of(service)["waiters"][waiter][1])


def takes_token(call: str) -> bool:
    """Whether ``service.operation`` (boto3 spelling) has a member the service keys
    idempotency on (botocore fills it with a fresh token unless the caller sets it)."""
    service, _, operation = call.partition(".")
    if service not in services():
        return False
    with _lock:
        facts = _facts().of(service)
    api = facts["operations"].get(operation)
    return api is not None and api in facts["tokens"]
