"""Whether a ``call: package.module:function`` names a function that exists, and which plan
connections it opens, found without importing anything: importing runs the module's top
level, and validation runs nothing.

The module is looked up as a file (``package/module.py`` or ``package/module/__init__.py``)
beside the plan first, then on ``sys.path``, the order a run imports it in; the function is a
name its top level binds (``def``, ``class``, an assignment or an import).
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


def call_target_problem(target: str, plan_dir: Path) -> str | None:
    """Why ``target`` cannot be called, or None when it can (or cannot be told statically)."""
    module, _, function = target.partition(":")
    if module in sys.builtin_module_names:
        return None  # compiled into the interpreter: no file to read, its names known only once imported
    source = _module_file(module, [plan_dir, *(Path(p) for p in sys.path if p)])
    if source is None:
        return f"cannot find module {module!r} beside the plan ({plan_dir}) or on the Python path"
    if source.suffix != ".py":
        return None  # a compiled module: its names are known only once it is imported
    try:
        info = os.stat(source)
        names = _names_of(str(source), info.st_mtime_ns, info.st_size)
    except (OSError, SyntaxError, ValueError) as exc:
        return f"cannot read module {module!r} ({source}): {exc}"
    if function in names or "*" in names:
        return None
    return f"module {module!r} ({source}) has no function {function!r}"


def _names_of(source: str, mtime_ns: int, size: int) -> frozenset[str]:
    """The names a module's top level binds."""
    return _parsed(source, mtime_ns, size)[0]


@lru_cache(maxsize=256)
def _parsed(source: str, mtime_ns: int, size: int) -> tuple[frozenset[str], dict[str, tuple[ConnectionUse, ...]]]:
    """What validation reads from a module: the names its top level binds and the connections
    each function opens. Parsed once per version of the file (the key holds its mtime and
    size: a module edited between two validations is parsed again). A plan of 10,000 `call`
    steps into one module parsed it 20,000 times."""
    del mtime_ns, size  # the cache key only
    tree = ast.parse(Path(source).read_text(), source)
    return frozenset(_bound_names(tree.body)), _uses_in(tree)


def _module_file(module: str, roots: Iterable[Path]) -> Path | None:
    parts = module.split(".")
    for root in roots:
        base = root.joinpath(*parts[:-1])
        for candidate in (base / f"{parts[-1]}.py", base / parts[-1] / "__init__.py"):
            if candidate.is_file():
                return candidate
        if base.is_dir():
            compiled = next(iter(base.glob(f"{parts[-1]}.*.so")), None) or next(iter(base.glob(f"{parts[-1]}.*.pyd")), None)
            if compiled is not None:
                return compiled
    return None


def _bound_names(body: Iterable[ast.stmt]) -> Iterator[str]:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                yield from (n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            yield node.target.id
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield alias.asname or alias.name.split(".")[0]
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            # Definitions under `if TYPE_CHECKING:` / `try: import x` are names all the same.
            yield from _bound_names(node.body)
            yield from _bound_names(getattr(node, "orelse", []))
            for handler in getattr(node, "handlers", []):
                yield from _bound_names(handler.body)


# ------------------------------------------------------------------ connections a function opens


@dataclass(frozen=True)
class ConnectionUse:
    """One ``connection_of(ctx, KIND[, NAME])`` in a ``call`` function (or in a function of its
    module it calls): what `validate` needs to check the operation comes after what the
    connection is built from."""

    kind: str  # the action kind given: "aws", "sql", "nats"
    name: str | None  # a literal name; None with no param: the kind's default connection
    param: str | None  # the name is this argument of the function (the step's `args` give it)
    line: int


def connections_used(target: str, plan_dir: Path) -> tuple[ConnectionUse, ...]:
    """The plan connections the function ``target`` opens with ``connection_of``, as far as
    its source says with literals: a kind or name computed at run time is not seen (nor is
    a connection reached other than through ``connection_of``)."""
    module, _, function = target.partition(":")
    source = _module_file(module, [plan_dir, *(Path(p) for p in sys.path if p)])
    if source is None or source.suffix != ".py":
        return ()
    try:
        info = os.stat(source)
        return _parsed(str(source), info.st_mtime_ns, info.st_size)[1].get(function, ())
    except (OSError, SyntaxError, ValueError):
        return ()  # call_target_problem reports an unreadable module


def _uses_in(tree: ast.Module) -> dict[str, tuple[ConnectionUse, ...]]:
    """Per top-level function: its own ``connection_of`` calls and those of the module's
    functions it calls by name (a helper that opens the connection for it)."""
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    own = {name: list(_direct_uses(fn)) for name, fn in functions.items()}
    calls = {name: {c.func.id for c in ast.walk(fn)
                    if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in functions}
             for name, fn in functions.items()}
    found: dict[str, tuple[ConnectionUse, ...]] = {}
    for name in functions:
        uses, seen, todo = list(own[name]), {name}, sorted(calls[name])
        while todo:
            helper = todo.pop()
            if helper in seen:
                continue
            seen.add(helper)
            # A helper's own argument is not the step's: its uses by argument are not known.
            uses += [u for u in own[helper] if u.param is None]
            todo += sorted(calls[helper])
        found[name] = tuple(uses)
    return found


def _direct_uses(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ConnectionUse]:
    params = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)}
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if called != "connection_of":
            continue
        given = {k.arg: k.value for k in node.keywords if k.arg}
        kind = node.args[1] if len(node.args) > 1 else given.get("kind")
        name = node.args[2] if len(node.args) > 2 else given.get("name")
        if not (isinstance(kind, ast.Constant) and isinstance(kind.value, str)):
            continue
        if name is None or (isinstance(name, ast.Constant) and name.value is None):
            yield ConnectionUse(kind.value, None, None, node.lineno)
        elif isinstance(name, ast.Constant) and isinstance(name.value, str):
            yield ConnectionUse(kind.value, name.value, None, node.lineno)
        elif isinstance(name, ast.Name) and name.id in params:
            yield ConnectionUse(kind.value, None, name.id, node.lineno)
