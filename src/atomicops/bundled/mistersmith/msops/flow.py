"""5.3: a message goes through NATS and comes back (the page's nats-box sub + pub).

The subject is one no stream captures, so the check leaves nothing in JetStream."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from atomicops.actions.base import ActionContext, connection_of

TIMEOUT = 5.0


# The AWS calls each function makes, for `atomicops policy` (atomicops/policy/calls.py): none.
AWS_CALLS: dict[str, list[str]] = {"publish_and_receive": []}

def publish_and_receive(ctx: ActionContext, subject: str, connection: str | None = None) -> dict[str, Any]:
    """``connection``: the plan's NATS connection to go through (the first one by default)."""
    bus = connection_of(ctx, "nats", connection)
    token = uuid.uuid4().hex

    async def roundtrip(nc: Any) -> dict[str, Any]:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_message(msg: Any) -> None:
            if not got.done():
                got.set_result(msg.data)

        sub = await nc.subscribe(subject, cb=on_message)
        try:
            await nc.publish(subject, token.encode())
            await nc.flush(timeout=TIMEOUT)
            data = await asyncio.wait_for(got, TIMEOUT)
        except TimeoutError:
            return {"received": False, "subject": subject}
        finally:
            await sub.unsubscribe()
        return {"received": data == token.encode(), "subject": subject}

    return dict(bus.call(roundtrip, f"message flow on {subject}", TIMEOUT * 2))
