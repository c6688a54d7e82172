"""A markdown runbook to a plan (a mapping ready to write) and the list of what is left.

Sections become operations, CREATE blocks their steps, ROLLBACK blocks their undos (paired
by :mod:`.pairing`), VERIFICATION blocks their checks. What cannot be translated or paired
becomes a ``{todo: "..."}`` in the plan, which ``validate`` refuses with the runbook's
file:line, and a :class:`Left` item of the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicops.importer import commands, pairing
from atomicops.importer.markdown import DEFAULT_WORDS, SHELL_LANGS, sections
from atomicops.importer.references import Symbols, snake
from atomicops.importer.shell import Command, split_block
from atomicops.plan.names import ID_MAX

_SECRET_NAME = re.compile(r"password|secret|token|credential|private_key", re.IGNORECASE)
KINDS = {
    "untranslated": "could not be translated",
    "unpaired": "create with no undo",
    "unpaired-rollback": "rollback command paired with no create",
    "placeholder": "placeholder or unset variable",
    "review": "needs a person's decision",
}


@dataclass(frozen=True)
class Left:
    """One thing a person must do, at its runbook line."""

    line: int
    kind: str  # a key of KINDS
    message: str
    op: str | None = None
    todo: bool = True  # a `{todo}` in the plan (validate refuses it) or only advice

    def as_dict(self, file: str) -> dict[str, Any]:
        return {"file": file, "line": self.line, "kind": self.kind, "op": self.op, "message": self.message, "todo": self.todo}


@dataclass
class Figures:
    commands: int = 0
    aws_commands: int = 0
    aws_translated: int = 0
    creates: int = 0
    creates_paired: int = 0
    todos: int = 0


@dataclass
class Imported:
    runbook: str  # as given, for file:line
    plan: dict[str, Any]
    left: list[Left]
    figures: Figures
    sources: dict[tuple[str, str], str] = field(default_factory=dict)
    """(operation id, step name) -> the runbook's file:line and command, for a comment."""


@dataclass
class _Step:
    t: commands.Translated
    name: str
    outputs: dict[str, str] = field(default_factory=dict)
    undo: commands.Translated | None = None
    read_only: bool = False
    wait: dict[str, Any] | None = None


@dataclass
class _Op:
    id: str
    title: str
    phase: str
    line: int
    steps: list[_Step] = field(default_factory=list)
    rollbacks: list[commands.Translated] = field(default_factory=list)
    checks: list[commands.Translated] = field(default_factory=list)


@dataclass(frozen=True)
class _Producer:
    op: str
    step: int
    line: int


def import_runbook(path: str | Path, words: dict[str, tuple[str, ...]] | None = None) -> Imported:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    file = str(path)
    symbols = Symbols()
    left: list[Left] = []
    figures = Figures()
    ops: list[_Op] = []
    plain_values: dict[str, str] = {}
    region: str | None = None
    used_ids: set[str] = set()
    for section in sections(text, words or DEFAULT_WORDS):
        op = _Op(_unique(_slug(section.title), used_ids), section.title, _slug(section.phase or "main"), section.line)
        for block in section.blocks:
            if block.lang not in SHELL_LANGS:
                left.append(Left(block.line, "untranslated", f"a `{block.lang}` block, not bash: not read", op.id, todo=False))
                continue
            cmds, errors = split_block(block.lines, block.line)
            for err in errors:
                _unreadable(op, block.role, err.line, err.message, left)
            stray: list[int] = []
            for cmd in cmds:
                if cmd.value is not None and cmd.assign:
                    plain_values.setdefault(snake(cmd.assign), symbols.plain(cmd.value))
                    continue
                if not commands.looks_like_command(cmd) and not cmd.problem:
                    stray.append(cmd.line)
                    continue
                _flush_stray(stray, op, block.role, left)
                figures.commands += 1
                t = commands.translate(cmd, block.role, symbols, path.parent)
                if cmd.program == "aws":
                    figures.aws_commands += 1
                    figures.aws_translated += t.is_aws
                if t.call and t.call.region:
                    region = region or t.call.region
                    if t.call.region != region:
                        left.append(Left(cmd.line, "review", f"--region {t.call.region} differs from the plan's region {region}: the plan has one aws connection", op.id, todo=False))
                if block.role == "create":
                    op.steps.append(_Step(t, _unique(_step_name(t), {s.name for s in op.steps})))
                elif block.role == "rollback":
                    op.rollbacks.append(t)
                else:
                    op.checks.append(t)
            _flush_stray(stray, op, block.role, left)
        if op.steps or op.rollbacks or op.checks:
            ops.append(op)
    producers = _capture_outputs(ops, symbols, left)
    _pair(ops, symbols, producers, left, figures)
    sources: dict[tuple[str, str], str] = {}
    plan = _plan(path, ops, symbols, producers, plain_values, region or "us-east-1", left, sources)
    figures.todos = sum(1 for item in left if item.todo)
    left.sort(key=lambda item: (item.line, item.kind))
    return Imported(file, plan, left, figures, sources)


