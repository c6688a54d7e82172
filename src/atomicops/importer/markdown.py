"""A markdown runbook as sections holding command blocks.

The form runbooks take (the seed page's): top-level sections are phases; below them a
heading per operation; below that, headings that say what each block is for (CREATE,
ROLLBACK, VERIFICATION...). Only fenced blocks are read; prose, lists and tables are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

ROLES = ("create", "rollback", "verify")
DEFAULT_WORDS: Mapping[str, tuple[str, ...]] = {
    "create": ("create", "apply", "forward", "do", "deploy", "setup"),
    "rollback": ("rollback", "roll back", "undo", "revert", "teardown", "cleanup", "clean up"),
    "verify": ("verification", "verify", "check", "checks", "validation", "test"),
}
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([A-Za-z0-9_+-]*)")
_NUMBERING = re.compile(r"^[\d.]+\s+")
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh", ""}


@dataclass(frozen=True)
class Block:
    line: int  # runbook line of the block's first content line
    lang: str
    lines: list[str]
    role: str  # create, rollback or verify


@dataclass
class Section:
    """An operation: the heading that holds blocks (directly or under role headings)."""

    title: str
    line: int
    phase: str | None
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str
    line: int
    role: str | None


def parse_words(spec: str | None) -> dict[str, tuple[str, ...]]:
    """``create=CREATE|APPLY,rollback=ROLLBACK,verify=VERIFY`` over the defaults."""
    words = dict(DEFAULT_WORDS)
    if not spec:
        return words
    for part in spec.split(","):
        role, eq, listed = part.partition("=")
        role = role.strip().lower()
        if not eq or role not in ROLES or not listed.strip():
            raise ValueError(f"--words takes ROLE=WORD|WORD,... with ROLE one of {', '.join(ROLES)}; got {part!r}")
        words[role] = tuple(w.strip().lower() for w in listed.split("|") if w.strip())
    return words


def role_of(text: str, words: Mapping[str, tuple[str, ...]]) -> str | None:
    """The role a heading names, when the heading is only that word (``CREATE OPERATION``,
    ``Rollback``, ``Verification steps``): ``ROLLBACK MECHANISMS`` is a section, not a role."""
    plain = _NUMBERING.sub("", text.strip().strip("*_ ")).lower().rstrip(":")
    plain = re.sub(r"\s+(operations?|steps?|commands?|checks?|procedures?)$", "", plain)
    for role, listed in words.items():
        if plain in listed:
            return role
    return None


def _verify_phase(text: str, words: Mapping[str, tuple[str, ...]]) -> bool:
    first = _NUMBERING.sub("", text.strip()).lower().split()
    return bool(first) and first[0].rstrip(":") in words["verify"]


def sections(text: str, words: Mapping[str, tuple[str, ...]] = DEFAULT_WORDS) -> list[Section]:
    """The operations of a runbook, in order. ``Block.lines`` keep the block's text as written."""
    lines = text.splitlines()
    headings: list[_Heading] = []
    fenced: list[tuple[int, str, list[str]]] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence:
            marker = fence.group(2)
            body_start = i + 1
            j = body_start
            while j < len(lines) and not lines[j].strip().startswith(marker):
                j += 1
            fenced.append((body_start + 1, fence.group(3).lower(), lines[body_start:j]))
            headings.append(_Heading(99, "", body_start + 1, None))  # the block's place among headings
            i = j + 1
            continue
        heading = _HEADING.match(lines[i])
        if heading:
            headings.append(_Heading(len(heading.group(1)), heading.group(2).strip(), i + 1, role_of(heading.group(2), words)))
        i += 1
    real = [h for h in headings if h.level < 99]
    # Phases are the top-level sections: the shallowest level used by more than one heading
    # (a page's single `#` title is not a phase).
    levels = sorted({h.level for h in real if h.role is None})
    phase_level = next((lv for lv in levels if sum(1 for h in real if h.level == lv and h.role is None) > 1), None)
    out: list[Section] = []
    by_key: dict[int, Section] = {}
    stack: list[_Heading] = []
    blocks = iter(fenced)
    for h in headings:
        if h.level < 99:
            while stack and stack[-1].level >= h.level:
                stack.pop()
            stack.append(h)
            continue
        line, lang, body = next(blocks)
        role_heading = next((s for s in reversed(stack) if s.role), None)
        owners = [s for s in stack if s.role is None and (phase_level is None or s.level > phase_level)]
        phase_heading = next((s for s in stack if s.level == phase_level), None)
        owner = owners[-1] if owners else (phase_heading or (stack[0] if stack else None))
        if owner is None:
            owner = _Heading(0, "runbook", 1, None)
        if role_heading is not None and role_heading.level > owner.level:
            role = role_heading.role or "create"
        elif phase_heading is not None and _verify_phase(phase_heading.text, words):
            role = "verify"
        else:
            role = "create"
        section = by_key.get(owner.line)
        if section is None:
            section = Section(_NUMBERING.sub("", owner.text).strip() or "runbook", owner.line,
                              _NUMBERING.sub("", phase_heading.text).strip() if phase_heading else None)
            by_key[owner.line] = section
            out.append(section)
        section.blocks.append(Block(line, lang, body, role))
    return out
