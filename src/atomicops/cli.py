"""The ``atomicops`` command: a thin shell over :mod:`atomicops.api`.

It parses options, renders progress and results, and turns typed errors into a message and
the exit code of DESIGN.md (0 done; 1 failed and rolled back; 2 invalid input, nothing ran;
3 rollback incomplete, action needed; 4 locked by another run). No traceback unless --debug.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

# The engine, the plan model (pydantic), the action kinds (boto3, psycopg, nats), the rehearsal
# and the inventory are imported inside the commands that use them: `--help`, `status` and
# `history` must not pay for them (docs/performance.md).
from atomicops import clipping
from atomicops.engine.cancel import Cancellation
from atomicops.engine.observer import Silent
from atomicops.engine.scope import shown
from atomicops.engine.secrets import process_redactor
from atomicops.errors import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_ROLLBACK_INCOMPLETE,
    AtomicOpsError,
    PlanInvalid,
    UsageError,
)
from atomicops.journal.store import Event

# No emoji codes: `:x:` in a name or an output is text. Data goes into markup through _data.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class Progress:
    """Renders journal events as they are written: one line per step, undo and operation."""

    def __init__(self, console: Console):
        self.c = console
        self.t0 = time.time()

    def _stamp(self) -> str:
        return f"[dim]{time.time() - self.t0:7.1f}s[/dim]"

    def event(self, ev: Event) -> None:
        d, s = ev.data, self._stamp()
        where = f"{ev.op}/{ev.step}" if ev.step else (ev.op or "")
        if ev.type == "op_started":
            self.c.print(f"{s} [bold]▶ {_data(ev.op)}[/bold] [dim]{_data(d.get('title', ''))}[/dim]")
        elif ev.type == "step_done":
            took = (d.get("finished") or 0) - (d.get("started") or 0)
            outs = " ".join(f"{k}={_short(v)}" for k, v in shown(d.get("outputs") or {}).items())
            self.c.print(f"{s}   [green]✓[/green] {_data(where)} [dim]{took:.2f}s {_data(outs)}[/dim]")
        elif ev.type == "step_progress":
            total = f"/{d['total']}" if d.get("total") else ""
            self.c.print(f"{s}   [dim]… {_data(where)} {_data(d.get('done'))}{_data(total)} {_data(d.get('note') or '')}[/dim]")
        elif ev.type == "step_failed":
            self.c.print(f"{s}   [red]✗ {_data(where)}: {_data(d.get('error'))}[/red]")
        elif ev.type == "op_applied":
            self.c.print(f"{s} [green]✓ {_data(ev.op)} applied[/green]")
        elif ev.type == "op_failed":
            self.c.print(f"{s} [red]✗ {_data(ev.op)} failed; its done steps were undone[/red]")
        elif ev.type == "undo_done":
            gone = " (already gone)" if d.get("already_gone") else ""
            self.c.print(f"{s}   [yellow]↶[/yellow] {_data(where)} undone{gone}")
        elif ev.type == "undo_failed":
            self.c.print(f"{s}   [red]✗ undo {_data(where)}: {_data(d.get('error'))}[/red]")
        elif ev.type == "undo_skipped" and d.get("drift"):
            self.c.print(f"{s}   [yellow]↷[/yellow] {_data(where)} undo skipped: {_data(d.get('reason'))}")
        elif ev.type == "undo_skipped":
            self.c.print(f"{s}   [yellow]![/yellow] {_data(where)} is irreversible, left as is: {_data(d.get('reason'))}")
        elif ev.type == "undo_refused":
            self.c.print(f"{s}   [red]✗ undo {_data(where)} not run: {_data(d.get('error'))}[/red]")
        elif ev.type == "drift_checked":
            counts = ", ".join(f"{n} {k}" for k, n in (d.get("counts") or {}).items() if n)
            self.c.print(f"{s} [cyan]drift check[/cyan]: {_data(counts or 'nothing to read')} [dim]({d.get('seconds', 0):.1f}s)[/dim]")
        elif ev.type == "op_undone":
            self.c.print(f"{s} [yellow]↶ {_data(ev.op)} rolled back[/yellow]")
        elif ev.type == "checkpoint":
            self.c.print(f"{s} [cyan]⚑ checkpoint {_data(d.get('name'))}[/cyan] [dim](seq {_data(d.get('seq'))})[/dim]")
        elif ev.type == "checkpoint_dropped":
            self.c.print(f"{s} [dim]⚑ checkpoint {_data(d.get('name'))} dropped: {_data(d.get('reason'))}[/dim]")
        elif ev.type == "op_skipped":
            self.c.print(f"{s} [yellow]↷ {_data(ev.op)} skipped: cleaned up by hand ({_data(d.get('by'))})[/yellow]")
        elif ev.type == "run_started":
            self.c.print(f"{s} [bold]{_data(d.get('command'))}[/bold] run {_data(ev.run_id)} on environment {_data(repr(ev.env))}")
        elif ev.type == "monitor_started":
            names = ", ".join(f"{c['name']}" + (f" (fires after {c['failures']} misses)" if c.get("failures", 1) > 1 else "")
                              for c in d.get("checks") or [])
            window = d.get("window_minutes") or 0
            after = f", then {window:g} min after" if window and d.get("during") == "apply" else ""
            self.c.print(f"{s} [bold]⌚ rollback triggers[/bold] polled every {d.get('poll_seconds'):g}s"
                         f"{_data(after)}: {_data(names)}")
        elif ev.type == "trigger_fired":
            self.c.print(f"{s} [red bold]⚠ trigger {_data(d.get('check'))} fired[/red bold] "
                         f"[red]({_data(d.get('during'))}): {_data(d.get('observed'))}[/red]")
        elif ev.type == "monitor_ended":
            self.c.print(f"{s} [dim]rollback triggers: {_data(d.get('reason'))} after {d.get('seconds', 0):.1f}s[/dim]")
        elif ev.type == "run_finished":
            self.c.print(f"{s} run {_data(ev.run_id)}: {_data(d.get('outcome'))}")

    def note(self, text: str, *, level: str = "info") -> None:
        style = {"warning": "yellow", "error": "red"}.get(level, "cyan")
        self.c.print(f"{self._stamp()} [{style}]{_data(text)}[/{style}]")


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return clipping.head(process_redactor().text(text), 40)  # masked first: a cut hides no fragment


def _env_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An environment name goes into ``${step.key}`` (``<env>/<op>/<step>``, an AWS tag
    value) and the journal: the same characters and length as an operation id."""
    from atomicops.plan.names import ID_MAX, ID_PATTERN  # not plan.model: no pydantic for status

    if not re.fullmatch(ID_PATTERN, value) or len(value) > ID_MAX:
        raise click.BadParameter(
            f"{value!r}: an environment name is 1 to {ID_MAX} letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--env, --state, --json and --debug on every command, and typed errors -> exit codes."""

    @click.option("--env", "env", default="default", envvar="ATOMICOPS_ENV", show_default=True, callback=_env_name,
                  help="Environment: a named target with its own journal state and lock.")
    @click.option("--state", "state", default=None, envvar="ATOMICOPS_STATE",
                  help="Journal store: a path, sqlite:///path, or postgresql://user@host/db to share it "
                       "with a team (default .atomicops/journal.db).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
    @click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool, debug: bool, **kwargs: Any) -> None:
        try:
            code = fn(*args, as_json=as_json, **kwargs)
        except AtomicOpsError as exc:
            _print_error(exc, as_json)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:  # a usage mistake found after parsing
            _print_error(UsageError(exc.format_message()), as_json)
            sys.exit(EXIT_INVALID)
        except KeyboardInterrupt:
            err.print("[red]interrupted[/red]")
            sys.exit(EXIT_FAILED)
        except Exception as exc:
            if debug:
                raise
            _print_error(exc, as_json, internal=True)
            sys.exit(EXIT_FAILED)
        sys.exit(code or 0)

    return wrapper


def _print_error(exc: BaseException, as_json: bool, internal: bool = False) -> None:
    code = getattr(exc, "exit_code", EXIT_FAILED)
    if as_json:
        doc: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__}
        if isinstance(exc, PlanInvalid):
            doc["problems"] = [p.as_dict() for p in exc.problems]
        if hasattr(exc, "check") and hasattr(exc, "observed"):  # TriggerFired (errors.py)
            doc["trigger"] = {"check": exc.check, "observed": exc.observed, "at": getattr(exc, "at", None),
                              "during": getattr(exc, "during", None), "kept": getattr(exc, "kept", None)}
        report = getattr(exc, "report", None)
        if report is not None:
            doc["report"] = _jsonable(report)
        _emit(doc, code)
        return
    prefix = "internal error (run with --debug for the traceback): " if internal else ""
    err.print(f"[red]atomicops: {_data(prefix + str(exc))}[/red]")


