"""`atomicops policy` proven on moto's server with IAM enforced (INITIAL_NO_AUTH_ACTION_COUNT).

A user holding exactly the quickstart's policy applies, verifies, probes and rolls back; a
user holding it minus any one action fails with AccessDenied naming that action, and the
environment then rolls back cleanly (with the full policy, where the missing action was an
undo's). moto checks actions only (atomicops/policy/sandbox.py says why): resources and
conditions are checked by tests/test_policy.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from atomicops import api
from atomicops.policy import build
from atomicops.policy.proof import RunAs, run_as
from atomicops.policy.sandbox import SETUP_CALLS, Keys, actions_only, make_admin, make_user
from atomicops.sandbox import moto

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
QUICKSTART_POLICY = build(api.validate(QUICKSTART))
QUICKSTART_ACTIONS = QUICKSTART_POLICY.actions()
# AWS authorizes the tags of a create as a second action of the same request (ec2:CreateTags
# for TagSpecifications, dynamodb:TagResource for CreateTable's Tags); moto checks one action
# per request, so it cannot refuse them. tests/test_policy.py checks that the policy has them.
IN_REQUEST = QUICKSTART_POLICY.in_request()
_users = itertools.count()


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Keys]]:
    """A moto server that enforces IAM after the calls that make its administrator."""
    info = moto.start(tmp_path_factory.mktemp("moto-iam"), enforce_iam_after=SETUP_CALLS)
    try:
        yield info.url, make_admin(info.url)
    finally:
        moto.stop(info, remove_data=False)


@pytest.fixture
def run(enforced: tuple[str, Keys], pg_database: str, nats_url: str, tmp_path: Path) -> Any:
    endpoint, admin = enforced

    def as_holder_of(actions: list[str]) -> tuple[RunAs, Keys]:
        keys = make_user(endpoint, admin, f"runner-{next(_users)}", actions_only(actions))
        vars = {"aws_endpoint": endpoint, "database_url": pg_database, "nats_url": nats_url}
        return run_as(keys, str(QUICKSTART), vars=vars, state=str(tmp_path / "journal.db"), endpoint=endpoint), keys

    return as_holder_of


def _left(endpoint: str, admin: Keys) -> dict[str, Any]:
    """What the quickstart makes in AWS, as the administrator sees it."""
    creds = {"aws_access_key_id": admin.access_key_id, "aws_secret_access_key": admin.secret_access_key,
             "endpoint_url": endpoint, "region_name": "us-east-1"}
    ec2, ddb = boto3.client("ec2", **creds), boto3.client("dynamodb", **creds)
    tagged = [{"Name": "tag-key", "Values": ["atomicops:env"]}]
    return {k: v for k, v in {
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=tagged)["Vpcs"]],
        "groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]],
        "tables": ddb.list_tables()["TableNames"],
    }.items() if v}  # fmt: skip


def test_moto_enforces_iam(enforced: tuple[str, Keys]) -> None:
    """The proof means something only if a user without an action is refused it."""
    endpoint, admin = enforced
    keys = make_user(endpoint, admin, "only-describe", actions_only(["ec2:DescribeVpcs"]))
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key)
    ec2.describe_vpcs()
    with pytest.raises(ec2.exceptions.ClientError, match="not authorized to perform: ec2:CreateVpc"):
        ec2.create_vpc(CidrBlock="10.9.0.0/16")


def test_quickstart_runs_with_exactly_its_policy(run: Any, enforced: tuple[str, Keys]) -> None:
    result, _ = run(QUICKSTART_ACTIONS)
    assert result.ok, result
    assert sorted(result.undone) == ["app-sg", "data", "events", "events-table", "vpc"]
    assert _left(*enforced) == {}


def test_moto_cannot_refuse_only_the_tags_of_a_create() -> None:
    assert IN_REQUEST == ["dynamodb:TagResource", "ec2:CreateTags"]


@pytest.mark.parametrize("missing", [a for a in QUICKSTART_ACTIONS if a not in IN_REQUEST])
def test_quickstart_needs_each_action(missing: str, run: Any, enforced: tuple[str, Keys], tmp_path: Path) -> None:
    endpoint, admin = enforced
    result, _ = run([a for a in QUICKSTART_ACTIONS if a != missing])
    assert not result.ok, f"the run did not need {missing}"
    assert result.denied() == {missing}, result
    if result.rollback_error:
        # The missing action is an undo's (or its waiter's): the run could not take everything
        # back, and a principal with the whole policy finishes the rollback.
        from atomicops.policy.proof import credentials

        full = make_user(endpoint, admin, f"finisher-{missing.replace(':', '-')}", actions_only(QUICKSTART_ACTIONS))
        with credentials(full):
            report = api.rollback(state=str(tmp_path / "journal.db"), reason="finish")
        assert not report.failed, report
    assert _left(endpoint, admin) == {}


def test_rehearse_least_privilege_cli(tmp_path: Path) -> None:
    """`atomicops rehearse --least-privilege`: the quickstart as a user holding exactly its
    policy, on a sandbox of its own; nothing leaks."""
    import json

    from run_cli import cli

    done = cli("rehearse", str(QUICKSTART), "--least-privilege", "--dir", str(tmp_path / "sandbox"), "--json",
               cwd=tmp_path, timeout=300)
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert report["least_privilege"]["actions"] == len(QUICKSTART_ACTIONS)
    assert report["least_privilege"]["probe_failures"] == []
    assert report["leaks"] == {} and sorted(report["undone"]) == ["app-sg", "data", "events", "events-table", "vpc"]
