"""One rehearsal of the flagship (the bundled MisterSmith migration) for the whole session, as
`atomicops rehearse --json` runs it, with its run report: the flagship's end-to-end test and
the report's browser tests read the same run (about 20 s on two cores, paid once)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from atomicops import sandbox


@dataclass
class FlagshipRehearsal:
    code: int
    doc: dict[str, Any]  # the rehearsal's --json report
    workdir: Path
    report: Path  # its run report (HTML)


@pytest.fixture(scope="session")
def flagship_rehearsal() -> Iterator[FlagshipRehearsal]:
    # Not under pytest's tmp: as root, PostgreSQL runs as another user and needs to reach it.
    workdir = Path(tempfile.mkdtemp(prefix="atomicops-flagship-"))
    workdir.chmod(0o755)
    page = workdir / "flagship-report.html"
    try:
        res = subprocess.run([sys.executable, "-m", "atomicops.cli", "rehearse", "--json", "--report", str(page)],
                             cwd=workdir, capture_output=True, text=True, timeout=600, check=False)
        doc = json.loads(res.stdout) if res.stdout.strip() else {"stderr": res.stderr}
        yield FlagshipRehearsal(res.returncode, doc, workdir, page)
    finally:
        subprocess.run([sys.executable, "-m", "atomicops.cli", "sandbox", "down"], cwd=workdir,
                       capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def scratch_sandbox(prefix: str) -> Iterator[Path]:
    """A sandbox (moto, PostgreSQL, NATS) up in a new directory, down and removed on the way
    out. mkdtemp, not pytest's tmp dirs, for the reason ``fixtures_postgres.server_dir`` gives."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    root = base / "sandbox"
    try:
        sandbox.up(root)
        yield root
    finally:
        sandbox.down(root)
        shutil.rmtree(base, ignore_errors=True)
