"""A bash block as a list of commands, each with the runbook line it starts on.

Not a shell: runbooks use a small part of bash (continuations, quotes over several lines,
``NAME=$(...)`` captures, ``export``, heredocs, comments, pipes), and each command must keep
its line so a report can point at it. What is outside that part (a loop, a nested ``$(``, a
pipe into another program) is kept as a :class:`Command` whose ``problem`` says why it
cannot be translated; a block that is not bash at all (JSON pasted after a comment) shows up
as commands whose first word is not a program.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

_ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9_.-]*)>")
PLACEHOLDER_OPEN, PLACEHOLDER_CLOSE = "\x01", "\x02"
"""A ``<name>`` placeholder, once split into words, is ``\x01name\x02``: its angle brackets
would otherwise read as redirections."""
_CONTROL = {"for", "while", "until", "if", "case", "do", "done", "then", "fi", "esac", "function", "select"}


@dataclass(frozen=True)
class Command:
    """One logical command of a block."""

    line: int  # runbook line where it starts (1-based)
    end_line: int
    text: str  # as written, continuations joined
    words: list[str] = field(default_factory=list)  # shlex words of the command (after `NAME=$(`)
    assign: str | None = None  # NAME of `NAME=$(...)` or `NAME=value`
    value: str | None = None  # the value of a plain `NAME=value`
    heredoc: str | None = None  # the body of a `<< EOF` heredoc
    pipeline: list[list[str]] = field(default_factory=list)  # further commands after `|`
    redirect: str | None = None  # `> file`
    problem: str | None = None  # why this command cannot be translated

    @property
    def program(self) -> str:
        return self.words[0] if self.words else ""


class _Scan:
    """Quote and ``$(`` state of text read so far: a logical line ends only where all are closed."""

    def __init__(self) -> None:
        self.single = False
        self.double = False
        self.depth = 0  # open $( ... )
        self.opened_at: list[int] = []

    def feed(self, text: str, line: int) -> None:
        i = 0
        while i < len(text):
            c = text[i]
            if self.single:
                self.single = c != "'"
            elif c == "\\":
                i += 1
            elif c == "'" and not self.double:
                self.single = True
            elif c == '"':
                self.double = not self.double
            elif c == "#" and not self.double and (i == 0 or text[i - 1] in " \t") and self.depth == 0:
                return  # a comment runs to the end of the line
            elif c == "$" and text[i + 1 : i + 2] == "(":
                self.depth += 1
                self.opened_at.append(line)
                i += 1
            elif c == "(" and self.depth and not self.double:
                self.depth += 1
                self.opened_at.append(line)
            elif c == ")" and self.depth:
                self.depth -= 1
                self.opened_at.pop()
            i += 1

    @property
    def open(self) -> bool:
        return self.single or self.double or self.depth > 0


@dataclass(frozen=True)
class BlockError:
    line: int
    message: str


def split_block(lines: list[str], first_line: int) -> tuple[list[Command], list[BlockError]]:
    """The commands of a block whose first line is runbook line ``first_line``."""
    commands: list[Command] = []
    errors: list[BlockError] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        if not raw.strip() or raw.lstrip().startswith("#"):
            i += 1
            continue
        start = i
        scan = _Scan()
        parts: list[str] = []
        while True:
            text = lines[i]
            scan.feed(text + "\n", first_line + i)
            continued = not scan.open and text.rstrip().endswith("\\")
            parts.append(text.rstrip()[:-1] if continued else text)
            trailing_pipe = not scan.open and text.rstrip().endswith(("|", "&&"))
            if not (scan.open or continued or trailing_pipe) or i + 1 >= len(lines):
                break
            i += 1
        # bash drops a backslash-newline everywhere but inside single quotes (where a
        # runbook has never meant one)
        logical = "\n".join(parts).replace("\\\n", " ")
        end = i
        i += 1
        if scan.open:
            where = scan.opened_at[0] if scan.depth else first_line + start
            what = "`$(` is never closed" if scan.depth else "a quote is never closed"
            errors.append(BlockError(where, f"{what} (the block ends at line {first_line + end})"))
            continue
        heredoc = None
        match = _HEREDOC.search(_outside_quotes(logical))
        if match:
            strip_tabs, delimiter = match.group(1) == "-", match.group(3)
            body: list[str] = []
            while i < len(lines) and (lines[i].lstrip("\t") if strip_tabs else lines[i]).strip() != delimiter:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                errors.append(BlockError(first_line + start, f"heredoc `<<{delimiter}` is never closed by a `{delimiter}` line"))
                continue
            i += 1  # the delimiter line
            heredoc = "\n".join(body)
            end = i - 1
            logical = logical[: match.start()] + logical[match.end() :]
        commands.append(_command(logical, first_line + start, first_line + end, heredoc))
    return commands, errors


def _outside_quotes(text: str) -> str:
    """``text`` with quoted parts blanked, so a ``<<`` inside a string is not a heredoc."""
    out, quote = [], ""
    for c in text:
        if quote:
            out.append(" ")
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


def _command(text: str, line: int, end_line: int, heredoc: str | None) -> Command:
    stripped = _PLACEHOLDER.sub(lambda m: f"{PLACEHOLDER_OPEN}{m.group(1)}{PLACEHOLDER_CLOSE}", text.strip())
    assign = None
    match = _ASSIGN.match(stripped)
    if match:
        assign, rest = match.group(1), match.group(2).strip()
        if rest.startswith("$(") and rest.endswith(")"):
            stripped = rest[2:-1].strip()
        elif "$(" in rest:
            return Command(line, end_line, text, assign=assign, problem="a command substitution that is not the whole value")
        else:
            try:
                words = shlex.split(rest, comments=True)
            except ValueError as exc:
                return Command(line, end_line, text, problem=f"cannot split the line: {exc}")
            return Command(line, end_line, text, assign=assign, value=" ".join(words))
    try:
        lexer = shlex.shlex(stripped, posix=True, punctuation_chars="|;&<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
    except ValueError as exc:
        return Command(line, end_line, text, problem=f"cannot split the line: {exc}")
    segments: list[list[str]] = [[]]
    redirect = None
    problem = None
    it = iter(tokens)
    for tok in it:
        if tok == "|":
            segments.append([])
        elif tok in (">", ">>"):
            redirect = next(it, None)
        elif tok in (";", "&&", "||", "&", "<", "2>&1") or set(tok) <= set("|;&<>"):
            problem = f"`{tok}` joins commands; split them into one command per line"
        else:
            segments[-1].append(tok)
    words, pipeline = segments[0], segments[1:]
    if "$(" in stripped:
        problem = problem or "a command substitution inside the command (only `NAME=$(command)` is understood)"
    elif words and words[0] in _CONTROL:
        problem = f"a shell `{words[0]}` construct: write it as steps by hand"
    elif any(not seg for seg in pipeline):
        problem = "an empty pipeline stage"
    return Command(line, end_line, text, words=words, assign=assign, heredoc=heredoc,
                   pipeline=pipeline, redirect=redirect, problem=problem)
