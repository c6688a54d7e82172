"""The imported plan as YAML with the runbook line above each step, and ``IMPORT.md``, written
together into the output directory or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import yaml

from atomicops.errors import UsageError
from atomicops.importer.convert import KINDS, Imported

PLAN_FILE, REPORT_FILE = "plan.yaml", "IMPORT.md"


def plan_text(result: Imported) -> str:
    plan = dict(result.plan)
    operations = plan.pop("operations")
    verify = plan.pop("verify", None)
    f = result.figures
    head = [
        f"# Imported by `atomicops import` from {result.runbook}.",
        f"# {f.todos} TODO(s) left: `atomicops validate` refuses the plan until each `{{todo: ...}}` is",
        "# replaced (IMPORT.md lists them with their runbook lines).",
        "#   atomicops rehearse DIR             # or, on a sandbox from `atomicops sandbox up`:",
        "#   atomicops apply DIR --vars-file .atomicops/sandbox/vars.yaml",
    ]
    out = ["\n".join(head), _dump(plan, flow=False).rstrip(), "operations:"]
    for op in operations:
        body = {k: v for k, v in op.items() if k not in ("steps", "verify")}
        out.append(textwrap.indent(_dump([body], flow=False).rstrip(), "  "))  # `steps:` follows
        out.append("    steps:")
        for step in op["steps"]:
            source = result.sources.get((op["id"], step["name"]))
            if source:
                out.append(f"      # {source}")
            out.append(textwrap.indent(_dump([step]).rstrip(), "      "))
        if op.get("verify"):
            out.append(textwrap.indent(_dump({"verify": op["verify"]}).rstrip(), "    "))
    if verify:
        out.append(_dump({"verify": verify}).rstrip())
    return "\n".join(out) + "\n"


def _dump(value: Any, flow: bool | None = None) -> str:
    """Block style, with lists and mappings of plain values on one line (``[docker, build]``)."""
    return yaml.safe_dump(value, sort_keys=False, width=110, allow_unicode=True, default_flow_style=flow)


def report_text(result: Imported) -> str:
    f = result.figures
    lines = [
        f"# Import of {result.runbook}",
        "",
        "| | |",
        "|---|---|",
        f"| commands found | {f.commands} |",
        f"| AWS CLI commands translated to `aws:` actions | {f.aws_translated} of {f.aws_commands} |",
        f"| creates paired with their undo | {f.creates_paired} of {f.creates} |",
        f"| TODOs left in the plan (`validate` refuses it until they are filled) | {f.todos} |",
        "",
    ]
    if not result.left:
        lines.append("Nothing is left: the plan validates and runs as it is.")
        return "\n".join(lines) + "\n"
    lines += ["| where | what | operation | |", "|---|---|---|---|"]
    for item in result.left:
        mark = "TODO" if item.todo else "note"
        message = item.message.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {result.runbook}:{item.line} | {KINDS[item.kind]} | {item.op or ''} | {mark}: {message} |")
    return "\n".join(lines) + "\n"


def write(result: Imported, out_dir: str | os.PathLike[str]) -> Path:
    """Both files into ``out_dir``, all at once: they are written into a new directory beside
    it that is then renamed into place (a previous import's directory is replaced whole).
    A directory holding anything else is refused."""
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"-o {out}: exists and is not a directory")
        stray = sorted(p.name for p in out.iterdir() if p.name not in (PLAN_FILE, REPORT_FILE))
        if stray:
            raise UsageError(f"-o {out}: the directory holds other files ({', '.join(stray[:5])}); give a new or an import's directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        (tmp / PLAN_FILE).write_text(plan_text(result), encoding="utf-8")
        (tmp / REPORT_FILE).write_text(report_text(result), encoding="utf-8")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
