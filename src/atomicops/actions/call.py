"""``call``: a Python function for data work, ``package.module:function`` with ``args``.

The function is called as ``function(ctx, **args)`` with the run's
:class:`~atomicops.actions.base.ActionContext` (connections, progress, cancellation) and
returns plain data (a mapping) over which the step's ``outputs`` are read. Modules next to
the plan file are importable.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from atomicops.actions.base import ActionContext, ActionKind, CheckIssue
from atomicops.actions.registry import register
from atomicops.errors import ActionError
from atomicops.plan import confine

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@register
class CallKind(ActionKind):
    key = "call"
    extra_keys = frozenset({"args", confine.OPT_OUT})

    def check(self, action: Mapping[str, Any]) -> Iterable[CheckIssue]:
        target = action.get("call")
        if isinstance(target, str) and "${" in target:
            pass  # resolved at run time
        elif not isinstance(target, str) or not _TARGET.match(target):
            yield CheckIssue(("call",), "call takes `package.module:function`")
        args = action.get("args")
        if args is not None and not isinstance(args, Mapping):
            yield CheckIssue(("args",), "args maps parameter names to values")

    def execute(self, action: Mapping[str, Any], ctx: ActionContext) -> Any:
        target = str(action["call"])
        if action.get(confine.OPT_OUT) is not True and not confine.module_beside(ctx.base_dir, target):
            raise ActionError(
                "call", f"{target}: the module is not in the plan's directory; {confine.HINT}", code="OutsidePlanDir"
            )
        fn = resolve_target(target)
        return fn(ctx, **dict(action.get("args") or {}))

    def describe(self, action: Mapping[str, Any]) -> str:
        return f"call {action.get('call')}"


def resolve_target(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ActionError("call", f"cannot import {module_name}: {exc}", code="ImportError") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ActionError("call", f"{module_name} has no function {attr}", code="NoSuchFunction")
    return fn
