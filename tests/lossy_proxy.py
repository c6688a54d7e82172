"""A TCP proxy on 127.0.0.1 that loses answers: the client sends, the server may act, the
client never hears back (what a dropped connection or a read timeout looks like to boto3)."""

from __future__ import annotations

import socket
import socketserver
import threading
from urllib.parse import urlparse


class LossyProxy(socketserver.ThreadingTCPServer):
    """Forwards each HTTP request to ``upstream`` (one request per connection); the first
    ``drops`` requests whose body holds ``marker`` lose their answer: the connection is closed
    after the upstream answered (``forward=True``) or before anything reached it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str, marker: bytes, drops: int = 1, *, forward: bool = True):
        parts = urlparse(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.marker, self.drops, self.forward = marker, drops, forward
        self.seen = 0  # requests holding the marker that reached the proxy
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Relay)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def lose(self, request: bytes) -> bool:
        if self.marker not in request:
            return False
        with self.lock:
            self.seen += 1
            return self.seen <= self.drops


class _Relay(socketserver.BaseRequestHandler):
    server: LossyProxy

    def handle(self) -> None:
        request = _read_request(self.request)
        if not request:
            return
        lose = self.server.lose(request)
        if lose and not self.server.forward:
            return  # dropped before sending: nothing happened
        head, _, body = request.partition(b"\r\n\r\n")
        lines = [h for h in head.split(b"\r\n") if not h.lower().startswith(b"connection:")]
        with socket.create_connection(self.server.upstream, timeout=30) as up:
            up.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body)
            answer = b""
            while chunk := up.recv(65536):
                answer += chunk
        if not lose:
            self.request.sendall(answer)


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body
