"""What every action kind's checks and errors share: suggestions for a misspelt name, the
"positive number or absent" rule, masking secret values in messages, refusing unknown keys."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from atomicops.actions.base import CheckIssue
from atomicops.errors import ActionError
from atomicops.plan.refs import is_reference


def suggest(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the choices closest to ``name``, or ``""``."""
    choices = list(choices)
    same_case = [c for c in choices if c.lower() == name.lower()]
    close = same_case or difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def positive_or_absent(value: Any) -> bool:
    """A timeout, a count...: unset, a reference (checked once resolved) or a positive number."""
    if value is None or is_reference(value):
        return True
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (longest first: one secret may
    contain another)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def unknown_keys(
    spec: Mapping[str, Any], allowed: Iterable[str], what: str, path: tuple[str | int, ...] = ()
) -> Iterator[CheckIssue]:
    """One issue per key of ``spec`` (``what``: "aws connection") outside ``allowed``."""
    allowed = frozenset(allowed)
    for key in sorted(set(spec) - allowed):
        yield CheckIssue((*path, key), f"unknown key {key!r} in {what}{suggest(key, allowed)}")


def refuse_unknown_keys(kind: str, what: str, spec: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """A mapping (``what``: "aws connection") with keys ``kind`` does not know is refused."""
    allowed = frozenset(allowed)
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ActionError(
            kind,
            f"unknown key(s) in {what}: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}",
            code="InvalidConnection",
        )
