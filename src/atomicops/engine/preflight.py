"""Preflight: before the first step of a run, check everything the run will need.

Without it a missing environment variable or an unreachable database is found by the step
that first uses it, after the steps before it have created their resources (and a rollback
has to take them back). Preflight looks at the operations the run will apply: every var they
reference has a value, every secret they use can be read (present, long enough; an
``aws_secret`` is read once), and every connection they use is well formed. Connections the
first phase to run uses must also answer one cheap read-only request; a later phase may
connect to what an earlier one creates (the Aurora endpoint), so its connections cannot be
asked before the run; nor can a connection built from the outputs of an operation this run
applies (``host: "${ops.aurora.endpoint}"``), whatever the phase: only its shape is checked
here, and it opens when the first action needs it. Built from what an earlier run applied, it
is asked like any other. The plan's rollback triggers are polled from the first operation on,
so what their checks use (vars, secrets, connections) is looked at the same way, and their
connections are asked like the first phase's: a check that cannot run misses, and enough
misses in a row would roll the run back part-way (a trigger on a NATS stream with no
``nats_url`` fired in any apply that lasted longer than its ``failures`` polls). All
problems are reported at once (:class:`PreflightFailed`, exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from atomicops.actions import registry
from atomicops.actions.base import ActionKind, Connections
from atomicops.engine.executor import Executor
from atomicops.engine.runtime import Runtime, open_runtime
from atomicops.engine.secrets import refusal
from atomicops.engine.triggers import check_name
from atomicops.errors import AtomicOpsError, PreflightFailed
from atomicops.plan import connections, refs
from atomicops.plan.loader import LoadedPlan
from atomicops.plan.model import Plan, Retry

# Preflight waits this long for a connection: a run would wait its own timeouts later.
CONNECT_LIMIT = 5.0

# One read-only request per connection kind that proves it answers (and, for AWS, that the
# credentials are good). Kinds not listed are proven by opening the connection.
_REQUESTS: dict[str, dict[str, Any]] = {
    "aws": {"aws": "sts.get_caller_identity"},
    "postgres": {"sql": "select 1"},
}


def preflight(loaded: LoadedPlan, op_ids: Iterable[str], *, env: str, run_id: str,
              plan_verify: bool = True, applied: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Raise PreflightFailed listing every var, secret and connection the operations
    ``op_ids`` (and the plan's verify checks, when the run makes them) would fail on.

    ``applied``: the outputs of the operations already applied (from the journal). A
    connection built from them is asked like any other; one built from an operation this run
    applies is not (only its shape is checked)."""
    plan = loaded.plan
    pending = set(op_ids)
    # A partial apply (--target, --phase) does not run the plan's verify checks: their vars
    # and connections (the orchestrator URL, the database) are not this run's to ask for.
    actions = list(_actions(plan, pending, verify=plan_verify))
    if not actions:
        return
    # A run with something to apply polls every trigger check from its first operation
    # (engine/runs.py), whichever operations it applies.
    checks = _trigger_checks(plan)
    actions += checks.values()
    problems = _vars(plan, actions)
    secrets = _secrets_used(plan, actions)
    problems += _env_secrets(plan, secrets)
    if not problems:
        # Connection specs are resolved (secrets and all) when first needed: below, for
        # those the run does not build from its own outputs.
        try:
            done = dict(applied or {})
            rt = open_runtime(plan, env=env, run_id=run_id, base_dir=loaded.base_dir,
                              ops_outputs=lambda op: done.get(op, {}))
        except AtomicOpsError as exc:
            raise PreflightFailed([str(exc)]) from None
        try:
            # The run's AWS clients are built while preflight waits on its requests below;
            # the run's connections with the same settings take them (actions/aws.py).
            rt.executor.prepare(_ahead(plan, pending, checks.values()))
            problems += _aws_secrets(rt, plan, secrets)
            first = next((ph for ph in plan.phases if any(o.id in pending and plan.phase_of(o) == ph for o in plan.operations)), None)
            now = {o.id for o in plan.operations if o.id in pending and plan.phase_of(o) == first}
            asked = _connections_used(plan, list(_actions(plan, now, verify=False)))
            polled = {name: _connections_used(plan, [check]) for name, check in checks.items()}
            for used in polled.values():
                asked.update(used)
            problems += _connections(rt, asked, ask=True, polled_by=polled)
            problems += _connections(rt, {n: k for n, k in _connections_used(plan, actions).items() if n not in asked}, ask=False)
        finally:
            rt.close()
    if problems:
        raise PreflightFailed(problems)