def _emit(doc: Any, exit_code: int = 0) -> None:
    """Print one JSON document: the only way --json output leaves the process.

    Every secret value this process resolved is masked here, whatever carried it (a report,
    an error a library raised, a check's observed value): one boundary for all of them.
    """
    clean = process_redactor().data(json.loads(json.dumps(doc, default=str)))
    if isinstance(clean, dict):
        clean["exit_code"] = exit_code
    click.echo(json.dumps(clean, indent=2))


def _data(value: Any, limit: int | None = None) -> str:
    """Data (names, outputs, errors) for a rich markup template: masked, cut to ``limit``,
    then escaped so that `[/x]` in it is text, not markup."""
    text = process_redactor().text(str(value))
    return escape(clipping.head(text, limit) if limit else text)


def _jsonable(obj: Any) -> Any:
    # Field by field, not dataclasses.asdict: asdict deep-copies, and copying an exception
    # rebuilds it from its message (StepFailed has three arguments; ExpectFailed would join
    # the characters of the message).
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, BaseException):
        return str(obj)
    return obj


@contextlib.contextmanager
def ctrl_c(*, rolling_back: bool = False) -> Iterator[Cancellation]:
    """Ctrl-C asks the run to stop instead of killing it between a step and its journal record.

    The first press stops new work; the run undoes what it was doing and rolls back (or keeps,
    with --on-failure keep). The second stops the rollback after the undo in flight. For a
    command that only rolls back (``rolling_back``), the first press already does that.
    """
    cancel = Cancellation()

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.abort.is_set():
            return  # already stopping all there is to stop
        cancel.interrupt()
        if rolling_back:
            cancel.interrupt()  # no forward work to stop: the first press stops the undoing
        if cancel.watching and not cancel.abort.is_set():
            err.print("[yellow]interrupted: the watch ends; everything stays applied "
                      "(during a rollback a second Ctrl-C stops it)[/yellow]")
        elif cancel.abort.is_set():
            err.print("[yellow]interrupted: no further undo starts; what is left stays applied "
                      "for `atomicops rollback` or `atomicops resume`[/yellow]")
        else:
            err.print("[yellow]interrupted: no new operation starts; the steps running finish or are "
                      "undone, then the run rolls back (Ctrl-C again to stop the rollback)[/yellow]")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def plan_inputs(fn: Callable[..., Any]) -> Callable[..., Any]:
    @click.argument("plan", type=click.Path())
    @click.option("--var", "var", multiple=True, metavar="NAME=VALUE", help="Override a plan var (repeatable).")
    @click.option("--vars-file", "vars_files", multiple=True, type=click.Path(), help="YAML file of var overrides (repeatable).")
    @functools.wraps(fn)
    def wrapper(*args: Any, var: tuple[str, ...], **kwargs: Any) -> Any:
        from atomicops.plan.loader import parse_var

        try:
            kwargs["vars"] = dict(parse_var(v) for v in var)
        except UsageError as exc:  # parsed before `common` wraps the command: let click report it
            raise click.BadParameter(str(exc), param_hint="--var") from None
        return fn(*args, **kwargs)

    return wrapper


# atomicops.sandbox's DEFAULT_DIR and SERVICES, for the options' defaults and choices: the
# sandbox module (sockets, subprocesses, psutil) is imported by the commands that use it,
# not by every command (tests/test_startup_imports.py checks the two agree).
SANDBOX_DIR = str(Path(".atomicops") / "sandbox")
SANDBOX_SERVICES = ("aws", "postgres", "nats")


