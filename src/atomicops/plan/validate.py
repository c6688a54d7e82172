"""The semantic checks of a plan that parsed: names, references, dependencies, actions.

Every check appends a :class:`Problem` instead of stopping, so one ``validate`` shows all
that is wrong. Returns the operation dependencies (explicit ``depends_on`` plus those
inferred from ``${ops.OP...}`` references) for the graph.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Literal

from atomicops.actions import registry
from atomicops.engine.secrets import refusal
from atomicops.errors import AtomicOpsError, Problem, ReferenceError_
from atomicops.expect import check_expect_spec, check_expression
from atomicops.graph import Graph
from atomicops.plan import connections, refs
from atomicops.plan.call_target import call_target_problem
from atomicops.plan.model import Operation, Plan, is_value_output
from atomicops.plan.passed_checks import PassedChecks
from atomicops.plan.source import Path, SourceMap, did_you_mean, format_path

# Keys an action may carry beside its kind's own, by the role the action plays.
ROLE_KEYS = {
    "do": frozenset(),
    "undo": frozenset(),
    "probe": frozenset({"outputs", "expect"}),
    "check": frozenset({"expect", "name"}),
    "trigger": frozenset({"expect", "name", "failures"}),
    "setup": frozenset({"name", "outputs"}),
}

# Which reference namespaces each place may use.
_ANY = frozenset(refs.NAMESPACES)
_NO_STEP = _ANY - {"step"}
_PLAN_LEVEL = _ANY - {"step", "self"}
_CONNECTION = frozenset({"vars", "secrets", "env"})
# A connection may also be built from what the run makes (engine/runtime.py opens it late).
_CONNECTION_SPEC = _CONNECTION | {"ops"}


@dataclass
class _Ctx:
    plan: Plan
    raw: Mapping[str, Any]
    smap: SourceMap
    problems: list[Problem]
    outputs: dict[str, dict[str, int]]  # op -> output -> index of the step declaring it
    deps: dict[str, set[str]]
    plan_dir: FsPath | Literal[False] | None = None  # None: not looked at yet; False: no plan file
    call_targets: dict[str, str | None] = field(default_factory=dict)  # target -> problem
    call_uses: list[connections.CallUse] | None = None  # what `call` functions open (plan/call_target.py)
    passed: PassedChecks = field(default_factory=PassedChecks)

    def add(self, path: Path, message: str, *, op: str | None = None, warning: bool = False) -> None:
        self.problems.append(
            Problem(
                message,
                file=self.smap.file,
                line=self.smap.line(path),
                op=op,
                key=format_path(path),
                severity="warning" if warning else "error",
            )
        )


def validate_plan(
    plan: Plan, raw: Mapping[str, Any], smap: SourceMap
) -> tuple[list[Problem], dict[str, set[str]]]:
    ctx = _Ctx(plan, raw, smap, [], {}, {op.id: set() for op in plan.operations})
    _check_todo_vars(ctx)
    _check_names(ctx)
    by_connection = {k.connection_kind: k for k in registry.kinds().values() if k.connection_kind}
    for name, conn in plan.connections.items():
        path: Path = ("connections", name)
        owner = by_connection.get(conn.kind)
        if owner is None:
            ctx.add((*path, "kind"), f"unknown connection kind {conn.kind!r}{did_you_mean(conn.kind, by_connection)}")
        else:
            for issue in owner.check_connection(conn.model_dump()):
                ctx.add((*path, *issue.path), issue.message)
            for key in sorted(owner.secret_connection_keys & set(conn.model_dump())):
                value = conn.model_dump()[key]
                if value is not None and not (refs.is_whole_reference(value) and str(value).replace(" ", "").startswith("${secrets.")):
                    ctx.add((*path, key), f"{key} must be a secret, written \"${{secrets.NAME}}\": the plan is "
                            "recorded in the journal as written, so a literal or a var would be kept there in plaintext")
        _check_refs(ctx, conn.model_dump(), path, allowed=_CONNECTION_SPEC, op=None)
    for name, secret in plan.secrets.items():
        _check_refs(ctx, secret.model_dump(exclude_none=True), ("secrets", name), allowed=frozenset({"vars", "env"}), op=None)
        if secret.env is not None and secret.env in os.environ and (refused := refusal(name, os.environ[secret.env])):
            ctx.add(("secrets", name), refused)
    for i, op in enumerate(plan.operations):
        _check_operation(ctx, i, op)
    for i, check in enumerate(plan.verify):
        _check_action(ctx, check, ("verify", i), "check", op=None, allowed=_PLAN_LEVEL)
    if plan.triggers:
        _check_triggers(ctx, plan.triggers.checks)
    if plan.rehearsal:
        for i, action in enumerate(plan.rehearsal.setup):
            path = ("rehearsal", "setup", i)
            _check_action(ctx, action, path, "setup", op=None, allowed=_CONNECTION)
            for out, expr in (action.get("outputs") or {}).items():
                _check_jmespath(ctx, expr, (*path, "outputs", out), None)
    _check_graph(ctx)
    if not any(p.severity == "error" for p in ctx.problems):
        _check_call_connections(ctx)
        _check_connection_order(ctx)
        _check_secret_stores(ctx)
    ctx.passed.save()
    return ctx.problems, ctx.deps


def is_todo(value: Any) -> bool:
    """``{todo: "..."}``: a place `atomicops import` left for a person (an undo no rollback
    command gave, a placeholder's value); the text names the runbook's file:line."""
    return isinstance(value, Mapping) and len(value) == 1 and isinstance(value.get("todo"), str)


def _todo_message(value: Mapping[str, Any]) -> str:
    return f"left to do after `atomicops import`: {value['todo']}"


def _check_todo_vars(ctx: _Ctx) -> None:
    # Actions are looked at in _check_action; a var is the other place import leaves one.
    for name, value in ctx.plan.vars.items():
        if is_todo(value):
            ctx.add(("vars", name), _todo_message(value))


def _check_triggers(ctx: _Ctx, checks: list[Any]) -> None:
    """Trigger checks run again and again while a run works: they must only read."""
    names: dict[str, int] = {}
    for i, check in enumerate(checks):
        path: Path = ("triggers", "checks", i)
        _check_action(ctx, check, path, "trigger", op=None, allowed=_PLAN_LEVEL)
        key, _ = registry.kind_of(check)
        if key is not None and registry.get(key).writes(_vars_applied(ctx, check)):
            ctx.add((*path, key), f"a rollback trigger must only read, and this {key} action may write: "
                    f"{_READ_ONLY_RULE.get(key, 'use an aws, http, sql or nats check that only reads')}")
        failures = check.get("failures", 1)
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            ctx.add((*path, "failures"), f"failures is how many misses in a row fire the trigger: a whole number, 1 or more, not {failures!r}")
        name = check.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            ctx.add((*path, "name"), "name must be a non-empty string")
        elif isinstance(name, str):
            if name in names:
                ctx.add((*path, "name"), f"trigger name {name!r} is already used by check #{names[name] + 1}")
            names.setdefault(name, i)


_READ_ONLY_RULE = {
    "aws": "aws checks call describe_*, get_*, list_*, head_*, search_*, lookup_*, batch_get_*, filter_*, query or scan",
    "sql": "sql checks are one SELECT (or WITH/VALUES/TABLE/SHOW) statement with no INSERT, UPDATE, DELETE, INTO, FOR UPDATE...",
    "sql_file": "use `sql:` with one SELECT statement (a file's text is read only at run time)",
    "http": "http checks use method GET or HEAD",
    "nats": "nats checks use stream_info or consumer_info",
}


def _check_names(ctx: _Ctx) -> None:
    plan = ctx.plan
    if len(set(plan.phases)) != len(plan.phases):
        ctx.add(("phases",), "phase names must be unique")
    seen: dict[str, int] = {}
    marks: dict[str, str] = {}
    for i, op in enumerate(plan.operations):
        path: Path = ("operations", i)
        if op.checkpoint is not None:
            if op.checkpoint in marks:
                ctx.add((*path, "checkpoint"), f"checkpoint {op.checkpoint!r} is already marked by operation "
                        f"{marks[op.checkpoint]!r}: `rollback --to` needs one mark per name", op=op.id)
            marks.setdefault(op.checkpoint, op.id)
        if op.id in seen:
            ctx.add((*path, "id"), f"operation id {op.id!r} is already used by operation #{seen[op.id] + 1}", op=op.id)
        seen.setdefault(op.id, i)
        if op.phase is not None and op.phase not in plan.phases:
            ctx.add((*path, "phase"), f"unknown phase {op.phase!r}{did_you_mean(op.phase, plan.phases)} (phases: {', '.join(plan.phases)})", op=op.id)
        declared: dict[str, int] = {}
        step_names: set[str] = set()
        for j, step in enumerate(op.steps):
            spath: Path = (*path, "steps", j)
            if step.name in step_names:
                ctx.add((*spath, "name"), f"step name {step.name!r} is used twice", op=op.id)
            step_names.add(step.name)
            for out, expr in step.outputs.items():
                if out in declared:
                    ctx.add((*spath, "outputs", out), f"output {out!r} is already declared by step #{declared[out] + 1}", op=op.id)
                declared.setdefault(out, j)
                if not is_value_output(expr):
                    _check_jmespath(ctx, expr, (*spath, "outputs", out), op.id)
        ctx.outputs[op.id] = declared


def _check_operation(ctx: _Ctx, index: int, op: Operation) -> None:
    path: Path = ("operations", index)
    for j, dep in enumerate(op.depends_on):
        if dep == op.id:
            ctx.add((*path, "depends_on", j), "an operation cannot depend on itself", op=op.id)
        elif dep not in ctx.deps:
            ctx.add((*path, "depends_on", j), f"unknown operation {dep!r}{did_you_mean(dep, ctx.deps)}", op=op.id)
        else:
            ctx.deps[op.id].add(dep)
    for j, step in enumerate(op.steps):
        spath: Path = (*path, "steps", j)
        _check_action(ctx, step.do, (*spath, "do"), "do", op=op.id, self_upto=j - 1)
        # Value outputs may use what is known before the step: earlier steps' outputs.
        _check_refs(ctx, step.value_outputs, (*spath, "outputs"), allowed=_ANY, op=op.id, self_upto=j - 1)
        for text, sub in refs.refs_in(step.value_outputs):
            if text.strip().startswith("secrets."):
                ctx.add((*spath, "outputs", *sub), "a secret cannot be an output: outputs are journalled and shown by status", op=op.id)
        if step.undo is not None:
            _check_action(ctx, step.undo, (*spath, "undo"), "undo", op=op.id, self_upto=j)
        if step.probe is not None:
            _check_action(ctx, step.probe, (*spath, "probe"), "probe", op=op.id, self_upto=j - 1)
            if not step.probe.get("outputs") and not step.probe.get("expect"):
                ctx.add((*spath, "probe"), "a probe needs outputs or expect, to tell found from not found", op=op.id)
            for out, expr in (step.probe.get("outputs") or {}).items():
                _check_jmespath(ctx, expr, (*spath, "probe", "outputs", out), op.id)
                if out not in step.outputs:
                    ctx.add((*spath, "probe", "outputs", out), f"the probe yields {out!r}, which the step does not declare in outputs", op=op.id)
        if step.read_only:
            if step.undo is not None:
                ctx.add((*spath, "undo"), "a read_only step changes nothing, so it has nothing to undo", op=op.id)
            if step.safe_to_repeat is not None:
                ctx.add((*spath, "safe_to_repeat"), "a read_only step is always safe to repeat; drop the key", op=op.id)
        elif step.undo is None and step.irreversible is None and not is_todo(step.do):
            ctx.add(
                spath,
                f"step {step.name!r} has a side effect and no undo: add `undo`, or say "
                '`irreversible: "<why>"`, or mark it `read_only: true`',
                op=op.id,
            )
        elif step.undo is not None and step.irreversible is not None:
            ctx.add((*spath, "irreversible"), "a step with an undo is not irreversible; keep one of the two", op=op.id)
        if step.irreversible is not None:
            ctx.add((*spath, "irreversible"), f"step {step.name!r} is irreversible: {step.irreversible}", op=op.id, warning=True)
    for j, check in enumerate(op.verify):
        _check_action(ctx, check, (*path, "verify", j), "check", op=op.id, self_upto=len(op.steps) - 1, allowed=_NO_STEP)


def _check_action(
    ctx: _Ctx,
    action: Mapping[str, Any],
    path: Path,
    role: str,
    *,
    op: str | None,
    self_upto: int = -1,
    allowed: frozenset[str] = _ANY,
) -> None:
    if is_todo(action):
        ctx.add(path, _todo_message(action), op=op)
        return
    kinds = registry.kinds()
    key, found = registry.kind_of(action)
    if key is None:
        if found:
            ctx.add(path, f"an action has exactly one kind; found {', '.join(found)}", op=op)
        else:
            ctx.add(path, f"no action kind here (expected one of: {', '.join(sorted(kinds))})", op=op)
        return
    kind = kinds[key]
    allowed_keys = {key} | kind.extra_keys | ROLE_KEYS[role]
    for k in action:
        if k not in allowed_keys:
            ctx.add((*path, k), f"unknown key {k!r} for a {key} action{did_you_mean(str(k), allowed_keys)}", op=op)
    # Vars are known now: a kind checks `run: "${vars.cmd}"` as the string it will get.
    checked = _vars_applied(ctx, action)
    if not ctx.passed.holds(kind, checked):
        issues = list(kind.check(checked))
        for issue in issues:
            ctx.add((*path, *issue.path), issue.message, op=op)
        if not issues:
            ctx.passed.add(kind, checked)
    if key == "call":
        _check_call_target(ctx, action.get("call"), (*path, "call"), op)
    conn = action.get("connection")
    if isinstance(conn, str) and "${" not in conn:
        spec = ctx.plan.connections.get(conn)
        if spec is None:
            ctx.add((*path, "connection"), f"unknown connection {conn!r}{did_you_mean(conn, ctx.plan.connections)}", op=op)
        elif spec.kind != kind.connection_kind:
            ctx.add((*path, "connection"), f"connection {conn!r} is a {spec.kind} connection; a {key} action needs {kind.connection_kind}", op=op)
    if role in ("check", "probe"):
        expect = action.get("expect")
        if expect is not None:
            if not isinstance(expect, Mapping):
                ctx.add((*path, "expect"), "expect maps JMESPath expressions to values", op=op)
            else:
                for sub, message in check_expect_spec(expect):
                    ctx.add((*path, "expect", sub), message, op=op)
    body = {k: v for k, v in action.items() if k not in ROLE_KEYS[role]}
    _check_refs(ctx, body, path, allowed=allowed, op=op, self_upto=self_upto)
    _check_secret_places(ctx, key, body, path, op)
    for out, expr in (action.get("outputs") or {}).items():
        if "${" not in str(expr):
            continue
        if role == "probe" and "secrets." not in str(expr):
            # A probe may pick its item by a known id: Associations[?SubnetId=='${self.subnet}'].
            _check_refs(ctx, expr, (*path, "outputs", out), allowed=allowed - {"secrets"}, op=op, self_upto=self_upto)
        else:
            ctx.add((*path, "outputs", out), "outputs are JMESPath over the result; references (and secrets) cannot be used there", op=op)


# Places a value is shown to people or other processes: a secret must never go there.
_TAG_KEYS = {"Tags", "TagSpecifications", "tags", "TagList"}


def _check_secret_places(ctx: _Ctx, kind: str, body: Mapping[str, Any], path: Path, op: str | None) -> None:
    for text, sub in refs.refs_in(body):
        if not text.strip().startswith("secrets."):
            continue
        where = (*path, *sub)
        if any(part in _TAG_KEYS for part in sub if isinstance(part, str)):
            ctx.add(where, "a secret cannot go into tags: anyone who can list resources reads them", op=op)
        elif kind == "run" and sub and sub[0] == "run":
            ctx.add(where, "a secret cannot go on a command line (other processes can read it); pass it in `env:`", op=op)
        elif kind == "http" and sub[:2] == ("http", "url"):
            ctx.add(where, "a secret cannot go into a URL (URLs end up in logs); send it in a header", op=op)


def _check_connection_order(ctx: _Ctx) -> None:
    """An operation that uses a connection built from operations' outputs comes after them:
    the connection opens when it is first used, and only then are those outputs known."""
    built = {name: connections.built_from(c.model_dump()) for name, c in ctx.plan.connections.items()}
    if not any(built.values()):
        return
    graph = Graph.build([o.id for o in ctx.plan.operations], ctx.deps)
    before: dict[str, set[str]] = {}
    told: set[tuple[str, str, str]] = set()  # one error per operation, connection and dependency
    for op_id, where, name, how in _connection_users(ctx):
        for dep in sorted(built[name]):
            if (op_id, name, dep) in told:
                continue
            told.add((op_id, name, dep))
            if op_id not in before:
                before[op_id] = graph.ancestors(op_id)
            if dep == op_id:
                ctx.add(where, f"uses connection {name!r}{how}, which is built from this operation's own outputs "
                        f"(connections.{name}.{format_path(built[name][dep])}): it opens only once {dep!r} is "
                        "applied, so use it from an operation that depends on it", op=op_id)
            elif dep not in before[op_id]:
                ctx.add(where, f"uses connection {name!r}{how}, which is built from the outputs of {dep!r} "
                        f"(connections.{name}.{format_path(built[name][dep])}), but does not come after it: "
                        f"add `depends_on: [{dep}]` (the connection opens when first used, once {dep!r} is applied)",
                        op=op_id)


def _connection_users(ctx: _Ctx) -> Iterator[tuple[str, Path, str, str]]:
    """(operation, where to report, connection, how it is used) for the actions that name a
    connection (or default to one), then for what ``call`` functions open with ``connection_of``."""
    for op_id, path, name in connections.users(ctx.plan):
        action = _action_at(ctx.plan, path)
        yield op_id, (*path, "connection") if isinstance(action, Mapping) and "connection" in action else path, name, ""
    for use in _call_uses(ctx):
        if use.name is not None and use.problem is None:
            yield use.op, use.path, use.name, f" ({use.where})"


def _check_call_connections(ctx: _Ctx) -> None:
    """A connection a ``call`` function opens by a name the plan does not declare, or as
    another kind, fails at run time: said now, at the step."""
    for use in _call_uses(ctx):
        if use.problem is not None:
            ctx.add(use.path, use.problem, op=use.op)


def _call_uses(ctx: _Ctx) -> list[connections.CallUse]:
    """What the plan's ``call`` functions open, read once per validation (both checks above
    use it)."""
    if ctx.call_uses is None:
        plan_dir = _plan_dir(ctx)
        ctx.call_uses = [] if plan_dir is None else list(connections.call_users(ctx.plan, plan_dir))
    return ctx.call_uses


def _action_at(plan: Plan, path: Path) -> Any:
    op = plan.operations[int(path[1])]
    if path[2] == "verify":
        return op.verify[int(path[3])]
    return getattr(op.steps[int(path[3])], str(path[4]))


def _check_secret_stores(ctx: _Ctx) -> None:
    """A generated secret with a ``store`` is written there by one operation; every other
    operation that uses it must come after that one, so a resume can read it back."""
    for name, spec in ctx.plan.secrets.items():
        if spec.generate is None:
            continue
        users: dict[str, Path] = {}
        writer: str | None = None
        # An action that uses a connection holding the secret (a postgres password) uses it too.
        for op_id, path, conn in connections.users(ctx.plan):
            if any(t.strip() == f"secrets.{name}" for t, _ in refs.refs_in(ctx.plan.connections[conn].model_dump())):
                users.setdefault(op_id, path)
        for i, op in enumerate(ctx.plan.operations):
            for j, step in enumerate(op.steps):
                for role in ("do", "undo", "probe"):
                    action = getattr(step, role)
                    if not action or not any(t.strip() == f"secrets.{name}" for t, _ in refs.refs_in(action)):
                        continue
                    users.setdefault(op.id, ("operations", i, "steps", j, role))
                    params = action.get("params") or {}
                    target = _literal(ctx, params.get("Name") or params.get("SecretId"))
                    if action.get("aws") in ("secretsmanager.create_secret", "secretsmanager.put_secret_value") and target == str(_literal(ctx, spec.store)).partition("#")[0]:
                        writer = op.id
        if spec.store is None:
            if len(users) > 1 or any(p[-1] == "undo" for p in users.values()):
                first = next(iter(users.values()))
                ctx.add(first, f"generated secret {name!r} has no `store`: a later run cannot read it back; "
                        "add `store: <secret name>` and write it there first", warning=True)
            continue
        if writer is None:
            ctx.add(("secrets", name, "store"), f"no operation writes secret {name!r} to {spec.store!r} "
                    "(secretsmanager.create_secret with that Name and SecretString using it)")
            continue
        graph = Graph.build([o.id for o in ctx.plan.operations], ctx.deps)
        for op_id, where in users.items():
            if op_id != writer and writer not in graph.ancestors(op_id):
                ctx.add(where, f"uses secret {name!r} but does not come after {writer!r}, which stores it; "
                        f"add `depends_on: [{writer}]`", op=op_id)


def _vars_applied(ctx: _Ctx, action: Mapping[str, Any]) -> Any:
    """``action`` with each value that is a whole ``${vars...}`` reference replaced by the
    var's value (its type kept); everything else as written."""
    def look(ref: refs.Ref) -> Any:
        if ref.namespace != "vars" or is_todo(ctx.plan.vars.get(ref.path[0])):
            raise refs.Keep  # a var left to fill is reported once, as itself
        return refs.dig(ctx.plan.vars, ref.path, ref)

    def whole(value: Any) -> Any:
        if isinstance(value, Mapping):
            # SQL text is checked as written: a reference in it is refused (actions/sql.py).
            return {k: v if k == "sql" else whole(v) for k, v in value.items()}
        if isinstance(value, list):
            return [whole(v) for v in value]
        if isinstance(value, str) and refs.is_whole_reference(value):
            try:
                return refs.resolve(value, look)
            except Exception:  # noqa: BLE001 - a bad reference is reported by _check_refs
                return value
        return value

    return whole(action)


