"""Typed errors. Each carries the data a caller needs and the exit code DESIGN.md assigns.

The CLI prints ``str(error)`` without a traceback and exits with ``error.exit_code``; Python
callers catch the class they care about and read its fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # failed, and rolled back (or kept, when asked)
EXIT_INVALID = 2  # invalid input, nothing ran
EXIT_ROLLBACK_INCOMPLETE = 3  # action needed
EXIT_LOCKED = 4


class AtomicOpsError(Exception):
    """Base of every error atomicops raises on purpose."""

    exit_code: int = EXIT_FAILED


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan, located as precisely as the source allows."""

    message: str
    file: str | None = None
    line: int | None = None
    op: str | None = None
    key: str | None = None
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = self.file or "<plan>"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.op:
            parts.append(f"operation {self.op}")
        if self.key:
            parts.append(self.key)
        label = "warning" if self.severity == "warning" else "error"
        return f"{': '.join(parts)}: {label}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "op": self.op,
            "key": self.key,
            "message": self.message,
        }


class PlanInvalid(AtomicOpsError):
    """The plan (or its vars) has problems; nothing ran."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        lines = "\n".join(f"  {p}" for p in errors)
        super().__init__(f"the plan has {len(errors)} error(s):\n{lines}")


class NeedsPerson(PlanInvalid):
    """``validate --strict``: steps that a crash would leave for a person to settle (no probe,
    nothing safe to repeat, an undo that needs the step's outputs). ``problems`` name each
    with its file and line."""

    def __init__(self, problems: list[Problem]):
        super().__init__(problems)
        lines = "\n".join(f"  {p}" for p in problems)
        message = (
            f"{len(problems)} step(s) would need a person to settle after a crash "
            f"(give each a probe that names ${{step.key}}, or an undo by name):\n{lines}"
        )
        self.args = (message,)


class UsageError(AtomicOpsError):
    """A command was asked for something that cannot be done as asked; nothing ran."""

    exit_code = EXIT_INVALID


class CycleError(AtomicOpsError):
    exit_code = EXIT_INVALID

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


class ReferenceError_(AtomicOpsError):
    """A ``${...}`` reference that cannot be resolved at run time."""

    exit_code = EXIT_INVALID

    def __init__(self, ref: str, reason: str):
        self.ref = ref
        self.reason = reason
        super().__init__(f"cannot resolve ${{{ref}}}: {reason}")


@dataclass
class ActionError(AtomicOpsError):
    """An action failed. ``code`` is the service's error code where it has one."""

    kind: str
    message: str
    code: str | None = None
    transient: bool = False
    result: Any = field(default=None, repr=False)
    applied: bool = False
    """The side effect took place although the action failed (a create whose waiter timed
    out): the engine journals it as done, so the operation's undo covers it."""
    ambiguous: bool = False
    """The request may have taken effect (its answer was lost: a read timeout, a connection
    dropped after sending, a 5xx other than "unavailable") and sending it again could do it
    twice: the engine asks the step's probe before any retry."""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.kind}{code}: {self.message}"


class ExpectFailed(AtomicOpsError):
    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("expectation not met: " + "; ".join(failures))


class StepFailed(AtomicOpsError):
    exit_code = EXIT_FAILED

    def __init__(self, op: str, step: str, cause: BaseException | str):
        self.op = op
        self.step = step
        self.cause = cause
        super().__init__(f"operation {op}, step {step}: {cause}")


class RunFailed(AtomicOpsError):
    """Apply failed; the run was rolled back (or kept, as asked)."""

    exit_code = EXIT_FAILED

    def __init__(self, run_id: str, failures: list[StepFailed | AtomicOpsError], kept: bool):
        self.run_id = run_id
        self.failures = failures
        self.kept = kept
        what = "kept for inspection" if kept else "rolled back"
        detail = "\n".join(f"  {f}" for f in failures)
        super().__init__(f"run {run_id} failed and was {what}:\n{detail}")


class TriggerFired(RunFailed):
    """A rollback trigger fired (during apply, its monitoring window, or `atomicops monitor`):
    the run was rolled back, or kept when asked. ``observed`` is what the check saw, secrets
    masked and clipped; ``at`` is when it fired (epoch seconds)."""

    def __init__(
        self, run_id: str, check: str, observed: str, at: float,
        failures: list[StepFailed | AtomicOpsError], kept: bool, *, during: str = "apply",
    ):
        self.check = check
        self.observed = observed
        self.at = at
        self.during = during
        super().__init__(run_id, failures, kept)
        where = {"apply": "during the apply", "window": "in the window after the apply",
                 "monitor": "while monitoring"}.get(during, during)
        what = "kept as it stands (--on-failure keep)" if kept else "rolled back"
        others = "".join(f"\n  {f}" for f in failures if not str(f).startswith(f"trigger {check} fired"))
        Exception.__init__(self, f"trigger {check} fired {where}: {observed}\nrun {run_id}: {what}{others}")