class _Commands(click.Group):
    """Mistakes the option parser finds come before any command runs: with --json they are
    one JSON document too (exit 2), like every other way a command ends."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            _print_error(UsageError(exc.format_message()), as_json=True)
            sys.exit(EXIT_INVALID)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="atomicops")
def main() -> None:
    """Run a migration runbook as a graph of atomic, reversible operations.

    \b
    Typical session:
      atomicops validate plan.yaml           # every check, nothing runs
      atomicops plan plan.yaml               # forward waves, rollback order, changes
      atomicops apply plan.yaml              # run it; a failure rolls the run back
      atomicops status                       # what is applied, with outputs
      atomicops rollback                     # undo from the journal (no plan needed)
      atomicops report                       # the last run as one HTML page (offline)

    Exit codes: 0 done; 1 failed and rolled back; 2 invalid input, nothing ran;
    3 rollback incomplete, action needed; 4 locked by another run.
    """


@main.command()
@plan_inputs
@click.option("--strict", is_flag=True,
              help="Also fail (exit 2) when a step would need a person to settle after a crash: no probe "
                   "that names ${step.key}, nothing safe to repeat, and an undo that needs the step's own "
                   "outputs. Each such step is named with its file and line.")
@common
def validate(plan: str, vars: dict[str, Any], vars_files: tuple[str, ...], strict: bool, env: str, state: str | None,
             as_json: bool) -> int:
    """Check PLAN completely (schema, references, graph, AWS API names); nothing runs.

    Says when each connection built from operations' outputs opens (the first action that
    needs it, once they are applied) and whether a var replaces it with these vars
    (a postgres `override:`).

    \b
    Also shows how each step would be settled if a crash left it half-done:
      own probe       its probe finds the resource by the step's key
      own probe (absent before)
                      its probe finds it by name; the engine probes before the step too,
                      and what appears after a crash is the step's only if nothing was there
      built-in probe  the probe catalog knows its AWS create call
      re-do           its call is safe to send again (an idempotency token, an upsert)
      undo            its undo needs none of its outputs (a delete by name)
      needs a person  nothing can tell: `atomicops resolve` after a crash
    """
    # The loader, not atomicops.api: validating imports no engine (docs/performance.md, B6).
    from atomicops.engine.settlement import counts, person_problems, plan_settlement
    from atomicops.errors import NeedsPerson
    from atomicops.plan.loader import load_plan

    loaded = load_plan(plan, var_overrides=vars, vars_files=vars_files)
    p = loaded.plan
    steps = sum(len(op.steps) for op in p.operations)
    rows = plan_settlement(p.operations)
    if strict and (problems := person_problems(loaded)):
        raise NeedsPerson(problems)
    from atomicops.plan.connections import explain

    late = explain(p)  # connections built from outputs, or replaced by a var
    if as_json:
        _emit({"valid": True, "plan": p.name, "operations": len(p.operations), "steps": steps,
               "warnings": [w.as_dict() for w in loaded.warnings], "connections": late,
               "settlement": {"counts": counts(rows), "steps": rows}})
        return 0
    for w in loaded.warnings:
        err.print(f"[yellow]{_data(w)}[/yellow]")
    out.print(f"[green]valid[/green]: plan {_data(repr(p.name))}, {len(p.operations)} operations, {steps} steps, "
              f"{len(p.phases)} phase(s); {len(loaded.warnings)} warning(s)")
    for c in late:
        out.print(f"connection {_data(c['connection'])}: {_data(c['how'])}")
    _print_settlement(rows)
    return 0


# A plan of this many steps or fewer has each one's settlement listed; a larger one only its
# tally and the steps that would need a person (every step is in --json). Ten thousand lines
# of "built-in probe" hide the one that matters, and took 3 s of a 10,000-operation `plan`.
SETTLEMENT_LISTED = 100


def _print_settlement(rows: list[dict[str, Any]]) -> None:
    from atomicops.engine.settlement import PERSON, counts

    tally = ", ".join(f"{n} {kind}" for kind, n in counts(rows).items())
    out.print(f"\n[bold]after a crash[/bold] (how each step would be settled): {_data(tally)}")
    shown = rows if len(rows) <= SETTLEMENT_LISTED else [r for r in rows if r["kind"] == PERSON]
    for r in shown:
        style = "yellow" if r["kind"] == PERSON else "dim"
        rollback = f"; on rollback: {r['on_rollback']}" if r["on_rollback"] != r["kind"] else ""
        out.print(f"  {_data(r['op'] + '/' + r['step'])}: [{style}]{_data(r['kind'])}[/{style}] "
                  f"[dim]({_data(r['why'] + rollback)})[/dim]")
    if len(shown) < len(rows):
        out.print(f"  [dim]({len(rows) - len(shown)} more steps not listed: more than {SETTLEMENT_LISTED}; "
                  f"each step's settlement is in --json)[/dim]")


@main.command(name="plan")
@plan_inputs
@click.option("--html", "html", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the plan's report page to FILE: graph, waves, rollback order, each step's do and undo.")
@common
def plan_cmd(plan: str, vars: dict[str, Any], vars_files: tuple[str, ...], html: str | None, env: str,
             state: str | None, as_json: bool) -> int:
    """Show forward waves, the rollback sequence, and what applying PLAN would change.

    An applied operation whose definition (vars applied) differs from what was applied is
    shown with each changed field as `path: old -> new`; secrets stay references. With
    --html FILE, the same as one page for a change board (open it in any browser, offline).
    """
    from atomicops import api

    loaded = api.validate(plan, vars=vars, vars_files=vars_files)
    view = api.plan_view(loaded, env=env, state=state)
    if html:
        from atomicops import report as run_report
        from atomicops.report.from_plan import build as plan_page

        view["html"] = {"file": html, "bytes": run_report.write(plan_page(loaded, env=env, changes=view["changes"]), html)}
        if not as_json:
            err.print(f"plan report: {_data(html)} ({view['html']['bytes']:,} bytes)")
    if as_json:
        _emit(view)
        return 0
    out.print(f"[bold]plan {_data(view['plan'])}[/bold] on environment {_data(repr(env))}")
    for line in view["targets"]:
        out.print(f"target: {_data(line)}")
    out.print("\n[bold]forward[/bold] (phases in order; operations in a wave run in parallel)")
    n = 0
    for ph in view["forward"]:
        out.print(f"  phase [cyan]{ph['phase']}[/cyan]")
        for wave in ph["waves"]:
            n += 1
            out.print(f"    wave {n}: " + ", ".join(f"{_data(o)} [dim]({_data(view['changes'][o])})[/dim]" for o in wave))
    out.print("\n[bold]rollback[/bold] (reverse)")
    n = 0
    for ph in view["rollback"]:
        out.print(f"  phase [cyan]{ph['phase']}[/cyan]")
        for wave in ph["waves"]:
            n += 1
            out.print(f"    wave {n}: " + _data(", ".join(wave)))
    for o, changed in view["diffs"].items():
        out.print(f"\n[bold]{_data(o)}[/bold] changed since it was applied (kept as applied):")
        for f in changed:
            out.print(f"  {_data(f['path'])}: {_data(json.dumps(f['old'], default=str))} -> {_data(json.dumps(f['new'], default=str))}")
    extra = [o for o in view["changes"] if "no longer in the plan" in view["changes"][o]]
    for o in extra:
        out.print(f"[yellow]{_data(o)}: {_data(view['changes'][o])}[/yellow]")
    _print_settlement(view["settlement"]["steps"])
    for w in view["warnings"]:
        err.print(f"[yellow]{_data(w)}[/yellow]")
    return 0


@main.command(name="apply")
@plan_inputs
@click.option("--phase", default=None, help="Apply only this phase (earlier phases must be applied).")
@click.option("--target", "targets", multiple=True, metavar="OP", help="Apply OP and what it depends on (repeatable).")
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 256), help="Operations run at once.")
@click.option("--on-failure", type=click.Choice(["rollback", "keep"]), default=None,
              help="On failure roll the run back (default, or the plan's on_failure) or keep it for inspection.")
@click.option("--monitor", "monitor", type=click.FloatRange(min=0), default=None, metavar="MIN",
              help="Minutes to keep polling the plan's rollback triggers once everything is applied "
                   "(default: the plan's triggers.monitor_minutes; 0 skips the window; they are polled "
                   "during the apply in any case). A trigger that fires rolls the run back: exit 1.")
@common
def apply_cmd(plan: str, vars: dict[str, Any], vars_files: tuple[str, ...], phase: str | None, targets: tuple[str, ...],
              parallelism: int, on_failure: str | None, monitor: float | None, env: str, state: str | None, as_json: bool) -> int:
    """Apply PLAN: run pending operations, each atomic; a failure rolls the run back.

    \b
    Ctrl-C stops starting operations; the steps running finish (or, if they can be
    cancelled, stop and are undone), then the run rolls back: exit 1. With --on-failure keep
    the run is kept as it stands instead, also exit 1 (the message says "kept"). A second
    Ctrl-C stops the rollback after the undo in flight: exit 3, and `atomicops rollback` or
    `atomicops resume` finishes it from the journal.

    Exit codes: 0 done; 1 failed (or interrupted) and rolled back, or kept if asked;
    2 invalid input, nothing ran; 3 rollback incomplete, action needed; 4 locked by another run.

    \b
    Rollback triggers (the plan's triggers.checks) are polled every poll_seconds from the
    first operation on, and for --monitor minutes once all is applied. When one fires
    (after its `failures` misses in a row) no new operation starts, the ones running finish,
    and the run rolls back (or is kept, with --on-failure keep): exit 1, and the journal
    holds the check, the time and what it saw. Ctrl-C during the window ends the watch only.

    First a preflight checks every var, secret and connection the run needs (connections of
    the first phase to run are asked once) and refuses with exit 2, listing every problem,
    before anything is created.
    """
    from atomicops import api

    observer = Silent() if as_json else Progress(err)
    with ctrl_c() as cancel:
        report = api.apply(plan, env=env, state=state, vars=vars, vars_files=vars_files, parallelism=parallelism,
                           on_failure=on_failure, phase=phase, targets=targets, observer=observer, cancel=cancel,
                           monitor=monitor)
    if as_json:
        _emit(_jsonable(report))
        return 0
    out.print(f"[green]done[/green]: {len(report.applied)} operation(s) applied, {len(report.unchanged)} already applied")
    return 0


@main.command()
@click.option("--target", "targets", multiple=True, metavar="OP", help="Undo OP and everything that depends on it.")
@click.option("--skip", "skip", multiple=True, metavar="OP",
              help="OP's undo failed and a person has removed what it left by hand: record that "
                   "(with --reason), then undo what OP stood on. Only a failed undo can be skipped.")
@click.option("--reason", default=None, metavar="TEXT",
              help="With --skip: what was done by hand; kept in the history with user@host.")
@click.option("--to", "to", default=None, metavar="CHECKPOINT",
              help="Undo only the operations started after CHECKPOINT (a plan's `checkpoint:` or `atomicops "
                   "checkpoint NAME`); what was applied before it stays. `atomicops status` lists the checkpoints.")
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 256))
@click.option("--settle-minutes", "settle_minutes", default=None, type=click.FloatRange(0, 45, min_open=True),
              metavar="N", help="How long an undo refused with DependencyViolation, *InUse* or Invalid*State* keeps "
                                "retrying while AWS releases what a deleted resource held (network interfaces). "
                                "Default: the aws connection's settle_minutes, else 15 against real AWS, 3 on an emulator.")
@click.option("--no-drift-check", "no_drift_check", is_flag=True,
              help="Do not read every step back first (`atomicops drift`): run each journalled undo as it stands "
                   "(a resource already gone still counts as undone through its undo_ok_errors).")
@common
def rollback(targets: tuple[str, ...], skip: tuple[str, ...], reason: str | None, to: str | None, parallelism: int,
             settle_minutes: float | None, no_drift_check: bool, env: str, state: str | None, as_json: bool) -> int:
    """Undo applied operations from the journal, in reverse dependency order (no plan needed).

    \b
    With --to CHECKPOINT only what started after the mark is undone (and what depends on it);
    marks it goes back past are dropped. Killed half-way, `atomicops resume` finishes the
    same partial rollback.

    \b
    An undo that still fails after its retries is journalled with its error; every branch
    that does not stand on it is still undone, and the command exits 3 naming what remains.
    Then either fix the cause and run `atomicops rollback` again (it retries only what
    remains), or, once a person has removed the resource by hand:
      atomicops rollback --skip OP --reason "deleted sg-123 in the console"
    which records it (`atomicops history` shows the reason and user@host) and goes on.

    \b
    First it reads every step it will undo back (the drift check, as `atomicops drift`):
      gone     deleted out of band: its undo is skipped, with why, in the history
      changed  replaced out of band (a new id, a namesake that is not this run's): its
               undo is not run and it is left for a person, exit 3 (nothing the run
               did not create is ever deleted); then --skip OP --reason, or
               --no-drift-check to run the journalled undo as it stands
      unknown  nothing could read it: undone as journalled
    --no-drift-check saves those reads (one API call per step, in parallel).
    """
    from atomicops import api

    if reason is not None and not skip:
        raise click.UsageError("--reason goes with --skip OP")
    if skip and not (reason or "").strip():
        raise click.UsageError('--skip needs --reason "what was done by hand" (it is kept in the history)')
    observer = Silent() if as_json else Progress(err)
    with ctrl_c(rolling_back=True) as cancel:
        report = api.rollback(env=env, state=state, targets=targets, skip=skip, reason=reason, to=to,
                              parallelism=parallelism, settle_minutes=settle_minutes, drift_check=not no_drift_check,
                              observer=observer, cancel=cancel)
    if as_json:
        _emit(_jsonable(report))
        return 0
    if report.skipped:
        out.print(f"[yellow]skipped (cleaned up by hand): {_data(', '.join(report.skipped))}[/yellow]")
    back_to = f" to checkpoint {_data(to)}" if to else ""
    out.print(f"[green]rolled back{back_to}[/green]: {len(report.undone)} operation(s)")
    for item in report.irreversible:
        out.print(f"[yellow]irreversible, left as is: {_data(item)}[/yellow]")
    return 0


@main.command()
@click.option("--rollback", "do_rollback", is_flag=True, help="Roll the interrupted run back instead of finishing it.")
@click.option("--plan", "plan", default=None, type=click.Path(),
              help="Refuse unless this plan matches what the journal recorded (resume itself needs no plan).")
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 256))
@click.option("--no-drift-check", "no_drift_check", is_flag=True,
              help="When it rolls back: skip the drift check (see `atomicops rollback --help`).")
@common
def resume(do_rollback: bool, plan: str | None, parallelism: int, no_drift_check: bool, env: str, state: str | None,
           as_json: bool) -> int:
    """Finish an interrupted run: probe in-flight steps, then continue it or roll it back.

    A rollback reads its steps back first, as `atomicops rollback` does (--no-drift-check)."""
    from atomicops import api

    observer = Silent() if as_json else Progress(err)
    with ctrl_c(rolling_back=do_rollback) as cancel:
        report = api.resume(env=env, state=state, rollback=do_rollback, plan=plan, parallelism=parallelism,
                            observer=observer, cancel=cancel, drift_check=not no_drift_check)
    if as_json:
        _emit(_jsonable(report))
    elif getattr(report, "nothing_to_do", False):
        out.print(f"nothing to resume: no interrupted run in environment {_data(repr(env))}")
    elif hasattr(report, "applied"):
        out.print(f"[green]resumed[/green]: {len(report.applied)} operation(s) applied")
    else:
        out.print(f"[green]resumed and rolled back[/green]: {len(report.undone)} operation(s)")
    return 0


@main.command(name="checkpoint")
@click.argument("name")
@common
def checkpoint_cmd(name: str, env: str, state: str | None, as_json: bool) -> int:
    """Mark the journal here as checkpoint NAME, for `atomicops rollback --to NAME`.

    \b
    A plan marks its own checkpoints (`checkpoint: NAME` on an operation, recorded when that
    operation completes, with snapshot steps if it has any); this marks one by hand, e.g.
    before applying a new phase:
      atomicops checkpoint before-cutover
      atomicops apply plan.yaml --phase data
      atomicops rollback --to before-cutover   # undoes only what started after the mark

    Takes the environment's lock (exit 4 while a run holds it). A name already marked, or
    marked by the recorded plan, is refused (exit 2); so is marking in the middle of an
    interrupted run. `atomicops status` lists the checkpoints; `history` shows when each was
    made and dropped.
    """
    from atomicops import api

    mark = api.checkpoint(name, env=env, state=state)
    if as_json:
        _emit({"checkpoint": mark.as_dict()})
    else:
        out.print(f"[green]checkpoint {_data(name)}[/green] marked at seq {mark.seq} in environment {_data(repr(env))}; "
                  f"`atomicops rollback --to {_data(name)}` undoes what starts after it")
    return 0


@main.command()
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None, metavar="M",
              help="How long to watch (default: the recorded plan's triggers.monitor_minutes).")
@click.option("--plan", "plan", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Take the triggers from this plan file instead of the plan the last run recorded.")
@click.option("--on-failure", type=click.Choice(["rollback", "keep"]), default="rollback", show_default=True,
              help="When a trigger fires: roll back what the last apply applied, or keep it and report.")
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 256))
@common
def monitor(minutes: float | None, plan: str | None, on_failure: str, parallelism: int,
            env: str, state: str | None, as_json: bool) -> int:
    """Watch an applied environment with its rollback triggers; roll back if one fires.

    \b
    The window after a deployment, after the fact: the triggers recorded with the last run
    (or --plan's) are polled every poll_seconds for M minutes, holding the environment's
    lock. A status line shows the time left and what each check last saw.
    When a check misses `failures` times in a row, what the last successful apply applied
    is rolled back from the journal: exit 1 (3 if the rollback is incomplete).
    The window ending, or Ctrl-C, ends the watch and leaves everything applied: exit 0.
    """
    from atomicops import api

    observer = Silent() if as_json else Progress(err)
    with ctrl_c() as cancel:
        report = api.monitor(env=env, state=state, minutes=minutes, plan=plan, on_failure=on_failure,
                             parallelism=parallelism, observer=observer, cancel=cancel)
    if as_json:
        _emit(_jsonable(report))
        return 0
    how = {"elapsed": "the window ended", "interrupted": "ended by Ctrl-C"}.get(report.ended, report.ended)
    out.print(f"[green]watched[/green] run {_data(report.watched_run)} for {report.minutes:g} minute(s): "
              f"no trigger fired ({_data(how)}); everything stays applied")
    for c in report.checks:
        out.print(f"  {_data(c['name'])}: {_data(c['state'])} after {c['polls']} poll(s) {_data(c['last'], 120)}")
    return 0


@main.command()
@click.argument("op")
@click.argument("step")
@click.option("--applied/--not-applied", "applied", default=None, help="Whether the step took effect.")
@click.option("--output", "outputs", multiple=True, metavar="NAME=VALUE", help="The step's outputs, when --applied.")
@click.option("--reason", default=None, metavar="TEXT",
              help="Why, kept in the history (`atomicops history`); required for a failed undo.")
@common
def resolve(op: str, step: str, applied: bool | None, outputs: tuple[str, ...], reason: str | None,
            env: str, state: str | None, as_json: bool) -> int:
    """Settle a step by hand: an interrupted step the probe could not settle, or a failed undo.

    \b
    Interrupted (uncertain) step: say whether it took effect, --applied (with --output
    NAME=VALUE for each output, so its undo can be resolved) or --not-applied.
    Failed undo (rollback exited 3): once a person has removed what the step made, or it is
    to be forgotten, record it with --not-applied --reason "..."; `atomicops rollback` then
    goes on. The journal keeps the reason; nothing is deleted by this command.
    """
    from atomicops import api
    from atomicops.plan.loader import parse_var

    if applied is None:
        raise click.UsageError("say --applied (with --output NAME=VALUE for its outputs) or --not-applied")
    api.resolve(op, step, applied=applied, outputs=dict(parse_var(o) for o in outputs), reason=reason, env=env, state=state)
    if as_json:
        _emit({"resolved": f"{op}/{step}", "applied": applied})
    else:
        out.print(f"{_data(op)}/{_data(step)} settled as {'applied' if applied else 'not applied'}; "
                  "run `atomicops resume` to continue (or `atomicops rollback` after a failed undo)")
    return 0


@main.command()
@common
def status(env: str, state: str | None, as_json: bool) -> int:
    """Every operation's state, outputs (secrets redacted) and timings; who holds the lock."""
    from rich.table import Table

    from atomicops.journal import views

    doc = shown(views.status(env=env, state=state))  # a sealed secret in an output, masked
    # Exit 3 while something needs a person (DESIGN.md: rollback incomplete, action needed).
    code = EXIT_ROLLBACK_INCOMPLETE if doc["action_needed"] else 0
    if as_json:
        _emit(doc, code)
        return code
    table = Table(title=f"environment {_data(repr(env))} ({_data(doc['state'])})", show_lines=False)
    for col in ("operation", "phase", "status", "took", "outputs"):
        table.add_column(col)
    for op in doc["operations"]:
        took = f"{op['duration']:.1f}s" if op["duration"] else ""
        outs = ", ".join(f"{k}={_short(v)}" for k, v in op["outputs"].items())
        table.add_row(*(_data(cell) for cell in (op["id"], op["phase"], op["status"], took, outs)))
    out.print(table)
    for mark in doc["checkpoints"]:  # what `rollback --to NAME` can go back to
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mark["ts"]))
        by = f"operation {mark['op']}" if mark["op"] else "hand"
        out.print(_data(f"checkpoint {mark['name']}: seq {mark['seq']}, {at}, by {by} (run {mark['run']})"))
    if doc["lock"]:
        lk = doc["lock"]
        out.print(_data(f"locked by run {lk['run_id']} (pid {lk['pid']} on {lk['host']}, lock id {lk['lock_id']})"))
    if doc["in_flight"]:
        out.print(f"[red]in flight (interrupted): {_data(', '.join(doc['in_flight']))}[/red]")
    for op_id in doc["action_needed"]:
        out.print(f"[red]{_data(op_id)} needs action: `atomicops rollback` (after a failed undo: it retries; "
                  f"`--skip {_data(op_id)} --reason TEXT` once a person removed it) or `atomicops resolve`[/red]")
    return code


@main.command()
@click.option("--limit", type=int, default=None, help="Only the last N events.")
@common
def history(limit: int | None, env: str, state: str | None, as_json: bool) -> int:
    """The audit trail: every journal event of the environment, oldest first."""
    from atomicops.journal import views

    events = views.history(env=env, state=state, limit=limit)
    if as_json:
        _emit(events)
        return 0
    for ev in events:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev["ts"]))
        where = "/".join(x for x in (ev["op"], ev["step"]) if x)
        detail: dict[str, Any] | str = {k: v for k, v in ev["data"].items()
                                         if k in ("error", "outcome", "command", "already_gone", "outputs", "by", "drifted") and v}
        if ev["type"] == "checkpoint":  # the mark's name and the position it stands for
            detail = f"{ev['data'].get('name')} at seq {ev['data'].get('seq')} (by {ev['data'].get('by')})"
        elif ev["type"] == "checkpoint_dropped":
            detail = str(ev["data"].get("name"))
        # A reason is a person's word on what happened (resolve, --skip, an irreversible step): in full.
        reason = f" reason: {ev['data']['reason']}" if ev["data"].get("reason") else ""
        if ev["type"] == "trigger_fired":  # which check, where, and what it saw (clipped when recorded)
            d = ev["data"]
            reason = f"{d.get('check')} ({d.get('during')}): {d.get('observed')}"
        out.print(f"{ev['seq']:>6} {when} {_data(ev['run'])} {_data(ev['type']):<13} {_data(where)} {_data(detail if isinstance(detail, str) else _short(detail)) if detail else ''}{_data(reason)}")
    return 0


