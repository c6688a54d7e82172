"""JetStream inventory against a real nats-server, and the sandbox server's start and stop."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import atomicops.actions.nats  # noqa: F401 - registers the kind
from atomicops.actions.nats import NatsKind
from atomicops.actions.nats_connection import NatsConnection
from atomicops.actions.nats_names import READER_PREFIX
from atomicops.errors import ActionError
from atomicops.inventory import nats as inventory
from atomicops.sandbox import nats as sandbox_nats
from atomicops.sandbox.service import free_port, pid_alive, port_open

STREAMS, CONSUMERS = inventory.STREAMS, inventory.CONSUMERS


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def handle(nats_url: str) -> Iterator[NatsConnection]:
    conn = NatsConnection(nats_url).open()
    yield conn
    conn.close()


@pytest.fixture
def seeded(handle: NatsConnection) -> Iterator[str]:
    """A stream of discovery messages, like the rehearsal's "local system", and a consumer."""
    name = unique("DISCOVERY")
    handle.stream_add({"name": name, "subjects": [f"{name}.>"], "metadata": {"owner": "test"}})
    for i in range(300):
        handle.publish(f"{name}.agent.{i % 4}", {"agent": i % 4, "n": i})
    handle.consumer_add(name, {"durable_name": "indexer", "ack_policy": "explicit"})
    yield name
    try:
        handle.stream_delete(name)
    except ActionError:
        pass


def entry(snap: inventory.Inventory, kind: str, id_: str) -> dict[str, object]:
    entries = snap[kind]
    assert isinstance(entries, list), entries
    [found] = [e for e in entries if e["id"] == id_]
    return found


def test_round_trip_is_equal_and_leaves_nothing_behind(handle: NatsConnection, seeded: str) -> None:
    before = inventory.snapshot(handle)
    after = inventory.snapshot(handle)
    assert inventory.diff(before, after) == {}
    assert before == after
    assert json.loads(json.dumps(before)) == before

    stream = entry(before, STREAMS, seeded)
    assert stream["subjects"] == [f"{seeded}.>"]
    assert (stream["messages"], stream["first_seq"], stream["last_seq"]) == (300, 1, 300)
    assert isinstance(stream["bytes"], int) and stream["bytes"] > 0
    assert str(stream["checksum"]).startswith("sha256:")
    assert stream["metadata"] == {"owner": "test"}  # the server's own _nats.* keys left out
    consumer = entry(before, CONSUMERS, f"{seeded}/indexer")
    assert consumer["durable_name"] == "indexer" and consumer["ack_policy"] == "explicit"
    # Reading every message for the checksums created no durable state.
    assert [c["name"] for c in handle.consumers(seeded)] == ["indexer"]
    assert not any(c["name"].startswith(READER_PREFIX) for c in handle.consumers(seeded))


def test_snapshot_takes_a_url(nats_url: str, seeded: str) -> None:
    snap = inventory.snapshot(nats_url)
    assert entry(snap, STREAMS, seeded)["messages"] == 300


def test_a_planted_message_shows(handle: NatsConnection, seeded: str) -> None:
    before = inventory.snapshot(handle)
    handle.publish(f"{seeded}.agent.9", {"planted": True})
    changes = inventory.diff(before, inventory.snapshot(handle))
    assert list(changes) == [STREAMS]
    [change] = changes[STREAMS]["changed"]
    assert change["id"] == seeded
    old, new = change["before"], change["after"]
    assert (old["messages"], new["messages"]) == (300, 301)
    assert (old["last_seq"], new["last_seq"]) == (300, 301)
    assert old["checksum"] != new["checksum"]


def test_same_counts_different_content_shows_in_the_checksum(
    handle: NatsConnection, seeded: str
) -> None:
    """A copy that wrote the wrong data keeps the counts; the checksum still differs."""
    twin_a, twin_b = unique("TWIN"), unique("TWIN")
    for name, payload in ((twin_a, "same"), (twin_b, "diff")):
        handle.stream_add({"name": name, "subjects": [f"{name}.x"], "storage": "memory"})
        handle.publish(f"{name}.x", payload)
    try:
        snap = inventory.snapshot(handle)
        a, b = entry(snap, STREAMS, twin_a), entry(snap, STREAMS, twin_b)
        assert (a["messages"], a["last_seq"]) == (b["messages"], b["last_seq"])
        assert a["checksum"] != b["checksum"]
    finally:
        handle.stream_delete(twin_a)
        handle.stream_delete(twin_b)


