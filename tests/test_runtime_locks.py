"""No lock is held across slow I/O: one slow connect or secret fetch holds back only the steps
that need that same connection or secret, and a run leaves the process's ``sys.path`` alone."""

from __future__ import annotations

import contextlib
import socket
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from atomicops import api
from atomicops.actions import registry
from atomicops.actions.base import Connections
from atomicops.engine.secrets import Secrets
from atomicops.plan.model import SecretSpec

# Generous: the assertions are about order (which call returned first), never about speed.
PATIENCE = 60.0


@pytest.fixture
def silent_listener() -> Iterator[tuple[int, threading.Event]]:
    """A TCP port on loopback that accepts connections and never says a word (a NATS server
    behind a black-holing firewall). The event is set once a client has connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        held.append(conn)
        accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], accepted
    for conn in held:
        conn.close()
    server.close()


def test_a_slow_connect_does_not_hold_back_another_connection(silent_listener):
    port, accepted = silent_listener
    connections = Connections({
        "bus": {"kind": "nats", "url": f"nats://127.0.0.1:{port}", "connect_timeout": 30},
        "aws": {"kind": "aws", "region": "us-east-1"},
    })
    slow = threading.Thread(target=lambda: _ignore_errors(connections.get, registry.get("nats"), "bus"), daemon=True)
    slow.start()
    assert accepted.wait(PATIENCE), "the nats connect never reached the listener"

    opened: list[object] = []
    fast = threading.Thread(target=lambda: opened.append(connections.get(registry.get("aws"), "aws")), daemon=True)
    fast.start()
    fast.join(PATIENCE)
    # The aws connection opened while the nats one was still waiting for its server.
    assert opened and slow.is_alive()
    connections.close()


def _ignore_errors(fn, *args):
    # The silent server makes this connect fail in the end; only its timing matters here.
    with contextlib.suppress(Exception):
        fn(*args)


def test_a_secret_whose_fetch_needs_another_secret_does_not_deadlock(monkeypatch):
    monkeypatch.setenv("CANCEL_TEST_KEY", "inner-secret-value")
    specs = {
        "outer": SecretSpec(aws_secret="app/outer", connection="vault"),
        "inner": SecretSpec(env="CANCEL_TEST_KEY"),
    }
    fetched: list[str] = []

    def fetch_aws(secret_id: str, connection: str | None) -> str:
        # The connection that reads `outer` authenticates with `inner`.
        fetched.append(secrets.value("inner"))
        return "outer-secret-value"

    secrets = Secrets(specs, fetch_aws=fetch_aws)
    got: list[str] = []
    worker = threading.Thread(target=lambda: got.append(secrets.value("outer")), daemon=True)
    worker.start()
    worker.join(PATIENCE)
    assert got == ["outer-secret-value"], "value('outer') never returned: deadlocked on the secrets lock"
    assert fetched == ["inner-secret-value"]


def test_a_slow_secret_fetch_holds_back_only_that_secret_and_runs_once(monkeypatch):
    monkeypatch.setenv("CANCEL_TEST_OTHER", "other-secret-value")
    specs = {"slow": SecretSpec(aws_secret="app/slow"), "other": SecretSpec(env="CANCEL_TEST_OTHER")}
    release = threading.Event()
    calls: list[str] = []

    def fetch_aws(secret_id: str, connection: str | None) -> str:
        calls.append(secret_id)
        release.wait()  # until the test lets it go
        return "slow-secret-value"

    secrets = Secrets(specs, fetch_aws=fetch_aws)
    results: list[str] = []
    slow = [threading.Thread(target=lambda: results.append(secrets.value("slow")), daemon=True) for _ in range(2)]
    for t in slow:
        t.start()
    other: list[str] = []
    reader = threading.Thread(target=lambda: other.append(secrets.value("other")), daemon=True)
    reader.start()
    try:
        reader.join(PATIENCE)
        assert other == ["other-secret-value"], "value('other') waited for the slow fetch of another secret"
    finally:
        release.set()
    for t in slow:
        t.join(PATIENCE)
    assert results == ["slow-secret-value"] * 2
    assert calls == ["app/slow"]  # fetched once, though two steps asked at the same time


def test_a_run_leaves_sys_path_as_it_was_and_still_imports_the_plans_modules(tmp_path):
    plan_dir = tmp_path / "plan"
    plan_dir.mkdir()
    (plan_dir / "cancel_local_steps.py").write_text(textwrap.dedent("""
        def here(ctx):
            return {"file": __file__}
    """))
    (plan_dir / "plan.yaml").write_text(textwrap.dedent("""
        atomicops: 1
        name: local-module
        operations:
          - id: one
            steps:
              - name: call
                read_only: true
                do: {call: "cancel_local_steps:here"}
                outputs: {file: file}
    """))
    before = list(sys.path)
    api.apply(str(plan_dir / "plan.yaml"), state=str(tmp_path / "journal.db"))
    assert sys.path == before
    outputs = api.status(state=str(tmp_path / "journal.db"))["operations"][0]["steps"][0]["outputs"]
    assert Path(outputs["file"]).parent == plan_dir