def _trigger_checks(plan: Plan) -> dict[str, Mapping[str, Any]]:
    """Trigger check name -> the action it runs (its ``expect`` kept: it may name vars)."""
    if plan.triggers is None:
        return {}
    return {check_name(c, i): {k: v for k, v in c.items() if k not in ("name", "failures")}
            for i, c in enumerate(plan.triggers.checks)}


def _ahead(plan: Plan, op_ids: set[str], checks: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], bool]]:
    """The actions the run will execute, phase by phase, each with whether the engine gives
    it an idempotency token (a step's effect): what its clients are built for ahead."""
    order = {ph: i for i, ph in enumerate(plan.phases)}
    ops = sorted((o for o in plan.operations if o.id in op_ids), key=lambda o: order.get(plan.phase_of(o), 0))
    ahead: list[tuple[Mapping[str, Any], bool]] = []
    for op in ops:
        ahead += [(step.do, not step.read_only) for step in op.steps if step.do is not None]
        ahead += [(check, False) for check in op.verify]
    return ahead + [(check, False) for check in checks]


def _actions(plan: Plan, op_ids: set[str], *, verify: bool = True) -> Iterator[Mapping[str, Any]]:
    for op in plan.operations:
        if op.id not in op_ids:
            continue
        for step in op.steps:
            yield from (a for a in (step.do, step.undo, step.probe) if a is not None)
        yield from op.verify
    if verify:
        yield from plan.verify


def _vars(plan: Plan, actions: list[Mapping[str, Any]]) -> list[str]:
    places: list[Any] = [*actions, *connections.in_use(plan).values(),
                         *(s.model_dump(exclude_none=True) for s in plan.secrets.values())]
    problems: set[str] = set()
    for text in _strings(places):
        for inner, _ in refs.refs_in(text):
            try:
                ref = refs.parse(inner)
            except refs.RefSyntaxError:
                continue  # validation reported it
            if ref.namespace != "vars":
                continue
            try:
                value = refs.dig(plan.vars, ref.path, ref)
            except AtomicOpsError as exc:
                problems.add(f"var: {exc}")
                continue
            if value is None and text.strip() != "${" + inner + "}":
                # `null` as a whole value means "not given" (aws_endpoint: null is real AWS);
                # formatted into text it silently becomes "" (postgresql://:5432/app).
                problems.add(f"var {'.'.join(ref.path)!r} has no value but is used in {text!r}: "
                             f"give it with --var {ref.path[0]}=... or --vars-file")
    return sorted(problems)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _secrets_used(plan: Plan, actions: list[Mapping[str, Any]]) -> list[str]:
    # Connections are resolved when first used, a call's whenever it likes: the secrets of
    # each (of what is in use: a postgres `override` given replaces the password) are asked
    # for now rather than half-way through the run.
    places = [*actions, *connections.in_use(plan).values()]
    used = {t.strip().split(".")[1] for t, _ in refs.refs_in(places) if t.strip().startswith("secrets.")}
    return sorted(n for n in used if n in plan.secrets)


def _env_secrets(plan: Plan, names: list[str]) -> list[str]:
    problems = []
    for name in names:
        var = plan.secrets[name].env
        if var is None:
            continue
        if var not in os.environ:
            problems.append(f"secret {name!r} reads the environment variable {var}, which is not set")
        elif refused := refusal(name, os.environ[var]):
            problems.append(f"{refused} (environment variable {var})")
    return problems


def _aws_secrets(rt: Runtime, plan: Plan, names: list[str]) -> list[str]:
    problems = []
    for name in names:
        if plan.secrets[name].aws_secret is None:
            continue
        try:
            rt.secrets.value(name)  # one GetSecretValue; the value is only kept for redaction
        except AtomicOpsError as exc:
            problems.append(f"secret {name!r} cannot be read: {rt.secrets.redactor.text(str(exc))}")
    return problems