@main.command()
@plan_inputs
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
@common
def graph(plan: str, vars: dict[str, Any], vars_files: tuple[str, ...], fmt: str, env: str, state: str | None, as_json: bool) -> int:
    """Print PLAN's operation graph (phases as clusters) as Mermaid or Graphviz dot."""
    from atomicops import api
    from atomicops.plan.picture import to_dot, to_mermaid

    loaded = api.validate(plan, vars=vars, vars_files=vars_files)
    text = to_mermaid(loaded) if fmt == "mermaid" else to_dot(loaded)
    if as_json:
        _emit({"format": fmt, "graph": text})
    else:
        click.echo(text)
    return 0


@main.command(name="report")
@click.option("--run", "runs", multiple=True, metavar="ID",
              help="The run to show (repeatable; default: the latest run, with the runs it resumed).")
@click.option("--all-runs", "every", is_flag=True, help="Every run of the environment (a rehearsal's journal: apply and rollback).")
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False), metavar="FILE.html",
              help="Where to write the page (default: atomicops-report-RUN.html here).")
@common
def report_cmd(runs: tuple[str, ...], every: bool, output: str | None, env: str, state: str | None, as_json: bool) -> int:
    """Write a run's report: one HTML page that opens offline in any browser, from the journal alone.

    A header (plan, environment, run, who, when, outcome, exit code, durations), the timeline
    of every step (lanes for what ran in parallel, phases, undos, failures, triggers; hover a
    bar for its outputs and error), the operation graph coloured by state, the verify checks,
    and the history, filterable. Secret values never appear in it.

    \b
      atomicops report                          # the latest run
      atomicops report --run 20261205T020541-8ff2b3 -o run.html
      atomicops report --all-runs --env rehearsal --state .atomicops/sandbox/rehearsal-journal.db  # after rehearse --keep
      atomicops plan plan.yaml --html plan.html # a plan not yet run, for a change board"""
    from atomicops import report as run_report

    t0 = time.perf_counter()
    page = run_report.of_journal(env, state, runs=runs, every=every)
    path = output or f"atomicops-report-{page.runs[-1].id}.html"
    size = run_report.write(page, path)
    took = time.perf_counter() - t0
    if as_json:
        _emit({"file": path, "bytes": size, "seconds": round(took, 3), "report": page.as_dict()})
        return 0
    steps = sum(1 for b in page.bars if b.kind == "do")
    undos = len(page.bars) - steps
    out.print(_data(f"{path}: {size:,} bytes in {took:.2f}s; {len(page.runs)} run(s), {steps} step bars, "
                    f"{undos} undo bars, {len(page.nodes)} operations"))
    return 0


