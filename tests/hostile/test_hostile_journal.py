"""Hostile cases for the journal, the lock and the sandbox (issue 17).

Each case runs the CLI as a user would, in its own directory, and asserts the exit code, the
message and that nothing ran: no effect, no journal written, no process signalled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

CLI_TIMEOUT = 120


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atomicops.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
    )  # fmt: skip


@pytest.fixture
def bystander() -> Iterator[psutil.Process]:
    """An unrelated live process, the kind a recorded pid may now belong to."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


# -- the sandbox never signals a pid it cannot prove is its own ----------------------------


@pytest.mark.parametrize("started_at", [None, 0.0])
def test_sandbox_down_spares_a_pid_whose_start_time_was_not_recorded(
    tmp_path: Path, bystander: psutil.Process, started_at: float | None
) -> None:
    root = tmp_path / "sb"
    data = tmp_path / "sb" / "aws"
    data.mkdir(parents=True)
    service = {
        "name": "aws", "url": "http://127.0.0.1:9", "pid": bystander.pid,
        "data_dir": str(data), "log_file": str(data / "moto.log"),
    }  # fmt: skip
    if started_at is not None:
        service["started_at"] = started_at
    state = {"root": str(root), "vars_file": str(root / "vars.yaml"), "services": {"aws": service}}
    (root / "state.json").write_text(json.dumps(state))

    proc = cli("sandbox", "down", "--dir", str(root), cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert f"pid {bystander.pid}" in proc.stderr and "not signalled" in proc.stderr, proc.stderr
    time.sleep(0.2)
    assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE
