"""What the tool derives from files that have not changed, kept between processes.

A `validate` of the flagship plan would otherwise read and parse 16 of botocore's service
models and walk 188 AWS calls against them on every run, three times the cost of starting
Python with boto3 (docs/performance.md, B6). What those readings produce (a service's
operation names, which calls take an idempotency token, which checks passed) depends only
on files whose identity is cheap to take: an entry is stored under a *stamp* made from
them (a library's version, the size and mtime of the modules that compute it), and an entry
whose stamp differs is not used.

Only what is safe to lose is kept here: a missing, unreadable or corrupt file is a miss, a
write that fails is dropped, and two processes writing at once leave one whole file (each
write goes to a temporary file renamed over the old one). Nothing secret is kept: checks
are remembered by a digest of the action, and operation names are public.

``ATOMICOPS_CACHE_DIR`` sets the directory (default ``$XDG_CACHE_HOME/atomicops``, else
``~/.cache/atomicops``); ``ATOMICOPS_CACHE_DIR=off`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OFF = "off"
FORMAT = 1  # bump when the layout of a file changes


def directory() -> Path | None:
    """Where derived facts are kept, or None when the cache is off."""
    chosen = os.environ.get("ATOMICOPS_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in (OFF, "") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "atomicops"


def stamp(*parts: Any, files: Iterable[str | os.PathLike[str]] = ()) -> str:
    """A short digest of ``parts`` and of each file's size and mtime (absent files count too)."""
    seen: list[Any] = [FORMAT, *parts]
    for f in files:
        try:
            st = os.stat(f)
            seen.append((os.fspath(f), st.st_size, st.st_mtime_ns))
        except OSError:
            seen.append((os.fspath(f), None))
    return digest(seen)


def digest(value: Any) -> str:
    """A stable digest of a JSON-able value (anything else by its repr)."""
    text = json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load(name: str, key: str) -> Any | None:
    """The data stored as ``name`` under ``key``, or None (a miss) for anything else."""
    where = directory()
    if where is None:
        return None
    try:
        with open(where / f"{name}.json", encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key:
        return None
    return doc.get("data")


def save(name: str, key: str, data: Any) -> None:
    """Store ``data`` as ``name`` under ``key``; a failure only loses the cache."""
    where = directory()
    if where is None:
        return
    try:
        # Private: what is kept here stands in for a plan's text (plan/source.py).
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=where)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"key": key, "data": data}, f, separators=(",", ":"))
            os.replace(tmp, where / f"{name}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return

