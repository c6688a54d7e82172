"""The command as users run it: a real subprocess, exit codes from DESIGN.md, --json output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from run_cli import cli

PLANS = Path(__file__).parent / "plans"
BAD = Path(__file__).parent / "bad_plans"


UNDO_FAILS = """
atomicops: 1
name: undo-fails
operations:
  - id: base
    steps:
      - {name: make, do: {run: ["true"]}, undo: {run: ["true"]}}
  - id: stuck
    depends_on: [base]
    steps:
      - {name: make, do: {run: ["true"]}, undo: {run: ["sh", "-c", "test -f fixed"]}}
      - {name: notify, do: {run: ["true"]}, irreversible: "sends a page to on-call"}
"""


def test_validate_exit_codes_and_json(tmp_path):
    ok = cli("validate", str(PLANS / "network.yaml"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = cli("validate", str(BAD / "09_unknown_var.yaml"), cwd=tmp_path)
    assert bad.returncode == 2
    assert "09_unknown_var.yaml:9" in bad.stderr and "Traceback" not in bad.stderr
    doc = json.loads(cli("validate", str(BAD / "09_unknown_var.yaml"), "--json", cwd=tmp_path).stdout)
    assert doc["exit_code"] == 2 and doc["problems"][0]["line"] == 9 and doc["problems"][0]["op"] == "a"


def test_a_bad_plan_runs_nothing(tmp_path):
    res = cli("apply", str(BAD / "06_missing_undo.yaml"), cwd=tmp_path)
    assert res.returncode == 2
    assert not (tmp_path / ".atomicops").exists()
    assert not (tmp_path / "x").exists()  # the step would have touched it


def test_apply_status_rollback_round_trip_with_json(tmp_path):
    res = cli("apply", str(PLANS / "parallel.yaml"), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sorted(json.loads(res.stdout)["applied"]) == ["after", "left", "right"]
    status = json.loads(cli("status", "--json", cwd=tmp_path).stdout)
    assert {o["id"]: o["status"] for o in status["operations"]} == {"left": "applied", "right": "applied", "after": "applied"}
    assert oct((tmp_path / ".atomicops" / "journal.db").stat().st_mode & 0o777) == "0o600"
    rb = cli("rollback", cwd=tmp_path)
    assert rb.returncode == 0 and "rolled back: 3" in rb.stdout


def test_rollback_incomplete_exits_3_and_a_rerun_finishes_it(tmp_path):
    (tmp_path / "plan.yaml").write_text(UNDO_FAILS)
    assert cli("apply", "plan.yaml", cwd=tmp_path).returncode == 0
    first = cli("rollback", cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    assert "stuck" in first.stderr and "base" in first.stderr
    hist = json.loads(cli("history", "--json", cwd=tmp_path).stdout)
    types = [(e["type"], e["op"], e["step"]) for e in hist]
    assert ("undo_skipped", "stuck", "notify") in types  # the irreversible step is passed over...
    assert ("undo_failed", "stuck", "make") in types  # ...the step before it is still tried
    assert ("op_undone", "base", None) not in types  # base waits for what depends on it
    (tmp_path / "fixed").touch()
    second = cli("rollback", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    status = json.loads(cli("status", "--json", cwd=tmp_path).stdout)
    assert {o["status"] for o in status["operations"]} == {"rolled_back"}


def test_a_failed_apply_exits_1(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(UNDO_FAILS.replace('irreversible: "sends a page to on-call"', 'undo: {run: ["true"]}')
                    .replace('do: {run: ["true"]}, undo: {run: ["sh"', 'do: {run: ["false"]}, undo: {run: ["sh"'))
    res = cli("apply", "plan.yaml", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "rolled back" in res.stderr


def test_locked_environment_exits_4_naming_the_holder(tmp_path):
    from atomicops.journal import open_store
    from atomicops.journal.store import LockHolder

    open_store(str(tmp_path / ".atomicops" / "journal.db")).acquire_lock(
        "prod", LockHolder("LK", "run-123", os.getpid(), os.uname().nodename, 0.0, "apply")
    )
    res = cli("apply", str(PLANS / "parallel.yaml"), "--env", "prod", cwd=tmp_path)
    assert res.returncode == 4
    assert "run-123" in res.stderr
    other_env = cli("status", "--env", "dev", cwd=tmp_path)
    assert other_env.returncode == 0
    shown = cli("unlock", "--env", "prod", cwd=tmp_path)
    assert shown.returncode == 2 and "--lock-id LK" in shown.stderr  # shows, breaks nothing
    assert cli("apply", str(PLANS / "parallel.yaml"), "--env", "prod", cwd=tmp_path).returncode == 4
    freed = cli("unlock", "--env", "prod", "--lock-id", "LK", cwd=tmp_path)
    assert freed.returncode == 0 and "run-123" in freed.stdout


@pytest.mark.parametrize("fmt, needle", [("mermaid", "flowchart TD"), ("dot", "digraph plan")])
def test_graph_pictures(tmp_path, fmt, needle):
    res = cli("graph", str(PLANS / "network.yaml"), "--format", fmt, cwd=tmp_path)
    assert res.returncode == 0
    assert needle in res.stdout and "op_vpc" in res.stdout and "op_db_sg" in res.stdout


def test_plan_shows_forward_and_rollback_sequences(tmp_path):
    doc = json.loads(cli("plan", str(PLANS / "network.yaml"), "--json", cwd=tmp_path).stdout)
    assert doc["forward"][0]["waves"][0] == ["task-role", "vpc"]
    assert doc["rollback"][0]["phase"] == "data"
    assert set(doc["changes"].values()) == {"create"}


def test_unknown_target_is_invalid_input(tmp_path):
    res = cli("apply", str(PLANS / "parallel.yaml"), "--target", "nope", cwd=tmp_path)
    assert res.returncode == 2 and "nope" in res.stderr


def test_usage_mistakes_exit_2_without_a_traceback(tmp_path):
    for args in (["rollback", "--to", "before-data"], ["resolve", "op", "step"], ["apply", "no-such-plan.yaml"]):
        res = cli(*args, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr
