"""A tiny run of each benchmark in bench/ (B1 to B6), so none can rot: it runs to the end and
writes its JSON with the figures docs/performance.md quotes. Nothing here is timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run(script: str, *args: str, out: Path) -> dict:
    done = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_cli_startup_writes_its_table(tmp_path: Path) -> None:
    doc = run("cli_startup.py", "--rounds", "1", out=tmp_path / "cli_startup.json")
    assert doc["benchmark"] == "cli_startup" and doc["floor_s"] > 0
    commands = {r["command"]: r for r in doc["rows"]}
    assert set(commands) == {"floor: import boto3", "--help", "status", "history", "validate quickstart",
                             "validate flagship", "validate flagship, no cache"}
    for row in commands.values():
        assert set(row) == {"command", "median_s", "min_s", "ratio", "target", "meets"}
    assert commands["validate flagship"]["target"] == 2.0 and commands["status"]["target"] == 1.3


def test_journal_writes_its_table(tmp_path: Path) -> None:
    doc = run("journal.py", "--steps", "5", "--dir", str(tmp_path), out=tmp_path / "journal.json")
    assert doc["benchmark"] == "journal" and doc["transitions"] == 10
    assert [r["what"] for r in doc["rows"]] == ["bare sqlite insert (floor)", "journal append"]
    for row in doc["rows"]:
        assert set(row) == {"what", "median_ms", "p99_ms", "ratio"}
    assert doc["journal_bytes_per_step"] >= 0 and doc["row_bytes_per_step"] > 0 and doc["target_median_ms"] == 2.0


def test_scale_writes_its_table(tmp_path: Path) -> None:
    doc = run("scale.py", "--sizes", "20", "40", "--apply", "10", "--rounds", "1", out=tmp_path / "scale.json")
    assert doc["benchmark"] == "scale" and doc["phases"] == 20
    assert [r["operations"] for r in doc["load"]] == [20, 40]
    for row in doc["load"]:
        assert row["validate_s"] > 0 and row["plan_s"] > 0 and row["validate_peak_mb"] > 0
        assert row["first_validate_s"] > 0 and row["first_validate_cpu_s"] > 0
    assert [(r["operations"], r["parallelism"]) for r in doc["apply"]] == [(10, 1), (10, 10)]
    for row in doc["apply"]:
        assert row["apply_ms_per_op"] > 0 and row["rollback_ms_per_op"] > 0
    assert doc["targets"] == {"validate_plus_plan_s": 3.0, "peak_mb": 300, "ms_per_op": 5.0}


def test_recovery_writes_its_table(tmp_path: Path) -> None:
    doc = run("recovery.py", "--ops", "5", "--rounds", "1", out=tmp_path / "recovery.json")
    assert doc["benchmark"] == "recovery"
    (row,) = doc["rows"]
    # The five applied before the kill stay applied, and the resume finishes the last one.
    assert row["applied_before_kill"] == 5 and row["applied_after_resume"] == 6
    assert row["resume_s"] > 0 and row["floor_s"] > 0 and row["target_s"] == 2.0


def test_runbook_writes_its_table(tmp_path: Path) -> None:
    # --skip-cli: no awscli here; (b) and (c) each run forward and back against one moto server.
    doc = run("runbook.py", "--rounds", "1", "--skip-cli", out=tmp_path / "runbook.json")
    assert doc["benchmark"] == "runbook" and doc["rounds"] == 1
    rows = {r["way"]: r for r in doc["rows"]}
    assert set(rows) == {"b serial boto3", "c atomicops"}
    for row in rows.values():
        assert set(row) == {"way", "forward_s", "rollback_s", "total_s", "api_calls", "forward_calls",
                            "rollback_calls", "ms_per_call"}
        assert row["forward_s"] > 0 and row["rollback_s"] > 0 and row["api_calls"] > 0
        assert row["forward_calls"] + row["rollback_calls"] == row["api_calls"] and row["rollback_calls"] > 0
    # The serial script makes exactly the page's calls: 36 forward, 36 back, plus 2 waiters' polls.
    assert rows["b serial boto3"]["api_calls"] >= 72
    assert set(doc["ratios"]) == {"c/b", "c/b per call"} and set(doc["meets"]) == {"c/b <= 1.0"}


def test_data_copy_writes_its_table(tmp_path: Path) -> None:
    doc = run("data_copy.py", "--messages", "120", "--sample", "50", out=tmp_path / "data_copy.json")
    assert doc["benchmark"] == "data_copy" and doc["messages"] == 120 and doc["sample"] == 50
    for name in ("raw_batch", "per_item", "atomicops_copy_step", "atomicops_apply_process", "atomicops_undo", "scan_and_delete_each"):
        assert doc[name]["seconds"] > 0
    kill = doc["kill_and_resume"]
    assert kill["resume_s"] > 0 and kill["uninterrupted_s"] > 0
    assert set(doc["meets"]) == {"copy >= 0.9x raw batch", "copy >= 10x per item", "undo <= 1.1x copy", "resume within +-20%"}


def test_crash_soak_without_probes_counts_what_is_left_for_a_person() -> None:
    # One trial with every hand-written probe stripped from the flagship (bench/crash_soak.py).
    done = subprocess.run([sys.executable, str(BENCH / "crash_soak.py"), "--trials", "1", "--messages", "60",
                           "--seed", "3", "--strip-probes", "all", "--json"], capture_output=True, text=True, timeout=600)
    doc = json.loads(done.stdout)
    assert doc["mode"] == "strip-probes all" and doc["figures"]["trials"] == 1
    assert doc["figures"]["probes removed"] > 50
    assert "left for a person" in doc["figures"] and "leaks" in doc["figures"]
