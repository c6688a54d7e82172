"""3.4: import the exported coordination state into core.coordination_state.

Each record's id is derived from the importing step's key and the record's content key
(swarm id and version), so re-running the import inserts nothing twice (``ON CONFLICT DO
NOTHING``), and the ids the step returns are exactly the rows the import accounts for: a row
the application wrote, or another environment's import, has another id, so the probe never
takes it for this step's. The undo deletes those ids and nothing else (the page deleted
"rows from the last hour")
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from atomicops.actions.base import ActionContext, connection_of
from atomicops.errors import ActionError

ID_NAMESPACE = uuid.UUID("6f1c9a52-4d8e-4c3a-9d41-6d2f2a1b7e10")  # fixed: ids must be stable


# The AWS calls each function makes, for `atomicops policy` (atomicops/policy/calls.py): none.
AWS_CALLS: dict[str, list[str]] = {"import_state": [], "imported": []}

def _records(path: str) -> list[dict[str, Any]]:
    """The file's records, one per (swarm id, version): a repeated record is one row."""
    unique: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in _read(path):
        unique.setdefault((rec["swarm_id"], rec["version"]), rec)
    return list(unique.values())


def _read(path: str) -> list[dict[str, Any]]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ActionError("call", f"cannot read the exported state {path}: {exc.strerror}", code="NoSuchFile") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            records.append({"swarm_id": str(rec["swarm_id"]), "state": rec["state"], "version": int(rec.get("version", 1))})
        except (ValueError, KeyError, TypeError) as exc:
            raise ActionError("call", f"{path}:{n}: not a state record ({exc})", code="BadRecord") from None
    return records


def record_id(rec: dict[str, Any], step_key: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{step_key}/{rec['swarm_id']}/{rec['version']}"))


def import_state(ctx: ActionContext, path: str, database: str) -> dict[str, Any]:
    records = _records(path)
    step_key = ctx.step_key or ""
    db = connection_of(ctx, "sql")
    with db.session(database) as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO core.coordination_state (id, swarm_id, state, version)"
            " VALUES (%(id)s, %(swarm_id)s, %(state)s, %(version)s) ON CONFLICT (id) DO NOTHING",
            [{**r, "id": record_id(r, step_key), "state": Jsonb(r["state"])} for r in records],
        )
    ctx.progress(len(records), len(records), "state records imported")
    return {"ids": [record_id(r, step_key) for r in records], "count": len(records)}


def imported(ctx: ActionContext, path: str, database: str, step_key: str) -> dict[str, Any]:
    """Probe: which of the file's records this step imported (a killed import committed or not)."""
    ids = [record_id(r, step_key) for r in _records(path)]
    with connection_of(ctx, "sql").session(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT id::text FROM core.coordination_state WHERE id = ANY(%s::uuid[])", (ids,))
        present = {row[0] for row in cur.fetchall()}
    return {"ids": [i for i in ids if i in present], "count": len(present)}
