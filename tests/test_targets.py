"""`plan` and `apply` say where the plan's AWS calls go before anything runs (issue 16.11: a
forgotten --vars-file silently targeted real AWS)."""

from __future__ import annotations

import json
from pathlib import Path

from run_cli import cli

PLAN = """
atomicops: 1
name: targets
vars: {aws_endpoint: null, region: eu-west-1}
connections:
  aws: {kind: aws, region: "${vars.region}", endpoint_url: "${vars.aws_endpoint}"}
operations:
  - id: mark
    steps:
      - {name: touch, do: {run: [touch, marked]}, undo: {run: [rm, -f, marked]}}
"""


def test_plan_and_apply_name_real_aws_when_no_endpoint_is_given(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    shown = cli("plan", "plan.yaml", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "target: aws connection 'aws': REAL AWS (boto3's credential chain), region eu-west-1" in shown.stdout
    applied = cli("apply", "plan.yaml", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    first = next(line for line in applied.stderr.splitlines() if line.strip())
    assert "target: aws connection 'aws': REAL AWS" in first  # before the run says anything else


def test_plan_names_the_endpoint_a_vars_file_gives(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    (tmp_path / "vars.yaml").write_text("aws_endpoint: http://127.0.0.1:5000\nregion: us-east-1\n")
    shown = cli("plan", "plan.yaml", "--vars-file", "vars.yaml", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["targets"] == [
        "aws connection 'aws': endpoint http://127.0.0.1:5000, region us-east-1"
    ]