def _literal(ctx: _Ctx, value: Any) -> Any:
    """A value with ``${vars...}`` resolved, or None when it depends on anything else."""
    if not isinstance(value, str):
        return value
    try:
        def look(ref: refs.Ref) -> Any:
            if ref.namespace != "vars":
                raise refs.Keep
            return refs.dig(ctx.plan.vars, ref.path, ref)
        out = refs.resolve(value, look)
    except Exception:  # noqa: BLE001 - unknown vars are reported elsewhere
        return None
    return None if "${" in str(out) else out


def _check_refs(
    ctx: _Ctx,
    value: Any,
    path: Path,
    *,
    allowed: frozenset[str],
    op: str | None,
    self_upto: int = -1,
) -> None:
    for text, sub in refs.refs_in(value):
        where = (*path, *sub)
        try:
            ref = refs.parse(text)
        except refs.RefSyntaxError as exc:
            ctx.add(where, str(exc), op=op)
            continue
        if ref.namespace not in allowed:
            ctx.add(where, f"${{{text}}} cannot be used here", op=op)
            continue
        if ref.namespace == "vars" and ref.path[0] not in ctx.plan.vars:
            ctx.add(where, f"unknown var {ref.path[0]!r}{did_you_mean(ref.path[0], ctx.plan.vars)}", op=op)
        elif ref.namespace == "vars" and len(ref.path) > 1:
            try:
                refs.dig(ctx.plan.vars, ref.path, ref)
            except ReferenceError_ as exc:
                ctx.add(where, f"${{{text}}}: {exc.reason} in var {ref.path[0]!r}", op=op)
        elif ref.namespace == "secrets" and ref.path[0] not in ctx.plan.secrets:
            ctx.add(where, f"unknown secret {ref.path[0]!r}{did_you_mean(ref.path[0], ctx.plan.secrets)}", op=op)
        elif ref.namespace == "ops":
            target, out = ref.path[0], ref.path[1]
            if target not in ctx.outputs:
                ctx.add(where, f"unknown operation {target!r}{did_you_mean(target, ctx.outputs)}", op=op)
            elif target == op:
                ctx.add(where, f"an operation refers to its own outputs as ${{self.{out}}}", op=op)
            elif out not in ctx.outputs[target]:
                ctx.add(where, f"operation {target!r} has no output {out!r}{did_you_mean(out, ctx.outputs[target])}", op=op)
            elif op is not None:
                ctx.deps[op].add(target)
        elif ref.namespace == "self":
            if op is None:
                ctx.add(where, "${self...} is only meaningful inside an operation", op=op)
                continue
            declared = ctx.outputs.get(op, {})
            out = ref.path[0]
            if out not in declared:
                ctx.add(where, f"operation {op!r} declares no output {out!r}{did_you_mean(out, declared)}", op=op)
            elif declared[out] > self_upto:
                ctx.add(where, f"output {out!r} is not known yet here (it comes from a later step)", op=op)


