"""Everything a run needs to execute actions, built from a plan (or the plan a journal kept)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from atomicops.actions.base import Connections
from atomicops.engine.cancel import Cancellation
from atomicops.engine.executor import Executor
from atomicops.engine.run import Run
from atomicops.engine.scope import Scope
from atomicops.engine.secrets import Secrets
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
    # Connection specs may use vars and secrets; they are resolved once, here.
    for name, conn in plan.connections.items():
        connections.define(name, scope.exec_form(conn.model_dump(), secrets))
    return Runtime(plan, scope, secrets, connections, executor)


@contextmanager
def runtime_of(run: Run, loaded: LoadedPlan) -> Iterator[Runtime]:
    """The runtime a run executes ``loaded`` with: the run's cancellation in every action, the
    run's journal masking what the runtime's secrets resolve, connections closed at the end."""
    rt = open_runtime(loaded.plan, env=run.env, run_id=run.id, base_dir=loaded.base_dir, cancel=run.cancel)
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
