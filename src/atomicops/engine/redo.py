"""Re-do: a step left in flight whose ``do`` is safe to send again is simply run again.

Two kinds of AWS call are safe to repeat:

- a call with a member botocore's service model marks ``idempotencyToken`` (``ClientToken``,
  ``CreatorRequestId``...): the engine fills it with the token journalled with the step's
  intent, so the service answers the second call with what the first one made;
- an upsert by nature, listed in :data:`UPSERTS` with the condition under which it is one
  (``ssm.put_parameter`` only with ``Overwrite: true``): a second call leaves the world as one
  call would.

The list is explicit and every entry is tested against the moto server: when in doubt a call
is not on it, since re-sending a plain create makes a second resource (or fails on the first).
A plan author may vouch for a step the engine cannot judge (a ``call`` into their own code)
with ``safe_to_repeat: "<why>"``; the reason is shown by ``validate`` and journalled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from atomicops.engine.crash import crashpoint
from atomicops.errors import ActionError, AtomicOpsError
from atomicops.plan.model import Operation, Step

if TYPE_CHECKING:
    from atomicops.engine.apply import Applier
    from atomicops.journal.state import StepState


def _always(params: Mapping[str, Any]) -> bool:
    return True


def _overwrite(params: Mapping[str, Any]) -> bool:
    # Without Overwrite a second put fails with ParameterAlreadyExists: not a re-do.
    return params.get("Overwrite") is True


UPSERTS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "ssm.put_parameter": _overwrite,
    "iam.put_role_policy": _always,  # replaces the inline policy of that name
    "iam.attach_role_policy": _always,  # attaching an attached policy is a no-op
    "sns.create_topic": _always,  # answers the existing topic's ARN (same attributes, same tags)
    "sns.subscribe": _always,  # the same endpoint and protocol answer the same subscription
    "sns.set_topic_attributes": _always,
    "sqs.set_queue_attributes": _always,
    "s3.put_bucket_policy": _always,
    "s3.put_bucket_versioning": _always,
    "s3.put_bucket_tagging": _always,
    "s3.put_public_access_block": _always,
    "logs.put_retention_policy": _always,
    "cloudwatch.put_metric_alarm": _always,  # creates or replaces the alarm of that name
    "events.put_rule": _always,  # creates or updates the rule of that name
    "events.put_targets": _always,  # targets are keyed by their Id
}
"""``service.operation`` -> whether a call with these params is an upsert."""


def aws_call(action: Mapping[str, Any]) -> str | None:
    """``service.operation`` of an AWS action, or None for another kind (or a reference)."""
    call = action.get("aws")
    return call if isinstance(call, str) and "${" not in call and "." in call else None


def takes_token(call: str) -> bool:
    """Whether botocore's model gives ``call`` a member the service keys idempotency on."""
    from atomicops.actions import aws_models

    return aws_models.takes_token(call)


def is_upsert(step: Step) -> bool:
    """Whether the step's ``do`` is on the upsert list with params that make it one. Settling
    prefers repeating it to a lookup: a tagless upsert (an ``Overwrite``, an inline policy)
    cannot be proven this step's, and repeating it leaves the world as one call would."""
    call = aws_call(step.do)
    params = step.do.get("params")
    upsert = UPSERTS.get(call) if call is not None else None
    return not step.read_only and upsert is not None and isinstance(params, Mapping) and upsert(params)


def do_is_its_probe(step: Step) -> bool:
    """Whether the step's ``do`` is the very action of its ``probe``: a read (a probe is
    read-only by contract) whose only effect is the outputs it journals, such as the
    flagship's claim of a stream range. Running it again is always safe."""
    if step.read_only or step.probe is None:
        return False
    return {k: v for k, v in step.probe.items() if k not in ("outputs", "expect")} == dict(step.do)


def safe_to_repeat(step: Step) -> str | None:
    """Why the step's ``do`` may be sent again after a crash, or None when it may not."""
    if step.read_only:
        return None
    if do_is_its_probe(step):
        return "its do is the read its probe makes: it changes nothing"
    if step.safe_to_repeat is not None:
        return f"the plan says it is safe to repeat: {step.safe_to_repeat}"
    call = aws_call(step.do)
    if call is None:
        return None
    if is_upsert(step):
        return f"{call} is an upsert"
    if takes_token(call):
        return f"{call} carries an idempotency token"
    return None


def redo_step(applier: Applier, op: Operation, step: Step, self_outputs: dict[str, Any], st: StepState) -> bool:
    """Run an in-flight step's ``do`` again; ``False`` (journalled ``uncertain``) if it failed.

    The re-do sends what the interrupted attempt sent: the same token, the same tags (the
    intent's run, so a tagged upsert such as CreateTopic sees identical tags), the same
    ``${step.run}``. A failed re-do proves nothing about the first attempt, so the step is
    left for ``atomicops resolve`` rather than marked as not applied.
    """
    from atomicops.engine.apply import step_key
    from atomicops.engine.executor import (
        extract_outputs,  # here: `validate` asks this module only its rules
    )

    run, rt = applier.run, applier.rt
    where = f"{op.id}/{step.name}"
    key = step_key(run.env, op.id, step.name)
    first_run = st.tag_run or st.run_id  # a re-do of a re-do still sends the first attempt's tags
    scope = replace(rt.scope.with_self(self_outputs, key), step_run=first_run)
    try:
        journal_action = scope.sealed_form(step.do, rt.secrets)
        action = scope.exec_form(step.do, rt.secrets)
    except AtomicOpsError as exc:
        run.record("step_uncertain", op=op.id, step=step.name, reason=run.redactor.text(f"cannot re-do: {exc}"))
        return False
    token = st.token or applier.token_for(op.id, step.name, key)
    run.record("step_intent", op=op.id, step=step.name, action=journal_action, key=key, token=token, redo=True,
               tag_run=first_run)
    crashpoint("after_intent", key)
    tags = {"atomicops:env": run.env, "atomicops:op": op.id, "atomicops:step": key, "atomicops:run": first_run}
    started = time.time()
    try:
        result = rt.executor.execute(
            action, op=op.id, step_key=key, tags=tags, retry=step.retry, timeout=step.timeout,
            idempotency_token=token,
        )
    except ActionError as exc:
        reason = run.redactor.text(f"re-done after a crash, and the re-do failed: {exc}")
        run.observer.note(f"{where}: {reason}", level="warning")
        run.record("step_uncertain", op=op.id, step=step.name, reason=reason)
        return False
    crashpoint("after_effect", key)
    outputs, missing = extract_outputs(step.result_outputs, result)
    run.observer.note(f"{where}: re-done (safe to repeat)")
    applier.record_done(op, step, outputs, self_outputs, started, time.time(), result=result, missing=missing,
                        settled_by="redo")
    crashpoint("after_result", key)
    return True
