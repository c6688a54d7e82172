"""Connections built from what the run makes: which operations a plan connection waits on,
which actions use it, and how it will be resolved (what ``validate`` shows).

A connection may name ``${ops.OP.OUT}`` (the Aurora cluster's endpoint) and
``${secrets.NAME}`` (its generated password): it is resolved and opened when the first
action needs it, after those operations are applied (engine/runtime.py). ``validate`` makes
sure every operation that uses it comes after them (plan/validate.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from atomicops.actions import registry
from atomicops.plan import refs
from atomicops.plan.call_target import ConnectionUse, connections_used
from atomicops.plan.model import Plan
from atomicops.plan.source import Path, did_you_mean


def owner_of(kind: str) -> Any:
    """The action kind that opens connections of ``kind`` (None for an unknown kind)."""
    return next((k for k in registry.kinds().values() if k.connection_kind == kind), None)


def outputs_named(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, tuple[str | int, ...]]]:
    """(operation, output, key of ``spec``) for each ``${ops.OP.OUT}`` in ``spec``."""
    for text, sub in refs.refs_in(spec):
        try:
            ref = refs.parse(text)
        except refs.RefSyntaxError:
            continue  # reported by validation
        if ref.op is not None:
            yield ref.op, ref.path[1], sub


def built_from(spec: Mapping[str, Any]) -> dict[str, tuple[str | int, ...]]:
    """Operation -> the key of ``spec`` that first names one of its outputs."""
    found: dict[str, tuple[str | int, ...]] = {}
    for op, _, sub in outputs_named(spec):
        found.setdefault(op, sub)
    return found


def default_names(plan: Plan) -> dict[str, str]:
    """Connection kind -> the connection an action of that kind uses when it names none
    (the plan's first of the kind, as at run time: actions/base.py)."""
    out: dict[str, str] = {}
    for name, conn in plan.connections.items():
        out.setdefault(conn.kind, name)
    return out


def used_by(action: Mapping[str, Any], defaults: Mapping[str, str]) -> str | None:
    """The plan connection ``action`` uses (a ``call`` picks its own at run time: None)."""
    key, _ = registry.kind_of(action)
    want = registry.get(key).connection_kind if key else None
    if want is None:
        return None
    name = action.get("connection")
    if name is None:
        return defaults.get(want)
    return name if isinstance(name, str) else None


def operation_actions(plan: Plan) -> Iterator[tuple[str, Path, Mapping[str, Any]]]:
    """(operation, path, action) for every action of an operation: its steps' do, undo and
    probe, and its verify checks."""
    for i, op in enumerate(plan.operations):
        places: list[tuple[Path, Any]] = []
        for j, step in enumerate(op.steps):
            places += [(("operations", i, "steps", j, role), getattr(step, role)) for role in ("do", "undo", "probe")]
        places += [(("operations", i, "verify", j), check) for j, check in enumerate(op.verify)]
        for path, action in places:
            if isinstance(action, Mapping):
                yield op.id, path, action


def users(plan: Plan) -> Iterator[tuple[str, Path, str]]:
    """(operation, path of the action, connection) for every action of an operation that
    names or defaults to a plan connection (a ``call`` opens its own: :func:`call_users`)."""
    defaults = default_names(plan)
    for op_id, path, action in operation_actions(plan):
        if (name := used_by(action, defaults)) in plan.connections:
            yield op_id, path, str(name)


@dataclass(frozen=True)
class CallUse:
    """A plan connection a ``call`` action's function opens (plan/call_target.py), or a
    connection it names that the plan does not have (``problem``)."""

    op: str
    path: Path  # of the action's `call` key
    target: str
    use: ConnectionUse
    name: str | None
    problem: str | None = None

    @property
    def where(self) -> str:
        return f"{self.target} opens it with connection_of (its module's line {self.use.line})"


def call_users(plan: Plan, plan_dir: FsPath) -> Iterator[CallUse]:
    """What each ``call`` function of an operation opens with ``connection_of``, as far as its
    source says with literals: the kind's default connection, a name, or the name the step's
    ``args`` give the function's argument. A use left to run time (a computed name, an
    argument given by a reference) is not listed; a name the plan does not declare, or a
    connection of another kind, comes with its ``problem``."""
    defaults = default_names(plan)
    # Each distinct target is looked up once: a plan's steps call few functions many times,
    # and each lookup stats the plan's directory and the Python path.
    found: dict[str, tuple[ConnectionUse, ...]] = {}
    for op_id, path, action in operation_actions(plan):
        target = action.get("call")
        if not isinstance(target, str) or refs.is_reference(target) or ":" not in target:
            continue
        if target not in found:
            found[target] = connections_used(target, plan_dir)
        for use in found[target]:
            kind = registry.get(use.kind) if use.kind in registry.kinds() else None
            if kind is None or kind.connection_kind is None:
                yield CallUse(op_id, (*path, "call"), target, use, None,
                              f"{target} calls connection_of with kind {use.kind!r} (its module's line {use.line}), "
                              f"which takes no connection: the kinds are {', '.join(sorted(k for k, v in registry.kinds().items() if v.connection_kind))}")
                continue
            name = use.name
            if use.param is not None:
                given = (action.get("args") or {}).get(use.param)
                if not isinstance(given, str) or "${" in given:
                    continue  # given at run time, or the function's own default: not known here
                name = given
            if name is None:
                name = defaults.get(kind.connection_kind)
                if name is None:
                    continue  # none declared: the kind's defaults (boto3's credential chain...)
            problem = None
            if name not in plan.connections:
                problem = (f"{target} opens connection {name!r} (connection_of, its module's line {use.line}), "
                           f"which the plan does not declare{did_you_mean(name, plan.connections)}")
            elif plan.connections[name].kind != kind.connection_kind:
                problem = (f"{target} opens connection {name!r} as {use.kind!r} (its module's line {use.line}), "
                           f"but it is a {plan.connections[name].kind} connection")
            yield CallUse(op_id, (*path, "call"), target, use, name, problem)


def in_use(plan: Plan) -> dict[str, Mapping[str, Any]]:
    """Each connection as the run will use it with the plan's vars (a postgres ``override``
    that is given replaces the fields), references still unresolved."""
    out: dict[str, Mapping[str, Any]] = {}
    for name, conn in plan.connections.items():
        owner = owner_of(conn.kind)
        spec = conn.model_dump()
        out[name] = owner.connection_in_use(spec, lambda value: _vars_only(plan, value)) if owner else spec
    return out


def explain(plan: Plan) -> list[dict[str, Any]]:
    """How each connection that is built from outputs, or that a var may replace, will be
    resolved with the plan's vars as given: for ``validate`` to show."""
    out = []
    used = in_use(plan)
    for name, conn in plan.connections.items():
        spec, chosen = conn.model_dump(), used[name]
        dropped = [k for k in spec if k not in chosen]
        by_var = [k for k in dropped if isinstance(spec[k], str) and "${vars." in spec[k]]
        replaced = [k for k in dropped if k not in by_var]
        var_text = ", ".join(f"{k}: {spec[k]}" for k in by_var)
        waits, now = sorted(built_from(spec)), sorted(built_from(chosen))
        if not waits and not dropped:
            continue
        if now:
            how = (f"opens when first used, once {', '.join(now)} {'is' if len(now) == 1 else 'are'} applied "
                   "(built from the outputs)")
            how += f"; {var_text} is not given" if by_var else ""
        else:
            how = f"{var_text or 'a var'} is given and replaces {', '.join(replaced) or 'nothing'}"
            how += f" (without it, built from the outputs of {', '.join(waits)})" if waits else ""
        out.append({"connection": name, "kind": conn.kind, "waits_on": now, "built_from": waits, "how": how})
    return out


def _vars_only(plan: Plan, value: Any) -> Any:
    def look(ref: refs.Ref) -> Any:
        if ref.namespace != "vars":
            raise refs.Keep
        return refs.dig(plan.vars, ref.path, ref)

    try:
        return refs.resolve(value, look)
    except Exception:  # noqa: BLE001 - an unknown var is reported by validation
        return None