@main.command()
@plan_inputs
@common
def verify(plan: str, vars: dict[str, Any], vars_files: tuple[str, ...], env: str, state: str | None, as_json: bool) -> int:
    """Run every verify check of PLAN against what is applied (read-only)."""
    from atomicops import api

    results = api.verify(plan, env=env, state=state, vars=vars, vars_files=vars_files)
    failed = [r for r in results if not r["ok"]]
    if as_json:
        _emit({"results": results, "ok": not failed}, EXIT_FAILED if failed else 0)
    else:
        for r in results:
            mark = "[green]✓[/green]" if r["ok"] else "[red]✗[/red]"
            why = r.get("error") or "; ".join(r.get("mismatches") or [])
            out.print(f"{mark} {_data(r['check'])} {_data(why)}")
    return EXIT_FAILED if failed else 0


# ---- atomicops drift -------------------------------------------------------------------------

@main.command(name="drift")
@click.option("--op", "ops", multiple=True, metavar="OP", help="Only this operation's steps (repeatable).")
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 256), help="Steps read at once.")
@common
def drift_cmd(ops: tuple[str, ...], parallelism: int, env: str, state: str | None, as_json: bool) -> int:
    """Read every applied step back and show what changed since it was applied (no plan needed).

    \b
    Each step is read with its own probe or the built-in probe of its AWS call, from the plan
    the journal recorded, and compared with the outputs the journal holds:
      in_sync      found, every output as journalled
      gone         not found: deleted out of band
      changed      something else is there: an output differs (replaced: a new id), or a
                   namesake without this step's tag
      unknown      nothing can read it (no probe, an error): the reason is shown
      in_progress  a run holds it in flight, or moved it while it was read
    Read-only and without the lock: it may run beside an apply. `atomicops rollback` runs
    the same check first (see its --help).

    \b
    Exit codes: 0 every step in sync; 1 drift found (gone or changed); 3 no drift found,
    but some steps could not be read (unknown, in progress); 2 invalid input.
    """
    from rich.table import Table

    from atomicops import api

    def progress(done: int, total: int, d: Any) -> None:
        style = {"in_sync": "green", "gone": "red", "changed": "red"}.get(d.status, "yellow")
        err.print(f"[dim]{done:>5}/{total}[/dim] {_data(d.op + '/' + d.step)} [{style}]{_data(d.status)}[/{style}]")

    report = api.drift(env=env, state=state, ops=ops, parallelism=parallelism,
                       progress=None if as_json else progress)
    code = EXIT_FAILED if report.drifted else 0 if report.in_sync else EXIT_ROLLBACK_INCOMPLETE
    if as_json:
        _emit(report.as_dict(), code)
        return code
    table = Table(title=f"drift of environment {_data(repr(env))}", show_lines=False)
    for col in ("operation", "step", "status", "journalled", "now / why"):
        table.add_column(col)
    for d in report.steps:
        style = {"in_sync": "green", "gone": "red", "changed": "red"}.get(d.status, "yellow")
        then = ", ".join(f"{k}={_short(d.actual[k])}" for k in d.differs) if d.differs else (
            "" if d.status == "in_sync" else d.why)
        journalled = ", ".join(f"{k}={_short(v)}" for k, v in d.expected.items())
        table.add_row(_data(d.op), _data(d.step), f"[{style}]{_data(d.status)}[/{style}]", _data(journalled),
                      _data(then))
    out.print(table)
    tally = ", ".join(f"{n} {k}" for k, n in report.counts.items() if n) or "nothing applied"
    out.print(f"{_data(tally)} [dim]({report.seconds:.1f}s)[/dim]")
    if report.running:
        out.print(_data(f"run {report.running.get('run_id')} ({report.running.get('command')}) held the "
                        "environment meanwhile: what it moved is shown in_progress"))
    return code