def test_an_extra_stream_and_consumer_show(handle: NatsConnection, seeded: str) -> None:
    before = inventory.snapshot(handle)
    extra = unique("ORPHAN")
    handle.stream_add({"name": extra, "subjects": [f"{extra}.>"], "storage": "memory"})
    handle.consumer_add(seeded, {"durable_name": "leftover"})
    try:
        changes = inventory.diff(before, inventory.snapshot(handle))
        assert [e["id"] for e in changes[STREAMS]["added"]] == [extra]
        assert [e["id"] for e in changes[CONSUMERS]["added"]] == [f"{seeded}/leftover"]
        assert set(changes[STREAMS]) == {"added"} and set(changes[CONSUMERS]) == {"added"}
    finally:
        handle.stream_delete(extra)
        handle.consumer_delete(seeded, "leftover")
    assert inventory.diff(before, inventory.snapshot(handle)) == {}


def test_a_removed_stream_shows(handle: NatsConnection, seeded: str) -> None:
    before = inventory.snapshot(handle)
    handle.stream_delete(seeded)
    changes = inventory.diff(before, inventory.snapshot(handle))
    assert [e["id"] for e in changes[STREAMS]["removed"]] == [seeded]
    assert [e["id"] for e in changes[CONSUMERS]["removed"]] == [f"{seeded}/indexer"]


def test_an_unreachable_bus_is_unchecked_not_empty(handle: NatsConnection) -> None:
    down = inventory.snapshot(f"nats://127.0.0.1:{free_port()}", connect_timeout=1)
    assert down == {CONSUMERS: {"error": "ConnectionError"}, STREAMS: {"error": "ConnectionError"}}
    changes = inventory.diff(inventory.snapshot(handle), down)
    assert changes[STREAMS] == {"unchecked": {"before": None, "after": "ConnectionError"}}


# --------------------------------------------------------------------------- the sandbox server


def test_server_binary_is_found_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI runs inside a venv that may not be activated: PATH must not matter.
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv(sandbox_nats.ENV_OVERRIDE, raising=False)
    binary = sandbox_nats.server_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert binary.is_relative_to(Path(sys.prefix).resolve()) or binary.is_relative_to(sys.prefix)


def test_sandbox_start_and_stop_leave_no_process_and_no_port(tmp_path: Path) -> None:
    data_dir = tmp_path / "nats"
    info = sandbox_nats.start(data_dir)
    host_port = info.url.removeprefix("nats://")
    host, port = host_port.split(":")
    assert info.name == "nats" and host == "127.0.0.1"
    assert pid_alive(info.pid) and port_open(host, int(port))
    conn = NatsConnection(info.url).open()
    try:
        conn.stream_add({"name": "DURABLE", "subjects": ["d.>"], "storage": "file"})
        conn.publish("d.1", "x")
    finally:
        conn.close()
    assert (data_dir / "jetstream").is_dir()  # JetStream's files live under data_dir
    assert Path(info.log_file).read_text().count("Server is ready") == 1

    sandbox_nats.stop(info)
    assert not pid_alive(info.pid)
    with pytest.raises(ProcessLookupError):
        os.kill(info.pid, 0)
    assert not port_open(host, int(port))
    with pytest.raises(ActionError) as err:
        NatsKind().connect({"kind": "nats", "url": info.url, "connect_timeout": 1})
    assert err.value.code == "ConnectionError"
    assert not data_dir.exists()


def test_sandbox_start_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    info = sandbox_nats.start(tmp_path / "first")
    port = int(info.url.rsplit(":", 1)[1])
    try:
        # The port answers (the first server), yet the second one failed: that is reported.
        with pytest.raises(RuntimeError, match="address already in use"):
            sandbox_nats.start(tmp_path / "second", port=port, timeout=5)
        assert sandbox_nats._answers(info.url)  # the first one is unharmed
    finally:
        sandbox_nats.stop(info)
