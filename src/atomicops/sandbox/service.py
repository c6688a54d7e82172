"""What the sandbox's service starters share: a record of a started server, and the process
plumbing (free ports, detached start, stop by pid) that each of them needs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atomicops.processes import START_TIME_SLACK, pid_alive

if TYPE_CHECKING:
    import psutil


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    url: str
    pid: int
    data_dir: str
    log_file: str
    started_at: float = 0.0
    """The process's start time, so a recorded pid reused by another process is never signalled."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def private_dir(path: Path) -> Path:
    """Make ``path`` and each missing parent 0700; what exists keeps its mode.

    Sandbox data, logs and the vars file are for this user alone (Path.mkdir gives the mode
    only to the last directory, and the umask's, often 0755, to the parents it makes).
    """
    for directory in reversed([p for p in (path, *path.parents) if not p.exists()]):
        directory.mkdir(mode=0o700, exist_ok=True)
    return path


def spawn(argv: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` detached from this process (its own session), output to ``log_file``.

    Detached so that ``atomicops sandbox up`` can return while the server keeps running;
    ``down`` stops it later by pid.
    """
    private_dir(log_file.parent)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return proc.pid


def is_ours(info: ServiceInfo) -> bool:
    """Whether the recorded pid is still the process we started (not a reused pid).

    Without a recorded start time nothing proves it, and the answer is no: a state file
    from an older atomicops (or edited by hand) must not make us signal a stranger.
    """
    return _identified(info.pid, info.started_at) is not None


def _identified(pid: int, started_at: float) -> psutil.Process | None:
    if not started_at or not pid_alive(pid):
        return None
    import psutil  # here: every command line start imports this package (docs/performance.md)

    try:
        proc = psutil.Process(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None
    if abs(proc.create_time() - started_at) >= START_TIME_SLACK:
        return None
    return proc


def stop_pid(pid: int, started_at: float, *, timeout: float = 10.0) -> bool:
    """SIGTERM, wait, then SIGKILL; returns when the process is gone.

    Only the process that started at ``started_at`` is signalled, and psutil checks that
    again before each signal, so a pid taken over by another process meanwhile is left
    alone. Returns False, having signalled nothing, when ``pid`` is not that process.
    """
    proc = _identified(pid, started_at)
    if proc is None:
        return False
    import psutil

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_until(ready: Any, *, timeout: float, what: str, pid: int | None = None, log_file: Path | None = None) -> None:
    """Poll ``ready()`` until true; fail early if the server process died, showing its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if pid is not None:
            _reap(pid)
            if not pid_alive(pid):
                break
        time.sleep(0.1)
    tail = ""
    if log_file is not None and log_file.exists():
        tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s{tail}")