@main.command()
@click.option("--lock-id", default=None, help="The lock id that `unlock` (or `status`) shows; required to break the lock.")
@click.option("--force", is_flag=True, help="Break the lock even though its holder is still running on this host.")
@common
def unlock(lock_id: str | None, force: bool, env: str, state: str | None, as_json: bool) -> int:
    """Clear the environment's lock and show who held it.

    Without --lock-id it only shows the holder: breaking a lock needs the id it shows, so
    nobody breaks a lock they have not looked at. A holder still running on this host keeps
    its lock unless --force is given."""
    from atomicops.journal import views

    if lock_id is None:
        current = views.lock_holder(env=env, state=state)
        if current is None:
            if as_json:
                _emit({"locked": False})
            else:
                out.print(f"environment {_data(repr(env))} is not locked")
            return 0
        raise UsageError(
            f"environment {env!r} is locked by run {current.run_id} (pid {current.pid} on {current.host}, "
            f"{current.command}, since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(current.started))}); "
            f"to break it: atomicops unlock --env {env} --lock-id {current.lock_id}"
        )
    held = views.unlock(env=env, state=state, lock_id=lock_id, force=force)
    if as_json:
        _emit({"released": held.as_dict() if held else None})
    elif held:
        out.print(_data(f"released the lock of run {held.run_id} (pid {held.pid} on {held.host}, "
                        f"{held.command}, since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(held.started))})"))
    else:
        out.print(f"environment {_data(repr(env))} was not locked")
    return 0


@main.group(name="state")
def state_group() -> None:
    """The journal store itself: move an environment's journal between stores.

    \b
      atomicops state copy --from .atomicops/journal.db --to postgresql://ops@db.internal/atomicops
      atomicops state copy --from postgresql://ops@db.internal/atomicops --to sqlite:///backup.db --all-envs
    """


@state_group.command(name="copy")
@click.option("--from", "source", default=None, metavar="STATE",
              help="The journal to copy from (default: --state, i.e. ATOMICOPS_STATE or .atomicops/journal.db).")
@click.option("--to", "target", required=True, metavar="STATE", help="The journal to copy into: a path or URL, as --state.")
@click.option("--all-envs", is_flag=True, help="Copy every environment of the source, not only --env.")
@common
def state_copy(source: str | None, target: str, all_envs: bool, env: str, state: str | None, as_json: bool) -> int:
    """Copy an environment's journal to another store, every event as it was.

    Seqs, timestamps and the checksum chain are kept, and the copy is read back and compared.
    The environment is locked in both stores meanwhile (exit 4 while a run holds it). Refused,
    with nothing copied, when the target already has that environment or uses its seqs. The
    source is left as it was: point --state (or ATOMICOPS_STATE) at the target afterwards."""
    from atomicops.journal import open_store
    from atomicops.journal.copy import copy_environments

    src = open_store(source if source is not None else state)
    try:
        dst = open_store(target)
        try:
            envs = src.environments() if all_envs else [env]
            copied = copy_environments(src, dst, envs)
        finally:
            dst.close()
    finally:
        src.close()
    if as_json:
        _emit({"from": src.url, "to": dst.url, "copied": [c.as_dict() for c in copied]})
        return 0
    for c in copied:
        out.print(_data(f"copied environment {c.env!r}: {c.events} events (seq {c.first_seq}..{c.last_seq}) "
                        f"from {src.url} to {dst.url}"))
    if not copied:
        out.print(_data(f"the journal at {src.url} holds no environment; nothing was copied"))
    return 0


@main.group(name="sandbox")
def sandbox_group() -> None:
    """The embedded services: moto's server (AWS), PostgreSQL (pgserver), NATS + JetStream.

    \b
      atomicops sandbox up                  # prints the vars file to pass plans
      atomicops apply PLAN --vars-file .atomicops/sandbox/vars.yaml
      eval "$(atomicops sandbox env)"       # credentials for the emulator, in a shell
      atomicops sandbox down                # stops exactly what `up` started
    """


@sandbox_group.command(name="up")
@click.option("--dir", "root", default=SANDBOX_DIR, show_default=True, help="Where the sandbox keeps data.")
@click.option("--vars-out", default=None, type=click.Path(), help="Write the vars file here (default DIR/vars.yaml).")
@click.option("--service", "services", multiple=True, type=click.Choice(list(SANDBOX_SERVICES)),
              help="Start only these services (repeatable; default all).")
