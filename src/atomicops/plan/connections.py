"""Connections built from what the run makes: which operations a plan connection waits on,
which actions use it, and how it will be resolved (what ``validate`` shows).

A connection may name ``${ops.OP.OUT}`` (the Aurora cluster's endpoint) and
``${secrets.NAME}`` (its generated password): it is resolved and opened when the first
action needs it, after those operations are applied (engine/runtime.py). ``validate`` makes
sure every operation that uses it comes after them (plan/validate.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from atomicops.actions import registry
from atomicops.plan import refs
from atomicops.plan.model import Plan
from atomicops.plan.source import Path


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


def users(plan: Plan) -> Iterator[tuple[str, Path, str]]:
    """(operation, path of the action, connection) for every action of an operation that
    uses a plan connection: its steps' do, undo and probe, and its verify checks."""
    defaults = default_names(plan)
    for i, op in enumerate(plan.operations):
        places: list[tuple[Path, Any]] = []
        for j, step in enumerate(op.steps):
            places += [(("operations", i, "steps", j, role), getattr(step, role)) for role in ("do", "undo", "probe")]
        places += [(("operations", i, "verify", j), check) for j, check in enumerate(op.verify)]
        for path, action in places:
            if isinstance(action, Mapping) and (name := used_by(action, defaults)) in plan.connections:
                yield op.id, path, str(name)


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
