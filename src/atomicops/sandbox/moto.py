"""The sandbox's AWS: moto's server in its own process, spoken to over HTTP like AWS."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from pathlib import Path

from atomicops.processes import start_time
from atomicops.sandbox.service import (
    ServiceInfo,
    free_port,
    private_dir,
    spawn,
    stop_pid,
    wait_until,
)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def start(data_dir: Path, *, port: int | None = None, timeout: float = 60.0,
          enforce_iam_after: int | None = None) -> ServiceInfo:
    """``enforce_iam_after=N``: moto answers the first N calls without checking credentials,
    then enforces IAM (signatures and the caller's policies' actions) on every call: the
    calls that make the principals come first (atomicops/policy/sandbox.py)."""
    private_dir(data_dir)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "moto.log"
    pid = spawn(
        # Our launcher of moto's server: moto_server.py says what it adds, and why.
        [sys.executable, "-m", "atomicops.sandbox.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        log,
        # AWS-managed IAM policies (AmazonECSTaskExecutionRolePolicy, ...) exist in real
        # accounts; moto loads them only when asked.
        env={"MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
             **({"INITIAL_NO_AUTH_ACTION_COUNT": str(enforce_iam_after)} if enforce_iam_after is not None else {})},
    )
    # Read while the process is our unreaped child, so the pid cannot belong to anyone else.
    started_at = start_time(pid)
    wait_until(lambda: _answers(url), timeout=timeout, what="moto server", pid=pid, log_file=log)
    return ServiceInfo("aws", url, pid, str(data_dir), str(log), started_at=started_at)


def stop(info: ServiceInfo, *, remove_data: bool = True) -> None:
    stop_pid(info.pid, info.started_at)
    if remove_data:
        shutil.rmtree(info.data_dir, ignore_errors=True)