def _connections_used(plan: Plan, actions: list[Mapping[str, Any]]) -> dict[str, str]:
    """Connection name -> kind, for the connections these actions name (or default to). A
    ``call`` function picks its own connections; it meets a missing one when it runs."""
    kinds = registry.kinds()
    used: dict[str, str] = {}
    for action in actions:
        key, _ = registry.kind_of(action)
        want = kinds[key].connection_kind if key else None
        if want is None:
            continue
        name = action.get("connection")
        if not isinstance(name, str):
            name = next((n for n, c in plan.connections.items() if c.kind == want), None)
        if name is not None and name in plan.connections:
            used[name] = want
    return used


def _connections(rt: Runtime, used: Mapping[str, str], *, ask: bool,
                 polled_by: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    # Asked through connections of their own, with short limits: the runtime's may already
    # be open with the run's (reading an aws_secret, building the run's clients ahead).
    asking = rt.connections.fresh()
    executor = Executor(asking, env=rt.executor.env, run_id=rt.executor.run_id, base_dir=rt.executor.base_dir)
    try:
        return _ask(rt, asking, executor, used, ask=ask, polled_by=polled_by or {})
    finally:
        asking.close()


def _ask(rt: Runtime, asking: Connections, executor: Executor, used: Mapping[str, str], *, ask: bool,
         polled_by: Mapping[str, Mapping[str, str]]) -> list[str]:
    problems: dict[str, str] = {}
    questions: list[tuple[str, str, ActionKind, str]] = []
    for name, kind in sorted(used.items()):
        checks = sorted(c for c, conns in polled_by.items() if name in conns)
        why = (f" (rollback trigger {', '.join(checks)} polls it from the first operation on: "
               f"a check that cannot run misses, and misses roll the run back)") if checks else ""
        owner = registry.get(_kind_key(kind))
        waiting = rt.connections.deferred(name)
        if waiting is not None and any(not rt.scope.ops_outputs(op) for op in waiting.waits_on):
            # Built from what the run makes (the Aurora endpoint): resolved and opened by the
            # first action that needs it, once those operations are applied (validate saw to
            # it). Only its shape can be checked now, and its references were, by validate.
            spec = dict(waiting.written)
            ask_it = False
        else:
            try:
                spec = dict(rt.connections.spec(name))
            except AtomicOpsError as exc:
                problems[name] = f"connection {name!r} ({kind}): {rt.secrets.redactor.text(str(exc))}{why}"
                continue
            ask_it = ask
        issues = [f"{'.'.join(map(str, i.path))}: {i.message}" for i in owner.check_connection(spec)]
        if issues:
            problems[name] = f"connection {name!r} ({kind}): " + "; ".join(issues) + why
            continue
        if not ask_it:
            continue
        # Asked once, quickly: a run would wait its own (longer) timeouts later.
        spec["connect_timeout"] = min(float(spec.get("connect_timeout") or CONNECT_LIMIT), CONNECT_LIMIT)
        if kind == "aws":
            spec["max_attempts"] = 1
        asking.define(name, spec)
        questions.append((name, kind, owner, why))

    def question(name: str, kind: str, owner: ActionKind, why: str) -> str | None:
        try:
            request = _REQUESTS.get(kind)
            if request is not None:
                executor.execute({**request, "connection": name}, retry=Retry(attempts=1))
            else:
                asking.get(owner, name)
        except AtomicOpsError as exc:
            return f"connection {name!r} ({kind}) does not answer: {rt.secrets.redactor.text(str(exc))}{why}"
        return None

    # All at once: the flagship's AWS and NATS answer in the time of the slower, and a
    # connection that does not answer costs its limit once, not once per connection after it.
    if len(questions) > 1:
        with ThreadPoolExecutor(max_workers=len(questions), thread_name_prefix="preflight") as pool:
            answers = list(pool.map(lambda q: question(*q), questions))
    else:
        answers = [question(*q) for q in questions]
    for (name, *_), answer in zip(questions, answers, strict=True):
        if answer is not None:
            problems[name] = answer
    return [problems[name] for name in sorted(problems)]


def _kind_key(connection_kind: str) -> str:
    return next(k for k, v in registry.kinds().items() if v.connection_kind == connection_kind)
