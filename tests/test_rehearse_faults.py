"""`atomicops rehearse --fault` on the flagship plan: each fault fires where aimed, the run
recovers (a second rollback, a resume) and the inventory after the rollback equals the one
before the apply; exit 0 only then.

Four modes run here (about 15-30 s each on the sandbox); the others are measured by hand
(docs/faults.md). Each gets a fresh sandbox: moto keeps a deleted AWS Backup plan's name
taken, so the flagship's checkpoint operation can be created only once per moto server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_flagship import scratch_sandbox
from run_cli import cli

from atomicops import sandbox
from atomicops.errors import EXIT_INVALID, EXIT_OK


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    with scratch_sandbox("atomicops-test-faults-") as root:
        yield root


def rehearse(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = cli("rehearse", "--dir", str(root), "--json", *args, cwd=root.parent, timeout=600)
    report = json.loads(done.stdout)
    # Whatever the fault, the rehearsal writes its run report (beside the journal).
    assert report["report_error"] is None and Path(report["report_file"]).parent == root, report
    return done.returncode, report


def page(report: dict[str, Any]) -> str:
    return Path(report["report_file"]).read_text()


def test_an_undo_that_fails_once_is_finished_by_a_second_rollback(sandbox_root: Path) -> None:
    code, report = rehearse(sandbox_root, "--fault", "undo:aurora-sg")
    assert code == EXIT_OK, report
    fault = report["fault"]
    assert fault["fired"] and fault["path_ok"] and fault["recovered"], fault
    assert "aurora-sg's undo failed" in " ".join(fault["detail"])
    assert report["leaks"] == {}
    assert report["rollback"]["failed"] == {}
    assert "aurora-sg" in report["rollback"]["undone"]
    # The page shows the undo that failed, then the second rollback's that finished it.
    assert 'class="bar undo undo_failed" data-i' in page(report) and 'data-op="aurora-sg"' in page(report)


def test_a_killed_apply_is_resumed_and_rolled_back_clean(sandbox_root: Path) -> None:
    code, report = rehearse(sandbox_root, "--fault", "kill", "--seed", "11")
    assert code == EXIT_OK, report
    fault = report["fault"]
    assert fault["fired"] and fault["recovered"], fault
    assert fault["seed"] == 11 and fault["killed_after_events"] >= 2
    assert "resume finished the apply" in fault["detail"]
    assert report["apply_error"] is None and all(v["ok"] for v in report["verify"])
    assert len(report["applied"]) == report["operations"], "the killed apply and the resume applied all"
    assert report["leaks"] == {}
    assert "resume run" in page(report), "the report shows the resume beside the killed apply"


@pytest.mark.parametrize(
    ("kind", "check", "saboteur"),
    [
        ("alarm", "error-rate-alarm", "MisterSmith-HighErrorRate set to ALARM"),
        ("health", "source-stream", "NATS stopped"),
    ],
)
def test_a_trigger_fault_fires_its_trigger_and_the_apply_rolls_itself_back(
    sandbox_root: Path, kind: str, check: str, saboteur: str
) -> None:
    code, report = rehearse(sandbox_root, "--fault", kind)
    assert code == EXIT_OK, report
    fault = report["fault"]
    assert fault["fired"] and fault["path_ok"] and fault["recovered"], fault
    said = " ".join(fault["detail"])
    assert saboteur in said and f"trigger {check} fired" in said
    assert f"trigger {check} fired" in report["apply_error"]
    assert report["leaks"] == {}
    assert report["rollback"]["failed"] == {}
    assert page(report).count('class="mark trigger"') == 1, "the trigger is marked where it fired"
    if kind == "health":
        assert "NATS started again" in said
        assert sandbox.healthy(sandbox.load(sandbox_root).services["nats"]), "the outage ended"


NO_TRIGGERS = """
atomicops: 1
name: no-triggers
operations:
  - id: note
    steps:
      - name: write
        do: {run: ["true"]}
        irreversible: nothing to undo
"""


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["PLAN", "--fault", "alarm"], "no check it can set off (a check of cloudwatch.describe_alarms"),
        (["PLAN", "--fault", "health"], "no check it can set off (a check of kind nats or http)"),
        (["--fault", "step:no-such-op"], "no operation 'no-such-op'"),
        (["--fault", "step"], "step needs an operation"),
        (["--fault", "undo:aurora-sg", "--seed", "3"], "--seed goes with --fault kill"),
    ],
)
def test_a_fault_that_cannot_be_fired_is_refused_before_the_sandbox(tmp_path: Path, args: list[str], says: str) -> None:
    (tmp_path / "plan.yaml").write_text(NO_TRIGGERS)
    args = [str(tmp_path / "plan.yaml") if a == "PLAN" else a for a in args]
    done = cli("rehearse", "--dir", str(tmp_path / "sb"), *args, cwd=tmp_path)
    assert done.returncode == EXIT_INVALID, done.stdout + done.stderr
    assert says in done.stderr
    assert not (tmp_path / "sb").exists(), "nothing was started"
