"""The ``nats`` action kind: static checks, and every verb against a real nats-server."""

from __future__ import annotations

import fnmatch
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import atomicops.actions.nats  # noqa: F401 - registers the kind
from atomicops.actions.base import ActionContext, CheckIssue, Connections
from atomicops.actions.nats import NatsKind
from atomicops.actions.nats_connection import NatsConnection
from atomicops.actions.nats_names import READER_PREFIX
from atomicops.actions.nats_reader import StreamMessage
from atomicops.errors import ActionError
from atomicops.plan.model import DEFAULT_UNDO_OK_ERRORS
from atomicops.sandbox import nats as sandbox_nats
from atomicops.sandbox.service import free_port

KIND = NatsKind()
TAGS = {"atomicops:env": "test", "atomicops:op": "bus", "atomicops:step": "test/bus/stream"}


def issues(action: Mapping[str, Any]) -> list[CheckIssue]:
    return list(KIND.check(action))


def paths(action: Mapping[str, Any]) -> list[tuple[str | int, ...]]:
    return [issue.path for issue in issues(action)]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- static checks


@pytest.mark.parametrize(
    "action",
    [
        {"nats": {"publish": {"subject": "a.b", "data": {"k": [1, 2]}}}, "connection": "bus"},
        {"nats": {"publish": {"subject": "a.b", "data": "x", "headers": {"h": "v"},
                              "jetstream": True, "msg_id": "${step.key}", "timeout": 2}}},
        {"nats": {"request": {"subject": "svc.health", "data": "ping", "timeout": 0.5}}},
        {"nats": {"stream_add": {"name": "ORDERS", "subjects": ["orders.>"], "storage": "file",
                                 "max_msgs": 1000, "max_age": 3600, "retention": "limits",
                                 "placement": {"cluster": "c1"}, "metadata": {"team": "x"},
                                 "sources": [{"name": "OLD", "filter_subject": "old.>"}]}}},
        {"nats": {"stream_info": {"name": "ORDERS"}}},
        {"nats": {"stream_delete": {"name": "${ops.bus.stream}"}}},
        {"nats": {"stream_purge": {"name": "ORDERS", "subject": "orders.x", "keep": 2}}},
        {"nats": {"consumer_add": {"stream": "ORDERS", "durable_name": "worker",
                                   "ack_policy": "explicit", "deliver_policy": "all",
                                   "filter_subjects": ["orders.a", "orders.b"], "ack_wait": 30}}},
        {"nats": {"consumer_delete": {"stream": "ORDERS", "name": "worker"}}},
        {"nats": "${vars.whole_action}"},
        {"nats": {"stream_add": "${vars.stream_config}"}},
        {"nats": {"stream_add": {"name": "S", "subjects": "${vars.subjects}",
                                 "max_msgs": "${vars.max}"}}},
    ],
)  # fmt: skip
def test_valid_actions_have_no_issues(action: dict[str, Any]) -> None:
    assert issues(action) == []


@pytest.mark.parametrize(
    "body", [None, "publish", [], {}, {"publish": {"subject": "a"}, "request": {"subject": "b"}}]
)
def test_exactly_one_verb(body: Any) -> None:
    [issue] = issues({"nats": body})
    assert issue.path == ("nats",)
    assert "exactly one verb" in issue.message


def test_unknown_verb_suggests_the_close_one() -> None:
    [issue] = issues({"nats": {"stream_ad": {"name": "S"}}})
    assert issue.path == ("nats",)
    assert "'stream_add'" in issue.message


@pytest.mark.parametrize(
    ("verb", "args", "missing"),
    [
        ("publish", {"data": "x"}, "subject"),
        ("request", {}, "subject"),
        ("stream_add", {"subjects": ["a"]}, "name"),
        ("stream_info", {}, "name"),
        ("stream_delete", None, "name"),
        ("stream_purge", {}, "name"),
        ("consumer_add", {"stream": "S"}, "durable_name"),
        ("consumer_add", {"durable_name": "d"}, "stream"),
        ("consumer_delete", {"stream": "S"}, "name"),
    ],
)
def test_required_arguments(verb: str, args: Any, missing: str) -> None:
    [issue] = issues({"nats": {verb: args}})
    assert issue.path == ("nats", verb)
    assert missing in issue.message