def _flush_stray(stray: list[int], op: _Op, role: str, left: list[Left]) -> None:
    if stray:
        span = f"lines {stray[0]}-{stray[-1]}" if len(stray) > 1 else f"line {stray[0]}"
        _unreadable(op, role, stray[0], f"not a shell command ({span}): this part of the bash block is not bash (pasted output or data?)", left)
        stray.clear()


def _unreadable(op: _Op, role: str, line: int, message: str, left: list[Left]) -> None:
    """Text of a block that is no command: in CREATE and VERIFICATION blocks it takes a
    ``{todo}`` place in the plan (what it meant to do must not silently vanish)."""
    t = commands.Translated(Command(line, line, ""), role, "", problem=message)
    if role == "create":
        op.steps.append(_Step(t, _unique("unreadable", {s.name for s in op.steps})))
    elif role == "verify":
        op.checks.append(t)
    else:
        left.append(Left(line, "unpaired-rollback", message, op.id, todo=False))


def _plan_name(path: Path) -> str:
    """From the page's title (its one `#` heading), else from the file's name."""
    title = re.search(r"^#\s+(.+?)\s*#*\s*$", path.read_text(encoding="utf-8"), re.MULTILINE)
    return _slug(title.group(1) if title else path.stem).removeprefix("op-") or "imported"


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = slug if slug and slug[0].isalpha() else f"op-{slug}".strip("-")
    return slug[:ID_MAX].rstrip("-")


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out = f"{name[: ID_MAX - 4]}-{n}"
        n += 1
    taken.add(out)
    return out


def _step_name(t: commands.Translated) -> str:
    words = t.cmd.words
    if t.call:
        return t.call.operation.replace("_", "-")
    if t.kind == "sql":
        return "sql"
    return _slug("-".join(w for w in words[:2] if not w.startswith("-"))) or "step"


def _capture_outputs(ops: list[_Op], symbols: Symbols, left: list[Left]) -> dict[str, _Producer]:
    """``NAME=$(aws ... --query Q)``: NAME is an output of that step."""
    producers: dict[str, _Producer] = {}
    for op in ops:
        for j, step in enumerate(op.steps):
            cmd, call = step.t.cmd, step.t.call
            if cmd.assign and step.t.kind:
                name = snake(cmd.assign)
                step.outputs[name] = call.query if call and call.query else "@"
                if not (call and call.query):
                    left.append(Left(cmd.line, "review", f"${cmd.assign} takes the whole output: give the command a --query", op.id, todo=False))
                producers[name] = _Producer(op.id, j, cmd.line)
            elif call and call.query and not cmd.assign:
                left.append(Left(cmd.line, "review", f"--query {call.query} is not captured into a variable: dropped", op.id, todo=False))
    return producers


