"""Whether a ``call: package.module:function`` names a function that exists, found without
importing anything: importing runs the module's top level, and validation runs nothing.

The module is looked up as a file (``package/module.py`` or ``package/module/__init__.py``)
beside the plan first, then on ``sys.path``, the order a run imports it in; the function is a
name its top level binds (``def``, ``class``, an assignment or an import).
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterable, Iterator
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


@lru_cache(maxsize=256)
def _names_of(source: str, mtime_ns: int, size: int) -> frozenset[str]:
    """The names a module's top level binds, parsed once per version of the file (the key
    holds its mtime and size: a module edited between two validations is parsed again).
    A plan of 10,000 `call` steps into one module parsed it 20,000 times."""
    del mtime_ns, size  # the cache key only
    tree = ast.parse(Path(source).read_text(), source)
    return frozenset(_bound_names(tree.body))


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
