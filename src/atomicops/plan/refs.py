"""``${...}`` references: finding them, checking their shape, and resolving them.

A reference that is the whole string value (``"${ops.vpc.vpc_id}"``) is replaced by the
referenced value with its type kept (a list stays a list); a reference inside a longer string
is formatted into it (scalars as text, mappings and lists as JSON). ``$${`` is a literal
``${``.

Namespaces: ``vars.NAME[.path]``, ``secrets.NAME``, ``ops.OP.OUTPUT[.path]``,
``self.OUTPUT[.path]``, ``step.key``, ``step.run`` (the run of the step's intent),
``run.id``, ``env``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from atomicops.errors import ReferenceError_

_REF = re.compile(r"\$(\$?)\{([^{}]*)\}")
# A libpq connection URI percent-decodes its parts: a value formatted into one raw would split
# it at `:`, `@` or `/` (and the driver's error would then quote a piece of it).
_PERCENT_DECODED = re.compile(r"postgres(?:ql)?://", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

NAMESPACES = ("vars", "secrets", "ops", "self", "step", "run", "env")


@dataclass(frozen=True)
class Ref:
    """A parsed reference. ``path`` is everything after the namespace."""

    text: str
    namespace: str
    path: tuple[str, ...]

    @property
    def op(self) -> str | None:
        return self.path[0] if self.namespace == "ops" and self.path else None


class RefSyntaxError(ValueError):
    pass


def is_reference(value: object) -> bool:
    """Whether a plan value holds a ``${...}`` still to be resolved: static checks of action
    kinds and of ``expect`` leave such values alone (their type is known only at run time)."""
    return isinstance(value, str) and "${" in value


def is_whole_reference(value: object) -> bool:
    """Whether ``value`` is exactly one ``${...}`` (resolved with its type kept)."""
    if not isinstance(value, str):
        return False
    m = _REF.fullmatch(value)
    return m is not None and not m.group(1)


def parse(text: str) -> Ref:
    """Parse the inside of ``${...}``; raise :class:`RefSyntaxError` if it is malformed."""
    parts = tuple(p.strip() for p in text.strip().split("."))
    if not parts or not parts[0]:
        raise RefSyntaxError("empty reference")
    ns, rest = parts[0], parts[1:]
    if ns not in NAMESPACES:
        raise RefSyntaxError(
            f"unknown namespace {ns!r} (expected one of: {', '.join(NAMESPACES)})"
        )
    for p in rest:
        if not _NAME.match(p) and not p.isdigit():
            raise RefSyntaxError(f"bad name {p!r} in ${{{text}}}")
    need = {"vars": 1, "secrets": 1, "ops": 2, "self": 1, "step": 1, "run": 1, "env": 0}[ns]
    if len(rest) < need:
        raise RefSyntaxError(f"${{{text}}} is incomplete")
    if ns == "secrets" and len(rest) != 1:
        raise RefSyntaxError("a secret is referenced whole: ${secrets.NAME}")
    if ns == "step" and rest not in (("key",), ("run",)):
        raise RefSyntaxError("the step namespace has only ${step.key} and ${step.run}")
    if ns == "run" and rest != ("id",):
        raise RefSyntaxError("the run namespace has only ${run.id}")
    if ns == "env" and rest:
        raise RefSyntaxError("${env} takes no path")
    return Ref(text=text.strip(), namespace=ns, path=rest)


def refs_in(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """Every reference text in a nested value, with the path of the string holding it."""
    if isinstance(value, str):
        if "${" in value:  # most strings hold no reference: skip the regex
            for m in _REF.finditer(value):
                if not m.group(1):
                    yield m.group(2), path
    elif isinstance(value, (dict, Mapping)):  # dict first: an ABC check is slow
        for k, v in value.items():
            yield from refs_in(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from refs_in(v, (*path, i))


class Sensitive(str):
    """A lookup's answer that is a secret: formatted into a connection URI it is
    percent-encoded, so that the URI parses as written whatever the secret holds."""

    def in_uri(self) -> str:
        return quote(self, safe="")


Lookup = Callable[[Ref], Any]


class Keep(Exception):
    """Raised by a lookup to leave a reference unresolved (secrets in journalled actions)."""


def resolve(value: Any, lookup: Lookup) -> Any:
    """Resolve every reference in ``value`` with ``lookup``; returns a new value."""
    if isinstance(value, str):
        return _resolve_str(value, lookup)
    if isinstance(value, Mapping):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, lookup) for v in value]
    return value


def _resolve_str(text: str, lookup: Lookup) -> Any:
    whole = _REF.fullmatch(text)
    if whole and not whole.group(1):
        try:
            got = lookup(parse(whole.group(2)))
            return str(got) if isinstance(got, Sensitive) else got
        except Keep:
            return text
        except RefSyntaxError as exc:
            raise ReferenceError_(whole.group(2), str(exc)) from None

    def sub(m: re.Match[str]) -> str:
        if m.group(1):  # $${...} is a literal ${...}
            return "${" + m.group(2) + "}"
        try:
            got = lookup(parse(m.group(2)))
        except Keep:
            return m.group(0)
        except RefSyntaxError as exc:
            raise ReferenceError_(m.group(2), str(exc)) from None
        if isinstance(got, Sensitive) and uri:
            return got.in_uri()
        return str(format_scalar(got))

    uri = bool(_PERCENT_DECODED.match(text))
    return _REF.sub(sub, text)


def format_scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def dig(value: Any, path: tuple[str, ...], ref: Ref) -> Any:
    """Follow ``path`` into nested mappings and lists (a digit indexes a list)."""
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise ReferenceError_(ref.text, f"{part!r} not found")
    return value
