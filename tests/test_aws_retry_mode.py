"""G11 (docs/real-aws.md): an aws connection chooses botocore's retry mode (``retry_mode:
standard | adaptive``); unset, the user's AWS_RETRY_MODE or profile decides, else standard.
Clients that send once keep a single attempt in either mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from atomicops.actions.aws import AwsConnection, AwsKind
from tests.run_cli import cli


def retries(spec: dict[str, object], resend: bool = True) -> dict[str, object]:
    conn = AwsConnection.from_spec(spec)
    try:
        return dict(conn.client("dynamodb", resend=resend).meta.config.retries)
    finally:
        conn.close()


def test_a_connection_with_adaptive_retry_mode_builds_adaptive_clients(aws_connection: dict[str, object]) -> None:
    spec = {**aws_connection, "retry_mode": "adaptive", "max_attempts": 7}
    assert retries(spec) == {"mode": "adaptive", "total_max_attempts": 7}
    assert retries(spec, resend=False) == {"mode": "adaptive", "total_max_attempts": 1}
    conn = AwsConnection.from_spec(spec)
    try:  # botocore's adaptive mode hooks its client-side rate limiter on the client's events
        client = conn.client("dynamodb")
        hooks = client.meta.events._emitter._handlers.prefix_search("before-send.dynamodb.ListTables")
        assert "ClientRateLimiter" in {type(getattr(h, "__self__", h)).__name__ for h in hooks}
        assert client.list_tables()["TableNames"] is not None
    finally:
        conn.close()


def test_unset_retry_mode_follows_the_environment_then_the_profile(
    aws_connection: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert retries(aws_connection)["mode"] == "standard"
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    assert retries(aws_connection)["mode"] == "adaptive"
    assert retries({**aws_connection, "retry_mode": "standard"})["mode"] == "standard"  # the plan wins
    monkeypatch.delenv("AWS_RETRY_MODE")
    config = tmp_path / "config"
    config.write_text("[profile paced]\nretry_mode = adaptive\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "paced")
    assert retries(aws_connection)["mode"] == "adaptive"
    legacy = tmp_path / "legacy"
    legacy.write_text("[profile paced]\nretry_mode = legacy\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(legacy))
    assert retries(aws_connection)["mode"] == "standard"  # legacy is not one of ours


def test_a_bad_retry_mode_is_refused_by_validate_with_its_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "atomicops: 1\nname: modes\nphases: [main]\nconnections:\n"
        "  aws:\n    kind: aws\n    region: us-east-1\n    retry_mode: adaptve\n"
        "operations:\n  - id: read\n    phase: main\n    title: a read\n    steps:\n"
        "      - {name: vpcs, do: {aws: ec2.describe_vpcs}, read_only: true}\n"
    )
    done = cli("validate", str(plan), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "plan.yaml:8" in out and "retry_mode" in out and "adaptive" in out
    assert [i.path for i in AwsKind().check_connection({"kind": "aws", "retry_mode": "${vars.mode}"})] == []
