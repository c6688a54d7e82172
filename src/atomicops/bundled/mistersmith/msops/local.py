"""The local MisterSmith system being migrated, as a rehearsal stands it up: a JetStream
stream of discovery messages and an exported coordination state file."""

from __future__ import annotations

import atexit
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from atomicops.actions.base import ActionContext, connection_of

TYPES = ("pattern", "anomaly", "correlation", "insight")


def seed_discovery_stream(ctx: ActionContext, stream: str, messages: int) -> dict[str, Any]:
    bus = connection_of(ctx, "nats")
    bus.stream_add({"name": stream, "subjects": ["discovery.>"]})
    rng = random.Random(7)  # the same stream on every rehearsal
    for i in range(int(messages)):
        kind = TYPES[i % len(TYPES)]
        bus.publish(f"discovery.{kind}", {
            "id": i, "type": kind, "agent": f"agent-{i % 3}",
            "content": f"discovery {i}", "confidence": round(rng.random(), 2),
        }, jetstream=True)
        if i % 500 == 0:
            ctx.progress(i, int(messages), "discovery messages seeded")
    return {"stream": stream, "messages": int(messages)}


def export_state(ctx: ActionContext, swarms: int = 5, versions: int = 3) -> dict[str, Any]:
    """What `export-state --format json` of the local orchestrator gives: JSON lines. The
    file lives as long as the rehearsing process, like the orchestrator's stand-in."""
    folder = tempfile.mkdtemp(prefix="mistersmith-state-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = Path(folder) / "state-backup.jsonl"
    with path.open("w") as f:
        for s in range(swarms):
            for v in range(1, versions + 1):
                f.write(json.dumps({"swarm_id": f"swarm-{s}", "version": v,
                                    "state": {"leader": f"agent-{s % 3}", "epoch": v, "members": [f"agent-{m}" for m in range(3)]}}) + "\n")
    return {"path": str(path), "records": swarms * versions}
