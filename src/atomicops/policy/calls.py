"""Which AWS calls a plan makes, and for what: every call a run of it can send.

A run sends more than the plan's ``aws:`` actions. The list here is the engine's, not the
plan author's: each step's ``do`` (with the tags the engine adds), its ``undo``, its
``probe``, the waiters' polls, the built-in probe the engine uses for a step with no probe
of its own or for a create that could adopt a namesake (engine/catalog.py, adoption.py),
the operations' and the plan's ``verify`` checks, the rollback triggers, the reads of the
secrets the plan keeps in Secrets Manager, and the calls a ``call:`` function declares.

Each call says whether a rollback needs it: a rollback reads each applied step back with its
probe (the drift check, engine/drift.py), then runs the journal's recorded undo actions
(engine/rollback.py), after reading the secrets the run's connections use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from atomicops.actions import aws_models
from atomicops.actions.aws import parse_operation
from atomicops.actions.base import ENGINE_TAGS
from atomicops.engine.adoption import ADOPTING_CALLS
from atomicops.engine.catalog import covers
from atomicops.plan import refs
from atomicops.plan.loader import LoadedPlan
from atomicops.plan.model import Action, Plan
from atomicops.policy.probes import probe_calls

Purpose = Literal["run", "rollback"]
"""``run``: apply, verify, resume and the monitor need it; ``rollback``: undoing from the
journal needs it too (an automated rollback handler holds these alone)."""


@dataclass(frozen=True)
class Call:
    """One AWS API call a run may send."""

    service: str  # boto3's name: ec2, dynamodb, cloudwatch...
    operation: str  # the API's name: CreateVpc
    params: Mapping[str, Any]  # vars and ${env} filled in; other references stay ${...}
    purpose: Purpose
    why: str  # where it comes from, for --explain: "vpc/create-vpc do"
    tagged: bool = False  # a do: the engine adds its atomicops:* tags where the call takes them
    subject: str | None = None  # for a built-in probe: the create call it looks for
    op: str | None = None  # the operation it belongs to (its ${self.X} references are that one's)

    @property
    def name(self) -> str:
        return f"{self.service}.{self.operation}"


@dataclass
class PlanCalls:
    calls: list[Call] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    """``call:`` functions that declare no ``aws_calls``: what AWS calls they make is unknown."""


def plan_calls(loaded: LoadedPlan, *, env: str = "default") -> PlanCalls:
    """Every AWS call a run of ``loaded`` may make in environment ``env``."""
    plan = loaded.plan
    found = PlanCalls()
    fill = var_filler(plan, env)

    def add(action: Action | None, purpose: Purpose, why: str, *, tagged: bool = False,
            own_probe: bool = True, op: str | None = None) -> None:
        if action is None:
            return
        if "call" in action:
            _declared(action, purpose, why, loaded.base_dir, found, fill)
            return
        target = action.get("aws")
        if not isinstance(target, str) or refs.is_reference(target):
            return
        service, method = parse_operation(target)
        api = aws_models.operations(service).get(method)
        if api is None:  # validation refused it already
            return
        params = fill(action.get("params") or {})
        found.calls.append(Call(service, api, params, purpose, why, tagged=tagged, op=op))
        wait = action.get("wait")
        if isinstance(wait, Mapping) and isinstance(wait.get("waiter"), str):
            polled = aws_models.waiter_operation(service, wait["waiter"])
            found.calls.append(Call(service, polled, fill(wait.get("params") or {}), purpose,
                                    f"{why}: waiter {wait['waiter']}", op=op))
        if tagged and (not own_probe and covers(target) or target in ADOPTING_CALLS):
            for probe_service, probe_api in probe_calls(target):
                # "rollback": a rollback reads each step back before undoing it (engine/drift.py).
                found.calls.append(Call(probe_service, probe_api, params, "rollback",
                                        f"{why}: built-in probe of {target}", subject=target, op=op))

    for op in plan.operations:
        for step in op.steps:
            where = f"{op.id}/{step.name}"
            add(step.do, "run", f"{where} do", tagged=not step.read_only, own_probe=step.probe is not None, op=op.id)
            add(step.undo, "rollback", f"{where} undo", op=op.id)
            add(step.probe, "rollback", f"{where} probe", op=op.id)  # drift, before the undo
        for index, check in enumerate(op.verify):
            add(check, "run", f"{op.id} verify[{index}]", op=op.id)
    for index, check in enumerate(plan.verify):
        add(check, "run", f"plan verify[{index}]")
    for check in plan.triggers.checks if plan.triggers else ():
        add(check, "run", f"trigger {check.get('name', '?')}")
    for name, secret in sorted(plan.secrets.items()):
        secret_id = secret.aws_secret or (secret.store.partition("#")[0] if secret.store else None)
        if secret_id is not None:
            # Read by every run whose connections or actions use it: rollbacks included.
            found.calls.append(Call("secretsmanager", "GetSecretValue", {"SecretId": fill(secret_id)},
                                    "rollback", f"secret {name} ({secret.source})"))
    return found


def var_filler(plan: Plan, env: str) -> Any:
    """Fills ``${vars.X}`` and ``${env}`` in a value; every other reference is known only at
    run time and stays as written."""

    def lookup(ref: refs.Ref) -> Any:
        if ref.namespace == "vars":
            value = refs.dig(plan.vars, ref.path, ref)
            if value is None:
                raise refs.Keep
            return value
        if ref.namespace == "env":
            return env
        raise refs.Keep

    def fill(value: Any) -> Any:
        try:
            return refs.resolve(value, lookup)
        except refs.ReferenceError_:
            return value

    return fill


def _declared(action: Action, purpose: Purpose, why: str, base_dir: str, found: PlanCalls, fill: Any) -> None:
    """The AWS calls a ``call:`` function declares: the engine cannot see into the function.

    Its module's ``AWS_CALLS`` maps the function's name to the calls in boto3 spelling: a
    list, or a mapping from each call to the parameters it takes from the function's args
    (``{"ecr.put_image": {"repositoryName": "repository"}}``, so its resource can be scoped),
    or a function of the action's args giving either (a probe that looks for one kind of
    resource or another). ``[]`` says the function makes no AWS call.
    """
    target = action.get("call")
    if not isinstance(target, str) or refs.is_reference(target):
        return
    import sys

    from atomicops.actions.call import resolve_target
    from atomicops.errors import ActionError

    given = action.get("args")
    args: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    try:
        fn = resolve_target(target, base_dir)
    except ActionError:
        found.unknown.append(target)
        return
    table = getattr(sys.modules.get(fn.__module__), "AWS_CALLS", None) or {}
    declared = table.get(fn.__name__) if isinstance(table, Mapping) else None
    if callable(declared):
        declared = declared(args)
    if declared is None:
        if target not in found.unknown:
            found.unknown.append(target)
        return
    calls = declared.items() if isinstance(declared, Mapping) else ((c, {}) for c in declared)
    for call, from_args in calls:
        service, method = parse_operation(call)
        api = aws_models.operations(service).get(method)
        if api is None:
            raise ValueError(f"{target} declares {call}, which botocore does not know")
        params = {param: args[arg] for param, arg in from_args.items() if arg in args}
        tags = [param for param, arg in from_args.items() if arg == ENGINE_TAGS]
        params.update({param: "atomicops:env=x" for param in tags})
        found.calls.append(Call(service, api, fill(params), purpose, f"{why}: {target}", tagged=bool(tags)))
