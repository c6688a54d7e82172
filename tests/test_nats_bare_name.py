"""A nats verb that needs only a name takes the bare name: `stream_delete: ORDERS`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from atomicops.actions.base import ActionContext, Connections
from atomicops.actions.nats import NatsKind
from atomicops.errors import ActionError

KIND = NatsKind()


def test_the_bare_name_passes_the_static_checks() -> None:
    for verb in ("stream_info", "stream_delete", "stream_purge"):
        assert list(KIND.check({"nats": {verb: "ORDERS"}})) == []
        assert list(KIND.check({"nats": {verb: "ORDERS_${vars.suffix}"}})) == []
    bad = list(KIND.check({"nats": {"stream_info": "NO.DOTS"}}))
    assert bad and bad[0].path == ("nats", "stream_info", "name")
    # A verb that needs more than a name still wants the mapping.
    assert list(KIND.check({"nats": {"consumer_info": "ORDERS"}}))


@pytest.fixture
def ctx(nats_connection: dict[str, Any]) -> Iterator[ActionContext]:
    conns = Connections({"bus": nats_connection})
    yield ActionContext(connections=conns, env="test", run_id="run-1", tags={})
    conns.close()


def test_bare_names_run_against_a_real_server(ctx: ActionContext) -> None:
    name = f"BARE_{uuid.uuid4().hex[:8]}"
    KIND.execute({"nats": {"stream_add": {"name": name, "subjects": [f"{name.lower()}.>"], "storage": "memory"}},
                  "connection": "bus"}, ctx)
    info = KIND.execute({"nats": {"stream_info": name}, "connection": "bus"}, ctx)
    assert info["config"]["name"] == name
    KIND.execute({"nats": {"stream_purge": name}, "connection": "bus"}, ctx)
    assert KIND.execute({"nats": {"stream_delete": name}, "connection": "bus"}, ctx) == {"deleted": True}
    with pytest.raises(ActionError):
        KIND.execute({"nats": {"stream_info": name}, "connection": "bus"}, ctx)