def _pair(ops: list[_Op], symbols: Symbols, producers: dict[str, _Producer], left: list[Left], figures: Figures) -> None:
    for op in ops:
        taken: set[int] = set()
        candidates = [pairing.Candidate(i, r.call.service, r.call.operation, r.call.params)
                      for i, r in enumerate(op.rollbacks) if r.call and not r.call.waiter]
        merged: list[_Step] = []
        for step in op.steps:
            t = step.t
            if t.call and t.call.waiter:
                waited = set(pairing.leaves(t.call.params))
                prev = next((m for m in reversed(merged) if m.t.call and m.t.call.service == t.call.service
                             and m.wait is None and not m.read_only and waited <= set(pairing.leaves(m.t.call.params))), None)
                if prev is not None:
                    prev.wait = t.action["wait"]  # `aws SVC wait ...` after the call it waits for
                    continue
                step.read_only = True
            elif t.call and pairing.is_read_only(t.call.operation):
                step.read_only = True
            merged.append(step)
        op.steps = merged
        for j, step in enumerate(op.steps):
            t = step.t
            if not t.kind or step.read_only:
                continue
            figures.creates += 1
            undo = _find_undo(op, step, candidates, taken, symbols, producers, j)
            if undo is not None:
                step.undo = undo
                figures.creates_paired += 1
            else:
                left.append(Left(t.cmd.line, "unpaired", f"no ROLLBACK command undoes `{_short(t)}`: write its undo", op.id))
        for i, r in enumerate(op.rollbacks):
            if i not in taken and not any(s.undo is r for s in op.steps):
                what = r.problem or "no CREATE command of this section is undone by it"
                left.append(Left(r.cmd.line, "unpaired-rollback", f"`{_short(r)}`: {what}", op.id, todo=False))


def _find_undo(op: _Op, step: _Step, candidates: list[pairing.Candidate], taken: set[int], symbols: Symbols,
               producers: dict[str, _Producer], j: int) -> commands.Translated | None:
    t = step.t
    if t.call:
        produced = [symbols.stand_in(n) for n, p in producers.items() if p.op == op.id and p.step == j]
        chosen = pairing.best_undo(t.call.service, t.call.operation, t.call.params, produced, candidates, taken)
        if chosen is None:
            return None
        taken.add(chosen.index)
        # The delete names what it removes by a placeholder: when the create's response
        # carries it (by the delete's parameter name), it becomes the create's output and
        # every later use of the placeholder a reference to it.
        for key, value in chosen.params.items():
            names = symbols.names_in(value)
            if len(names) != 1 or symbols.stand_in(names[0]) != str(value) or names[0] in producers:
                continue
            where = pairing.output_path(t.call.service, t.call.operation, key)
            if where:
                step.outputs[names[0]] = where
                producers[names[0]] = _Producer(op.id, j, t.cmd.line)
        return op.rollbacks[chosen.index]
    for i, r in enumerate(op.rollbacks):
        if i in taken or r.kind != t.kind or not r.kind:
            continue
        if t.kind == "run" and not (r.cmd.program == t.cmd.program and _shared_args(t, r)):
            continue
        taken.add(i)
        return r
    return None


def _shared_args(a: commands.Translated, b: commands.Translated) -> bool:
    args = {w for w in a.cmd.words[2:] if not w.startswith("-")}
    return any(w in args for w in b.cmd.words[2:] if not w.startswith("-"))


def _plain(text: str) -> str:
    return text.rstrip(" \\")


def _short(t: commands.Translated) -> str:
    text = " ".join(t.cmd.words[:3]) if t.cmd.words else " ".join(t.cmd.text.split())[:60]
    return text.replace("\x01", "<").replace("\x02", ">")


