"""Shared fixtures. AWS is moto's server in a real subprocess, spoken to over HTTP like AWS.

Nothing patches boto3 in-process: the code under test builds its clients exactly as it does
against real AWS, and only the connection's ``endpoint_url`` points at the emulator.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# One PostgreSQL and one NATS server for the whole test session.
pytest_plugins = ["fixtures_postgres", "fixtures_nats"]

MOTO_START_TIMEOUT = 30.0
MOTO_STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server started for this test session."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path: Path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        # A log file rather than a pipe: nobody reads a pipe, and a full one would hang moto.
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + MOTO_START_TIMEOUT
        while not _answers(f"{url}/moto-api/"):
            if proc.poll() is not None:
                pytest.fail(f"moto server exited with {proc.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"moto server did not answer within {MOTO_START_TIMEOUT:g} s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(MOTO_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def aws_connection(moto_endpoint: str) -> dict[str, Any]:
    """A plan ``connections:`` entry for the emulator, as a plan would write it."""
    return {"kind": "aws", "region": "us-east-1", "endpoint_url": moto_endpoint}


@pytest.fixture
def closed_endpoint() -> str:
    """An endpoint URL nothing listens on (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"
