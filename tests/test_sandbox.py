"""`atomicops sandbox up|status|down` through the CLI, as a user runs them.

Each test works in its own directory made with ``mkdtemp`` (not pytest's ``tmp_path``): run
as root, the sandbox's PostgreSQL runs as the ``pgserver`` user, which must be able to pass
through every parent of its data directory, and pytest resets ``/tmp/pytest-of-root`` to
mode 0700 whenever a session starts (see ``fixtures_postgres.server_dir``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest
import yaml
from run_cli import cli

from atomicops import sandbox

SERVICES = ("aws", "postgres", "nats")
VARS = {"aws": "aws_endpoint", "postgres": "database_url", "nats": "nats_url"}


def cli_json(*args: str, cwd: Path) -> dict[str, Any]:
    proc = cli(*args, "--json", cwd=cwd)
    assert proc.returncode == 0, (
        f"atomicops {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    )
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port, url
    return parts.hostname, parts.port


def port_open(url: str) -> bool:
    try:
        with socket.create_connection(address(url), timeout=1):
            return True
    except OSError:
        return False


def assert_answers(name: str, url: str) -> None:
    """Each service answers its own protocol at its URL, not merely holds the port."""
    if name == "aws":
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=5) as resp:
            assert resp.status == 200
    elif name == "postgres":
        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    else:
        with socket.create_connection(address(url), timeout=5) as sock:
            assert sock.recv(4096).startswith(b"INFO "), "a NATS server greets a client with INFO"


@dataclass(frozen=True)
class Proc:
    """A pid and the start time it had, so that a reused pid does not pass for ours."""

    pid: int
    created: float

    @classmethod
    def of(cls, pid: int) -> Proc:
        return cls(pid, psutil.Process(pid).create_time())

    def running(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            # An exited server nobody has reaped yet (a zombie) holds no port and no file.
            return proc.create_time() == self.created and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


def recorded(root: Path) -> dict[str, Any]:
    """The services as the state file records them (what `down` goes by)."""
    services: dict[str, Any] = json.loads((root / "state.json").read_text())["services"]
    return services


def wait_gone(procs: list[Proc], timeout: float = 5.0) -> list[Proc]:
    deadline = time.monotonic() + timeout
    while (alive := [p for p in procs if p.running()]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="atomicops-test-sandbox-"))
    try:
        yield path
    finally:
        sandbox.down(path / "sb")  # whatever a failed test left running
        shutil.rmtree(path, ignore_errors=True)


def test_up_twice_status_and_down(workdir: Path) -> None:
    root = workdir / "sb"

    # up: all three services answer at the URLs the vars file gives plans
    first = cli_json("sandbox", "up", "--dir", str(root), cwd=workdir)
    assert set(first["services"]) == set(SERVICES)
    vars_file = Path(first["vars_file"])
    assert vars_file == root / "vars.yaml"
    plan_vars = yaml.safe_load(vars_file.read_text())
    assert plan_vars.pop("atomicops.vars") == "offered"  # each plan takes the vars it declares
    assert set(plan_vars) == {"aws_endpoint", "database_url", "nats_url", "region"}
    assert plan_vars["region"] == "us-east-1"
    assert plan_vars == first["vars"]
    state = recorded(root)
    for name in SERVICES:
        assert plan_vars[VARS[name]] == state[name]["url"]
        assert_answers(name, plan_vars[VARS[name]])
    assert plan_vars["database_url"].startswith("postgresql://")
    assert plan_vars["nats_url"].startswith("nats://")
    procs = {name: Proc.of(state[name]["pid"]) for name in SERVICES}
    assert all(p.running() for p in procs.values())

    # up again: finds everything up, starts nothing, changes nothing
    second = cli_json("sandbox", "up", "--dir", str(root), cwd=workdir)
    assert second["vars"] == first["vars"]
    assert {n: s["pid"] for n, s in second["services"].items()} == {
        n: p.pid for n, p in procs.items()
    }
    assert second["start_seconds"] == {}, "the second up started something"
    assert yaml.safe_load(vars_file.read_text()) == {"atomicops.vars": "offered", **plan_vars}
    assert recorded(root) == state
    assert all(p.running() for p in procs.values())

    # status --json
    status = cli_json("sandbox", "status", "--dir", str(root), cwd=workdir)
    assert status["up"] is True
    assert status["vars"] == plan_vars
    for name in SERVICES:
        s = status["services"][name]
        assert (s["pid"], s["url"], s["alive"], s["healthy"]) == (
            procs[name].pid,
            state[name]["url"],
            True,
            True,
        )

    # down: every recorded process is gone (and PostgreSQL's backends with the postmaster),
    # no port answers, no data is left
    backends = [
        Proc.of(c.pid) for c in psutil.Process(procs["postgres"].pid).children(recursive=True)
    ]
    assert backends, "a running PostgreSQL has its checkpointer, walwriter, ... as children"
    down = cli_json("sandbox", "down", "--dir", str(root), cwd=workdir)
    assert sorted(s["pid"] for s in down["stopped"]) == sorted(p.pid for p in procs.values())
    assert wait_gone([*procs.values(), *backends], timeout=0) == []
    for name in SERVICES:
        assert not port_open(state[name]["url"]), f"{name} still listens at {state[name]['url']}"
        assert not Path(state[name]["data_dir"]).exists()
    assert not root.exists()
    assert not vars_file.exists()
    assert cli_json("sandbox", "status", "--dir", str(root), cwd=workdir) == {
        "up": False,
        "services": {},
        "exit_code": 0,
    }
    # and a second down has nothing to stop
    assert cli_json("sandbox", "down", "--dir", str(root), cwd=workdir) == {"stopped": [], "exit_code": 0}


@pytest.mark.parametrize("killed", SERVICES)
def test_up_restarts_a_killed_service(workdir: Path, killed: str) -> None:
    root = workdir / "sb"
    cli_json("sandbox", "up", "--dir", str(root), cwd=workdir)
    before = recorded(root)
    victim = Proc.of(before[killed]["pid"])
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_gone([victim]) == []

    status = cli_json("sandbox", "status", "--dir", str(root), cwd=workdir)
    assert status["up"] is False
    assert status["services"][killed]["healthy"] is False
    assert all(status["services"][n]["healthy"] for n in SERVICES if n != killed)

    again = cli_json("sandbox", "up", "--dir", str(root), cwd=workdir)
    after = recorded(root)
    assert after[killed]["pid"] != victim.pid
    assert Proc.of(after[killed]["pid"]).running()
    assert set(again["start_seconds"]) == {killed}, "only the killed service is started again"
    for name in SERVICES:
        if name != killed:
            assert after[name] == before[name]
    plan_vars = yaml.safe_load((root / "vars.yaml").read_text())
    assert plan_vars[VARS[killed]] == after[killed]["url"]
    for name in SERVICES:
        assert_answers(name, plan_vars[VARS[name]])
    assert cli_json("sandbox", "status", "--dir", str(root), cwd=workdir)["up"] is True

    procs = [Proc.of(s["pid"]) for s in after.values()]
    cli_json("sandbox", "down", "--dir", str(root), cwd=workdir)
    assert wait_gone(procs, timeout=0) == []
    assert not any(port_open(s["url"]) for s in after.values())
    assert not root.exists()
