"""What ``${...}`` references mean during a run: one lookup function per place.

The journal form of an action is resolved with ``secrets=None``: secret references stay as
text (``${secrets.db_password}``) so the journal never holds a value. The executed form
is resolved with the run's :class:`~atomicops.engine.secrets.Secrets`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from atomicops.engine.secrets import Secrets
from atomicops.errors import ReferenceError_
from atomicops.plan import refs


@dataclass(frozen=True)
class Scope:
    env: str
    run_id: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    ops_outputs: Callable[[str], Mapping[str, Any]] = lambda op: {}
    self_outputs: Mapping[str, Any] | None = None
    step_key: str | None = None
    step_run: str | None = None  # the run of the step's intent, when settling an earlier run's

    def with_self(self, outputs: Mapping[str, Any], step_key: str | None = None) -> Scope:
        return replace(self, self_outputs=dict(outputs), step_key=step_key)

    def lookup(self, secrets: Secrets | None) -> refs.Lookup:
        def look(ref: refs.Ref) -> Any:
            ns, path = ref.namespace, ref.path
            if ns == "secrets":
                if secrets is None:
                    raise refs.Keep
                if path[0] not in secrets:
                    raise ReferenceError_(ref.text, "unknown secret")
                return secrets.value(path[0])
            if ns == "vars":
                return refs.dig(self.vars, path, ref)
            if ns == "ops":
                return refs.dig(self.ops_outputs(path[0]), path[1:], ref)
            if ns == "self":
                if self.self_outputs is None:
                    raise ReferenceError_(ref.text, "no operation here")
                return refs.dig(self.self_outputs, path, ref)
            if ns == "step":
                if self.step_key is None:
                    raise ReferenceError_(ref.text, "not inside a step")
                return self.step_key if path[0] == "key" else self.step_run or self.run_id
            if ns == "run":
                return self.run_id
            if ns == "env":
                return self.env
            raise ReferenceError_(ref.text, "unknown namespace")

        return look

    def journal_form(self, value: Any) -> Any:
        return refs.resolve(value, self.lookup(None))

    def exec_form(self, value: Any, secrets: Secrets) -> Any:
        return refs.resolve(value, self.lookup(secrets))


def secrets_only(value: Any, secrets: Secrets) -> Any:
    """Resolve the secret references left in a journalled action (for undo and rollback)."""

    def look(ref: refs.Ref) -> Any:
        if ref.namespace == "secrets" and ref.path[0] in secrets:
            return secrets.value(ref.path[0])
        raise refs.Keep

    return refs.resolve(value, look)
