"""The plan as typed, frozen data. Keys and their meaning are the contract in DESIGN.md.

Actions (``do``, ``undo``, ``probe``, checks) stay plain mappings here: their shape belongs to
the action kind that runs them (:mod:`atomicops.actions`), which checks them in
:mod:`atomicops.plan.validate`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A plan name, operation id or step name (and ``--env``): ``${step.key}``,
# ``<env>/<op>/<step>``, must fit an AWS tag value (256 characters).
from atomicops.plan.names import ID_MAX, ID_PATTERN

OP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
"""An operation id is referenced as ``${ops.ID.OUTPUT}``, split at dots: no dot in it."""
MAX_SECONDS = 7 * 24 * 3600.0
"""Longest step timeout; retry delays are bounded by :data:`MAX_DELAY`. Both are checked
at validate, where ``timeout: .inf`` or ``delay: 1e308`` used to pass and then fail a run."""
MAX_DELAY = 3600.0

DEFAULT_UNDO_OK_ERRORS = ("*NotFound*", "NoSuch*", "*NotFoundException", "*DoesNotExist*")
"""Error codes that mean "already gone", so an undo that meets them counts as done."""

Action = dict[str, Any]


def is_value_output(spec: Any) -> bool:
    """An output that is a value, not a JMESPath expression: anything but a string, or a
    string holding ``${...}``."""
    return not isinstance(spec, str) or "${" in spec


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retry(_Model):
    attempts: int = Field(3, ge=1, le=100)
    delay: float = Field(1.0, ge=0, le=MAX_DELAY)
    backoff: float = Field(2.0, ge=1, le=100)
    max_delay: float = Field(30.0, ge=0, le=MAX_DELAY)
    on: Literal["transient", "any"] = "transient"


class Step(_Model):
    name: str = Field(pattern=ID_PATTERN, max_length=ID_MAX)
    do: Action
    undo: Action | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    """JMESPath over the do's result (a string), or a value: a constant (a number, a list...)
    or a string with ``${...}`` references, so a name the plan makes up is written once."""
    probe: Action | None = None
    retry: Retry | None = None
    timeout: float | None = Field(None, gt=0, le=MAX_SECONDS)
    irreversible: str | None = None
    read_only: bool = False
    undo_ok_errors: list[str] | None = None
    safe_to_repeat: str | None = Field(None, min_length=1)
    """Why the ``do`` may be sent again after a crash left it in flight (the author vouches
    for a ``call`` the engine cannot judge: an upsert, a content-addressed push). Without a
    probe, a resume then re-does the step instead of leaving it to a person."""

    @property
    def result_outputs(self) -> dict[str, str]:
        """The outputs read from the result (JMESPath expressions)."""
        return {k: v for k, v in self.outputs.items() if not is_value_output(v)}

    @property
    def value_outputs(self) -> dict[str, Any]:
        """The outputs that are values (constants, references), known without the result."""
        return {k: v for k, v in self.outputs.items() if is_value_output(v)}

    @property
    def ok_errors(self) -> tuple[str, ...]:
        if self.undo_ok_errors is None:
            return DEFAULT_UNDO_OK_ERRORS
        return tuple(self.undo_ok_errors)


class Operation(_Model):
    id: str = Field(max_length=ID_MAX)
    phase: str | None = None
    title: str = ""
    depends_on: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    verify: list[Action] = Field(default_factory=list)
    checkpoint: str | None = Field(None, pattern=ID_PATTERN, max_length=ID_MAX)
    """A named mark the journal records when this operation completes, for ``rollback --to``.
    Its steps (if any) are the checkpoint's snapshot, reversible like any other step."""

    @model_validator(mode="after")
    def _steps_or_mark(self) -> Operation:
        # An operation with no steps would be applied without doing anything: only a pure
        # mark (a checkpoint between operations) has a reason to be that.
        if not self.steps and self.checkpoint is None:
            raise ValueError("an operation needs at least one step (or a `checkpoint:` name, for a pure mark)")
        return self

    @field_validator("id")
    @classmethod
    def _referenceable(cls, value: str) -> str:
        if not re.match(OP_ID_PATTERN, value):
            raise ValueError(
                f"operation id {value!r} could not be referenced as ${{ops.ID.output}}: use "
                "letters, digits, - and _, starting with a letter or _ (no dots)"
            )
        return value


class SecretSpec(_Model):
    generate: int | None = Field(None, ge=8, le=4096)
    env: str | None = None
    aws_secret: str | None = None
    connection: str | None = None
    store: str | None = None
    """For ``generate``: the Secrets Manager secret the plan writes the value to. Once it
    exists, every later run (resume, rollback) reads the value back from there instead of
    generating a new one. ``name#key`` names one key of a JSON secret."""

    @model_validator(mode="after")
    def _one_source(self) -> SecretSpec:
        given = [k for k in ("generate", "env", "aws_secret") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a secret needs exactly one of: generate, env, aws_secret")
        if self.store is not None and self.generate is None:
            raise ValueError("store goes with generate (it is where the generated value is kept)")
        return self

    @property
    def source(self) -> str:
        return next(k for k in ("generate", "env", "aws_secret") if getattr(self, k) is not None)


class Connection(BaseModel):
    """``kind`` picks the action kind that opens it; other keys belong to that kind."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str


class Triggers(_Model):
    monitor_minutes: float = Field(0, ge=0)
    poll_seconds: float = Field(15, gt=0)
    checks: list[Action] = Field(default_factory=list)


class Rehearsal(_Model):
    """What ``atomicops rehearse`` does before it takes the first inventory: it stands up the
    local system being migrated. Each ``setup`` action may carry ``name`` and ``outputs``
    (JMESPath over its result); the outputs become plan vars for the rehearsal."""

    setup: list[Action] = Field(default_factory=list)


class Plan(_Model):
    atomicops: Literal[1]
    name: str = Field(pattern=ID_PATTERN, max_length=ID_MAX)
    description: str = ""
    phases: list[str] = Field(default_factory=lambda: ["main"], min_length=1)
    vars: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, SecretSpec] = Field(default_factory=dict)
    connections: dict[str, Connection] = Field(default_factory=dict)
    on_failure: Literal["rollback", "keep"] = "rollback"
    triggers: Triggers | None = None
    operations: list[Operation] = Field(min_length=1)
    verify: list[Action] = Field(default_factory=list)
    rehearsal: Rehearsal | None = None

    @field_validator("atomicops", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True == 1 to Python, so Literal[1] would take it
            raise ValueError("the format version is written `atomicops: 1` (a number)")  # noqa: TRY004 - pydantic reports ValueError only
        return value

    @cached_property
    def operations_by_id(self) -> dict[str, Operation]:
        # The model is frozen, so the index never goes stale; the engine looks operations up
        # by id once per operation, and a scan each time was quadratic in the plan's size.
        # The first of a duplicated id wins, as the scan it replaces did (validation refuses it).
        out: dict[str, Operation] = {}
        for op in self.operations:
            out.setdefault(op.id, op)
        return out

    def operation(self, op_id: str) -> Operation:
        return self.operations_by_id[op_id]

    def phase_of(self, op: Operation) -> str:
        return op.phase or self.phases[0]
