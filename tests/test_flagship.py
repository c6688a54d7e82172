"""The MisterSmith migration rehearsed end to end on the sandbox, as `atomicops rehearse` runs
it: apply, verify, roll back, and an empty leak diff over AWS, PostgreSQL and JetStream.
Also with a late operation failing, and a small sample of the crash soak."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def rehearse(*args: str, cwd: Path) -> tuple[int, dict]:
    res = subprocess.run([sys.executable, "-m", "atomicops.cli", "rehearse", "--json", *args],
                         cwd=cwd, capture_output=True, text=True, timeout=600)
    return res.returncode, json.loads(res.stdout)


@pytest.fixture
def workdir():
    # Not under pytest's tmp: as root, PostgreSQL runs as another user and needs to reach it.
    path = Path(tempfile.mkdtemp(prefix="atomicops-flagship-"))
    path.chmod(0o755)
    yield path
    subprocess.run([sys.executable, "-m", "atomicops.cli", "sandbox", "down"], cwd=path, capture_output=True)


def test_the_whole_migration_rehearses_with_a_clean_leak_check(workdir):
    code, report = rehearse(cwd=workdir)  # no plan: the bundled MisterSmith plan
    assert code == 0, report
    assert report["plan"] == "mistersmith-aws"
    assert report["operations"] == 24 and report["steps"] >= 60
    assert sorted(report["applied"]) == sorted(report["undone"]) and len(report["applied"]) == 24
    assert report["verify"] and all(v["ok"] for v in report["verify"])
    names = {v["check"] for v in report["verify"]}
    assert {"orchestrator-health", "agents-query", "message-flow", "ecs-services"} <= names
    assert report["leaks"] == {}
    assert not (workdir / ".atomicops" / "sandbox" / "state.json").exists()  # sandbox down


def test_a_late_failure_rolls_everything_back_with_a_clean_leak_check(workdir):
    # The exported state file is missing: the state import (data phase) fails.
    code, report = rehearse("--var", "state_file=/nonexistent/state.jsonl", cwd=workdir)
    assert code == 1, report
    assert "state-import" in report["apply_error"]
    assert len(report["undone"]) == len(report["applied"]) > 15
    assert report["leaks"] == {}


def test_a_crash_soak_sample():
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "crash_soak.py"), "--trials", "2",
                          "--messages", "60", "--seed", "7", "--json"],
                         capture_output=True, text=True, timeout=600)
    doc = json.loads(res.stdout)
    assert res.returncode == 0, doc
    assert doc["figures"]["trials"] == 2
    assert doc["figures"].get("leaks", 0) == 0 and doc["figures"].get("duplicates", 0) == 0
    assert doc["figures"].get("corrupt journals", 0) == 0
