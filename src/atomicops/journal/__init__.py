"""The journal: where a run's events and its environment lock live.

:func:`open_store` picks the store from ``--state``: SQLite (a file, the default) or PostgreSQL
(shared by a team, journal/postgres.py). Adding a store is one factory and one line in
``_STORES``; the engine only sees :class:`JournalStore`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from atomicops.errors import UsageError
from atomicops.journal.store import Event, JournalStore, LockHolder

__all__ = ["DEFAULT_STATE_DIR", "Event", "JournalStore", "LockHolder", "open_store"]

# Relative to the base directory: `.atomicops/` beside the plan (or the working directory).
DEFAULT_STATE_DIR = ".atomicops"
_DB_NAME = "journal.db"


def _open_sqlite(url: str, base_dir: str) -> JournalStore:
    from atomicops.journal.sqlite import SqliteStore

    rest = url[len("sqlite://") :]
    # sqlite:///relative and sqlite:////absolute, as SQLAlchemy spells them: the third slash
    # ends the (empty) host part, so anything between `//` and it is a host we cannot use.
    if not rest.startswith("/") or rest == "/":
        raise UsageError(
            f"cannot use --state {url!r}: write sqlite:///relative/path or sqlite:////abs/path"
        )
    return SqliteStore(_db_path(rest[1:], base_dir))


def _open_postgres(url: str, base_dir: str) -> JournalStore:
    from atomicops.journal.postgres import PostgresStore  # imports psycopg: only when asked

    scheme, _, rest = url.partition("://")
    return PostgresStore(f"{scheme.lower()}://{rest}")  # libpq knows the scheme in lower case only


# scheme -> factory(url, base_dir). The URL's scheme is matched case-insensitively.
_STORES: dict[str, Callable[[str, str], JournalStore]] = {
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,  # libpq accepts both spellings
}


def open_store(state: str | None, *, base_dir: str = ".") -> JournalStore:
    """Open the journal store named by ``state`` (the ``--state`` option).

    - ``None``: ``<base_dir>/.atomicops/journal.db``;
    - a filesystem path: that SQLite file, or ``<dir>/journal.db`` for a directory (an
      existing one, or a path written with a trailing slash);
    - ``sqlite:///relative/path`` or ``sqlite:////absolute/path``;
    - ``postgresql://user@host:port/database?sslmode=verify-full``: the shared store (password
      from the URL, ``PGPASSWORD`` or ``~/.pgpass``).

    Relative paths are taken from ``base_dir``.
    """
    if state is None:
        from atomicops.journal.sqlite import SqliteStore

        # The file itself, never "journal.db inside it" when a directory is in its place:
        # the store refuses that directory instead of starting a new journal within it.
        return SqliteStore(Path(base_dir) / DEFAULT_STATE_DIR / _DB_NAME)
    state = state.strip()
    if not state:
        raise UsageError("--state is empty; give a path or a URL")
    scheme, sep, _ = state.partition("://")
    if not sep:
        return _open_sqlite(f"sqlite:///{state}", base_dir)
    factory = _STORES.get(scheme.lower())
    if factory is None:
        supported = ", ".join(f"{s}://" for s in _STORES)
        raise UsageError(
            f"--state {state!r}: unsupported scheme {scheme!r}; "
            f"supported: {supported}, or a plain file path"
        )
    return factory(state, base_dir)


def _db_path(raw: str, base_dir: str) -> Path:
    path = Path(os.path.expanduser(raw))
    if not path.is_absolute():
        path = Path(base_dir) / path
    if raw.endswith(("/", os.sep)) or path.is_dir():
        path = path / _DB_NAME
    return path