def _check_graph(ctx: _Ctx) -> None:
    plan = ctx.plan
    index = {op.id: i for i, op in enumerate(plan.operations)}
    # An operation in an unknown phase has no place in the order: its one error is enough.
    phase_of = {op.id: plan.phases.index(plan.phase_of(op)) for op in plan.operations if plan.phase_of(op) in plan.phases}
    for op_id, deps in ctx.deps.items():
        for dep in sorted(deps):
            if op_id in phase_of and dep in phase_of and phase_of[dep] > phase_of[op_id]:
                ctx.add(
                    ("operations", index[op_id]),
                    f"depends on {dep!r} of the later phase {plan.phases[phase_of[dep]]!r}; phases run in order",
                    op=op_id,
                )
    cycle = Graph.build(index, ctx.deps).find_cycle()
    if cycle:
        ctx.add(("operations", index[cycle[0]]), "dependency cycle: " + " -> ".join(cycle), op=cycle[0])


def _plan_dir(ctx: _Ctx) -> FsPath | None:
    """The plan's directory, where its ``call`` modules are; None for a plan recorded in the
    journal (rollback, resume run without its directory: the modules were found when it was
    validated from its file)."""
    if ctx.plan_dir is None:
        plan_file = FsPath(ctx.smap.file)
        ctx.plan_dir = plan_file.resolve().parent if plan_file.is_file() else False
    return ctx.plan_dir or None


