"""The http kind against a real local HTTP server started by the test."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atomicops.actions import registry
from atomicops.actions.base import ActionContext, Connections
from atomicops.errors import ActionError
from atomicops.expect import evaluate


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self._send(200, {"status": "healthy", "components": {"database": "connected", "nats": "connected"}})
        elif self.path == "/broken":
            self._send(503, {"status": "unhealthy"})
        else:
            self._send(404, {"error": "no such path"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        self._send(201, {"echo": body, "auth": self.headers.get("Authorization")})

    def _send(self, status, doc):
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run(spec):
    kind = registry.get("http")
    return kind.execute({"http": spec}, ActionContext(connections=Connections({}), env="t", run_id="r"))


def test_get_json_and_expect_on_its_paths(base_url):
    result = run({"url": f"{base_url}/health"})
    assert result["status"] == 200
    assert evaluate({"json.status": "healthy", "json.components.database": "connected"}, result) == []
    assert evaluate({"json.components.nats": "disconnected"}, result) != []


def test_post_sends_json_and_headers(base_url):
    result = run({"method": "POST", "url": f"{base_url}/x", "json": {"a": [1, 2]}, "headers": {"Authorization": "Bearer t"}})
    assert result["status"] == 201 and result["json"] == {"echo": {"a": [1, 2]}, "auth": "Bearer t"}


def test_error_status_fails_with_a_code_and_5xx_is_transient(base_url):
    with pytest.raises(ActionError) as exc:
        run({"url": f"{base_url}/broken"})
    assert exc.value.code == "HTTP503" and exc.value.transient
    with pytest.raises(ActionError) as exc:
        run({"url": f"{base_url}/missing"})
    assert exc.value.code == "HTTP404" and not exc.value.transient
    assert run({"url": f"{base_url}/missing", "ok_status": [404]})["json"] == {"error": "no such path"}


def test_connection_refused_is_transient_and_hides_credentials():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ActionError) as exc:
        run({"url": f"http://user:hunter22@127.0.0.1:{port}/health?token=abc", "timeout": 2})
    assert exc.value.code == "ConnectionError" and exc.value.transient
    assert "hunter22" not in str(exc.value) and "token=abc" not in str(exc.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"url": "ftp://x"}, "http:// or https://"),
        ({"url": "http://x", "methd": "GET"}, "unknown http key"),
        ({"url": "http://x", "method": "FETCH"}, "unknown method"),
        ({}, "url is required"),
        ({"url": "${vars.u}", "json": {}, "body": "x"}, "json or body"),
    ],
)
def test_static_check(spec, message):
    issues = list(registry.get("http").check({"http": spec}))
    assert any(message in i.message for i in issues), issues


def test_references_are_opaque_to_the_check():
    assert list(registry.get("http").check({"http": {"url": "${vars.orchestrator_url}/health"}})) == []
