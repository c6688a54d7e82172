"""What a plan may read from the machine it runs on: files and Python modules in its own
directory. A plan handed around (or written in a hurry) must not run ``sql_file:
../../../etc/passwd`` as SQL or ``call: os:getcwd``. An action that really needs something
outside says so with ``outside_plan_dir: true``, where a reviewer sees it.

The literal values are checked when the plan is loaded (exit 2, nothing ran); values that
come from references are checked by the action kinds just before they run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from atomicops.errors import Problem
from atomicops.plan.refs import is_reference
from atomicops.plan.source import Path as KeyPath
from atomicops.plan.source import SourceMap, format_path

OPT_OUT = "outside_plan_dir"
HINT = f"keep it in the plan's directory, or say `{OPT_OUT}: true` on the action"


def within(base_dir: str | Path, path: str | Path) -> bool:
    """Whether ``path`` (relative to ``base_dir``), symlinks followed, lies inside it."""
    base = Path(base_dir).resolve()
    return (base / path).resolve().is_relative_to(base)


def module_beside(base_dir: str | Path, target: str) -> bool:
    """Whether the top-level module of ``package.module:function`` is a file or package
    in ``base_dir`` (checked without importing anything)."""
    top = target.partition(":")[0].split(".")[0]
    base = Path(base_dir)
    return (base / f"{top}.py").is_file() or (base / top).is_dir()


def problems(raw: Mapping[str, Any], base_dir: str, smap: SourceMap) -> list[Problem]:
    """The literal ``sql_file`` and ``call`` values of a plan that reach outside it."""
    from atomicops.plan.loader import op_at  # the loader imports this module

    found = []
    beside: dict[str, bool] = {}  # target -> module_beside, asked once per distinct target
    for path, action in _actions(raw, ()):
        if action.get(OPT_OUT) is True:
            continue
        sql_file, call = action.get("sql_file"), action.get("call")
        if isinstance(sql_file, str) and not is_reference(sql_file) and not within(base_dir, sql_file):
            where: KeyPath = (*path, "sql_file")
            found.append(Problem(f"sql_file {sql_file!r} is outside the plan's directory; {HINT}",
                                 file=smap.file, line=smap.line(where), op=op_at(raw, where), key=format_path(where)))
        if isinstance(call, str) and not is_reference(call) and ":" in call and not _beside(beside, base_dir, call):
            where = (*path, "call")
            found.append(Problem(f"call {call!r}: module {call.split(':')[0]!r} is not in the plan's directory; {HINT}",
                                 file=smap.file, line=smap.line(where), op=op_at(raw, where), key=format_path(where)))
    return found


def _beside(memo: dict[str, bool], base_dir: str | Path, call: str) -> bool:
    if call not in memo:
        memo[call] = module_beside(base_dir, call)
    return memo[call]


def _actions(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, Mapping[str, Any]]]:
    if isinstance(value, str):
        return  # most values: no ABC check for them
    if isinstance(value, (dict, Mapping)):
        if "sql_file" in value or "call" in value:
            yield path, value
        for k, v in value.items():
            yield from _actions(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _actions(v, (*path, i))
