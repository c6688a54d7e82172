"""``atomicops state copy``: an environment's journal moved between stores, losslessly.

Someone who started alone on a SQLite file moves to the team's PostgreSQL (or back, to take
a journal offline): every event with its seq, timestamp, run and data, and the checksum chain
recomputed in the target to the same values. Seqs are kept because checkpoints name them; so a
target that already uses a seq (another environment written there first) refuses the copy
rather than renumber it.

While copying, the environment is locked in both stores, as a run would lock it: no run can
append to the source after it was read, or start in the target before the copy is whole. The
copy is one transaction in the target, and is read back and compared before it counts.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from atomicops.errors import CopyRefused, UsageError
from atomicops.journal.store import JournalStore, LockHolder

# The copy does not beat: its lease must outlast reading and writing one environment.
COPY_LEASE_SECONDS = 300.0


@dataclass(frozen=True)
class Copied:
    env: str
    events: int
    first_seq: int
    last_seq: int

    def as_dict(self) -> dict[str, object]:
        return {"env": self.env, "events": self.events, "first_seq": self.first_seq, "last_seq": self.last_seq}


def copy_environments(source: JournalStore, target: JournalStore, envs: Sequence[str]) -> list[Copied]:
    """Copy each of ``envs`` from ``source`` to ``target``; stop at the first refusal (the
    ones before it are copied, and a second run skips nothing: it refuses them as there)."""
    if source.url == target.url:
        raise CopyRefused(", ".join(envs), "--from and --to name the same journal")
    return [_copy_one(source, target, env) for env in envs]


def _copy_one(source: JournalStore, target: JournalStore, env: str) -> Copied:
    holder = LockHolder(
        lock_id=uuid.uuid4().hex[:12],
        run_id=f"copy-{uuid.uuid4().hex[:6]}",
        pid=os.getpid(),
        host=socket.gethostname(),
        started=time.time(),
        command=f"atomicops state copy --to {target.url}",
        lease=COPY_LEASE_SECONDS,
    )
    source.acquire_lock(env, holder)  # Locked (exit 4) while a run holds it
    try:
        events = source.events(env)  # the chain verified on the way out
        if not events:
            raise CopyRefused(env, f"the journal at {source.url} holds no events of it")
        target.acquire_lock(env, holder)
        try:
            lock = target.read_lock(env)
            assert lock is not None
            target.import_events(env, events, fence=lock.fence)
            if target.events(env) != events:  # and verified on the way in
                raise UsageError(
                    f"the copy of environment {env!r} in {target.url} reads back different "
                    "from the source; do not use it there (the source is unchanged)"
                )
        finally:
            target.release_lock(env, holder.lock_id)
    finally:
        source.release_lock(env, holder.lock_id)
    return Copied(env, len(events), events[0].seq, events[-1].seq)
