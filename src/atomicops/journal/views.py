"""What the journal says about an environment, for people and scripts: its state, its
history, its lock. Reading only: nothing here loads a plan, an action kind or the engine, so
`atomicops status` and `history` start as fast as the journal opens."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from atomicops.journal import open_store
from atomicops.journal.state import EnvState, derive
from atomicops.journal.store import JournalStore, LockHolder


def store_for(state: str | JournalStore | None) -> JournalStore:
    """The store named by ``state`` (a path or URL; default ``.atomicops/``), or ``state``
    itself when it is already an open store."""
    return state if (state is not None and not isinstance(state, str)) else open_store(state)


def environment(env: str = "default", state: str | JournalStore | None = None) -> EnvState:
    store = store_for(state)
    return derive(env, store.events(env))


def status(env: str = "default", state: str | JournalStore | None = None) -> dict[str, Any]:
    """Every recorded operation's state, outputs (secrets already redacted), timings; the lock."""
    store = store_for(state)
    st = derive(env, store.events(env))
    lock = store.read_lock(env)
    ops = []
    for op in sorted(st.ops.values(), key=lambda o: (o.phase_index, o.started or 0)):
        ops.append(
            {
                "id": op.id,
                "status": op.status,
                "phase": op.phase,
                "title": op.title,
                "depends_on": op.depends_on,
                "run_id": op.run_id,
                "started": op.started,
                "finished": op.finished,
                "duration": (op.finished - op.started) if op.finished and op.started else None,
                "outputs": op.outputs,
                "error": op.error,
                "steps": [
                    {
                        "name": s.name,
                        "status": s.status,
                        "outputs": s.outputs,
                        "started": s.started,
                        "finished": s.finished,
                        "irreversible": s.irreversible,
                        "error": s.error,
                    }
                    for s in op.steps.values()
                ],
            }
        )
    last = max(st.runs.values(), key=lambda r: r.started, default=None)
    return {
        "env": env,
        "state": store.url,
        "lock": lock.as_dict() if lock else None,
        "in_flight": st.in_flight(),
        # Operations only a person can move on: a failed undo, or a step nobody can tell about.
        "action_needed": [op["id"] for op in ops if op["status"] in ("rollback_failed", "uncertain")],
        "last_run": (
            {k: v for k, v in asdict(last).items() if k not in ("plan",)} if last else None
        ),
        "operations": ops,
        # Live marks, oldest first: what `rollback --to NAME` can go back to.
        "checkpoints": [c.as_dict() for c in sorted(st.checkpoints.values(), key=lambda c: c.seq)],
    }


def history(env: str = "default", state: str | JournalStore | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
    store = store_for(state)
    events = store.events(env)
    if limit:
        events = events[-limit:]
    out = []
    for ev in events:
        data = dict(ev.data)
        data.pop("plan", None)  # the recorded plan is large; `status` and `plan` show it
        out.append({"seq": ev.seq, "ts": ev.ts, "run": ev.run_id, "type": ev.type, "op": ev.op, "step": ev.step, "data": data})
    return out


def lock_holder(env: str = "default", state: str | JournalStore | None = None) -> LockHolder | None:
    return store_for(state).read_lock(env)


def unlock(
    env: str = "default", state: str | JournalStore | None = None, lock_id: str | None = None, force: bool = False
) -> LockHolder | None:
    return store_for(state).break_lock(env, lock_id, force=force)
