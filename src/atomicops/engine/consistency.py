"""Eventual consistency on the way forward: an id this run just created, not yet visible.

EC2 answers ``InvalidVpcID.NotFound`` / ``InvalidGroup.NotFound``... to a call that names a
VPC or a group created a moment ago by another call, and documents it as a normal, passing
state ("Eventual consistency in the EC2 API"); IAM does the same with ``NoSuchEntity`` for a
role or policy just created ("IAM eventual consistency"). The engine waits it out, briefly,
only when the call names a value this run journalled as an output: otherwise a NotFound means
the thing is not there (a typo, something deleted by hand) and waiting would only delay the
failure. Never on an undo, where NotFound means "already gone", and never for a call whose
answer was lost (``ambiguous``): that one is the probe's business (engine/executor.py).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from atomicops.errors import ActionError
from atomicops.plan.model import Retry

# EC2's "<Resource>ID.NotFound" family (InvalidVpcID, InvalidSubnetID, InvalidGroup,
# InvalidRouteTableID, InvalidInternetGatewayID, InvalidVpcEndpointId...) and IAM's
# NoSuchEntity: the services that document eventual consistency of ids they just returned.
NOT_YET_VISIBLE = ("Invalid*.NotFound", "NoSuchEntity")


def not_yet_visible(error: ActionError) -> bool:
    """An error that, for an id just created, means "not visible yet" (and was answered)."""
    return not error.ambiguous and any(fnmatch.fnmatchcase(error.code or "", p) for p in NOT_YET_VISIBLE)


def names_fresh(action: Mapping[str, Any], fresh: AbstractSet[str]) -> bool:
    """Whether a parameter of ``action`` (anywhere inside its ``params``) is one of ``fresh``,
    the outputs this run journalled."""
    return bool(fresh) and any(value in fresh for value in _strings(action.get("params")))


def waits(error: ActionError, action: Mapping[str, Any], fresh: AbstractSet[str]) -> bool:
    """The rule: wait for visibility when the call names an id this run made and AWS says
    it does not know it."""
    return not_yet_visible(error) and names_fresh(action, fresh)


def visibility_retry() -> Retry:
    """About 30 s: 1, 2, 4, 8, 8, 8 s between 7 tries. ``ATOMICOPS_VISIBILITY_DELAY`` scales
    the waits (tests make it small)."""
    delay = float(os.environ.get("ATOMICOPS_VISIBILITY_DELAY", "1.0"))
    return Retry(attempts=7, delay=delay, backoff=2.0, max_delay=8 * delay, on="any")


def output_values(outputs: Mapping[str, Any]) -> Iterator[str]:
    """The strings among a step's outputs (ids, ARNs, names): what a later call may name."""
    return _strings(outputs)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
