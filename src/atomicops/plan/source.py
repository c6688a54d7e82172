"""Read YAML while remembering where every value came from.

Validation errors must name the file and line, but PyYAML's ``safe_load`` throws the marks
away. We compose the node tree ourselves and build plain Python values from it, recording
the line of every mapping key and sequence item in a :class:`SourceMap` keyed by path
(``("operations", 3, "steps", 0, "do")``).

Plans and vars files are input from people and scripts, so reading them is bounded: a
regular file of at most :data:`MAX_BYTES`, UTF-8, nested at most :data:`MAX_DEPTH` levels,
at most :data:`MAX_VALUES` values once aliases are expanded. The last limit is checked on
the composed node graph *before* any value is built: a 500-byte "billion laughs" document
composes to a few dozen nodes but expands to billions, and building it (with a source line
for every key) took minutes and gigabytes.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from atomicops import derived
from atomicops.errors import PlanInvalid, Problem, UsageError

MAX_BYTES = 8 << 20
"""A plan or vars file larger than this is refused (the flagship plan is 63 kB; a generated
plan of 10,000 operations, the scale docs/performance.md B4 measures, is 1.7 MB)."""
MAX_DEPTH = 64
"""Nesting deeper than this is refused (the flagship plan nests 12 levels)."""
MAX_VALUES = 1_000_000
"""More values than this, aliases expanded, is refused (the flagship plan has 4,400; the
10,000-operation plan of B4 about 190,000; a billion-laughs document billions)."""

CACHED_PARSE_BYTES = 128 << 10
"""A text this large or larger has its parsed values kept between processes (keyed by its
content; atomicops/derived.py): parsing the 1.7 MB plan of 10,000 operations takes 0.7 s,
the flagship's 63 kB 0.02 s."""

Path = tuple[str | int, ...]


@dataclass
class SourceMap:
    file: str
    lines: dict[Path, int] = field(default_factory=dict)
    # Values taken from the cache come without lines: the text is parsed again the first
    # time a line is asked for (a problem or a warning to place), never otherwise.
    reparse: Callable[[], dict[Path, int]] | None = field(default=None, repr=False, compare=False)

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        if self.reparse is not None:
            fill, self.reparse = self.reparse, None
            self.lines.update(fill())
        p = tuple(path)
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p[:-1]


