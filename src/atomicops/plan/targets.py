"""Where a plan's AWS calls will go, said before anything runs: a forgotten `--vars-file`
must not quietly turn a rehearsal into a run against a real account."""

from __future__ import annotations

from atomicops.plan.changes import with_vars
from atomicops.plan.model import Plan


def aws_targets(plan: Plan) -> list[str]:
    """One line per AWS connection, read from the plan with its vars applied (no call is made):
    an ``endpoint_url`` is an emulator or a proxy; none is real AWS through boto3's normal
    credential chain (the account is the one those credentials belong to)."""
    lines = []
    for name, conn in sorted(plan.connections.items()):
        if conn.kind != "aws":
            continue
        spec = with_vars(conn.model_dump(), plan.vars)
        region = spec.get("region") or "the region of the environment (AWS_DEFAULT_REGION)"
        endpoint = spec.get("endpoint_url")
        where = f"endpoint {endpoint}" if endpoint else "REAL AWS (boto3's credential chain)"
        lines.append(f"aws connection {name!r}: {where}, region {region}")
    return lines
