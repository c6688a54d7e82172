"""``call``: a Python function for data work, ``package.module:function`` with ``args``.

The function is called as ``function(ctx, **args)`` with the run's
:class:`~atomicops.actions.base.ActionContext` (connections, progress, cancellation) and
returns plain data (a mapping) over which the step's ``outputs`` are read. Modules next to
the plan file are importable, without the plan's directory being added to ``sys.path``
(which every thread and every other plan in the process would see).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
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
        fn = resolve_target(target, ctx.base_dir)
        return fn(ctx, **dict(action.get("args") or {}))

    def describe(self, action: Mapping[str, Any]) -> str:
        return f"call {action.get('call')}"


# Loading a plan's module and registering it in sys.modules is one step for other threads.
_LOADING = threading.Lock()


def resolve_target(target: str, base_dir: str = ".") -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    try:
        module = _import(module_name, base_dir)
    except ImportError as exc:
        raise ActionError("call", f"cannot import {module_name}: {exc}", code="ImportError") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ActionError("call", f"{module_name} has no function {attr}", code="NoSuchFunction")
    return fn


def _import(module_name: str, base_dir: str) -> ModuleType:
    """``module_name`` from the plan's directory when it is there, else from ``sys.path``.

    Each package level is found by a spec for that directory alone. A module of the same name
    loaded from another plan's directory is replaced, so each plan runs its own code.
    """
    parts = module_name.split(".")
    search = [str(Path(base_dir).resolve())]
    with _LOADING:
        if importlib.machinery.PathFinder.find_spec(parts[0], search) is None:
            return importlib.import_module(module_name)
        module: ModuleType | None = None
        for i in range(len(parts)):
            name = ".".join(parts[: i + 1])
            loaded = sys.modules.get(name)
            if loaded is not None and _within(loaded, search):
                module = loaded
            else:
                spec = importlib.machinery.PathFinder.find_spec(name, search)
                if spec is None or spec.loader is None:
                    raise ModuleNotFoundError(f"no module named {name!r} in {base_dir}", name=name)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module  # before running it: its own imports may name it
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            search = list(getattr(module, "__path__", []))
        assert module is not None
        return module


def _within(module: ModuleType, search: list[str]) -> bool:
    origin = getattr(module, "__file__", None)
    if origin is None:
        return False
    where = Path(origin).resolve().parent
    if hasattr(module, "__path__"):  # a package: its __init__.py is one level further down
        where = where.parent
    return str(where) in search