class Interrupted(AtomicOpsError):
    """The run was asked to stop (Ctrl-C): it started no operation after that."""

    def __init__(self, not_started: list[str]):
        self.not_started = not_started
        left = f"; not started: {', '.join(not_started)}" if not_started else ""
        super().__init__(f"interrupted (Ctrl-C): no new operation was started{left}")


class RollbackIncomplete(AtomicOpsError):
    """Some undos failed: ``remaining`` is still applied (the failed operations and what waits
    behind them); ``skippable`` are the failed undos a person may settle with ``--skip``."""

    exit_code = EXIT_ROLLBACK_INCOMPLETE

    def __init__(self, remaining: list[str], failures: list[str], *, env: str = "default",
                 skippable: list[str] | None = None):
        self.remaining = remaining
        self.failures = failures
        self.env = env
        self.skippable = list(skippable or [])
        detail = "\n".join(f"  {f}" for f in failures)
        flag = "" if env == "default" else f" --env {env}"
        steps = [f"  atomicops rollback{flag}    # fix the cause, then retry: only what remains is undone"]
        steps += [
            f"  atomicops rollback{flag} --skip {op} --reason \"...\"    # a person removed it by hand"
            for op in self.skippable
        ]
        super().__init__(
            f"rollback incomplete in environment {env!r}; still applied: "
            + ", ".join(remaining)
            + (f"\n{detail}" if detail else "")
            + "\nnext:\n"
            + "\n".join(steps)
        )


class Locked(AtomicOpsError):
    exit_code = EXIT_LOCKED

    def __init__(self, env: str, holder: dict[str, Any]):
        self.env = env
        self.holder = holder
        who = ", ".join(f"{k}={v}" for k, v in holder.items())
        super().__init__(f"environment {env!r} is locked by another run ({who})")


class UndoFailed(AtomicOpsError):
    exit_code = EXIT_ROLLBACK_INCOMPLETE

    def __init__(self, op: str, step: str, cause: BaseException | str):
        self.op = op
        self.step = step
        self.cause = cause
        super().__init__(f"undo of operation {op}, step {step} failed: {cause}")


class AdoptionRefused(AtomicOpsError):
    """A create that succeeds on an existing resource met one this step did not make: going
    on would journal an undo that deletes it. Nothing was created or deleted."""

    exit_code = EXIT_FAILED

    def __init__(self, call: str, resource: str, state: str, why: str = ""):
        self.call = call
        self.resource = resource
        self.state = state  # "foreign" or "unproven" (see engine/catalog.py)
        self.why = why
        reason = f" ({why})" if why else ""
        super().__init__(
            f"{resource} already exists and is not this step's{reason}: {call} would take it over "
            "and a rollback would delete it; nothing was changed. Remove or rename it, or give the "
            "step another name for it"
            if state == "foreign"
            else f"cannot tell whether {resource} exists and whose it is{reason}: {call} could take "
            "over something this step did not make; nothing was changed"
        )


class Uncertain(AtomicOpsError):
    """Interrupted steps that no probe could settle; ``atomicops resolve`` decides them."""

    exit_code = EXIT_ROLLBACK_INCOMPLETE

    def __init__(self, env: str, steps: list[str]):
        self.env = env
        self.steps = steps
        how = "\n".join(
            f"  atomicops resolve {s.split('/')[0]} {s.split('/')[1]} --applied|--not-applied --env {env}"
            for s in steps
        )
        super().__init__(
            "these interrupted steps may or may not have taken effect, and nothing can tell: "
            + ", ".join(steps)
            + "\nlook at the target, then settle each:\n"
            + how
            + "\nthen run `atomicops resume` again"
        )


class ResumeMismatch(AtomicOpsError):
    """The journal's recorded steps do not match what resume is asked to do."""

    exit_code = EXIT_INVALID

    def __init__(self, differences: list[str]):
        self.differences = differences
        super().__init__(
            "resume refuses: the journal does not match the plan it is asked to finish:\n"
            + "\n".join(f"  {d}" for d in differences)
        )


class StaleLease(AtomicOpsError):
    """This run lost the environment's lock (it was paused past its lease and taken over)."""

    exit_code = EXIT_LOCKED

    def __init__(self, env: str, fence: int, current: int | None):
        self.env = env
        self.fence = fence
        self.current = current
        super().__init__(
            f"this run no longer holds environment {env!r}: its lease expired and another run "
            f"took over (fence {fence}, now {current}); it stopped without writing anything more"
        )