@pytest.mark.parametrize(
    ("verb", "args", "bad", "suggestion"),
    [
        ("stream_add", {"name": "S", "subject": ["a"]}, "subject", "'subjects'"),
        ("stream_add", {"name": "S", "max_msg": 5}, "max_msg", "'max_msgs'"),
        ("consumer_add", {"stream": "S", "durable_name": "d", "ack_polcy": "all"}, "ack_polcy",
         "'ack_policy'"),
        ("publish", {"subjct": "a"}, "subjct", "'subject'"),
    ],
)  # fmt: skip
def test_unknown_argument_names_suggest_close_ones(
    verb: str, args: dict[str, Any], bad: str, suggestion: str
) -> None:
    found = [i for i in issues({"nats": {verb: args}}) if i.path == ("nats", verb, bad)]
    assert len(found) == 1, issues({"nats": {verb: args}})
    assert suggestion in found[0].message


def test_values_are_checked_against_nats_py_field_types() -> None:
    action = {
        "nats": {
            "stream_add": {
                "name": "S",
                "subjects": "a.>",  # a list is needed
                "storage": "disk",  # file or memory
                "max_msgs": "10",
                "deny_delete": "yes",
                "placement": {"clustr": "c"},
                "sources": [{"filter_subject": "x"}],  # StreamSource needs its name
            }
        }
    }
    by_path = {i.path: i.message for i in issues(action)}
    base = ("nats", "stream_add")
    assert set(by_path) == {
        (*base, "subjects"), (*base, "storage"), (*base, "max_msgs"), (*base, "deny_delete"),
        (*base, "placement", "clustr"), (*base, "sources", 0),
    }  # fmt: skip
    assert "list of str" in by_path[(*base, "subjects")]
    assert "'file'" in by_path[(*base, "storage")] and "'memory'" in by_path[(*base, "storage")]
    assert "'cluster'" in by_path[(*base, "placement", "clustr")]
    assert "name" in by_path[(*base, "sources", 0)]


def test_publish_argument_types() -> None:
    action = {"nats": {"publish": {"subject": 5, "jetstream": "yes", "headers": ["h"],
                                   "timeout": -1}}}  # fmt: skip
    assert sorted(paths(action)) == sorted([
        ("nats", "publish", "subject"), ("nats", "publish", "jetstream"),
        ("nats", "publish", "headers"), ("nats", "publish", "timeout"),
    ])  # fmt: skip


def test_names_that_would_change_the_api_subject_are_refused() -> None:
    assert paths({"nats": {"stream_info": {"name": "a.b"}}}) == [("nats", "stream_info", "name")]
    assert paths({"nats": {"consumer_add": {"stream": "S", "durable_name": "w*"}}}) == [
        ("nats", "consumer_add", "durable_name")
    ]


def test_connection_must_be_a_name() -> None:
    assert paths({"nats": {"stream_info": {"name": "S"}}, "connection": {"url": "x"}}) == [
        ("connection",)
    ]


def test_connection_spec_checks() -> None:
    spec = {"kind": "nats", "url": "http://x:1", "pasword": "p", "connect_timeout": 0}
    by_path = {i.path: i.message for i in KIND.check_connection(spec)}
    assert set(by_path) == {("pasword",), ("connect_timeout",), ("url",)}
    assert "'password'" in by_path[("pasword",)]


def test_execute_refuses_what_check_refuses(nats_connection: dict[str, Any]) -> None:
    conns = Connections({"bus": nats_connection})
    ctx = ActionContext(connections=conns, env="test", run_id="r")
    try:
        with pytest.raises(ActionError) as err:
            KIND.execute({"nats": {"stream_add": {"name": "S", "max_msg": 1}}}, ctx)
        assert err.value.code == "InvalidArgument"
        with pytest.raises(ActionError) as err:
            KIND.execute({"nats": {"nope": {}}}, ctx)
        assert err.value.code == "InvalidAction"
    finally:
        conns.close()


# --------------------------------------------------------------------------- against the server


@pytest.fixture
def ctx(nats_connection: dict[str, Any]) -> Iterator[ActionContext]:
    conns = Connections({"bus": nats_connection})
    yield ActionContext(connections=conns, env="test", run_id="run-1", tags=TAGS)
    conns.close()