@common
def sandbox_up(root: str, vars_out: str | None, services: tuple[str, ...], env: str, state: str | None, as_json: bool) -> int:
    """Start the sandbox services on loopback and free ports (twice is harmless)."""
    from atomicops import sandbox

    progress = (lambda text: None) if as_json else (lambda text: err.print(f"[cyan]{_data(text)}[/cyan]"))
    sb = sandbox.up(root, services=services or tuple(sandbox.SERVICES), vars_out=vars_out, progress=progress)
    if as_json:
        _emit(sb.as_dict())
    else:
        out.print(f"vars file: {_data(sb.vars_file)}")
        for k, v in sorted(sb.vars().items()):
            out.print(f"  {_data(k)}: {_data(v)}")
        out.print("[dim]credentials for the emulator: eval \"$(atomicops sandbox env)\"[/dim]")
    return 0


@sandbox_group.command(name="down")
@click.option("--dir", "root", default=SANDBOX_DIR, show_default=True)
@common
def sandbox_down(root: str, env: str, state: str | None, as_json: bool) -> int:
    """Stop the processes `up` started (by pid) and remove their data."""
    from atomicops import sandbox

    stopped = sandbox.down(root, progress=(lambda text: None) if as_json else (lambda text: err.print(_data(text))))
    if as_json:
        _emit({"stopped": [i.as_dict() for i in stopped]})
    elif not stopped:
        out.print("no sandbox was up")
    return 0


@sandbox_group.command(name="status")
@click.option("--dir", "root", default=SANDBOX_DIR, show_default=True)
@common
def sandbox_status(root: str, env: str, state: str | None, as_json: bool) -> int:
    """Show each sandbox service: URL, pid, whether it answers."""
    from atomicops import sandbox

    doc = sandbox.status(root)
    if as_json:
        _emit(doc)
        return 0
    if not doc["services"]:
        out.print("no sandbox is up")
    for name, s in doc["services"].items():
        mark = "[green]up[/green]" if s["healthy"] else "[red]down[/red]"
        out.print(f"{_data(name):<9} {mark} {_data(s['url'])} (pid {_data(s['pid'])})")
    return 0


@sandbox_group.command(name="env")
def sandbox_env() -> None:
    """Print shell exports of the emulator's credentials (for what the environment lacks)."""
    from atomicops import sandbox

    for k, v in sandbox.aws_env().items():
        click.echo(f"export {k}={v}")


@main.command(name="inventory")
@click.option("--plan", "plan", default=None, type=click.Path(), help="Look only at the AWS services this plan touches.")
@click.option("--vars-file", "vars_files", multiple=True, type=click.Path(),
              help="Where to look: aws_endpoint, region, database_url, nats_url (e.g. the sandbox's vars file).")
@click.option("--no-aws", is_flag=True, help="Leave AWS out.")
@click.option("--diff", "diff_file", default=None, type=click.Path(exists=True),
              help="Compare with an inventory saved earlier with --json; exit 1 if anything differs.")
@click.option("--orphans", "find_orphans", is_flag=True,
              help="List AWS resources tagged by atomicops whose step the journal (--state) does not hold as applied; exit 1 if any.")
@common
def inventory_cmd(plan: str | None, vars_files: tuple[str, ...], no_aws: bool, diff_file: str | None,
                  find_orphans: bool, env: str, state: str | None, as_json: bool) -> int:
    """List what exists in the target: AWS resources, PostgreSQL tables (rows, checksums),
    JetStream streams (messages, last sequence)."""
    from atomicops import api, inventory, rehearsal, sandbox
    from atomicops.plan.loader import read_vars_file

    where: dict[str, Any] = {}
    for vf in vars_files:
        where.update(read_vars_file(vf).values)
    services = rehearsal.aws_services(api.validate(plan, offered_vars=where).plan) if plan else None
    if where.get("aws_endpoint"):
        os.environ.update(sandbox.aws_env())
    taken = inventory.take(
        aws_endpoint=where.get("aws_endpoint"), region=where.get("region"), aws_services=services,
        database_url=where.get("database_url"), nats_url=where.get("nats_url"), include_aws=not no_aws,
    )
    if find_orphans:
        found = api.orphans(taken.get("aws") or {}, state=state)
        if as_json:
            _emit({"orphans": found}, EXIT_FAILED if found else 0)
        elif found:
            for o in found:
                out.print("[red]orphan[/red] " + _data(f"{o['type']} {o['id']} (step {o['step']}: {o['journal']} in the journal)"))
        else:
            out.print("[green]no orphans[/green]")
        return EXIT_FAILED if found else 0
    if diff_file is None:
        if as_json:
            click.echo(json.dumps(taken, indent=1, sort_keys=True, default=str))
        else:
            for source, kinds in taken.items():
                out.print(f"[bold]{_data(source)}[/bold]")
                for kind, entries in kinds.items():
                    count = len(entries) if isinstance(entries, list) else entries
                    out.print(f"  {_data(kind)}: {_data(count)}")
        return 0
    changes = inventory.diff(json.loads(Path(diff_file).read_text()), taken)
    if as_json:
        _emit({"changes": changes, "clean": not changes}, EXIT_FAILED if changes else 0)
    elif changes:
        out.print("[red]differences:[/red]")
        out.print_json(json.dumps(changes, default=str))
    else:
        out.print("[green]no differences[/green]")
    return EXIT_FAILED if changes else 0


@main.command(name="rehearse")
@click.argument("plan", required=False, type=click.Path())
@click.option("--var", "var", multiple=True, metavar="NAME=VALUE", help="Override a plan var (repeatable).")
@click.option("--vars-file", "vars_files", multiple=True, type=click.Path())
@click.option("--keep", is_flag=True, help="Leave the sandbox up afterwards, for inspection.")
@click.option("--dir", "root", default=SANDBOX_DIR, show_default=True, help="The sandbox's directory.")
@click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 256))
@click.option("--fault", "fault", default=None, metavar="KIND",
              help="Fail on purpose and prove the recovery: step:OP (OP's last step fails), undo:OP "
                   "(OP's undo fails once; a second rollback finishes), kill (SIGKILL mid-apply, then resume), "
                   "alarm (the watched CloudWatch alarm goes to ALARM mid-run: its trigger must fire), "
                   "health (the sandbox's NATS stops mid-run: a nats or http trigger must fire). "
                   "See docs/faults.md.")
@click.option("--seed", "seed", default=None, type=int, metavar="N",
              help="With --fault kill: picks the moment of the kill, to replay one (default: random, shown).")
@click.option("--least-privilege", "least_privilege", is_flag=True,
              help="AWS enforces IAM, and apply, verify and rollback run as a user holding exactly the actions "
                   "of `atomicops policy PLAN` (the sandbox checks actions, not resources).")
