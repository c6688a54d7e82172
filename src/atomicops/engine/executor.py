"""Execute one resolved action: pick its kind, apply retries and timeouts, classify errors."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import jmespath
import jmespath.exceptions
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from atomicops.actions import registry
from atomicops.actions.base import ActionContext, ActionKind, Connections
from atomicops.engine.cancel import Cancellation
from atomicops.errors import ActionError, AtomicOpsError
from atomicops.expect import CANNOT_EVALUATE, Mismatch, evaluate
from atomicops.plan.model import Retry

DEFAULT_RETRY = Retry(attempts=3, delay=1.0, backoff=2.0, max_delay=30.0, on="transient")
UNDO_RETRY = Retry(attempts=3, delay=0.5, backoff=2.0, max_delay=10.0, on="any")

# Errors that mean "not yet": AWS releases what a deleted resource held (network interfaces
# of an endpoint, the instances of a cluster) some time after the delete returns. An undo that
# meets one keeps trying for minutes, not seconds (engine/settling.py says how many).
SETTLING_CODES = ("DependencyViolation", "*InUse*", "Invalid*State*", "*InvalidState*")


class Executor:
    def __init__(
        self, connections: Connections, *, env: str, run_id: str, base_dir: str, cancel: Cancellation | None = None
    ):
        self.connections = connections
        self.env = env
        self.run_id = run_id
        self.base_dir = base_dir
        self.cancel = cancel or Cancellation()
        self.settle_minutes: float | None = None  # `rollback --settle-minutes` (engine/settling.py)

    def kind_of(self, action: Mapping[str, Any]) -> ActionKind:
        key, _ = registry.kind_of(action)
        if key is None:
            raise ActionError("plan", "an action has no (or more than one) kind key")
        return registry.get(key)

    def execute(
        self,
        action: Mapping[str, Any],
        *,
        op: str | None = None,
        step_key: str | None = None,
        tags: Mapping[str, str] | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        should_retry: Any = None,
        progress: Any = None,
        resume_mark: Any = None,
        idempotency_token: str | None = None,
        cancel: threading.Event | None = None,
        may_resend: Any = None,
    ) -> Any:
        """``cancel`` is what the action sees as ``ctx.cancel``: the run's ``stop`` unless
        given (undo passes ``abort``, so the first Ctrl-C does not cancel the way back).
        ``may_resend(error)`` is asked before resending a call whose answer was lost
        (``error.ambiguous``); without it such a call is never sent again."""
        kind = self.kind_of(action)
        ctx = ActionContext(
            connections=self.connections,
            env=self.env,
            run_id=self.run_id,
            step_key=step_key,
            op=op,
            tags=dict(tags or {}),
            timeout=timeout,
            base_dir=self.base_dir,
            resume_mark=resume_mark,
            idempotency_token=idempotency_token,
            cancel=cancel or self.cancel.stop,
        )
        if progress is not None:
            ctx.progress = progress
        policy = retry or DEFAULT_RETRY

        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, ActionError):
                return False
            if should_retry is not None and not should_retry(exc):
                return False
            if ctx.cancel.is_set():
                return False
            if exc.ambiguous:
                # A create with no idempotency token may have happened: a blind resend
                # could make a second resource.
                return may_resend is not None and bool(may_resend(exc))
            return policy.on == "any" or exc.transient

        for attempt in Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(multiplier=policy.delay, exp_base=policy.backoff, max=policy.max_delay),
            retry=retry_if_exception(retryable),
            reraise=True,
        ):
            with attempt:
                return _call(kind, action, ctx)
        raise AssertionError("unreachable")  # pragma: no cover

    def prepare(self, actions: Iterable[tuple[Mapping[str, Any], bool]]) -> None:
        """Start building, in the background, the AWS clients these actions will use, in the
        order given (``(action, token)``: whether the engine gives it an idempotency token,
        which picks the send-once client). A run waits on the network first (preflight's
        requests, AWS answering the first wave); building a client is CPU work it would
        otherwise do later, between the steps."""
        from atomicops.actions.aws import AwsConnection

        wanted: dict[str | None, list[tuple[str, bool]]] = {}
        for action, token in actions:
            if not isinstance(action, Mapping) or registry.kind_of(action)[0] != "aws":
                continue
            client = AwsConnection.client_for(action, token=token)
            name = action.get("connection")
            if client is not None and (name is None or isinstance(name, str)):
                wanted.setdefault(name, []).append(client)
        kind = registry.get("aws") if wanted else None
        for name, clients in wanted.items():
            try:
                handle = self.connections.get(kind, name)  # type: ignore[arg-type]
            except AtomicOpsError:
                continue  # the step that uses it reports it
            if isinstance(handle, AwsConnection):
                handle.prepare(clients)

    def check(self, check: Mapping[str, Any]) -> tuple[Any, list[Mismatch]]:
        """Run a read-only check action and evaluate its ``expect``."""
        action = {k: v for k, v in check.items() if k not in ("expect", "name")}
        result = self.execute(action, retry=Retry(attempts=1))
        return result, evaluate(check.get("expect") or {}, result)


def _call(kind: ActionKind, action: Mapping[str, Any], ctx: ActionContext) -> Any:
    try:
        return kind.execute(action, ctx)
    except AtomicOpsError:
        raise
    except Exception as exc:
        raise ActionError(kind.key, f"{type(exc).__name__}: {exc}") from exc


def extract_outputs(spec: Mapping[str, str], result: Any) -> tuple[dict[str, Any], list[str]]:
    """Evaluate each output's JMESPath over the result; also name the ones that found nothing."""
    outputs: dict[str, Any] = {}
    missing: list[str] = []
    for name, expr in spec.items():
        try:
            value = jmespath.search(expr, result)
        except jmespath.exceptions.JMESPathError as exc:
            # A type error depends on the data (`length(x)` of a number): the effect already
            # happened, so this is an output that found nothing, with the reason, not a crash.
            missing.append(f"{name} ({expr}): {CANNOT_EVALUATE}: {' '.join(str(exc).split())}")
            outputs[name] = None
            continue
        if value is None:
            missing.append(f"{name} ({expr})")
        outputs[name] = value
    return outputs, missing
