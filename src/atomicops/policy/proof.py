"""A run of a plan as a principal that holds only given actions, on moto with IAM enforced.

Apply, verify, the probe a resume would make of each applied step, then rollback: every AWS call a run can make is made once with the
principal's keys, and every refusal is collected (``AccessDenied`` names the action).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from atomicops.errors import AtomicOpsError
from atomicops.plan.loader import LoadedPlan
from atomicops.policy.sandbox import Keys

_DENIED = re.compile(r"not authorized to perform: ([a-z0-9-]+:[A-Za-z0-9]+)")


@dataclass
class RunAs:
    """What happened to a run made with a principal's keys."""

    apply_error: str | None = None
    errors: list[str] = field(default_factory=list)  # every failed step's and undo's, whole
    verify_failures: list[str] = field(default_factory=list)
    probe_failures: list[str] = field(default_factory=list)
    rollback_error: str | None = None
    undone: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.apply_error or self.verify_failures or self.probe_failures or self.rollback_error)

    def denied(self) -> set[str]:
        """The actions AWS refused, as its messages name them."""
        text = " ".join(filter(None, [self.apply_error, self.rollback_error, *self.errors,
                                      *self.verify_failures, *self.probe_failures]))
        return set(_DENIED.findall(text))


@contextlib.contextmanager
def credentials(keys: Keys) -> Iterator[None]:
    """The principal's keys in the environment, where boto3's credential chain reads them."""
    saved = {k: os.environ.get(k) for k in (*keys.env(), "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    os.environ.update(keys.env())
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_as(keys: Keys, plan: str, *, vars: Mapping[str, Any], state: str, env: str = "default",
           endpoint: str, region: str = "us-east-1") -> RunAs:
    """Apply (with verify), probe every AWS step, and roll back, all with ``keys``."""
    from atomicops import api

    out = RunAs()
    with credentials(keys):
        try:
            api.apply(plan, env=env, state=state, vars=vars, monitor=0)
        except AtomicOpsError as exc:
            out.apply_error = str(exc)
        if out.apply_error is None:
            out.verify_failures = [f"{r['check']}: {r.get('error') or r.get('mismatches')}"
                                   for r in api.verify(plan, env=env, state=state, vars=vars) if not r["ok"]]
            out.probe_failures = probe_all(api.validate(plan, vars=vars), env=env, state=state)
        try:
            report = api.rollback(env=env, state=state, reason="policy proof")
            out.undone = list(report.undone)
            if report.failed:
                out.rollback_error = "; ".join(f"{op}: {error}" for op, error in report.failed.items())
        except AtomicOpsError as exc:
            out.rollback_error = str(exc)
    from atomicops.journal import views

    # The run's messages are cut for the screen; the journal has each failure whole.
    out.errors = [str(e["data"].get("error")) for e in views.history(env, state)
                  if e["type"] in ("step_failed", "undo_failed") and e["data"].get("error")]
    return out


def probe_all(loaded: LoadedPlan, *, env: str, state: str) -> list[str]:
    """Each applied step's probe, as a resume would make it to settle the step: its own
    ``probe:`` or the built-in one (engine/probe.py). A probe refused by AWS is a failure.
    (One that answers otherwise is not judged: made after the whole apply, a probe may see
    what later steps did, as a task definition's newest revision, which a resume's probe of
    an in-flight step never does.)"""
    from atomicops.engine.probe import can_probe, probe
    from atomicops.engine.runtime import open_runtime
    from atomicops.journal.state import derive
    from atomicops.journal.views import store_for

    st = derive(env, store_for(state).events(env))
    outputs = {o.id: o.outputs for o in st.ops.values() if o.status == "applied"}
    rt = open_runtime(loaded.plan, env=env, run_id="probe-proof", base_dir=loaded.base_dir,
                      ops_outputs=lambda op: outputs.get(op, {}))
    failures = []
    try:
        for op in loaded.plan.operations:
            if op.id not in outputs:
                continue
            for step in op.steps:
                done = st.ops[op.id].steps.get(step.name)
                if done is None or done.status != "done" or not can_probe(step):
                    continue
                key = f"{env}/{op.id}/{step.name}"
                answer = probe(rt, step, dict(outputs[op.id]), key, op.id, op=op, run_id=done.tag_run or done.run_id)
                if answer.found is not True and _DENIED.search(answer.why):
                    failures.append(f"{op.id}/{step.name} probe: {answer.why}")
    finally:
        rt.close()
    return failures