@pytest.fixture
def handle(ctx: ActionContext) -> NatsConnection:
    conn = ctx.connections.get(KIND, "bus")
    assert isinstance(conn, NatsConnection)
    return conn


def run(ctx: ActionContext, verb: str, **args: Any) -> Any:
    return KIND.execute({"nats": {verb: args}, "connection": "bus"}, ctx)


def code_of(ctx: ActionContext, verb: str, **args: Any) -> ActionError:
    with pytest.raises(ActionError) as err:
        run(ctx, verb, **args)
    return err.value


@pytest.fixture
def stream(ctx: ActionContext) -> Iterator[tuple[str, str]]:
    """A fresh stream (name, subject prefix), deleted afterwards if the test did not."""
    name = unique("S")
    prefix = name.lower()
    run(ctx, "stream_add", name=name, subjects=[f"{prefix}.>"], storage="memory")
    yield name, prefix
    try:
        run(ctx, "stream_delete", name=name)
    except ActionError:
        pass


def test_stream_add_info_publish_delete(ctx: ActionContext) -> None:
    name = unique("ORDERS")
    info = run(ctx, "stream_add", name=name, subjects=[f"{name}.>"], storage="file", max_msgs=100)
    assert info["config"]["name"] == name
    assert info["config"]["subjects"] == [f"{name}.>"]
    assert info["config"]["storage"] == "file" and info["config"]["max_msgs"] == 100
    assert info["state"]["messages"] == 0
    # The atomicops tags travel in the stream's metadata, for the inventory.
    assert {k: info["config"]["metadata"][k] for k in TAGS} == TAGS
    assert json.loads(json.dumps(info)) == info

    first = run(ctx, "publish", subject=f"{name}.created", data={"id": 1})
    second = run(ctx, "publish", subject=f"{name}.created", data="plain text")
    assert first == {"stream": name, "seq": 1}
    assert second == {"stream": name, "seq": 2}

    info = run(ctx, "stream_info", name=name)
    state = info["state"]
    assert (state["messages"], state["first_seq"], state["last_seq"]) == (2, 1, 2)
    assert state["bytes"] > 0

    assert run(ctx, "stream_delete", name=name) == {"deleted": True}
    assert code_of(ctx, "stream_info", name=name).code == "StreamNotFound"


def test_stream_add_is_idempotent_for_the_same_config_only(
    ctx: ActionContext, stream: tuple[str, str]
) -> None:
    name, prefix = stream
    again = run(ctx, "stream_add", name=name, subjects=[f"{prefix}.>"], storage="memory")
    assert again["config"]["name"] == name
    error = code_of(ctx, "stream_add", name=name, subjects=["elsewhere.>"], storage="memory")
    assert error.code == "StreamNameInUse"
    assert not error.transient


def test_publish_payloads_headers_and_dedupe(
    ctx: ActionContext, handle: NatsConnection, stream: tuple[str, str]
) -> None:
    name, prefix = stream
    run(ctx, "publish", subject=f"{prefix}.a", data={"k": [1, "é"]}, headers={"X-Trace": "t1"})
    ack = run(ctx, "publish", subject=f"{prefix}.b", data="once", msg_id="step-1")
    again = run(ctx, "publish", subject=f"{prefix}.b", data="once", msg_id="step-1")
    # A retried publish with the same Nats-Msg-Id is stored once.
    assert again == {"stream": name, "seq": ack["seq"], "duplicate": True}
    messages = list(handle.iter_stream(name))
    assert [m.seq for m in messages] == [1, 2]
    assert json.loads(messages[0].data) == {"k": [1, "é"]}
    assert messages[0].headers == {"X-Trace": "t1"}
    assert messages[1].headers == {"Nats-Msg-Id": "step-1"}


