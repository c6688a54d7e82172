"""Changing a journal behind atomicops's back, as someone with a sqlite3 shell can: for the
tests that prove such an edit is caught."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def edit(journal: Path, sql: str) -> None:
    """Set the append-only triggers aside and run ``sql`` on the journal."""
    conn = sqlite3.connect(journal)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    conn.execute(sql)
    conn.commit()
    conn.close()
