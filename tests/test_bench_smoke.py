"""A tiny run of each benchmark in bench/ (B3, B4, B5, B6), so none can rot: it runs to the end and
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
    assert set(commands) == {"floor: import boto3", "--help", "status", "history", "validate quickstart", "validate flagship"}
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