class PreflightFailed(AtomicOpsError):
    """What a run will need is missing (a secret, a var, a connection); nothing ran."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"preflight found {len(problems)} problem(s); nothing was run:\n"
            + "\n".join(f"  {p}" for p in problems)
            + "\nfix them and run the command again"
        )


class JournalDamaged(UsageError):
    """The journal at ``path`` exists but cannot be trusted: empty, not a journal, a damaged
    page, or an event that no longer matches the checksum chain (``seq``). Nothing ran."""

    def __init__(self, path: str, problem: str, seq: int | None = None):
        self.path = path
        self.problem = problem
        self.seq = seq
        super().__init__(
            f"cannot open the journal at {path}: it {problem}; nothing was run. atomicops "
            "starts a new journal only where no file is, since a lost journal would have it run "
            "everything again: restore this one from a backup, or give --state the right file"
        )


class HolderAlive(Locked):
    """``unlock`` was asked to break a lock whose holder is still running on this host."""

    def __init__(self, env: str, holder: dict[str, Any]):
        self.env = env
        self.holder = holder
        # Not Locked's message: this one says why unlock refused and what to do instead.
        AtomicOpsError.__init__(
            self,
            f"environment {env!r} is held by run {holder['run_id']}, which is still running "
            f"(pid {holder['pid']} on {holder['host']}, {holder['command'] or 'command unknown'}); "
            "nothing was unlocked. Stop that run (Ctrl-C, or kill its pid) or wait for it to "
            f"finish; `atomicops unlock --env {env} --lock-id {holder['lock_id']} --force` breaks "
            "the lock anyway, and that run's further journal writes are then refused",
        )


class Refused(UsageError):
    """What the journal holds forbids this command for now; ``reasons`` say why and what to
    run first. Nothing ran."""

    def __init__(self, command: str, reasons: list[str]):
        self.command = command
        self.reasons = reasons
        super().__init__(f"{command} refused:\n" + "\n".join(f"  {r}" for r in reasons))


class UnknownCheckpoint(UsageError):
    """``rollback --to NAME`` names no live checkpoint of the environment; ``known`` lists the
    ones there are (a mark a rollback went back past is gone). Nothing ran."""

    def __init__(self, env: str, name: str, known: list[str]):
        self.env = env
        self.name = name
        self.known = known
        listed = ", ".join(known) if known else "none (`atomicops checkpoint NAME` marks one)"
        super().__init__(f"environment {env!r} has no checkpoint {name!r}; its checkpoints: {listed}")


class CheckpointExists(UsageError):
    """``atomicops checkpoint NAME`` was given a name a live mark, or the recorded plan, already
    uses: ``rollback --to`` needs one mark per name. Nothing was marked."""

    def __init__(self, env: str, name: str, where: str):
        self.env = env
        self.name = name
        self.where = where
        super().__init__(f"environment {env!r} already has a checkpoint {name!r} ({where}); pick another name")


class ResumeRolledBack(AtomicOpsError):
    """The killed apply was failing when it died, so ``resume`` rolled it back instead of
    finishing it: the kill proved nothing about finishing an apply."""

    def __init__(self, undone: list[str]):
        self.undone = undone
        super().__init__(f"the killed apply was already failing; resume rolled back {len(undone)} operation(s)")


class SchemaTooNew(UsageError):
    """The shared journal was migrated by a newer atomicops than this one: reading it could
    misread events this version does not know, and writing could break the newer tool's runs."""

    def __init__(self, where: str, found: int, understood: int):
        self.where = where
        self.found = found
        self.understood = understood
        super().__init__(
            f"the journal at {where} has schema version {found}, newer than this atomicops "
            f"understands ({understood}); nothing was run. Upgrade atomicops on this machine "
            "(everyone sharing a journal runs the same version or newer)"
        )


class StorePermissionDenied(UsageError):
    """The journal store's role lacks a privilege; ``grant`` is the statement that gives it."""

    def __init__(self, where: str, role: str, denied: str, grant: str):
        self.where = where
        self.role = role
        self.denied = denied
        self.grant = grant
        super().__init__(
            f"the journal at {where}: role {role!r} lacks a privilege ({denied}); nothing was "
            f"changed. A database owner can run:\n  {grant}\n(README, \"Working as a team\", "
            "lists every GRANT the journal needs)"
        )


class CopyRefused(UsageError):
    """``atomicops state copy`` found the target unable to take the journal as it is; nothing
    was copied."""

    def __init__(self, env: str, reason: str):
        self.env = env
        self.reason = reason
        super().__init__(f"cannot copy environment {env!r}: {reason}; nothing was copied")
