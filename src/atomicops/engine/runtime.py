"""Everything a run needs to execute actions, built from a plan (or the plan a journal kept)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from atomicops.actions.base import ConnectionNotReady, Connections, Deferred
from atomicops.engine.cancel import Cancellation
from atomicops.engine.executor import Executor
from atomicops.engine.run import Run
from atomicops.engine.scope import Scope
from atomicops.engine.secrets import Secrets
from atomicops.plan import connections as plan_connections
from atomicops.plan.loader import LoadedPlan
from atomicops.plan.model import Plan, SecretSpec


@dataclass
class Runtime:
    plan: Plan
    scope: Scope
    secrets: Secrets
    connections: Connections
    executor: Executor

    def close(self) -> None:
        self.connections.close()


def open_runtime(
    plan: Plan,
    *,
    env: str,
    run_id: str,
    base_dir: str,
    ops_outputs: Callable[[str], Mapping[str, Any]] = lambda op: {},
    cancel: Cancellation | None = None,
) -> Runtime:
    """``cancel`` is the run's: every action the runtime executes sees it as ``ctx.cancel``."""
    scope = Scope(env=env, run_id=run_id, vars=plan.vars, ops_outputs=ops_outputs)
    connections = Connections({})
    executor = Executor(connections, env=env, run_id=run_id, base_dir=base_dir, cancel=cancel)

    def fetch_aws(secret_id: str, connection: str | None) -> str:
        action = {"aws": "secretsmanager.get_secret_value", "params": {"SecretId": secret_id}}
        if connection:
            action["connection"] = connection
        return str(executor.execute(action).get("SecretString", ""))

    # Secret specs may name their store with vars (`store: app/${vars.stage}/db`).
    specs = {n: SecretSpec.model_validate(scope.journal_form(s.model_dump())) for n, s in plan.secrets.items()}
    secrets = Secrets(specs, fetch_aws=fetch_aws)
    rt = Runtime(plan, scope, secrets, connections, executor)
    # Which keys apply (a postgres `override` var replaces the address fields) is known from
    # vars alone, so it is chosen now: preflight then knows what each connection waits on.
    for name, spec in plan_connections.in_use(plan).items():
        connections.define_deferred(name, deferred(rt, name, spec))
    return rt


def deferred(rt: Runtime, name: str, spec: Mapping[str, Any]) -> Deferred:
    """Plan connection ``name`` (the keys in use), resolved when the first action needs it.

    Its vars, secrets and ``${ops.OP.OUT}`` are resolved then, with the runtime's scope of
    that moment: an apply's, whose outputs grow as operations are applied; a rollback's or a
    resume's, whose outputs are the journal's (never a DSN kept from an earlier run), and the
    secrets read again from where they live (their store, the environment)."""
    wanted = sorted({(op, out) for op, out, _ in plan_connections.outputs_named(spec)})

    def resolve() -> Mapping[str, Any]:
        missing = sorted({op for op, out in wanted if out not in rt.scope.ops_outputs(op)})
        if missing:
            raise ConnectionNotReady(
                "connections", f"connection {name!r} is built from the outputs of {', '.join(missing)}, "
                "not applied yet (the operation using it must depend on them)",
                code="ConnectionNotReady", connection=name, waits_on=tuple(missing),
            )
        return rt.scope.exec_form(spec, rt.secrets)

    waits_on = tuple(sorted({op for op, _ in wanted}))
    return Deferred(kind=str(spec.get("kind")), resolve=resolve, waits_on=waits_on, written=dict(spec))


def journalled_outputs(run: Run) -> Callable[[str], Mapping[str, Any]]:
    """``${ops.OP.OUT}`` as the journal holds it, read once when first asked (a rollback's
    connections; an apply's Applier replaces it with the outputs it tracks)."""
    held: list[dict[str, dict[str, Any]]] = []

    def outputs(op: str) -> Mapping[str, Any]:
        if not held:
            held.append({o.id: o.outputs for o in run.state().ops.values()})
        return held[0].get(op, {})

    return outputs


@contextmanager
def runtime_of(run: Run, loaded: LoadedPlan) -> Iterator[Runtime]:
    """The runtime a run executes ``loaded`` with: the run's cancellation in every action, the
    run's journal masking what the runtime's secrets resolve, connections closed at the end."""
    rt = open_runtime(loaded.plan, env=run.env, run_id=run.id, base_dir=loaded.base_dir, cancel=run.cancel,
                      ops_outputs=journalled_outputs(run))
    run.redactor = rt.secrets.redactor
    # What the process holds when the run starts (the plan, botocore's models and clients,
    # a few hundred thousand objects) lives until the run ends: the collector's full passes
    # during the run would walk all of it again for nothing (0.25 s of the flagship's apply,
    # B1). Frozen for the run, given back to the collector after it.
    gc.freeze()
    try:
        yield rt
    finally:
        rt.close()
        gc.unfreeze()
