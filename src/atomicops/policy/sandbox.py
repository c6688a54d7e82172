"""Principals that hold a policy, on the sandbox's AWS (moto's server with IAM enforced).

moto enforces IAM once its server has answered ``INITIAL_NO_AUTH_ACTION_COUNT`` calls
(sandbox/moto.py ``enforce_iam_after``): from then on a call is refused unless the caller's
keys belong to an IAM user whose policies allow the call's action. The first calls make an
administrator; the administrator makes the users that hold the policies under test.

What moto checks is the action, not all of the policy: it evaluates a statement's
``Resource`` against ``*`` for most services (so an ARN-scoped statement would never match)
and treats an unmet ``Condition`` as a deny. The sandbox's user therefore holds
:func:`actions_only`: the same actions, on ``*``, without conditions. The proof on the
sandbox is that the policy names every action a run needs, and that each one is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ADMIN = "atomicops-admin"
SETUP_CALLS = 3
"""The calls that make the administrator (CreateUser, PutUserPolicy, CreateAccessKey),
answered as anyone: moto enforces IAM from the next call on."""


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


def moto_actions(action: str) -> set[str]:
    """What moto calls IAM's ``action``: it names an action by the request's signing name,
    not IAM's prefix (``cloudwatch:DescribeAlarms`` is ``monitoring:DescribeAlarms`` to it),
    and some S3 actions by the API's name (IAM's ``s3:ListBucket`` allows HeadBucket, which
    moto checks as ``s3:HeadBucket``)."""
    from atomicops.policy.grants import PREFIXES, S3_ACTIONS

    prefix, _, name = action.partition(":")
    signing = {v: k for k, v in PREFIXES.items()}.get(prefix, prefix)
    names = {name}
    if prefix == "s3":
        names |= {api for api, iam in S3_ACTIONS.items() if iam == name}
    return {f"{signing}:{n}" for n in names}


def actions_only(actions: Iterable[str]) -> dict[str, Any]:
    """A policy allowing ``actions`` on ``*``: what moto can check of a policy."""
    chosen = sorted({m for a in actions for m in moto_actions(a)})
    statement: list[dict[str, Any]] = [{"Effect": "Allow", "Action": chosen, "Resource": "*"}] if chosen else []
    return {"Version": "2012-10-17", "Statement": statement}


def _iam(endpoint: str, keys: Keys | None, region: str = "us-east-1") -> Any:
    import boto3

    creds = {"aws_access_key_id": keys.access_key_id, "aws_secret_access_key": keys.secret_access_key} if keys else {}
    return boto3.client("iam", endpoint_url=endpoint, region_name=region, **creds)


def make_admin(endpoint: str) -> Keys:
    """The administrator, made with the server's first calls (before IAM is enforced)."""
    iam = _iam(endpoint, None)
    iam.create_user(UserName=ADMIN)
    iam.put_user_policy(UserName=ADMIN, PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    made = iam.create_access_key(UserName=ADMIN)["AccessKey"]
    return Keys(made["AccessKeyId"], made["SecretAccessKey"])


def make_user(endpoint: str, admin: Keys, name: str, document: Mapping[str, Any]) -> Keys:
    """An IAM user holding ``document`` alone, and its keys."""
    iam = _iam(endpoint, admin)
    iam.create_user(UserName=name)
    if document.get("Statement"):
        iam.put_user_policy(UserName=name, PolicyName="atomicops", PolicyDocument=json.dumps(document))
    made = iam.create_access_key(UserName=name)["AccessKey"]
    return Keys(made["AccessKeyId"], made["SecretAccessKey"])


def start_enforced(root: Any) -> tuple[Any, Keys]:
    """A moto server of its own under ``root`` that enforces IAM, and its administrator."""
    from pathlib import Path

    from atomicops.sandbox import moto

    info = moto.start(Path(root) / "moto-iam", enforce_iam_after=SETUP_CALLS)
    try:
        return info, make_admin(info.url)
    except BaseException:
        moto.stop(info)
        raise
