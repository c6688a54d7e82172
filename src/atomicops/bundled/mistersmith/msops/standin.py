"""A stand-in for the MisterSmith orchestrator's health endpoint (5.1) in a rehearsal.

It is the application being migrated, not part of atomicops: a small HTTP server that
reports, in the seed's JSON shape, whether it can really reach the PostgreSQL and the NATS
server it was given. It runs in a thread of the rehearsing process and ends with it.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import psycopg

from atomicops.actions.base import ActionContext


def _database_ok(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def _nats_ok(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=2) as s:
            return s.recv(4).startswith(b"INFO")  # a NATS server greets with INFO
    except OSError:
        return False


def start(ctx: ActionContext, database_url: str, nats_url: str) -> dict[str, Any]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/health":
                self.send_error(404)
                return
            db, bus = _database_ok(database_url), _nats_ok(nats_url)
            body = json.dumps({
                "status": "healthy" if db and bus else "degraded",
                "version": "1.0.0",
                "components": {
                    "nats": "connected" if bus else "disconnected",
                    "database": "connected" if db else "disconnected",
                    "discovery_engine": "active",
                },
                "metrics": {"agents_active": 3, "discoveries_per_second": 0, "memory_usage_mb": 0},
            }).encode()
            self.send_response(200 if db and bus else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, name="orchestrator-stand-in", daemon=True).start()
    # Its NATS is the sandbox's: what 5.3's message flow goes through in a rehearsal.
    return {"url": f"http://127.0.0.1:{server.server_address[1]}", "nats_url": nats_url}
