"""One runbook command as a plan action: ``aws`` (by the AWS CLI's parser), ``sql`` (a
``psql`` running plain SQL), ``http`` (a plain ``curl`` check) or ``run`` (anything else,
marked for review). A command that cannot become one keeps the reason."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicops.importer import awscli_args
from atomicops.importer.references import Symbols
from atomicops.importer.shell import Command

_PROGRAM = re.compile(r"^[A-Za-z0-9_./-]+$")
_PSQL_VALUE_FLAGS = {"-h", "--host", "-U", "--username", "-d", "--dbname", "-p", "--port"}
_PSQL_FLAGS = {"-w", "-W", "-q", "-X", "-A", "-t", "--no-password", "-1", "--single-transaction", "-v"}
_NO_TRANSACTION = re.compile(r"\b(CREATE|DROP)\s+DATABASE\b|\bVACUUM\b|\bCONCURRENTLY\b", re.IGNORECASE)


@dataclass
class Translated:
    cmd: Command
    role: str  # create, rollback, verify
    kind: str  # aws, sql, http, run, or "" when it could not be translated
    action: dict[str, Any] = field(default_factory=dict)  # with stand-ins, not yet references
    call: awscli_args.AwsCall | None = None
    problem: str | None = None
    review: str | None = None  # why a person should look at it even though it translated

    @property
    def is_aws(self) -> bool:
        return self.kind == "aws"


def looks_like_command(cmd: Command) -> bool:
    return bool(cmd.words) and bool(_PROGRAM.match(cmd.program)) and not cmd.program.endswith((":", ","))


def translate(cmd: Command, role: str, symbols: Symbols, base_dir: Path) -> Translated:
    if cmd.problem:
        return Translated(cmd, role, "", problem=cmd.problem)
    words = [symbols.encode(w, cmd.line) for w in cmd.words]
    if cmd.pipeline:
        return Translated(cmd, role, "", problem=f"a pipe into `{cmd.pipeline[0][0]}`: one program per step (write the pipeline as `shell:` by hand)")
    if cmd.redirect:
        return Translated(cmd, role, "", problem=f"output redirected to {cmd.redirect}: write it as a `run` step with `shell:` by hand")
    if cmd.program == "aws":
        return _aws(cmd, role, words[1:], base_dir, symbols)
    if cmd.program == "psql":
        return _psql(cmd, role, words, symbols)
    if cmd.program == "curl" and role == "verify":
        urls = [w for w in words[1:] if not w.startswith("-")]
        flags = [w for w in words[1:] if w.startswith("-")]
        if len(urls) == 1 and set(flags) <= {"-f", "-s", "-S", "-sS", "-fsS", "-sf", "-fs", "--fail", "--silent"}:
            return Translated(cmd, role, "http", {"http": {"url": urls[0]}}, review="a curl check: add `expect:` for what a healthy answer is")
    if cmd.heredoc is not None:
        return Translated(cmd, role, "", problem=f"a heredoc fed to `{cmd.program}`: write it as `run` with `stdin:` by hand")
    return Translated(cmd, role, "run", {"run": words}, review=f"`{cmd.program}` runs as a local command: check it can run where atomicops runs, and its undo")


def _aws(cmd: Command, role: str, args: list[str], base_dir: Path, symbols: Symbols) -> Translated:
    args = [_file_arg(a, base_dir) for a in args]
    try:
        call = awscli_args.translate(args)
    except awscli_args.CallRefused as exc:
        return Translated(cmd, role, "", problem=f"`aws {' '.join(args[:2])}`: {exc.reason}")
    _group_ids(call.params, symbols)
    if call.waiter:
        action: dict[str, Any] = {"aws": f"{call.service}.{call.operation}", "params": call.params,
                                  "wait": {"waiter": call.waiter, "params": call.params}}
    else:
        action = {"aws": f"{call.service}.{call.operation}", "params": call.params}
    # The CLI passes JSON values through as written; botocore's model would refuse them only
    # when sent. The plan's own check (the one `validate` runs) refuses them now.
    from atomicops.actions import registry

    issues = list(registry.get("aws").check(action))
    if issues:
        where = ".".join(str(p) for p in issues[0].path[1:])
        return Translated(cmd, role, "", problem=f"`aws {' '.join(args[:2])}`: {where}: {issues[0].message}")
    return Translated(cmd, role, "aws", action, call=call)


def _group_ids(value: Any, symbols: Symbols) -> None:
    """``--source-group X`` is a GroupId to the CLI only when X starts with ``sg-``, which a
    placeholder's stand-in does not: a placeholder named as an id (``<ecs-sg-id>``) is one."""
    if isinstance(value, dict):
        name = value.get("GroupName")
        if isinstance(name, str) and "GroupId" not in value:
            names = symbols.names_in(name)
            if len(names) == 1 and symbols.stand_in(names[0]) == name and names[0].endswith("_id"):
                value["GroupId"] = value.pop("GroupName")
        for v in value.values():
            _group_ids(v, symbols)
    elif isinstance(value, list):
        for v in value:
            _group_ids(v, symbols)


def _file_arg(arg: str, base_dir: Path) -> str:
    """``file://x`` is read relative to the runbook, not to wherever import runs."""
    for scheme in ("file://", "fileb://"):
        if arg.startswith(scheme) and not arg[len(scheme):].startswith("/"):
            return scheme + str(base_dir / arg[len(scheme):])
    return arg


def _psql(cmd: Command, role: str, words: list[str], symbols: Symbols) -> Translated:
    sql: str | None = cmd.heredoc
    it = iter(words[1:])
    for word in it:
        if word in ("-c", "--command"):
            sql = next(it, "")
        elif word in _PSQL_VALUE_FLAGS:
            next(it, None)
        elif word in _PSQL_FLAGS or word.startswith(("--host=", "--username=", "--dbname=", "--port=")):
            continue
        elif word in ("-f", "--file"):
            return Translated(cmd, role, "", problem="psql -f: write it as `sql_file:` beside the plan")
        else:
            return Translated(cmd, role, "", problem=f"psql option {symbols.plain(word)!r} is not understood")
    if sql is None:
        return Translated(cmd, role, "", problem="psql with no -c and no heredoc: nothing to run")
    meta = [ln.strip() for ln in sql.splitlines() if ln.strip().startswith("\\")]
    if meta:
        return Translated(cmd, role, "", problem=f"psql meta-command {meta[0].split()[0]} is not SQL: split the script into sql steps by hand")
    if re.search(r"<[A-Za-z][A-Za-z0-9_.-]*>|\$[A-Za-z_{]", sql.replace("$$", "")):
        return Translated(cmd, role, "", problem="a placeholder or shell variable inside SQL: bind it as `params: {name: ...}` with %(name)s by hand")
    if _NO_TRANSACTION.search(sql):
        return Translated(cmd, role, "", problem="CREATE/DROP DATABASE (or VACUUM, CONCURRENTLY) cannot run inside the one transaction of a sql step")
    return Translated(cmd, role, "sql", {"sql": sql.strip(), "connection": "db"},
                      review="psql's host, user and database are the `db` connection (vars.database_url)")
