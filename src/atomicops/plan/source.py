"""Read YAML while remembering where every value came from.

Validation errors must name the file and line, but PyYAML's ``safe_load`` throws the marks
away. We compose the node tree ourselves and build plain Python values from it, recording
the line of every mapping key and sequence item in a :class:`SourceMap` keyed by path
(``("operations", 3, "steps", 0, "do")``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from atomicops.errors import PlanInvalid, Problem

Path = tuple[str | int, ...]


@dataclass
class SourceMap:
    file: str
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p[:-1]


# libyaml's parser when PyYAML has it: the pure-Python one took most of `validate`'s time on
# the flagship plan (docs/performance.md). Its nodes carry the same marks; a syntax error is
# parsed again in pure Python so the message does not depend on how PyYAML was built.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse ``text``; raise :class:`PlanInvalid` with the line of a syntax error."""
    try:
        return _load(_FAST_LOADER(text), file)
    except PlanInvalid:
        if _FAST_LOADER is yaml.SafeLoader:
            raise
        return _load(yaml.SafeLoader(text), file)


def _load(loader: yaml.SafeLoader, file: str) -> tuple[Any, SourceMap]:
    smap = SourceMap(file)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, smap
        value = _build(loader, node, (), smap)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise PlanInvalid([Problem(f"YAML syntax: {msg}", file=file, line=line)]) from None
    except _DuplicateKey as dup:
        raise PlanInvalid(
            [Problem(f"duplicate key {dup.key!r}", file=file, line=dup.line, key=dup.path)]
        ) from None
    finally:
        loader.dispose()
    return value, smap


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, path: str):
        self.key, self.line, self.path = key, line, path


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path, smap: SourceMap) -> Any:
    smap.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # honour YAML merge keys (<<); merged pairs come first
        merged = len(node.value) - explicit
        out: dict[Any, Any] = {}
        merged_keys: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a scalar", key_node.start_mark
                )
            # A key written out may override one merged in; written twice is a mistake.
            if key in out and not (key in merged_keys and index >= merged):
                raise _DuplicateKey(
                    str(key), key_node.start_mark.line + 1, format_path((*path, key))
                )
            if index < merged:
                merged_keys.add(key)
            else:
                merged_keys.discard(key)
            child = (*path, key)
            smap.lines[child] = key_node.start_mark.line + 1
            out[key] = _build(loader, value_node, child, smap)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, i), smap) for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def format_path(path: Sequence[str | int]) -> str:
    """``("operations", 0, "steps", 1, "do")`` -> ``operations[0].steps[1].do``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