def read_source(path: str, what: str) -> str:
    """The text of a plan or vars file (``what`` names it in messages), within the limits.

    Only a regular file is read: ``/dev/zero`` never ends and a FIFO blocks until someone
    writes to it, and both used to hang or exhaust memory.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{what} {path} is not a regular file (a device, FIFO or socket is not read)")
    if info.st_size > MAX_BYTES:
        raise _too_big(path, what)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_BYTES:  # it grew after the stat
        raise _too_big(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PlanInvalid([Problem(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as UTF-8",
            file=path, line=line,
        )]) from None


def _too_big(path: str, what: str) -> PlanInvalid:
    return PlanInvalid([Problem(f"the {what} is larger than {MAX_BYTES >> 20} MiB; nothing was read", file=path)])


# libyaml's parser (``CParser``) turns text into events about 4x faster than PyYAML's
# pure-Python scanner and parser, which were the largest single cost of `validate`. Its C
# composer would bypass the limits below, so only its event stream is used: the nodes are
# composed by :func:`_compose`, bounded. Without libyaml, PyYAML's Python parser.
try:
    from yaml.cyaml import CParser as _EventSource
except ImportError:  # PyYAML built without libyaml
    _EventSource = None
_LIBYAML = _EventSource is not None


class _PythonEvents(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's own event source, when it was built without libyaml."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


_Events: Any = _EventSource if _LIBYAML else _PythonEvents


class _BoundedLoader(_Events, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """The event source, and PyYAML's safe constructors and tag resolver; nodes are composed
    by :func:`_compose`."""

    def __init__(self, stream: str) -> None:
        _Events.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_FLATTENED = frozenset({_MERGE_TAG, "tag:yaml.org,2002:value"})  # keys flatten_mapping rewrites
_SEQ_TAG = yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG
_MAP_TAG = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG


def _compose(loader: _BoundedLoader) -> yaml.Node | None:
    """The single document's node graph, as PyYAML's composer builds it, refusing nesting
    deeper than :data:`MAX_DEPTH`.

    A loop over the events with an explicit stack, not PyYAML's recursive composer: that
    recursed once per level (a deep document ended in RecursionError) and made four method
    calls per event, most of the time of `validate` on a large plan.
    """
    get = loader.get_event
    loader.get_event()  # stream start
    event = get()
    if isinstance(event, yaml.StreamEndEvent):
        return None
    # event is the document start
    anchors: dict[str, yaml.Node] = {}
    stack: list[tuple[yaml.Node, list[Any]]] = []  # open collections and their children
    root: yaml.Node | None = None
    while True:
        event = get()
        cls = type(event)
        if cls is yaml.SequenceEndEvent or cls is yaml.MappingEndEvent:
            node, _ = stack.pop()
            node.end_mark = event.end_mark
        else:
            if len(stack) >= MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", event.start_mark)
            if cls is yaml.AliasEvent:
                if event.anchor not in anchors:
                    raise yaml.composer.ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
                node = anchors[event.anchor]
                opened = False
            else:
                anchor = event.anchor
                if anchor is not None and anchor in anchors:
                    raise yaml.composer.ComposerError(
                        f"found duplicate anchor {anchor!r}; first occurrence", anchors[anchor].start_mark,
                        "second occurrence", event.start_mark,
                    )
                tag = event.tag
                if cls is yaml.ScalarEvent:
                    if tag is None or tag == "!":
                        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
                    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
                    opened = False
                elif cls is yaml.SequenceStartEvent:
                    if tag is None or tag == "!":
                        tag = _SEQ_TAG
                    node = yaml.SequenceNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
                    opened = True
                else:  # a mapping start
                    if tag is None or tag == "!":
                        tag = _MAP_TAG
                    node = yaml.MappingNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
                    opened = True
                if anchor is not None:
                    anchors[anchor] = node  # before its children: an alias inside it is recursive
            if stack:
                parent, pending = stack[-1]
                if type(parent) is yaml.SequenceNode:
                    parent.value.append(node)
                elif pending:
                    parent.value.append((pending.pop(), node))
                else:
                    pending.append(node)  # a key, waiting for its value
            else:
                root = node
            if opened:
                stack.append((node, []))
        if not stack:
            break
    get()  # document end
    event = get()
    if not isinstance(event, yaml.StreamEndEvent):
        assert root is not None
        raise yaml.composer.ComposerError(
            "expected a single document in the stream", root.start_mark, "but found another document", event.start_mark
        )
    return root


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: loading a plan allocates a node, a value and a
    source line for every value in it, and the collector, run every few hundred allocations,
    walked them all again and again (parsing 10,000 operations took 1.7 s CPU with it, 0.3 s
    without). What loading allocates is bounded by the input limits, and freed after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse ``text``; raise :class:`PlanInvalid` with the line of a syntax error."""
    with gc_paused():
        if len(text) < CACHED_PARSE_BYTES:
            return _load_yaml(text, file)
        # One cache file per plan file, so that editing a plan replaces its entry.
        name = "parsed-" + derived.digest(os.path.abspath(file))[:16]
        key = derived.stamp(hashlib.sha256(text.encode()).hexdigest(), file, yaml.__version__, _LIBYAML,
                            MAX_BYTES, MAX_DEPTH, MAX_VALUES, files=[__file__])
        cached = derived.load(name, key)
        if isinstance(cached, list) and len(cached) == 1:
            return cached[0], SourceMap(file, reparse=lambda: _load_yaml(text, file)[1].lines)
        value, smap = _load_yaml(text, file)
        if _same_through_json(value):
            derived.save(name, key, [value])
        return value, smap


def _same_through_json(value: Any) -> bool:
    """Whether JSON gives ``value`` back exactly: not for a date, a binary, a number key."""
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError):
        return False


