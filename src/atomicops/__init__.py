"""atomicops: run a migration runbook as a graph of atomic, reversible, journalled operations.

The functions here are the Python API; the ``atomicops`` command is a thin shell over them.
"""

from __future__ import annotations

from atomicops.api import (
    apply,
    environment,
    history,
    plan_view,
    rollback,
    status,
    unlock,
    validate,
    verify,
)
from atomicops.errors import AtomicOpsError

__all__ = [
    "AtomicOpsError",
    "apply",
    "environment",
    "history",
    "plan_view",
    "rollback",
    "status",
    "unlock",
    "validate",
    "verify",
]
__version__ = "0.1.0"
