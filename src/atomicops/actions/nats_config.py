"""nats-py's config dataclasses to and from plain data: checking a plan's fields against
them, building them from mappings, and turning nats-py results into JSON-safe data.

It imports no nats-py itself (the kind's static checks load with every command): the classes
come in as arguments, from whoever imported them.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from atomicops.actions.base import CheckIssue
from atomicops.actions.common import suggest
from atomicops.plan.refs import is_reference

if TYPE_CHECKING:
    from nats.aio.msg import Msg

# --------------------------------------------------------------------------- plain data


def plain(value: Any) -> Any:
    """A JSON-safe copy of a nats-py result: dataclasses as dicts without ``None`` members,
    enums as their values, datetimes as ISO 8601, bytes as text (or base64 when binary)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is not None:
                out[f.name] = plain(item)
        return out
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(plain(k)): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode("ascii")
    return value


def encode_data(data: Any) -> bytes:
    """A message payload: text as UTF-8, mappings/lists/numbers as compact JSON."""
    if data is None:
        return b""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _reply(msg: Msg) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        out["data"] = msg.data.decode("utf-8")
    except UnicodeDecodeError:
        out["data"] = base64.b64encode(msg.data).decode("ascii")
        out["data_encoding"] = "base64"
    try:
        out["json"] = json.loads(msg.data) if msg.data else None
    except ValueError:
        out["json"] = None
    if msg.headers:
        out["headers"] = plain(msg.headers)
    return out


def _str_headers(headers: Mapping[Any, Any] | None) -> dict[str, str] | None:
    if not headers:
        return None
    return {str(plain(k)): str(v) for k, v in headers.items()}


# --------------------------------------------------------------------------- config fields


_HINTS: dict[type, dict[str, Any]] = {}


def _field_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a nats-py config dataclass (its module uses string
    annotations, so they are resolved against that module). Cached: they never change."""
    hints = _HINTS.get(cls)
    if hints is None:
        resolved = typing.get_type_hints(cls)
        hints = _HINTS[cls] = {f.name: resolved[f.name] for f in dataclasses.fields(cls)}
    return hints


def _required_fields(cls: type) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _type_name(hint: Any) -> str:
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):  # noqa: UP006 - nats-py's hints use typing.List
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    if origin in (dict, typing.Dict):  # noqa: UP006
        return "mapping"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(e.value) for e in hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"mapping ({hint.__name__})"
    if hint is float:
        return "number"
    if hint is dt.datetime:
        return "ISO 8601 time"
    return getattr(hint, "__name__", str(hint))


def _check_typed(value: Any, hint: Any, path: tuple[str | int, ...]) -> Iterator[CheckIssue]:
    """Walk a literal value against a nats-py type hint; references (``${...}``) are opaque."""
    if is_reference(value):
        return
    if value is None:
        yield CheckIssue(path, "null is not a valid value; leave the key out instead")
        return
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    wrong = CheckIssue(path, f"expected {_type_name(hint)}, got {type(value).__name__}")
    if hint is Any:
        return
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, (list, tuple)):
            yield wrong
            return
        (item_hint,) = typing.get_args(hint) or (Any,)
        for index, item in enumerate(value):
            yield from _check_typed(item, item_hint, (*path, index))
    elif origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, Mapping):
            yield wrong
            return
        args = typing.get_args(hint)
        for key, item in value.items():
            yield from _check_typed(item, args[1] if len(args) == 2 else Any, (*path, key))
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        if value not in {e.value for e in hint}:
            yield CheckIssue(path, f"{value!r} is not {_type_name(hint)}")
    elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            yield wrong
            return
        yield from _check_fields(value, hint, path, required=_required_fields(hint))
    elif hint is bool:
        if not isinstance(value, bool):
            yield wrong
    elif hint in (int, float):
        allowed = (int,) if hint is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            yield wrong
    elif (hint is str and not isinstance(value, str)) or (
        hint is dt.datetime and not isinstance(value, (str, dt.datetime))
    ):
        yield wrong


def _check_fields(
    value: Mapping[str, Any],
    cls: type,
    path: tuple[str | int, ...],
    *,
    required: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Iterator[CheckIssue]:
    hints = {**_field_hints(cls), **(extra or {})}
    for key, item in value.items():
        if is_reference(key):
            continue
        if key not in hints:
            hint = suggest(str(key), hints) or f"; valid: {', '.join(sorted(hints))}"
            yield CheckIssue((*path, key), f"unknown field {key!r} of {cls.__name__}{hint}")
            continue
        yield from _check_typed(item, hints[key], (*path, key))
    missing = [r for r in required if r not in value]
    if missing and not any(is_reference(k) for k in value):
        yield CheckIssue(path, f"missing required field(s) of {cls.__name__}: {', '.join(missing)}")


def build_config(cls: type, values: Mapping[str, Any]) -> Any:
    """A nats-py config dataclass from plain data: enums from their values, nested configs
    (placement, sources, subject transforms...) from mappings. ValueError/TypeError if bad."""
    hints = _field_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise TypeError(f"unknown field(s) of {cls.__name__}: {', '.join(unknown)}")
    return cls(**{k: _convert(v, hints[k]) for k, v in values.items()})


def _convert(value: Any, hint: Any) -> Any:
    hint = _unwrap_optional(hint)
    origin = typing.get_origin(hint)
    if value is None:
        return None
    if origin in (list, typing.List) and isinstance(value, (list, tuple)):  # noqa: UP006
        (item_hint,) = typing.get_args(hint) or (Any,)
        return [_convert(v, item_hint) for v in value]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return build_config(hint, value)  # a nested config: placement, sources...
    return value

