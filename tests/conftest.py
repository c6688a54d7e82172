"""Shared fixtures. AWS is moto's server in a real subprocess, spoken to over HTTP like AWS.

Nothing patches boto3 in-process: the code under test builds its clients exactly as it does
against real AWS, and only the connection's ``endpoint_url`` points at the emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from atomicops.sandbox import moto
from atomicops.sandbox.service import free_port

# One PostgreSQL and one NATS server for the whole test session; the journal store switch;
# a TLS front for that PostgreSQL (fixtures_tls).
pytest_plugins = ["fixtures_postgres", "fixtures_nats", "fixtures_journal", "fixtures_streams", "fixtures_flagship",
                  "fixtures_tls"]


@pytest.fixture(scope="session", autouse=True)
def fake_aws_credentials() -> Iterator[None]:
    """Fake keys for boto3's normal credential chain; no profile or token can leak in."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session", autouse=True)
def derived_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's own cache of derived facts (atomicops/derived.py), shared by its tests and
    the CLI processes they start: every validation after the first takes the remembered
    path, as a user's second `validate` does; never the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATOMICOPS_CACHE_DIR", str(tmp_path_factory.mktemp("derived-cache")))
        yield


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server for this test session, started the way
    ``atomicops sandbox up`` starts it (its log stays in the session's tmp, moto*/moto.log)."""
    info = moto.start(tmp_path_factory.mktemp("moto"))
    try:
        yield info.url
    finally:
        moto.stop(info, remove_data=False)


@pytest.fixture
def aws_connection(moto_endpoint: str) -> dict[str, Any]:
    """A plan ``connections:`` entry for the emulator, as a plan would write it."""
    return {"kind": "aws", "region": "us-east-1", "endpoint_url": moto_endpoint}


@pytest.fixture
def closed_endpoint() -> str:
    """An endpoint URL nothing listens on (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"
