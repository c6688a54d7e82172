"""What the plan-facing half of the ``nats`` kind shares with the half that talks to a server,
without importing nats-py: the kind's key, a connection's keys, the reader's consumer prefix and
the rule for stream and consumer names.

``atomicops.actions.nats`` loads with every command, ``validate`` included, and nats-py takes
tens of milliseconds to import; so the kind module imports from here, and the connection,
reader and error modules (which need nats-py) only when something runs.
"""

from __future__ import annotations

KIND = "nats"

CONNECTION_KEYS = frozenset(
    {"kind", "url", "user", "password", "token", "connect_timeout", "request_timeout", "name"}
)

# iter_stream reads through an ephemeral consumer named with this prefix (an inventory leaves
# such consumers out: they are atomicops' own, and gone once a read ends).
READER_PREFIX = "atomicops-read-"


def _token(name: str) -> str:
    """A stream or consumer name as one subject token; anything else would address a
    different API subject (``a.b`` -> STREAM.INFO.a.b), so it is refused here."""
    if not name or any(c in name for c in ". *>\t\r\n"):
        raise ValueError(f"invalid name {name!r}: no '.', '*', '>' or whitespace allowed")
    return name
