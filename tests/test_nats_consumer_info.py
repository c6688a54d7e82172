"""``nats: {consumer_info: ...}``: a consumer can be probed, against a real nats-server."""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from atomicops.actions.base import ActionContext, Connections
from atomicops.actions.nats import NatsKind
from atomicops.errors import ActionError
from atomicops.plan.model import DEFAULT_UNDO_OK_ERRORS

KIND = NatsKind()


def run(ctx: ActionContext, verb: str, **args: Any) -> Any:
    return KIND.execute({"nats": {verb: args}, "connection": "bus"}, ctx)


@pytest.fixture
def ctx(nats_connection: dict[str, Any]) -> Iterator[ActionContext]:
    conns = Connections({"bus": nats_connection})
    yield ActionContext(connections=conns, env="test", run_id="run-1")
    conns.close()


def test_consumer_info_finds_a_consumer_and_reports_one_that_is_gone(ctx: ActionContext) -> None:
    assert list(KIND.check({"nats": {"consumer_info": {"stream": "S", "name": "worker"}}})) == []
    stream = f"S_{uuid.uuid4().hex[:8]}"
    run(ctx, "stream_add", name=stream, subjects=[f"{stream.lower()}.>"], storage="memory")
    try:
        run(ctx, "consumer_add", stream=stream, durable_name="worker", ack_policy="explicit")
        info = run(ctx, "consumer_info", stream=stream, name="worker")
        assert info["name"] == "worker" and info["stream_name"] == stream
        assert info["config"]["ack_policy"] == "explicit"
        run(ctx, "consumer_delete", stream=stream, name="worker")
        with pytest.raises(ActionError) as gone:
            run(ctx, "consumer_info", stream=stream, name="worker")
        # A probe reads this as "not there".
        assert any(fnmatch.fnmatchcase(gone.value.code or "", p) for p in DEFAULT_UNDO_OK_ERRORS)
    finally:
        run(ctx, "stream_delete", name=stream)
