"""`atomicops ARGS` in a real process, as a user runs it: the one helper the CLI tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def cli(
    *args: str,
    cwd: Path,
    crash: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``cwd`` with this process's environment plus ``env``. ``crash`` names the
    crash point (``engine/crash.py``) the process dies at; without it none is inherited."""
    environ = {k: v for k, v in os.environ.items() if k != "ATOMICOPS_CRASH_AT"}
    environ.update(env or {})
    if crash:
        environ["ATOMICOPS_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "atomicops.cli", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout, check=False)