def test_publish_without_a_stream(ctx: ActionContext, handle: NatsConnection) -> None:
    subject = unique("core")
    got: list[bytes] = []
    seen = threading.Event()

    async def listen(nc: Any) -> None:
        async def on_msg(msg: Any) -> None:
            got.append(msg.data)
            seen.set()

        await nc.subscribe(subject, cb=on_msg)
        await nc.flush()

    listener = NatsConnection(handle.url)
    try:
        listener.call(listen, "subscribe")
        # No stream captures the subject: by default it goes out as a core message.
        assert run(ctx, "publish", subject=subject, data="hi") == {}
        assert seen.wait(2) and got == [b"hi"]
        # Asked for JetStream explicitly, the missing stream is an error.
        error = code_of(ctx, "publish", subject=subject, data="hi", jetstream=True)
        assert error.code == "NoResponders"
    finally:
        listener.close()


def test_request_reply(ctx: ActionContext, handle: NatsConnection) -> None:
    subject = unique("svc.health")

    async def serve(nc: Any) -> None:
        async def on_request(msg: Any) -> None:
            body = json.loads(msg.data)
            await msg.respond(json.dumps({"status": "healthy", "echo": body}).encode())

        await nc.subscribe(subject, cb=on_request)
        await nc.flush()

    responder = NatsConnection(handle.url)
    try:
        responder.call(serve, "serve")
        reply = run(ctx, "request", subject=subject, data={"ping": 1}, timeout=2)
        assert reply["json"] == {"status": "healthy", "echo": {"ping": 1}}
        assert json.loads(reply["data"]) == reply["json"]
    finally:
        responder.close()


def test_request_errors(ctx: ActionContext, handle: NatsConnection) -> None:
    assert code_of(ctx, "request", subject=unique("nobody"), timeout=1).code == "NoResponders"

    subject = unique("silent")

    async def swallow(nc: Any) -> None:
        await nc.subscribe(subject)  # subscribed, never answers
        await nc.flush()

    silent = NatsConnection(handle.url)
    try:
        silent.call(swallow, "subscribe")
        t0 = time.monotonic()
        error = code_of(ctx, "request", subject=subject, timeout=0.3)
        assert error.code == "Timeout" and error.transient
        assert time.monotonic() - t0 < 2
    finally:
        silent.close()


def test_error_codes_and_undo_ok(ctx: ActionContext) -> None:
    missing = unique("MISSING")
    error = code_of(ctx, "stream_info", name=missing)
    assert error.code == "StreamNotFound" and not error.transient
    assert missing in error.message

    name = unique("TWICE")
    run(ctx, "stream_add", name=name, subjects=[f"{name}.>"], storage="memory")
    run(ctx, "stream_delete", name=name)
    error = code_of(ctx, "stream_delete", name=name)
    assert error.code == "StreamNotFound"
    # The engine's default undo_ok_errors take this as "already undone".
    assert any(fnmatch.fnmatchcase(error.code, p) for p in DEFAULT_UNDO_OK_ERRORS)

    assert code_of(ctx, "consumer_add", stream=missing, durable_name="d").code == "StreamNotFound"


def test_consumer_add_and_delete(ctx: ActionContext, stream: tuple[str, str]) -> None:
    name, prefix = stream
    info = run(ctx, "consumer_add", stream=name, durable_name="worker", ack_policy="explicit",
               filter_subject=f"{prefix}.jobs", ack_wait=30)  # fmt: skip
    assert info["name"] == "worker" and info["stream_name"] == name
    assert info["config"]["durable_name"] == "worker"
    assert info["config"]["ack_policy"] == "explicit"
    assert info["config"]["ack_wait"] == 30
    assert {k: info["config"]["metadata"][k] for k in TAGS} == TAGS
    assert json.loads(json.dumps(info)) == info
    assert run(ctx, "stream_info", name=name)["state"]["consumer_count"] == 1

    assert run(ctx, "consumer_delete", stream=name, name="worker") == {"deleted": True}
    error = code_of(ctx, "consumer_delete", stream=name, name="worker")
    assert error.code == "ConsumerNotFound"
    assert any(fnmatch.fnmatchcase(error.code, p) for p in DEFAULT_UNDO_OK_ERRORS)


def test_stream_purge(ctx: ActionContext, stream: tuple[str, str]) -> None:
    name, prefix = stream
    for i in range(5):
        run(ctx, "publish", subject=f"{prefix}.{i % 2}", data=str(i))
    assert run(ctx, "stream_purge", name=name, keep=2) == {"purged": 3}
    assert run(ctx, "stream_purge", name=name) == {"purged": 2}
    state = run(ctx, "stream_info", name=name)["state"]
    assert state["messages"] == 0 and state["last_seq"] == 5


