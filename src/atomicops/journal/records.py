"""What every journal store writes the same way, whatever the database: the JSON text of an
event's data, the checksum chain over events, and who may take an environment's lock.

Kept in one place because the stores must agree byte for byte: ``atomicops state copy`` moves
an environment from one store to the other, and the chain it recomputes there must match the
one the first store wrote, or the copy would read as an edited journal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from typing import Any

from atomicops.journal.store import LockHolder
from atomicops.processes import pid_alive, running_since


def link(
    previous: str,
    env: str,
    run_id: str,
    ts: float,
    type_: str,
    op: str | None,
    step: str | None,
    text: str,
) -> str:
    """The chain value of one event: SHA-256 over the previous event's and its own content.

    Over the stored text of ``data``, not a re-encoding of it, so the chain does not depend
    on how values are encoded into that text. The seq is not in it: a copy into another store
    keeps the seqs, but the chain would survive a renumbering too.
    """
    content = json.dumps([env, run_id, ts, type_, op, step, text], separators=(",", ":"))
    return hashlib.sha256(f"{previous}\n{content}".encode()).hexdigest()


def may_take_over(current: LockHolder, *, now: float) -> bool:
    """Whether ``current`` is gone: on this host with its pid gone, or no heartbeat within its
    lease (``now`` and the heartbeat read from the same clock). A live holder on another host
    cannot be told from a slow one except by its lease, so without a lease only `unlock` frees it."""
    gone = current.host == socket.gethostname() and not pid_alive(current.pid)
    lapsed = current.lease > 0 and now - current.heartbeat > current.lease
    return gone or lapsed


def running_here(holder: LockHolder) -> bool:
    """Whether the holder is provably still running: on this host, its pid alive and started
    before it took the lock (so not a later process that reused the pid). A holder elsewhere,
    or one with no recorded start, proves nothing and counts as not running."""
    if holder.host != socket.gethostname() or holder.started <= 0:
        return False
    return running_since(holder.pid, holder.started)


def same_holder(current: LockHolder, holder: LockHolder) -> bool:
    if current.lock_id == holder.lock_id:
        return True
    return (current.host, current.pid, current.run_id) == (holder.host, holder.pid, holder.run_id)


# Binary values (a Lambda ZipFile, an S3 Body written `!!binary` in a plan) are kept as
# {"$bytes": base64} and read back as bytes, so an undo or a resume gets the very bytes.
_BYTES = "$bytes"


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    return str(value)


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and isinstance(obj.get(_BYTES), str):
        return base64.b64decode(obj[_BYTES])
    return obj


def to_json(data: Any) -> str:
    """The journal's JSON text of ``data``: bytes encoded, other unknown types as text.

    ``to_json(from_json(text)) == text`` for any text this wrote: what a store copy relies on.
    """
    return json.dumps(data, sort_keys=True, default=_encode)


def from_json(text: str) -> Any:
    return json.loads(text, object_hook=_decode)