def _load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    smap = SourceMap(file)
    loader = None
    try:
        loader = _BoundedLoader(text)  # PyYAML's reader checks the characters here
        # libyaml's composer (C) is used when there is one: it nests at most 1,000 levels
        # itself (deeper is a ScannerError), so it cannot exhaust the C stack, and
        # _check_expansion refuses more than MAX_DEPTH before anything is built.
        node = loader.get_single_node() if _LIBYAML else _compose(loader)
        if node is None:
            return None, smap
        _check_expansion(node)
        value = _build(loader, node, (), smap)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise PlanInvalid([Problem(f"YAML syntax: {msg}", file=file, line=line)]) from None
    except yaml.reader.ReaderError as exc:  # a control character, which YAML does not allow
        raise PlanInvalid([_reader_problem(exc, text, file)]) from None
    except _TooLarge as big:
        raise PlanInvalid([Problem(big.message, file=file, line=big.line)]) from None
    except _DuplicateKey as dup:
        raise PlanInvalid(
            [Problem(f"duplicate key {dup.key!r}", file=file, line=dup.line, key=dup.path)]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return value, smap


def _reader_problem(exc: yaml.reader.ReaderError, text: str, file: str) -> Problem:
    """libyaml reports the offending byte's offset in the UTF-8 text and no character;
    PyYAML's reader the character's index and the character itself."""
    if _LIBYAML and isinstance(exc.character, str):  # "?" from libyaml
        data = text.encode("utf-8")
        line = data[: exc.position].count(b"\n") + 1
        char = data[exc.position:].decode("utf-8", "replace")[:1]
    else:
        line = text[: exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return Problem(f"YAML syntax: {exc.reason} (character {char!r})", file=file, line=line)


class _TooLarge(Exception):
    def __init__(self, message: str, line: int):
        self.message, self.line = message, line


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a recursive alias, or a document whose aliases expand past the limits.

    Sizes are counted per distinct node (an alias is the same node object), so this takes
    time linear in the composed document however large its expansion would be.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        cls = type(node)
        if cls is yaml.ScalarNode:
            return 1  # a leaf: cannot recurse or nest, and needs no memo
        key = id(node)
        if key in sizes:
            return sizes[key]
        line = node.start_mark.line + 1
        if key in on_path:
            raise _TooLarge("a recursive alias (an anchor used inside itself)", line)
        if depth >= MAX_DEPTH:
            raise _TooLarge(f"nesting deeper than {MAX_DEPTH} levels", line)
        total = 1
        on_path.add(key)
        children = (c for pair in node.value for c in pair) if cls is yaml.MappingNode else node.value
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_VALUES:
                raise _TooLarge(
                    f"more than {MAX_VALUES:,} values once aliases are expanded "
                    "(an alias bomb?); write the values out, or split the plan", line
                )
        on_path.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, path: str):
        self.key, self.line, self.path = key, line, path


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path, smap: SourceMap) -> Any:
    smap.lines.setdefault(path, node.start_mark.line + 1)
    cls = type(node)
    if cls is yaml.ScalarNode:
        # A plain string is most of a plan: taken as is, not through the constructor machinery.
        return node.value if node.tag == _STR_TAG else loader.construct_object(node, deep=True)
    if cls is yaml.MappingNode:
        merged = 0
        if any(k.tag in _FLATTENED for k, _ in node.value):
            explicit = sum(1 for k, _ in node.value if k.tag != _MERGE_TAG)
            loader.flatten_mapping(node)  # honour YAML merge keys (<<); merged pairs come first
            merged = len(node.value) - explicit
        out: dict[Any, Any] = {}
        merged_keys: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = _key(loader, key_node)
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
    if cls is yaml.SequenceNode:
        return [
            _build(loader, item, (*path, i), smap) for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


# YAML 1.1 reads a bare on/off/yes/no/y/n as a boolean: `retry: {on: any}` meant the key
# "on" and got True. A key written as one of these words stays the word.
_WORD_BOOLEANS = {"on", "off", "yes", "no", "y", "n"}


def _key(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if node.tag == _STR_TAG and type(node) is yaml.ScalarNode:
        return node.value
    if (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:bool"
        and not node.style
        and node.value.lower() in _WORD_BOOLEANS
    ):
        return node.value
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


def did_you_mean(name: str, options: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` for the option closest to a misspelt ``name``, or ``""``."""
    close = difflib.get_close_matches(name, [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