# --------------------------------------------------------------------------- connections


def test_closed_port_fails_fast_without_the_password(closed_nats_url: str) -> None:
    port = closed_nats_url.rsplit(":", 1)[1]
    spec = {"kind": "nats", "url": closed_nats_url.replace("nats://", "nats://u:s3cr3t-pw@"),
            "user": "u", "password": "s3cr3t-pw", "token": "t0k3n-value"}  # fmt: skip
    t0 = time.monotonic()
    with pytest.raises(ActionError) as err:
        KIND.connect(spec)
    assert time.monotonic() - t0 < 3
    assert err.value.code == "ConnectionError" and err.value.transient
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "s3cr3t-pw" not in str(err.value) and "t0k3n-value" not in str(err.value)


def test_wrong_credentials(tmp_path: Path) -> None:
    info = sandbox_nats.start(tmp_path / "auth", extra_args=["--user", "u", "--pass", "right-pw"])
    try:
        with pytest.raises(ActionError) as err:
            KIND.connect({"kind": "nats", "url": info.url, "user": "u", "password": "wrong-pw"})
        assert err.value.code == "AuthorizationError" and not err.value.transient
        assert "wrong-pw" not in str(err.value) and "right-pw" not in str(err.value)
        ok = KIND.connect({"kind": "nats", "url": info.url, "user": "u", "password": "right-pw"})
        try:
            assert ok.stream_add({"name": "A", "subjects": ["a"]})["config"]["name"] == "A"
        finally:
            KIND.disconnect(ok)
    finally:
        sandbox_nats.stop(info)


def test_a_lost_server_is_a_transient_error_and_the_next_call_reconnects(tmp_path: Path) -> None:
    port = free_port()
    info = sandbox_nats.start(tmp_path / "a", port=port)
    conn = KIND.connect({"kind": "nats", "url": info.url, "connect_timeout": 1})
    try:
        conn.stream_add({"name": "KEEP", "subjects": ["keep"], "storage": "memory"})
        sandbox_nats.stop(info)
        with pytest.raises(ActionError) as err:
            conn.stream_info("KEEP", timeout=1)
        assert err.value.code in ("ConnectionError", "Timeout") and err.value.transient
        info = sandbox_nats.start(tmp_path / "b", port=port)
        # A new server (memory stream gone) on the same address: the handle connects again.
        assert conn.stream_add({"name": "NEW", "subjects": ["new"]})["config"]["name"] == "NEW"
    finally:
        KIND.disconnect(conn)
        sandbox_nats.stop(info)


def test_disconnect_stops_the_loop_thread(nats_connection: dict[str, Any]) -> None:
    conn = KIND.connect(nats_connection)
    thread = conn._thread  # the loop thread is the point of this test
    assert thread.is_alive()
    KIND.disconnect(conn)
    KIND.disconnect(conn)  # idempotent
    assert not thread.is_alive()
    assert conn._loop.is_closed()
    with pytest.raises(ActionError) as err:
        conn.stream_info("ANY")
    assert err.value.code == "ConnectionClosed"


def test_connections_close_disconnects(nats_connection: dict[str, Any]) -> None:
    conns = Connections({"bus": nats_connection})
    conn = conns.get(KIND, None)  # the plan's first nats connection
    assert isinstance(conn, NatsConnection) and not conn.closed
    conns.close()
    assert conn.closed


def test_one_handle_from_many_threads(handle: NatsConnection, stream: tuple[str, str]) -> None:
    name, prefix = stream
    other = unique("T")
    handle.stream_add({"name": other, "subjects": [f"{other}.>"], "storage": "memory"})
    for i in range(300):
        handle.publish(f"{other}.x", str(i))

    def publish(i: int) -> int:
        return int(handle.publish(f"{prefix}.{i % 3}", {"i": i})["seq"])

    def read(_: int) -> list[int]:
        return [m.seq for m in handle.iter_stream(other, batch=50)]

    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            readers = [pool.submit(read, i) for i in range(4)]
            seqs = list(pool.map(publish, range(200)))
            states = list(pool.map(lambda _: handle.stream_state(name), range(20)))
        assert sorted(seqs) == list(range(1, 201))
        assert all(r.result() == list(range(1, 301)) for r in readers)
        assert all(0 <= s["messages"] <= 200 for s in states)
        assert handle.stream_state(name)["messages"] == 200
        assert handle.consumers(other) == []
    finally:
        handle.stream_delete(other)