@click.option("--report", "report_to", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the run report (HTML) here (default: rehearsal-report.html in the sandbox's directory).")
@common
def rehearse_cmd(plan: str | None, var: tuple[str, ...], vars_files: tuple[str, ...], keep: bool, root: str,
                 parallelism: int, fault: str | None, seed: int | None, least_privilege: bool, report_to: str | None,
                 env: str, state: str | None, as_json: bool) -> int:
    """Sandbox up, apply, verify, roll back, and prove nothing leaked (AWS, PostgreSQL, JetStream).

    With no PLAN it rehearses the bundled MisterSmith migration. With --fault it fires one
    failure on purpose and exits 0 only when the recovery was proven: the failure happened
    where aimed, the run recovered (its own rollback, a second rollback, a resume), and the
    inventory after the rollback equals the one before the apply.

    \b
      atomicops rehearse --fault step:services
      atomicops rehearse --fault undo:aurora-sg
      atomicops rehearse --fault kill --seed 11
      atomicops rehearse --fault alarm
      atomicops rehearse --fault health"""
    from rich.table import Table

    from atomicops import rehearsal, rehearsal_faults
    from atomicops.plan.loader import parse_var

    if seed is not None and (fault or "") != "kill":
        raise click.UsageError("--seed goes with --fault kill")
    drill = rehearsal_faults.parse(fault, seed) if fault is not None else None
    if plan is None:
        plan = str(rehearsal.FLAGSHIP_PLAN)
    progress = (lambda text: None) if as_json else (lambda text: err.print(f"[cyan]{_data(text)}[/cyan]"))
    report = rehearsal.rehearse(
        plan, sandbox_dir=root, keep=keep, vars=dict(parse_var(v) for v in var), vars_files=vars_files,
        parallelism=parallelism, observer=Silent() if as_json else Progress(err), progress=progress, fault=drill,
        least_privilege=least_privilege, report_to=report_to,
    )
    if as_json:
        _emit(_jsonable(report), report.exit_code)
        return report.exit_code
    table = Table(title=f"rehearsal of {_data(report.plan)}", show_header=False)
    table.add_column("what")
    table.add_column("result")
    table.add_row("operations / steps", f"{report.operations} / {report.steps}")
    table.add_row("applied", str(len(report.applied)))
    table.add_row("apply", "[green]ok[/green]" if not report.apply_error else "[red]failed[/red]")
    for f in report.failures:  # the whole cause: where it failed and the error
        where = f"operation {f.op}, step {f.step}" if f.op else "plan"
        table.add_row("failed at", f"[red]{_data(where)}[/red]: {_data(f.error)}")
    if report.apply_error and not report.failures:
        table.add_row("failed at", _data(report.apply_error))
    failed = [v for v in report.verify if not v["ok"]]
    table.add_row("verify", f"{len(report.verify) - len(failed)}/{len(report.verify)} checks passed")
    rb = report.rollback
    table.add_row("undone", f"{len(rb.undone)}" + (f": {escape(', '.join(rb.undone))}" if report.apply_error else ""))
    for op, error in rb.failed.items():
        table.add_row("undo failed", f"[red]{escape(op)}[/red]: {escape(error)}")
    if rb.failed and rb.left:
        table.add_row("left applied", escape(", ".join(rb.left)))
    table.add_row("leak check", "[green]clean: the environment equals the one before apply[/green]" if not report.leaks
                  else "[red]LEAKS[/red]: " + _data(json.dumps(report.leaks, default=str), limit=500))
    if report.fault is not None:
        fo = report.fault
        verdict = "[green]recovery proven[/green]" if fo.recovered else "[red]recovery NOT proven[/red]"
        table.add_row("fault", f"{_data(fo.fault)}{_data(f' (seed {fo.seed})' if fo.seed is not None else '')}: {verdict}")
        for line in fo.detail:
            table.add_row("", _data(line))
    if report.least_privilege is not None:
        lp = report.least_privilege
        table.add_row("least privilege", _data(f"ran as {lp['user']}: {lp['actions']} actions in {lp['statements']} statements"))
        for line in lp.get("probe_failures") or ():
            table.add_row("", f"[red]{_data(line)}[/red]")
    table.add_row("timings", _data(", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())))
    if report.sandbox_kept:
        table.add_row("sandbox", f"kept up; journal: {_data(report.state)}")
    out.print(table)
    if report.report_file:
        out.print(f"report: {_data(report.report_file)}")
    if report.report_error:
        err.print(f"[yellow]report not written: {_data(report.report_error)}[/yellow]")
    return report.exit_code


@main.command("policy")
@plan_inputs
@click.option("--format", "fmt", type=click.Choice(["json", "terraform"]), default="json", show_default=True,
              help="An IAM policy document, or a Terraform aws_iam_policy_document data source.")
@click.option("--for", "purpose", type=click.Choice(["all", "rollback"]), default="all", show_default=True,
              help="all: apply, verify, resume, monitor and rollback; rollback: only what undoing from "
                   "the journal needs (for an automated rollback handler).")
@click.option("--account", default=None, metavar="ID", help="The AWS account id in ARNs (default: *).")
@click.option("--explain", is_flag=True, help="After the policy, why each action granted on \"*\" has nothing narrower.")
@click.option("--split", is_flag=True, help="As several documents that each fit a managed policy (6,144 characters): "
              "a JSON list, or one Terraform data source each.")
@common
def policy_cmd(plan: str, vars: dict[str, Any], vars_files: tuple[str, ...], fmt: str, purpose: str,
               account: str | None, explain: bool, split: bool, env: str, state: str | None, as_json: bool) -> int:
    """Print the least-privilege IAM policy a principal needs to run PLAN in --env.

    Every AWS call a run can make: each step's do (with the tags the engine adds), undo and
    probe, waiters, verify checks, rollback triggers, the built-in probes, iam:PassRole for
    roles handed to services, and reads of the plan's stored secrets. ARNs where the plan
    fixes a name, the atomicops:env tag where AWS offers it, "*" otherwise (see --explain)."""
    from atomicops import api
    from atomicops.policy import build, policy_summary_line

    which: Any = purpose
    made = build(api.validate(plan, vars=vars, vars_files=vars_files), env=env, account=account)
    parts = made.documents(which) if split else [made.document(which)]
    if as_json:
        _emit({"policy": parts if split else parts[0], "summary": made.summary(which), "explain": made.explain(which),
               "unknown_calls": list(made.unknown)})
        return 0
    if fmt == "terraform":
        by_sid = {s.sid: s for s in made.statements}
        click.echo("\n".join(made.terraform(which, name=f"atomicops_{i}" if split else "atomicops",
                                            statements=[by_sid[st["Sid"]] for st in part["Statement"]])
                             for i, part in enumerate(parts, 1)), nl=False)
    else:
        click.echo(json.dumps(parts if split else parts[0], indent=2))
    if explain:
        err.print(_data(policy_summary_line(made, which)))
        for line in made.explain(which):
            err.print(_data(line))
    for target in made.unknown:
        err.print(f"[yellow]warning: {_data(target)} declares no aws_calls: the AWS calls it makes are not in the policy[/yellow]")
    return 0


# -- atomicops import: a markdown runbook to a plan (src/atomicops/importer) -----------------
@main.command("import")
@click.argument("runbook", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR",
              help="Directory for plan.yaml and IMPORT.md: new, or one an earlier import wrote (replaced whole).")
@click.option("--words", default=None, metavar="ROLE=WORD|WORD,...",
              help="Headings that mark blocks, over the defaults: e.g. create=CREATE|APPLY,rollback=ROLLBACK|UNDO,"
                   "verify=VERIFICATION|CHECK.")
@common
def import_cmd(runbook: str, out_dir: str, words: str | None, env: str, state: str | None, as_json: bool) -> int:
    """Turn RUNBOOK (markdown with bash blocks of aws, psql and docker commands) into a plan.

    \b
    Sections become operations, CREATE blocks steps, ROLLBACK blocks their undos (paired by
    resource type, the id made or the name given), VERIFICATION blocks checks. AWS CLI
    commands are read by the AWS CLI's own parser (pip install 'atomicops[import]').
    `NAME=$(aws ... --query Q --output text)` makes an output; `$NAME` a reference to it;
    <placeholders> become vars. What is left is printed and written to DIR/IMPORT.md with
    its runbook line; `atomicops validate DIR` refuses the plan until each TODO is filled.

    \b
      atomicops import runbook.md -o migration/
      atomicops validate migration/
      atomicops rehearse migration/"""
    from atomicops.importer import import_runbook, report_text, write
    from atomicops.importer.markdown import parse_words

    try:
        chosen = parse_words(words)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = import_runbook(runbook, chosen)
    written = write(result, out_dir)
    if as_json:
        _emit({"plan": str(written / "plan.yaml"), "report": str(written / "IMPORT.md"),
               "figures": vars(result.figures), "left": [item.as_dict(result.runbook) for item in result.left]})
        return 0
    click.echo(report_text(result), nl=False)
    click.echo(f"\nwrote {written / 'plan.yaml'} and {written / 'IMPORT.md'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()