def _plan(path: Path, ops: list[_Op], symbols: Symbols, producers: dict[str, _Producer],
          plain_values: dict[str, str], region: str, left: list[Left],
          sources: dict[tuple[str, str], str]) -> dict[str, Any]:
    file = str(path)
    used: dict[str, list[int]] = {}
    order = {op.id: i for i, op in enumerate(ops)}

    def resolver(op_id: str | None, line: int, upto: int) -> Any:
        """References as seen from a place: a step's ``do`` sees the outputs of the steps
        before it (``upto``), its undo its own too, a check all of its operation's; any
        operation sees those of operations before it."""
        def ref(name: str) -> str:
            p = producers.get(name)
            if p is not None:
                if p.op == op_id and p.step <= upto:
                    return f"self.{name}"
                if op_id is None or (p.op != op_id and order[p.op] < order[op_id]):
                    return f"ops.{p.op}.{name}"
            used.setdefault(name, []).append(line)
            return f"secrets.{name}" if _SECRET_NAME.search(name) else f"vars.{name}"
        return ref

    def todo(line: int, reason: str) -> dict[str, str]:
        return {"todo": f"{file}:{line}: {reason}"}

    operations: list[dict[str, Any]] = []
    plan_verify: list[dict[str, Any]] = []
    uses_db = False
    for op in ops:
        steps: list[dict[str, Any]] = []
        for j, step in enumerate(op.steps):
            t = step.t
            line = t.cmd.line
            first_line = " ".join(t.cmd.text.split())
            sources[(op.id, step.name)] = f"{file}:{line}: {_plain(first_line)[:90]}"
            out: dict[str, Any] = {"name": step.name}
            if not t.kind:
                what = f": {_short(t)}" if _short(t) else ""
                out["do"] = todo(line, f"not translated ({t.problem}){what}; write the step's do and undo")
                left.append(Left(line, "untranslated", str(t.problem), op.id))
                steps.append(out)
                continue
            action = dict(t.action)
            if step.wait:
                action["wait"] = step.wait
            uses_db |= t.kind == "sql"
            out["do"] = symbols.decode(action, resolver(op.id, line, j - 1))
            if step.outputs:
                out["outputs"] = dict(step.outputs)
            if step.read_only:
                out["read_only"] = True
            elif step.undo is not None:
                undo = symbols.decode(step.undo.action, resolver(op.id, step.undo.cmd.line, j))
                out["undo"] = undo
            else:
                out["undo"] = todo(line, f"no ROLLBACK command undoes `{_short(t)}`: write its undo")
            if t.review:
                left.append(Left(line, "review", t.review, op.id, todo=False))
            steps.append(out)
        checks: list[dict[str, Any]] = []
        for c in op.checks:
            if not c.kind or c.kind == "run":
                reason = c.problem or "a local command as a check: turn it into an aws, sql, http or nats check"
                checks.append(todo(c.cmd.line, f"check not translated ({reason})" + (f": {_short(c)}" if _short(c) else "")))
                left.append(Left(c.cmd.line, "untranslated", reason, op.id))
                continue
            uses_db |= c.kind == "sql"
            if c.review:
                left.append(Left(c.cmd.line, "review", c.review, op.id, todo=False))
            check = symbols.decode(c.action, resolver(op.id if steps else None, c.cmd.line, len(op.steps) - 1))
            checks.append(check)
        if not steps:
            plan_verify.extend(checks)
            continue
        entry: dict[str, Any] = {"id": op.id, "phase": op.phase, "title": op.title, "steps": steps}
        if checks:
            entry["verify"] = checks
        operations.append(entry)
    phases = list(dict.fromkeys(op["phase"] for op in operations)) or ["main"]
    plan_vars: dict[str, Any] = {"region": region, "aws_endpoint": None}
    secrets: dict[str, Any] = {}
    for name, lines in sorted(used.items(), key=lambda kv: kv[1][0]):
        sym = symbols.by_name.get(name)
        written = sym.written if sym else name
        first = min(lines)
        if _SECRET_NAME.search(name):
            secrets[name] = {"env": name.upper()}
            left.append(Left(first, "placeholder", f"{written} is a secret: read from ${name.upper()} (or use generate/aws_secret)", todo=False))
        elif name in plain_values:
            plan_vars[name] = plain_values[name]
        elif name not in plan_vars:
            plan_vars[name] = todo(first, f"give {written} a value (--var {name}=...)")
            also = sorted(set(lines) - {first})
            more = f" (also used at line{'s' if len(also) > 1 else ''} {', '.join(map(str, also))})" if also else ""
            left.append(Left(first, "placeholder", f"{written}: set var {name}{more}", None))
    if uses_db:
        plan_vars["database_url"] = None
    plan: dict[str, Any] = {
        "atomicops": 1,
        "name": _plan_name(path),
        "description": f"imported by `atomicops import` from {path.name}",
        "phases": phases,
        "vars": plan_vars,
    }
    if secrets:
        plan["secrets"] = secrets
    plan["connections"] = {"aws": {"kind": "aws", "region": "${vars.region}", "endpoint_url": "${vars.aws_endpoint}"}}
    if uses_db:
        plan["connections"]["db"] = {"kind": "postgres", "dsn": "${vars.database_url}"}
    plan["operations"] = operations
    if plan_verify:
        plan["verify"] = plan_verify
    return plan