# --------------------------------------------------------------------------- iter_stream


@pytest.fixture
def filled(handle: NatsConnection, stream: tuple[str, str]) -> tuple[str, list[tuple[str, bytes]]]:
    """The stream with 600 messages (more than two default batches), and what they hold."""
    name, prefix = stream
    sent = [(f"{prefix}.{i % 7}", f"m{i}".encode()) for i in range(600)]

    async def publish_all(nc: Any) -> None:
        js = nc.jetstream()
        for subject, data in sent:
            await js.publish(subject, data, headers={"n": data.decode()})

    handle.call(publish_all, "fill", timeout=30)
    return name, sent


def test_iter_stream_reads_everything_in_order(
    handle: NatsConnection, filled: tuple[str, list[tuple[str, bytes]]]
) -> None:
    name, sent = filled
    got = list(handle.iter_stream(name))
    assert [m.seq for m in got] == list(range(1, 601))
    assert [(m.subject, m.data) for m in got] == sent
    assert all(isinstance(m, StreamMessage) and m.headers == {"n": m.data.decode()} for m in got)
    assert handle.consumers(name) == []  # the reader is gone


def test_iter_stream_bounds_and_batches(
    handle: NatsConnection, filled: tuple[str, list[tuple[str, bytes]]]
) -> None:
    name, _ = filled
    assert [m.seq for m in handle.iter_stream(name, start_seq=590, batch=4)] == list(
        range(590, 601)
    )
    assert [m.seq for m in handle.iter_stream(name, start_seq=5, end_seq=9, batch=2)] == [
        5,
        6,
        7,
        8,
        9,
    ]
    assert list(handle.iter_stream(name, start_seq=601 + 1)) == []
    # Messages published after the iteration began are not waited for.
    seen = []
    for message in handle.iter_stream(name, start_seq=599):
        seen.append(message.seq)
        handle.publish(f"{name.lower()}.late", "late")
    assert seen == [599, 600]
    assert handle.consumers(name) == []


def test_iter_stream_skips_deleted_messages(
    handle: NatsConnection, filled: tuple[str, list[tuple[str, bytes]]]
) -> None:
    name, sent = filled

    async def delete(nc: Any) -> None:
        for seq in (1, 3, 4, 600):
            await nc.jsm().delete_msg(name, seq)

    handle.call(delete, "delete messages")
    got = list(handle.iter_stream(name, batch=2))
    assert [m.seq for m in got] == [2, *range(5, 600)]
    assert [m.data for m in got] == [sent[1][1], *(d for _, d in sent[4:599])]


def test_iter_stream_broken_off_leaves_no_consumer(
    handle: NatsConnection, filled: tuple[str, list[tuple[str, bytes]]]
) -> None:
    name, _ = filled
    messages = handle.iter_stream(name, batch=16)
    first = [next(messages) for _ in range(3)]
    assert [m.seq for m in first] == [1, 2, 3]
    assert [c["name"].startswith(READER_PREFIX) for c in handle.consumers(name)] == [True]
    messages.close()  # what a `break` out of a for loop does
    assert handle.consumers(name) == []


def test_iter_stream_of_empty_and_missing_streams(
    handle: NatsConnection, stream: tuple[str, str]
) -> None:
    name, _ = stream
    assert list(handle.iter_stream(name)) == []
    assert handle.stream_state(name)["consumer_count"] == 0
    with pytest.raises(ActionError) as err:
        list(handle.iter_stream(unique("MISSING")))
    assert err.value.code == "StreamNotFound"


def test_calls_from_the_loop_thread_are_refused(handle: NatsConnection) -> None:
    async def nested(nc: Any) -> None:
        handle.stream_info("X")  # would wait for the loop it is running on

    with pytest.raises(RuntimeError, match="deadlock"):
        handle.call(nested, "nested", timeout=2)
