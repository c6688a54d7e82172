"""atomicops: run a migration runbook as a graph of atomic, reversible, journalled operations.

The functions here are the Python API; the ``atomicops`` command is a thin shell over them.
They are imported on first use (PEP 562): ``import atomicops.cli`` or ``atomicops.journal``
must not pay for the engine, pydantic and every action kind (docs/performance.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name == "AtomicOpsError":
        return importlib.import_module("atomicops.errors").AtomicOpsError
    if name in __all__:
        return getattr(importlib.import_module("atomicops.api"), name)
    raise AttributeError(f"module 'atomicops' has no attribute {name!r}")
