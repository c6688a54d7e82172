"""``run``: a local command, as an argv list (no shell) or, when asked, a ``shell:`` string.

Result: ``{exit, stdout, stderr, json}`` where ``json`` is stdout parsed as JSON when it is
JSON. A non-zero exit fails the action unless listed in ``ok_exit``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from atomicops import clipping
from atomicops.actions.base import ActionContext, ActionKind, CheckIssue
from atomicops.actions.registry import register
from atomicops.errors import ActionError

_TAIL = 2000  # characters of stderr kept in an error message


@register
class RunKind(ActionKind):
    key = "run"
    extra_keys = frozenset({"shell", "env", "cwd", "stdin", "ok_exit"})

    def check(self, action: Mapping[str, Any]) -> Iterable[CheckIssue]:
        argv, shell = action.get("run"), action.get("shell")
        if shell is not None:
            if argv not in (None, [], True):
                yield CheckIssue(("shell",), "give either `run: [argv...]` or `run: true` with `shell: \"...\"`")
            if not isinstance(shell, str):
                yield CheckIssue(("shell",), "shell is one command string")
        elif isinstance(argv, str) and "${" not in argv:
            yield CheckIssue(("run",), "run takes an argv list (no shell); for a shell command write `run: true` and `shell: \"...\"`")
        elif not isinstance(argv, (list, str)) or (isinstance(argv, list) and not argv):
            yield CheckIssue(("run",), "run takes a non-empty argv list")
        env = action.get("env")
        if env is not None and not isinstance(env, Mapping):
            yield CheckIssue(("env",), "env maps variable names to values")

    def execute(self, action: Mapping[str, Any], ctx: ActionContext) -> Any:
        shell = action.get("shell")
        cmd: Any = shell if shell is not None else [str(a) for a in action["run"]]
        env = {**os.environ, **{str(k): str(v) for k, v in (action.get("env") or {}).items()}}
        cwd = os.path.join(ctx.base_dir, str(action.get("cwd") or "."))
        try:
            proc = subprocess.run(
                cmd,
                shell=shell is not None,
                cwd=cwd,
                env=env,
                input=action.get("stdin"),
                capture_output=True,
                text=True,
                timeout=ctx.timeout,
                check=False,  # the exit code is judged below, against ok_exit
            )
        except subprocess.TimeoutExpired:
            raise ActionError("run", f"{self.describe(action)} timed out after {ctx.timeout}s", code="Timeout", transient=True) from None
        except OSError as exc:
            raise ActionError("run", f"cannot start {self.describe(action)}: {exc.strerror}", code="NotStarted") from None
        result = {"exit": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr, "json": _json(proc.stdout)}
        if proc.returncode not in set(action.get("ok_exit") or [0]):
            tail = clipping.tail(proc.stderr.strip(), _TAIL)  # never inside a secret
            raise ActionError("run", f"{self.describe(action)} exited {proc.returncode}: {tail}", code=f"Exit{proc.returncode}", result=result)
        return result

    def describe(self, action: Mapping[str, Any]) -> str:
        if action.get("shell") is not None:
            return "shell: " + clipping.head(str(action["shell"]), 60)
        argv = action.get("run") or []
        return "run: " + clipping.head(" ".join(str(a) for a in argv), 60)


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None
