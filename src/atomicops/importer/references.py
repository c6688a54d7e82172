"""Placeholders (``<vpc-id>``) and shell variables (``$VPC_ID``) through the AWS CLI's parser.

Before a command is parsed, each one is replaced by a *stand-in*: an 11-digit number that the
CLI takes wherever a string or a number goes (inside shorthand, inside JSON, as an integer
``--port``). After parsing, each stand-in found in the parameters is turned into a reference
(``${vars.vpc_id}``, ``${self.vpc_id}``, ``${ops.network.vpc_id}``) once the importer knows
what the name stands for; a stand-in that is a whole number becomes a whole reference, which
keeps its type when it is resolved.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atomicops.importer.shell import PLACEHOLDER_CLOSE, PLACEHOLDER_OPEN

_MARK = re.compile(rf"{PLACEHOLDER_OPEN}([^{PLACEHOLDER_CLOSE}]+){PLACEHOLDER_CLOSE}|\$\{{([A-Za-z_][A-Za-z0-9_]*)\}}|\$([A-Za-z_][A-Za-z0-9_]*)")
_STAND_IN = re.compile(r"90713(\d{4})71")


def snake(name: str) -> str:
    """``vpc-id``, ``VPC_ID``, ``subnet.1a`` -> ``vpc_id``, ``subnet_1a``."""
    out = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    return out if out and not out[0].isdigit() else f"v_{out}"


@dataclass(frozen=True)
class Symbol:
    name: str  # the snake name: one symbol for `<vpc-id>` and `$VPC_ID`
    written: str  # as first written: `<vpc-id>` or `$VPC_ID`
    line: int  # first use


@dataclass
class Symbols:
    by_name: dict[str, Symbol] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # stand-in index -> name

    def encode(self, word: str, line: int) -> str:
        """``word`` with every placeholder and ``$VAR`` replaced by its stand-in."""
        def sub(m: re.Match[str]) -> str:
            raw = m.group(1) or m.group(2) or m.group(3)
            name = snake(raw)
            if name not in self.by_name:
                written = f"<{raw}>" if m.group(1) else f"${raw}"
                self.by_name[name] = Symbol(name, written, line)
                self.order.append(name)
            return self.stand_in(name)
        return _MARK.sub(sub, word)

    def stand_in(self, name: str) -> str:
        return f"90713{self.order.index(name):04d}71"

    def plain(self, word: str) -> str:
        """``word`` as the runbook wrote it (for messages)."""
        return word.replace(PLACEHOLDER_OPEN, "<").replace(PLACEHOLDER_CLOSE, ">")

    def names_in(self, value: Any) -> list[str]:
        found: list[str] = []
        for text in _strings(value):
            for m in _STAND_IN.finditer(text):
                index = int(m.group(1))
                if index < len(self.order) and self.order[index] not in found:
                    found.append(self.order[index])
        return found

    def decode(self, value: Any, ref: Callable[[str], str]) -> Any:
        """``value`` with stand-ins replaced by ``${...}`` from ``ref(name)``."""
        if isinstance(value, dict):
            return {k: self.decode(v, ref) for k, v in value.items()}
        if isinstance(value, list):
            return [self.decode(v, ref) for v in value]
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and _STAND_IN.fullmatch(str(value).removesuffix(".0")):
            return self.decode(str(value).removesuffix(".0"), ref)
        if isinstance(value, str):
            def sub(m: re.Match[str]) -> str:
                index = int(m.group(1))
                return "${" + ref(self.order[index]) + "}" if index < len(self.order) else m.group(0)
            return _STAND_IN.sub(sub, value)
        return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)] if not isinstance(value, bool) else []