def _check_call_target(ctx: _Ctx, target: Any, path: Path, op: str | None) -> None:
    # A plan recorded in the journal (rollback, resume) runs without its directory: the
    # modules were found when it was validated from its file.
    if not isinstance(target, str) or refs.is_reference(target) or ":" not in target:
        return
    plan_dir = _plan_dir(ctx)
    if plan_dir is None:
        return
    # Each distinct target is looked up once per validation: a plan's steps call few functions
    # many times, and each lookup stats the plan's directory and the Python path.
    if target not in ctx.call_targets:
        ctx.call_targets[target] = call_target_problem(target, plan_dir)
    problem = ctx.call_targets[target]
    if problem:
        ctx.add(path, problem, op=op)


def _check_jmespath(ctx: _Ctx, expr: Any, path: Path, op: str | None) -> None:
    text = str(expr)
    if refs.is_reference(text):
        # A probe picks its item by a known id (`[?SubnetId=='${self.subnet}']`): with the
        # references stood in for, its functions can still be checked; its syntax depends on
        # the values, so a stand-in that does not parse says nothing.
        try:
            problem = check_expression(refs.resolve(text, lambda ref: "x"))
        except AtomicOpsError:
            return  # a malformed reference is reported by _check_refs
        if problem and not problem.startswith("invalid JMESPath"):
            ctx.add(path, f"{problem} in {text!r}", op=op)
        return
    problem = check_expression(text)
    if problem:
        ctx.add(path, f"{problem} in {text!r}", op=op)

