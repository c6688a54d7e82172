"""Load a plan file, apply ``--var``/``--vars-file`` overrides, validate it completely.

:func:`load_plan` either returns a :class:`LoadedPlan` that is safe to run or raises
:class:`~atomicops.errors.PlanInvalid` listing *every* problem found, each with file, line,
operation and key. Nothing runs before this has succeeded.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from atomicops.errors import PlanInvalid, Problem, UsageError
from atomicops.graph import Graph
from atomicops.plan import confine
from atomicops.plan.model import Plan
from atomicops.plan.names import OFFERED_MARK
from atomicops.plan.source import (
    SourceMap,
    did_you_mean,
    format_path,
    gc_paused,
    load_yaml,
    read_source,
)


@dataclass
class LoadedPlan:
    plan: Plan
    file: str
    base_dir: str
    source: SourceMap
    deps: dict[str, set[str]]
    warnings: list[Problem] = field(default_factory=list)

    @cached_property
    def graph(self) -> Graph:
        # Built once: validation, selection, waves and the walk all ask for it.
        return Graph.build([op.id for op in self.plan.operations], self.deps)

    def phase_index(self, op_id: str) -> int:
        return self.plan.phases.index(self.plan.phase_of(self.plan.operation(op_id)))

    def forward_waves(self) -> list[tuple[str, list[list[str]]]]:
        """Per phase (a barrier), the waves of operations that can run together."""
        by_phase: dict[str, list[str]] = {phase: [] for phase in self.plan.phases}
        for op in self.plan.operations:  # one pass, not one scan of every operation per phase
            by_phase.setdefault(self.plan.phase_of(op), []).append(op.id)
        # A phase's subgraph is its own edges: validation refuses a dependency on a later
        # phase, so no path leaves a phase and comes back into it (restricted() would walk
        # every earlier phase to find that out, once per phase).
        deps = self.graph.deps
        out = []
        for phase in self.plan.phases:
            members = set(by_phase[phase])
            out.append((phase, Graph({n: frozenset(d for d in deps[n] if d in members) for n in by_phase[phase]}).waves()))
        return out


def loaded_from_journal(snapshot: Mapping[str, Any], *, file: str | None, base_dir: str | None) -> LoadedPlan:
    """The plan a run recorded (vars applied, secrets as specs), ready to run again.

    ``resume`` and ``resolve`` use it, so finishing an interrupted run needs no plan file.
    """
    from atomicops.plan.validate import validate_plan

    with gc_paused():  # see gc_paused: a recorded plan of 1,000 operations is as many objects
        plan = Plan.model_validate(snapshot)
        name = file or "<plan recorded in the journal>"
        problems, deps = validate_plan(plan, snapshot, SourceMap(name))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise PlanInvalid(errors)
    return LoadedPlan(plan=plan, file=name, base_dir=base_dir or ".", source=SourceMap(name), deps=deps)


def parse_var(assignment: str) -> tuple[str, Any]:
    """``k=v`` from the command line; ``v`` is read as a YAML scalar (``--var n=3`` is 3)."""
    name, eq, raw = assignment.partition("=")
    if not eq or not name.strip():
        raise UsageError(f"--var takes NAME=VALUE, got {assignment!r}")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return name.strip(), value




@dataclass
class VarsFile:
    path: str
    values: dict[str, Any]
    source: SourceMap
    offered: bool = False


def read_vars_file(path: str) -> VarsFile:
    data, smap = load_yaml(read_source(path, "vars file"), path)
    if data is None:
        return VarsFile(path, {}, smap)
    if not isinstance(data, dict):
        raise PlanInvalid([Problem("a vars file must be a mapping of var name to value", file=path, line=smap.line(()))])
    mark = data.pop(OFFERED_MARK, None)
    if mark not in (None, "offered"):
        raise PlanInvalid([Problem(f"{OFFERED_MARK} can only be `offered`", file=path, line=smap.line((OFFERED_MARK,)))])
    return VarsFile(path, data, smap, offered=mark == "offered")


def _overrides(
    declared: Mapping[str, Any],
    plan_file: str,
    smap: SourceMap,
    vars_files: Sequence[str],
    var_overrides: Mapping[str, Any],
    offered_vars: Mapping[str, Any],
) -> dict[str, Any]:
    """The values given for the plan's vars, by precedence: offered values (the rehearsal's
    sandbox), then vars files in order, then ``--var``. A var the plan does not declare is
    refused, with its file and line: a misspelt ``--var regoin=...`` must not run against
    the default region. Only offered values may name vars the plan does not use."""
    problems: list[Problem] = []
    out = {k: v for k, v in offered_vars.items() if k in declared}

    def undeclared(name: Any) -> str:
        return f"the plan declares no var {name!r}{did_you_mean(str(name), declared)}; declare it under `vars:` in {plan_file}"

    for vf in (read_vars_file(f) for f in vars_files):
        for name, value in vf.values.items():
            if name in declared:
                out[name] = value
            elif not vf.offered:
                problems.append(Problem(undeclared(name), file=vf.path, line=vf.source.line((name,)), key=str(name)))
    for name, value in var_overrides.items():
        if name in declared:
            out[name] = value
        else:
            problems.append(Problem(f"--var {name}: {undeclared(name)}", file=plan_file, line=smap.line(("vars",)), key=f"vars.{name}"))
    if problems:
        raise PlanInvalid(problems)
    return out



def load_plan(
    path: str | os.PathLike[str],
    *,
    var_overrides: Mapping[str, Any] | None = None,
    vars_files: Sequence[str] = (),
    offered_vars: Mapping[str, Any] | None = None,
) -> LoadedPlan:
    """``offered_vars`` set the vars the plan declares and are passed over otherwise."""
    with gc_paused():  # see gc_paused: the model and the checks allocate per value too
        return _load_plan(path, var_overrides, vars_files, offered_vars)


def _load_plan(
    path: str | os.PathLike[str],
    var_overrides: Mapping[str, Any] | None,
    vars_files: Sequence[str],
    offered_vars: Mapping[str, Any] | None,
) -> LoadedPlan:
    file = _plan_file(path)
    raw, smap = load_yaml(read_source(file, "plan"), file)
    if not isinstance(raw, dict):
        raise PlanInvalid([Problem("a plan must be a YAML mapping", file=file, line=1)])
    base = raw.get("vars")
    declared = base if isinstance(base, dict) else {}
    overrides = _overrides(declared, file, smap, vars_files, var_overrides or {}, offered_vars or {})
    if overrides:
        raw["vars"] = {**declared, **overrides}

    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        raise PlanInvalid(_schema_problems(exc, raw, smap)) from None

    from atomicops.plan.validate import validate_plan  # the semantic pass

    base_dir = str(FsPath(file).parent.resolve())
    problems, deps = validate_plan(plan, raw, smap)
    problems += confine.problems(raw, base_dir, smap)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise PlanInvalid(problems)
    return LoadedPlan(
        plan=plan,
        file=file,
        base_dir=base_dir,
        source=smap,
        deps=deps,
        warnings=[p for p in problems if p.severity == "warning"],
    )


def _plan_file(path: str | os.PathLike[str]) -> str:
    """A directory stands for the ``plan.yaml`` inside it (``atomicops apply examples/x``)."""
    p = FsPath(path)
    if p.is_dir():
        for name in ("plan.yaml", "plan.yml"):
            if (p / name).is_file():
                return str(p / name)
        raise UsageError(f"{p} is a directory with no plan.yaml in it")
    return str(p)


def op_at(raw: Mapping[str, Any], loc: Sequence[Any]) -> str | None:
    """The id of the operation a path points into, read from the raw plan."""
    if len(loc) >= 2 and loc[0] == "operations" and isinstance(loc[1], int):
        ops = raw.get("operations")
        if isinstance(ops, list) and loc[1] < len(ops) and isinstance(ops[loc[1]], dict):
            op_id = ops[loc[1]].get("id")
            return str(op_id) if op_id is not None else f"#{loc[1] + 1}"
    return None


def _schema_problems(exc: ValidationError, raw: Mapping[str, Any], smap: SourceMap) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
            known = _known_keys(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            elif known:
                msg += f" (allowed: {', '.join(sorted(known))})"
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
        elif err["type"] == "literal_error" and loc == ["atomicops"]:
            msg = "unsupported plan format version (this atomicops reads `atomicops: 1`)"
        problems.append(
            Problem(
                msg,
                file=smap.file,
                line=smap.line(loc),
                op=op_at(raw, loc),
                key=format_path(loc),
            )
        )
    return problems


def _known_keys(loc: Iterable[Any]) -> list[str]:
    """Field names of the model at ``loc`` (for "did you mean" hints)."""
    tp: Any = Plan
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if args else Any
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            f = tp.model_fields.get(part)
            if f is None:
                return []
            tp = f.annotation
        else:
            args = typing.get_args(tp)
            tp = args[-1] if args else Any
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp

