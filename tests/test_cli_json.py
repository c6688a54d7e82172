"""`--json`: every command prints exactly one JSON document on stdout on every exit path,
with the exit code, and the error when there is one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_cli import cli

BAD = Path(__file__).parent / "bad_plans"

FAILS = """
atomicops: 1
name: json-fails
operations:
  - id: ok
    steps:
      - {name: make, do: {run: ["true"]}, undo: {run: ["true"]}}
  - id: broken
    depends_on: [ok]
    steps:
      - {name: make, do: {run: ["sh", "-c", "echo no >&2; exit 3"]}, undo: {run: ["true"]}}
"""

VERIFY_FAILS = """
atomicops: 1
name: json-verify-fails
operations:
  - id: ok
    steps:
      - {name: make, do: {run: ["true"]}, undo: {run: ["true"]}}
verify:
  - {name: up, run: ["sh", "-c", "echo '{\\"status\\": \\"down\\"}'"], expect: {"json.status": up}}
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "fails.yaml").write_text(FAILS)
    (tmp_path / "verify.yaml").write_text(VERIFY_FAILS)
    return tmp_path


@pytest.mark.parametrize(
    "args, code",
    [
        (["validate", str(BAD / "07_cycle.yaml")], 2),
        (["plan", str(BAD / "07_cycle.yaml")], 2),
        (["graph", str(BAD / "07_cycle.yaml")], 2),
        (["validate", "no-such-plan.yaml"], 2),
        (["apply", "fails.yaml"], 1),  # a failed run, rolled back: with its report
        (["apply", "verify.yaml"], 1),  # the plan's verify fails after apply
        (["apply", "fails.yaml", "--phase", "nope"], 2),
        (["apply", "fails.yaml", "--no-such-option"], 2),  # refused by the option parser
        (["rollback", "--target", "nope"], 2),
        (["rollback", "--to", "cp"], 2),
        (["resolve", "ok", "make", "--applied"], 2),
        (["resolve", "ok", "make"], 2),
        (["unlock"], 0),
        (["unlock", "--lock-id", "x"], 0),
    ],
)
def test_each_failure_prints_one_json_document_with_the_exit_code(work, args, code):
    res = cli(*args, "--json", cwd=work)
    assert res.returncode == code, res.stderr
    doc = json.loads(res.stdout)  # one document, nothing else on stdout
    assert isinstance(doc, dict)
    assert doc["exit_code"] == code
    if code:
        assert doc["error"]
    assert "Traceback" not in res.stderr


def test_a_failed_apply_reports_each_failure_whole(work):
    res = cli("apply", "verify.yaml", "--json", cwd=work)
    doc = json.loads(res.stdout)
    failures = doc["report"]["failures"]
    assert failures == ["expectation not met: up: json.status: expected up, got down"]
    assert doc["report"]["verify"] == [
        {"check": "up", "ok": False, "mismatches": ["json.status: expected up, got down"]}
    ]


def test_verify_with_json_says_its_exit_code(work):
    assert cli("apply", "fails.yaml", "--target", "ok", cwd=work).returncode == 0
    res = cli("verify", "verify.yaml", "--json", cwd=work)
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 1 and doc["ok"] is False
