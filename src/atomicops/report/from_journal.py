"""A run report from the journal alone: no plan file, no services.

The runs shown are one run (``--run``), a run with the runs it finishes (a resume and what
it resumed), or all of them (a rehearsal's journal: its apply and its rollback). The graph is
the run's recorded plan (vars applied, secrets as references), as rollback reads it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from atomicops import clipping
from atomicops.errors import AtomicOpsError, UsageError
from atomicops.expect import describe
from atomicops.graph import Graph
from atomicops.journal.state import EnvState, RunInfo, derive
from atomicops.journal.store import Event
from atomicops.plan.loader import LoadedPlan, loaded_from_journal
from atomicops.report.graph_view import nodes_and_edges
from atomicops.report.model import DiffRow, HistoryRow, Node, Report, RunRow, VerifyRow
from atomicops.report.timeline import assign_lanes, bars_and_markers, phase_bands

# A run's exit code, as the command that ran it exited (DESIGN.md), by command and outcome.
_EXIT = {"succeeded": 0, "nothing_to_do": 0, "marked": 0, "failed": 1, "kept": 1,
         "rollback_incomplete": 3, "uncertain": 3}
_DETAIL_LIMIT = 400
# Event data too large or too internal for the history table (the plan has its own sections).
_NOT_IN_HISTORY = ("plan", "definition", "undo", "action", "ok_errors", "token")


def exit_code_of(run: RunInfo) -> int | None:
    if run.outcome is None:
        return None
    if run.outcome == "rolled_back":  # what a rollback is asked to do; an apply that had to
        return 0 if run.command in ("rollback", "resume") else 1
    return _EXIT.get(run.outcome)


def choose_runs(st: EnvState, runs: Sequence[str], every: bool) -> list[RunInfo]:
    """The runs a report shows, oldest first. Default: the latest run and those it finishes."""
    if not st.runs:
        raise UsageError(f"environment {st.env!r} has no run in its journal")
    if every:
        return sorted(st.runs.values(), key=lambda r: r.started)
    if runs:
        unknown = [r for r in runs if r not in st.runs]
        if unknown:
            known = ", ".join(f"{r.id} ({r.command})" for r in sorted(st.runs.values(), key=lambda r: r.started)[-10:])
            raise UsageError(f"no run {', '.join(unknown)} in environment {st.env!r}; latest runs: {known}")
        return sorted((st.runs[r] for r in runs), key=lambda r: r.started)
    latest = max(st.runs.values(), key=lambda r: r.started)
    return sorted(st.lineage(latest), key=lambda r: r.started)


def build(
    env: str,
    events: Sequence[Event],
    *,
    runs: Sequence[str] = (),
    every: bool = False,
    verify: Sequence[Mapping[str, Any]] | None = None,
    leaks: Mapping[str, Any] | None = None,
    exit_code: int | None = None,
    title: str | None = None,
    extra_header: Sequence[tuple[str, str]] = (),
    mask: Any = None,
) -> Report:
    """The report of ``runs`` of ``env``. ``verify`` (results of `verify` or a rehearsal)
    and ``leaks`` (a rehearsal's inventory diff) are what the journal does not hold.
    ``mask`` turns journalled values into shown ones (default: sealed secrets masked)."""
    from atomicops.engine.scope import shown

    mask = mask or shown
    st_all = derive(env, events)
    chosen = choose_runs(st_all, runs, every)
    ids = [r.id for r in chosen]
    last_seq = max((e.seq for e in events if e.run_id in ids), default=0)
    upto = [e for e in events if e.seq <= last_seq]
    st = derive(env, upto)  # the state when the last chosen run ended: the graph's colours
    chosen = [st.runs[i] for i in ids]
    loaded = _recorded(st)

    bars, markers = bars_and_markers(upto, ids)
    for bar in bars:
        bar.outputs = mask(bar.outputs)
        bar.error = mask(bar.error)
    lanes = assign_lanes(bars)
    plan_name = str((loaded.plan.name if loaded else None) or "(no recorded plan)")
    if loaded is not None:
        nodes, edges = nodes_and_edges(loaded, st.op_status)
        phases = list(loaded.plan.phases)
    else:
        nodes, edges, phases = _graph_from_state(st)
    first, last = chosen[0], chosen[-1]
    code = exit_code if exit_code is not None else exit_code_of(last)
    header = [
        ("plan", plan_name),
        ("environment", env),
        ("run" if len(chosen) == 1 else "runs", ", ".join(f"{r.id} ({r.command})" for r in chosen)),
        ("who", ", ".join(sorted({_who(upto, r) for r in chosen}))),
        ("started", _when(first.started)),
        ("finished", _when(last.finished) if last.finished else "not finished (interrupted, or still running)"),
        ("outcome", " → ".join(f"{r.command}: {_outcome(r)}" for r in chosen)),
        ("exit code", "" if code is None else str(code)),
        ("duration", _durations(chosen)),
        *extra_header,
    ]
    report = Report(
        title=title or f"{plan_name} · {env} · {', '.join(r.command for r in chosen)}",
        header=header,
        runs=[RunRow(r.id, r.command, _who(upto, r), r.started, r.finished, r.outcome, r.continues) for r in chosen],
        bars=bars,
        markers=markers,
        bands=phase_bands(bars),
        nodes=nodes,
        edges=edges,
        phases=phases,
        verify=_verify_rows(loaded, st, upto, ids, verify, mask),
        diff=None if leaks is None else diff_rows(leaks),
        history=[_history_row(e, mask) for e in upto if e.run_id in ids],
        lanes=lanes,
    )
    return report


def _recorded(st: EnvState) -> LoadedPlan | None:
    run = st.latest_plan()
    if run is None or run.plan is None:
        return None
    try:
        return loaded_from_journal(run.plan, file=run.plan_file, base_dir=run.base_dir)
    except AtomicOpsError:  # a plan recorded by another version: the graph comes from the state
        return None


def _graph_from_state(st: EnvState) -> tuple[list[Node], list[tuple[str, str]], list[str]]:
    deps = {o.id: o.depends_on for o in st.ops.values()}
    graph = Graph.build(deps, deps)
    nodes = []
    for column, wave in enumerate(graph.waves()):
        for row, op_id in enumerate(wave):
            o = st.ops[op_id]
            nodes.append(Node(op_id, o.phase, o.title, len(o.steps), o.status, column, row))
    phases = sorted({o.phase for o in st.ops.values()}, key=lambda p: min(o.phase_index for o in st.ops.values() if o.phase == p))
    return nodes, [(d, n) for n, ds in graph.deps.items() for d in sorted(ds)], phases


def _outcome(run: RunInfo) -> str:
    if run.outcome == "closed":  # derived: a later run left nothing of it to finish
        return f"interrupted, finished by run {run.closed_by}"
    return run.outcome or "unfinished (interrupted, or still running)"


def _who(events: Sequence[Event], run: RunInfo) -> str:
    start = next((e for e in events if e.run_id == run.id and e.type == "run_started"), None)
    user = start.data.get("user") if start else None
    host = run.host or "?"
    return f"{user}@{host} (pid {run.pid})" if user else f"{host} (pid {run.pid})"


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _durations(runs: Sequence[RunInfo]) -> str:
    parts = [f"{r.command} {r.finished - r.started:.1f}s" for r in runs if r.finished]
    if len(runs) > 1 and runs[-1].finished:
        parts.append(f"in all {runs[-1].finished - runs[0].started:.1f}s")
    return ", ".join(parts)


def _expected(check: Mapping[str, Any]) -> str:
    expect = check.get("expect") or {}
    return "; ".join(f"{path}: {describe(spec)}" for path, spec in expect.items()) or "(the call succeeds)"


def _checks(loaded: LoadedPlan) -> dict[str, tuple[str | None, Mapping[str, Any]]]:
    """Every verify check by the name `verify` reports it under, with its operation."""
    found: dict[str, tuple[str | None, Mapping[str, Any]]] = {}
    for op in loaded.plan.operations:
        for i, c in enumerate(op.verify):
            found[f"{op.id}: {c.get('name') or f'verify[{i}]'}"] = (op.id, c)
    for i, c in enumerate(loaded.plan.verify):
        found[str(c.get("name") or f"verify[{i}]")] = (None, c)
    return found


def _verify_rows(
    loaded: LoadedPlan | None,
    st: EnvState,
    events: Sequence[Event],
    ids: Sequence[str],
    results: Sequence[Mapping[str, Any]] | None,
    mask: Any,
) -> list[VerifyRow] | None:
    checks = _checks(loaded) if loaded else {}
    if results is not None:
        rows = []
        for r in results:
            name = str(r.get("check"))
            observed = r.get("observed") or {}
            seen = "; ".join(f"{k}: {v}" for k, v in observed.items())
            if not r.get("ok"):
                seen = "; ".join(r.get("mismatches") or []) or str(r.get("error") or "") or seen
            spec = checks.get(name, (None, {}))[1]
            rows.append(VerifyRow(name, mask(_expected(spec)) if spec else "", mask(seen or "as expected"), bool(r.get("ok"))))
        return rows
    if not checks:
        return None
    # From the journal alone: an operation's checks ran when it was applied (a miss fails
    # the operation at its "verify" step); the plan's own checks, when a whole apply succeeded.
    applied = {e.op for e in events if e.run_id in ids and e.type == "op_applied"}
    missed = {e.op: str(e.data.get("error") or "") for e in events
              if e.run_id in ids and e.type == "step_failed" and e.step == "verify"}
    whole = any(st.runs[i].command in ("apply", "resume") and st.runs[i].outcome == "succeeded"
                and not st.runs[i].options.get("phase") and not st.runs[i].options.get("targets") for i in ids)
    rows = []
    for name, (op, check) in checks.items():
        if op is not None and op in missed:
            rows.append(VerifyRow(name, mask(_expected(check)), mask(missed[op]), False))
        elif (op is not None and op in applied) or (op is None and whole):
            rows.append(VerifyRow(name, mask(_expected(check)), "as expected (checked by the run)", True))
        else:
            rows.append(VerifyRow(name, mask(_expected(check)), "not checked by this run", None))
    return rows


def diff_rows(leaks: Mapping[str, Any]) -> list[DiffRow]:
    """An inventory diff (``inventory.diff``) as one row per difference; [] when clean."""
    rows: list[DiffRow] = []

    def walk(source: str, kind: str, value: Any) -> None:
        if isinstance(value, Mapping) and {"added", "removed", "changed", "unchecked"} & set(value):
            for change in ("added", "removed", "changed"):
                for entry in value.get(change) or []:
                    what = entry.get("id") if isinstance(entry, Mapping) and "id" in entry else entry
                    rows.append(DiffRow(source, kind, change, _text(what)))
            if "unchecked" in value:
                rows.append(DiffRow(source, kind, "unchecked", _text(value["unchecked"])))
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(source, f"{kind}.{k}" if kind else str(k), v)
        else:
            rows.append(DiffRow(source, kind, "changed", _text(value)))

    for source, changes in leaks.items():
        walk(str(source), "", changes)
    return rows


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return clipping.head(text, _DETAIL_LIMIT)


def _history_row(ev: Event, mask: Any) -> HistoryRow:
    data = {k: v for k, v in ev.data.items() if k not in _NOT_IN_HISTORY and v not in (None, [], {}, "")}
    where = "/".join(x for x in (ev.op, ev.step) if x)
    return HistoryRow(ev.seq, ev.ts, ev.run_id, ev.type, where, _text(mask(data)) if data else "")
