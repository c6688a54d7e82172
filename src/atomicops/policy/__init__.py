"""``atomicops policy``: the least-privilege IAM policy a principal needs to run a plan.

- :mod:`.calls`: which AWS calls a run of the plan may send, and whether a rollback needs them;
- :mod:`.probes`: the calls of the engine's built-in probes;
- :mod:`.grants`: the IAM action, resources and conditions of each call;
- this module: the statements (apply and rollback apart) and their renderings;
- :mod:`.sandbox` and :mod:`.proof`: principals holding a policy on moto with IAM enforced,
  and a run made as one (``rehearse --least-privilege``, tests/test_policy_enforced.py).

What it cannot know: the calls a ``call:`` function makes unless its module declares them
(``AWS_CALLS``; the others are listed as unknown), and the region of a second AWS connection
(the first one's is used in ARNs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from atomicops.plan import refs
from atomicops.plan.loader import LoadedPlan
from atomicops.policy.calls import PlanCalls, Purpose, plan_calls, var_filler
from atomicops.policy.grants import Grant, Where, grants

For = Literal["all", "rollback"]

# Calls the engine makes that need no permission: AWS answers them for any valid credentials.
FREE_CALLS = {"sts:GetCallerIdentity": "preflight's credentials check; AWS needs no permission for it"}

Condition = tuple[tuple[str, str, tuple[str, ...]], ...]

MANAGED_POLICY_LIMIT = 6144
"""The most characters (whitespace not counted) a customer managed policy may hold."""


@dataclass(frozen=True)
class Statement:
    sid: str
    purpose: Purpose
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Condition = ()
    reasons: Mapping[str, str] = field(default_factory=dict)  # action -> why "*" (for --explain)
    in_request_only: Mapping[str, bool] = field(default_factory=dict)  # action -> only checked inside other calls

    def as_iam(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": list(self.actions) if len(self.actions) > 1 else self.actions[0],
            "Resource": list(self.resources) if len(self.resources) > 1 else self.resources[0],
        }
        if self.condition:
            doc["Condition"] = _condition(self.condition)
        return doc

    @property
    def wildcard(self) -> bool:
        """Resource ``*`` with no condition narrowing it."""
        return self.resources == ("*",) and not self.condition


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]
    unknown: tuple[str, ...]  # call: functions that declare no AWS calls
    env: str
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # action -> the calls it serves

    def chosen(self, which: For = "all") -> tuple[Statement, ...]:
        return tuple(s for s in self.statements if which == "all" or s.purpose == which)

    def document(self, which: For = "all") -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [s.as_iam() for s in self.chosen(which)]}

    def documents(self, which: For = "all", limit: int = MANAGED_POLICY_LIMIT) -> list[dict[str, Any]]:
        """The statements in as few documents as fit ``limit`` characters each (IAM counts a
        managed policy without its whitespace), apply's and the rollback's apart."""
        out: list[list[Statement]] = []
        for purpose in ("run", "rollback"):
            current: list[Statement] = []
            for statement in (s for s in self.chosen(which) if s.purpose == purpose):
                if current and _size([*current, statement]) > limit:
                    out.append(current)
                    current = []
                current.append(statement)
            if current:
                out.append(current)
        return [{"Version": "2012-10-17", "Statement": [s.as_iam() for s in part]} for part in out]

    def actions(self, which: For = "all") -> list[str]:
        return sorted({a for s in self.chosen(which) for a in s.actions})

    def in_request(self, which: For = "all") -> list[str]:
        """Actions granted only for what AWS checks within another call's request: the tags
        a create carries, and the calls a service makes as the caller (dependent actions)."""
        return sorted({a for s in self.chosen(which) for a in s.actions if s.in_request_only.get(a)})

    def summary(self, which: For = "all") -> dict[str, Any]:
        chosen = self.chosen(which)
        return {
            "actions": len(self.actions(which)),
            "statements": len(chosen),
            "wildcard_statements": sum(s.wildcard for s in chosen),
            "wildcard_actions": sorted({a for s in chosen if s.wildcard for a in s.actions}),
            "tag_scoped_statements": sum(bool(s.condition) and s.resources == ("*",) for s in chosen),
            "characters": len(json.dumps(self.document(which), separators=(",", ":"))),
            "managed_policies": len(self.documents(which)),
        }

    def explain(self, which: For = "all") -> list[str]:
        """One line per action granted on ``*``, with the reason nothing narrower fits."""
        lines = []
        for s in self.chosen(which):
            if s.resources != ("*",):
                continue
            label = "tag-scoped" if _tag_condition(s.condition) else "only where"
            scope = f"{label}: " + "; ".join(f"{k} = {','.join(v)}" for _, k, v in s.condition) if s.condition else "*"
            for action in s.actions:
                lines.append(f"{s.sid} {action} on {scope}: {s.reasons.get(action, '')}".rstrip(": "))
        lines += [f"(not granted) {a}: {why}" for a, why in FREE_CALLS.items()]
        lines += [f"(unknown) {t}: a call: function that declares no aws_calls; grant what it calls by hand"
                  for t in self.unknown]
        return lines

    def terraform(self, which: For = "all", name: str = "atomicops", statements: Iterable[Statement] | None = None) -> str:
        """An ``aws_iam_policy_document`` data source of the same statements."""
        out = [f'data "aws_iam_policy_document" "{_tf_name(name)}" {{']
        for s in self.chosen(which) if statements is None else statements:
            out.append("  statement {")
            out.append(f"    sid       = {json.dumps(s.sid)}")
            out.append('    effect    = "Allow"')
            out.append(f"    actions   = {json.dumps(list(s.actions))}")
            out.append(f"    resources = {json.dumps([_tf_literal(r) for r in s.resources])}")
            for op, key, values in s.condition:
                out += ["    condition {", f"      test     = {json.dumps(op)}", f"      variable = {json.dumps(key)}",
                        f"      values   = {json.dumps(list(values))}", "    }"]
            out.append("  }")
        out.append("}")
        return "\n".join(out) + "\n"


def build(loaded: LoadedPlan, *, env: str = "default", account: str | None = None,
          partition: str = "aws") -> Policy:
    """The policy a principal needs to run ``loaded`` in environment ``env``."""
    found = plan_calls(loaded, env=env)
    where = Where(region=_region(loaded), account=account or "*", partition=partition, env=env)
    names = created_names(loaded, where)
    every: list[Grant] = [g for call in found.calls for g in grants(call, where, names)]
    sources: dict[str, list[str]] = {}
    for g in every:
        sources.setdefault(g.action, []).append(g.why)
    return Policy(_statements(_one_create_tags(every)), tuple(found.unknown), env,
                  {a: tuple(dict.fromkeys(w)) for a, w in sources.items()})


def _one_create_tags(every: list[Grant]) -> list[Grant]:
    """ec2:CreateTags once per purpose, for every create action that tags (one condition
    listing them), instead of one statement per create."""
    by_purpose: dict[Purpose, list[Grant]] = {}
    rest = []
    for g in every:
        if g.action == "ec2:CreateTags" and g.condition and g.condition[0][1] == "ec2:CreateAction":
            by_purpose.setdefault(g.purpose, []).append(g)
        else:
            rest.append(g)
    for purpose, found in by_purpose.items():
        creates = tuple(sorted({v for g in found for v in g.condition[0][2]}))
        rest.append(Grant("ec2:CreateTags", ("*",), purpose, "tags on create",
                          (("StringEquals", "ec2:CreateAction", creates),)))
    return rest


def _statements(every: Iterable[Grant]) -> tuple[Statement, ...]:
    # A permission a rollback needs goes to the rollback statements only (the full policy
    # holds both): what an automated rollback handler holds is those alone.
    purpose: dict[tuple[str, tuple[str, ...], Condition], Purpose] = {}
    reasons: dict[tuple[str, tuple[str, ...], Condition], str] = {}
    in_request: dict[str, bool] = {}
    for g in every:
        in_request[g.action] = in_request.get(g.action, True) and g.why.endswith(("tags on create", "acts as the caller"))
        key = (g.action, g.resources, g.condition)
        if purpose.get(key) != "rollback":
            purpose[key] = g.purpose
        if g.wildcard and key not in reasons:
            reasons[key] = g.wildcard
    groups: dict[tuple[Purpose, tuple[str, ...], Condition], list[str]] = {}
    for (action, resources, condition), p in purpose.items():
        groups.setdefault((p, resources, condition), []).append(action)
    statements = []
    used: dict[str, int] = {}
    order = sorted(groups.items(), key=lambda kv: (kv[0][0] != "run", kv[0][1] == ("*",), min(kv[1]), kv[0][1]))
    for (p, resources, condition), actions in order:
        actions = sorted(set(actions))
        prefixes = {a.partition(":")[0] for a in actions}
        stem = ("Run" if p == "run" else "Rollback") + (_camel(prefixes.pop()) if len(prefixes) == 1 else "")
        stem += ("Tagged" if _tag_condition(condition) else "When") if condition else ("Any" if resources == ("*",) else "")
        used[stem] = used.get(stem, 0) + 1
        sid = stem + (str(used[stem]) if used[stem] > 1 else "")
        why = {a: reasons.get((a, resources, condition), "") for a in actions}
        statements.append(Statement(sid, p, tuple(actions), resources, condition, why,
                                    {a: in_request.get(a, False) for a in actions}))
    return tuple(statements)


# Creates whose resource the plan names, and its ARN: what a later ``${ops.OP.OUTPUT}``
# (or ``${self.OUTPUT}``) holds when the output reads the ARN (``Role.Arn``) or the name.
_CREATES = {
    "iam.create_role": ("RoleName", "arn:{partition}:iam::{account}:role/{name}"),
    "iam.create_policy": ("PolicyName", "arn:{partition}:iam::{account}:policy/{name}"),
    "sns.create_topic": ("Name", "arn:{partition}:sns:{region}:{account}:{name}"),
    "secretsmanager.create_secret": ("Name", "arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-??????"),
    "ecr.create_repository": ("repositoryName", "arn:{partition}:ecr:{region}:{account}:repository/{name}"),
    "lambda.create_function": ("FunctionName", "arn:{partition}:lambda:{region}:{account}:function:{name}"),
    "rds.create_db_subnet_group": ("DBSubnetGroupName", "arn:{partition}:rds:{region}:{account}:subgrp:{name}"),
    "rds.create_db_cluster": ("DBClusterIdentifier", "arn:{partition}:rds:{region}:{account}:cluster:{name}"),
}


def created_names(loaded: LoadedPlan, where: Where) -> dict[str, str]:
    """``${ops.OP.OUTPUT}`` -> the name or ARN it will hold, for outputs of creates whose
    resource name the plan fixes (a role's ARN, the role's name...)."""
    out: dict[str, str] = {}
    fill = var_filler(loaded.plan, where.env)
    for op in loaded.plan.operations:
        for step in op.steps:
            known = _CREATES.get(str(step.do.get("aws")))
            if known is None:
                continue
            name = fill((step.do.get("params") or {}).get(known[0]))
            if not isinstance(name, str) or refs.is_whole_reference(name):
                continue
            name = re.sub(r"\$\{[^}]*\}", "*", name)
            arn = known[1].format(partition=where.partition, account=where.account, region=where.region, name=name)
            for output, expression in step.outputs.items():
                if isinstance(expression, str) and not refs.is_reference(expression):
                    last = expression.rsplit(".", 1)[-1]
                    out["${ops." + op.id + "." + output + "}"] = arn if last.lower().endswith("arn") else name
    return out


def _region(loaded: LoadedPlan) -> str:
    plan = loaded.plan
    for connection in plan.connections.values():
        if connection.kind == "aws":
            region = (connection.model_extra or {}).get("region")
            if isinstance(region, str) and refs.is_whole_reference(region):
                ref = refs.parse(region[2:-1])
                try:
                    region = refs.dig(plan.vars, ref.path, ref) if ref.namespace == "vars" else None
                except refs.ReferenceError_:
                    region = None
            return region if isinstance(region, str) and region else "*"
    return "*"


def _size(statements: Iterable[Statement]) -> int:
    doc = {"Version": "2012-10-17", "Statement": [s.as_iam() for s in statements]}
    return len(json.dumps(doc, separators=(",", ":")))


def _condition(condition: Condition) -> dict[str, dict[str, Any]]:
    doc: dict[str, dict[str, Any]] = {}
    for op, key, values in condition:
        doc.setdefault(op, {})[key] = list(values) if len(values) > 1 else values[0]
    return doc


def _camel(prefix: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]", prefix))


def _tf_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _tf_literal(value: str) -> str:
    # Terraform interpolates ${...}; IAM policy variables are written $${...} there.
    return value.replace("${", "$${")


def policy_summary_line(policy: Policy, which: For = "all") -> str:
    s = policy.summary(which)
    return (f"{s['actions']} actions in {s['statements']} statements; {s['wildcard_statements']} statements on \"*\" "
            f"({len(s['wildcard_actions'])} actions), {s['tag_scoped_statements']} on \"*\" with a condition; "
            f"{s['characters']} characters")


__all__ = ["PlanCalls", "Policy", "Statement", "build", "policy_summary_line"]


def _tag_condition(condition: tuple[tuple[str, str, tuple[str, ...]], ...]) -> bool:
    """A condition on the environment's tags (others: a service name, a calling service)."""
    return bool(condition) and all(key.startswith(("aws:RequestTag/", "aws:ResourceTag/")) for _, key, _ in condition)
