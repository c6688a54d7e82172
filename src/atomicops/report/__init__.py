"""Run reports: one self-contained HTML page per run (or per rehearsal, or per plan not yet
run) for the people who approve, watch and review a migration without reading event logs.

model.py       what a page shows, as data (masked already)
timeline.py    steps as bars in lanes, markers, phase bands (pure, from events)
graph_view.py  the operation graph with each node's state
from_journal.py  a report of runs, from the journal alone
from_plan.py   a report of a plan not yet run (`plan --html`)
page.py        the page: inline CSS, JS and SVG, nothing fetched
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from atomicops.errors import UsageError
from atomicops.report.model import Report

__all__ = ["Report", "of_journal", "write"]


def of_journal(
    env: str = "default",
    state: Any = None,
    *,
    runs: Sequence[str] = (),
    every: bool = False,
    verify: Sequence[Mapping[str, Any]] | None = None,
    leaks: Mapping[str, Any] | None = None,
    exit_code: int | None = None,
    extra_header: Sequence[tuple[str, str]] = (),
) -> Report:
    """The report of ``runs`` of ``env`` (default: the latest run and those it finishes;
    ``every``: all), read from the journal store ``state`` (a path, a URL or an open store)."""
    from atomicops.engine.scope import shown
    from atomicops.engine.secrets import process_redactor
    from atomicops.journal.views import store_for
    from atomicops.report.from_journal import build

    store = store_for(state)
    try:
        events = store.events(env)
    finally:
        if store is not state:  # opened here: closed here
            store.close()
    redactor = process_redactor()

    def mask(value: Any) -> Any:
        # Sealed secrets as a mask, then any value this process resolved (a rehearsal's).
        return redactor.data(shown(value))

    return build(env, events, runs=runs, every=every, verify=verify, leaks=leaks,
                 exit_code=exit_code, extra_header=extra_header, mask=mask)


def write(report: Report, path: str | os.PathLike[str]) -> int:
    """Write the page atomically (a reader sees the old file or the whole new one, never a
    part); return its size in bytes."""
    from atomicops.report.page import render

    target = Path(path)
    body = render(report).encode("utf-8")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(body)
