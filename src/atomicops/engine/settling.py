"""How long an undo waits for AWS to release what a deleted resource held.

Interface endpoints, Fargate tasks and Aurora release their network interfaces minutes after
their own delete returned, and nothing bounds it (Terraform waits up to 10 minutes for a
security group, 20 for a subnet). An undo refused with a settling code (``DependencyViolation``,
``*InUse*``, ``Invalid*State*``) is retried for a budget of minutes:

- ``atomicops rollback --settle-minutes N`` (this rollback, every undo);
- else the aws connection's ``settle_minutes`` (kept in the journal's recorded plan, so
  resume's and apply's automatic rollbacks use it too);
- else 15 minutes against real AWS (the connection has no ``endpoint_url``), 3 on an
  emulator, where nothing is ever released later.

``ATOMICOPS_SETTLE_DELAY`` (default 2 s, the first wait) scales every wait: tests make it small.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from atomicops.plan.model import Retry

REAL_AWS_MINUTES = 15.0
SANDBOX_MINUTES = 3.0

FIRST_WAIT = 2.0
GROWTH = 1.5
LONGEST_WAIT = 30.0


def settling_retry(minutes: float) -> Retry:
    """Tries 2 s apart growing x1.5 to 30 s, as many as fit in ``minutes`` (at least two)."""
    # The connection key's bound (about 90 tries 30 s apart: a Retry holds 100). Imported
    # here: only an undo that meets a settling code gets this far.
    from atomicops.actions.aws import MAX_SETTLE_MINUTES

    scale = float(os.environ.get("ATOMICOPS_SETTLE_DELAY", str(FIRST_WAIT))) / FIRST_WAIT
    budget, waited, wait, attempts = min(minutes, MAX_SETTLE_MINUTES) * 60, 0.0, FIRST_WAIT, 1
    while waited < budget and attempts < 100:
        waited += wait
        attempts += 1
        wait = min(wait * GROWTH, LONGEST_WAIT)
    return Retry(attempts=max(attempts, 2), delay=FIRST_WAIT * scale, backoff=GROWTH,
                 max_delay=LONGEST_WAIT * scale, on="any")


def settle_minutes(connections: Any, action: Mapping[str, Any], override: float | None = None) -> float:
    """The budget for ``action``'s undo (see the module's docstring). ``connections`` is the
    run's :class:`~atomicops.actions.base.Connections`."""
    if override is not None:
        return override
    if "aws" not in action:
        return SANDBOX_MINUTES
    name = action.get("connection")
    names = connections.names_of_kind("aws")
    if not isinstance(name, str):
        name = names[0] if names else None
    spec: Mapping[str, Any] = connections.spec(name) if name in names else {}
    given = spec.get("settle_minutes")
    if isinstance(given, (int, float)) and not isinstance(given, bool) and given > 0:
        return float(given)
    return SANDBOX_MINUTES if spec.get("endpoint_url") else REAL_AWS_MINUTES
