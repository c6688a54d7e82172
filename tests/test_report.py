"""The run report's data (report/): built from the journal alone, every step of a run once,
bars in the order the engine ran them, lanes that never overlap, secrets never in the page.
Local plans only (`run` steps): no services, a second or two in all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atomicops import api
from atomicops import report as run_report
from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.errors import RunFailed, UsageError
from atomicops.journal.store import Event
from atomicops.report.from_journal import diff_rows
from atomicops.report.model import Bar, Report
from atomicops.report.page import render
from atomicops.report.timeline import assign_lanes, bars_and_markers, occupied

PLAN = Path(__file__).parent / "plans" / "report.yaml"
LOADED = api.validate(PLAN)
STEPS = [(op.id, s.name) for op in LOADED.plan.operations for s in op.steps]
UNDOABLE = [(op.id, s.name) for op in LOADED.plan.operations for s in op.steps if not s.read_only]


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "canary-" + uuid.uuid4().hex
    monkeypatch.setenv("ATOMICOPS_CANARY", value)
    return value


def by_kind(report: Report, kind: str) -> list[Bar]:
    return [b for b in report.bars if b.kind == kind]


def assert_in_dependency_order(report: Report) -> None:
    """No bar starts before the bars it waited for end: the step before it in its operation,
    and (forward) every step of the operations it depends on, (undo) every undo of the
    operations that depend on it."""
    deps = LOADED.deps
    order = {(op, s): i for op_steps in [[(o.id, s.name) for s in o.steps] for o in LOADED.plan.operations]
             for i, (op, s) in enumerate(op_steps)}
    for kind in ("do", "undo"):
        bars = by_kind(report, kind)
        for bar in bars:
            for other in bars:
                if other.run != bar.run:
                    continue
                same_op_before = other.op == bar.op and (
                    order[(other.op, other.step)] < order[(bar.op, bar.step)] if kind == "do"
                    else order[(other.op, other.step)] > order[(bar.op, bar.step)])
                waited = other.op in deps[bar.op] if kind == "do" else bar.op in deps[other.op]
                if same_op_before or waited:
                    assert other.end <= bar.start, (kind, bar.op, bar.step, "before", other.op, other.step)


def test_every_step_of_an_apply_appears_once_in_dependency_order(tmp_path: Path, canary: str) -> None:
    state = str(tmp_path / "j.db")
    api.apply(PLAN, state=state, parallelism=4, vars={"pause": "0.05"})
    report = run_report.of_journal(state=state)
    assert sorted((b.op, b.step) for b in by_kind(report, "do")) == sorted(STEPS)
    assert by_kind(report, "undo") == []
    assert all(b.status == "done" and b.end >= b.start for b in report.bars)
    assert_in_dependency_order(report)
    assert report.lanes >= 2, "left and right ran at the same time"
    assert {n.id: n.state for n in report.nodes} == {op.id: "applied" for op in LOADED.plan.operations}
    assert sorted(report.edges) == sorted((d, o) for o, ds in LOADED.deps.items() for d in ds)
    head = dict(report.header)
    assert head["plan"] == "report-test" and head["exit code"] == "0" and head["outcome"] == "apply: succeeded"
    assert "@" in head["who"]
    assert report.verify is not None and {r.check: r.ok for r in report.verify} == {"base: made": True, "plan-level": True}
    # The history is this run's events, each once, in order.
    seqs = [h.seq for h in report.history]
    assert seqs == sorted(seqs) and len(seqs) == len(api.history(state=state))


def test_a_rollback_report_shows_each_undo_once_newest_first(tmp_path: Path, canary: str) -> None:
    state = str(tmp_path / "j.db")
    api.apply(PLAN, state=state, parallelism=4, vars={"pause": "0.05"})
    api.rollback(state=state, parallelism=4)
    report = run_report.of_journal(state=state)  # the latest run: the rollback alone
    assert [r.command for r in report.runs] == ["rollback"]
    assert by_kind(report, "do") == []
    assert sorted((b.op, b.step) for b in by_kind(report, "undo")) == sorted(UNDOABLE)
    skipped = [b for b in report.bars if b.status == "undo_skipped"]
    assert [(b.op, b.step) for b in skipped] == [("right", "sent")] and "unsent" in (skipped[0].note or "")
    assert_in_dependency_order(report)
    assert {n.state for n in report.nodes} == {"rolled_back"}
    both = run_report.of_journal(state=state, every=True)
    assert [r.command for r in both.runs] == ["apply", "rollback"]
    assert len(both.bars) == len(STEPS) + len(UNDOABLE)


def test_a_failed_run_marks_the_failing_step_and_rolls_back_after_it(tmp_path: Path, canary: str) -> None:
    state = str(tmp_path / "j.db")
    with pytest.raises(RunFailed):
        api.apply(PLAN, state=state, parallelism=4, vars={"fail": "yes", "pause": "0.05"})
    report = run_report.of_journal(state=state)
    failed = [b for b in report.bars if b.status == "failed"]
    assert [(b.op, b.step) for b in failed] == [("late", "maybe-fail")]
    assert "cannot use ***" in (failed[0].error or "") and canary not in (failed[0].error or "")
    marks = [m for m in report.markers if m.kind == "failure"]
    assert [(m.op, m.step) for m in marks] == [("late", "maybe-fail")] and marks[0].ts == failed[0].end
    undos = by_kind(report, "undo")
    assert sorted((b.op, b.step) for b in undos) == sorted(s for s in UNDOABLE if s != ("late", "maybe-fail"))
    assert all(b.start >= failed[0].end for b in undos), "the rollback comes after the failure"
    assert_in_dependency_order(report)
    head = dict(report.header)
    assert head["exit code"] == "1" and head["outcome"] == "apply: rolled_back"
    assert {n.id: n.state for n in report.nodes}["late"] == "failed"
    assert {r.check: r.ok for r in report.verify or []} == {"base: made": True, "plan-level": None}


def run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atomicops.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_canary_secret_appears_nowhere_in_the_report(tmp_path: Path) -> None:
    canary = "canary-" + uuid.uuid4().hex
    with_secret = {**os.environ, "ATOMICOPS_CANARY": canary}
    without = {k: v for k, v in os.environ.items() if k != "ATOMICOPS_CANARY"}
    assert run_cli(["apply", str(PLAN), "--var", "pause=0.01"], tmp_path, with_secret).returncode == 0
    assert run_cli(["apply", str(PLAN), "--var", "fail=yes", "--env", "f", "--var", "pause=0.01"],
                   tmp_path, with_secret).returncode == 1
    # Written by a process that never resolved the secret: only the journal's sealing keeps it out.
    ok = run_cli(["report", "-o", "ok.html", "--json"], tmp_path, without)
    failed = run_cli(["report", "--env", "f", "-o", "failed.html"], tmp_path, without)
    plan = run_cli(["plan", str(PLAN), "--html", "plan.html"], tmp_path, with_secret)
    for res in (ok, failed, plan):
        assert res.returncode == 0, res.stderr
        assert canary not in res.stdout + res.stderr
    for name in ("ok.html", "failed.html", "plan.html"):
        page = (tmp_path / name).read_text()
        assert canary not in page, name
    assert "token=***" in (tmp_path / "ok.html").read_text(), "the output that held the secret is shown masked"
    assert "${secrets.token}" in (tmp_path / "plan.html").read_text(), "the plan page shows the reference"
    doc = json.loads(ok.stdout)
    assert doc["file"] == "ok.html" and doc["bytes"] == (tmp_path / "ok.html").stat().st_size
    assert len([b for b in doc["report"]["bars"] if b["kind"] == "do"]) == len(STEPS)


def test_report_names_the_runs_it_knows_when_asked_for_another(tmp_path: Path, canary: str) -> None:
    state = str(tmp_path / "j.db")
    api.apply(PLAN, state=state, vars={"pause": "0"})
    with pytest.raises(UsageError, match="no run nope.*latest runs: .*apply"):
        run_report.of_journal(state=state, runs=["nope"])
    run = api.environment(state=state).runs
    only = run_report.of_journal(state=state, runs=list(run))
    assert [r.id for r in only.runs] == list(run)
    with pytest.raises(UsageError, match="no run in its journal"):
        run_report.of_journal(env="empty", state=state)


def test_the_page_holds_its_data_and_escapes_it(tmp_path: Path, canary: str) -> None:
    state = str(tmp_path / "j.db")
    api.apply(PLAN, state=state, vars={"pause": "0"})
    report = run_report.of_journal(state=state)
    report.bars[0].error = "</script><script>alert(1)</script>"
    html = render(report)
    assert html.count("<script") == 2, "the JSON block and the page's script, nothing injected"
    assert "<script>alert(1)" not in html
    assert 'src="http' not in html and "href=\"http" not in html and "@import" not in html
    size = run_report.write(report, tmp_path / "out" / "r.html")
    assert size == (tmp_path / "out" / "r.html").stat().st_size
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.html"], "no temporary file left"


def ev(seq: int, type_: str, ts: float, op: str | None = None, step: str | None = None, run: str = "r",
       **data: object) -> Event:
    return Event(seq=seq, env="e", run_id=run, ts=ts, type=type_, op=op, step=step, data=dict(data))


def test_an_interrupted_step_ends_with_its_run_and_other_runs_are_left_out() -> None:
    events = [
        ev(1, "run_started", 0.0, command="apply"),
        ev(2, "op_started", 0.1, "a", phase="p"),
        ev(3, "step_intent", 0.2, "a", "s", key="e/a/s"),
        ev(4, "step_progress", 0.9, "a", "s", done=1),  # then the process was killed
        ev(5, "run_started", 5.0, run="q", command="resume"),
        ev(6, "step_settled", 5.1, "a", "s", run="q", applied=True, by="probe"),
    ]
    bars, markers = bars_and_markers(events, ["r"])
    assert [(b.status, b.start, b.end, b.phase) for b in bars] == [("in_flight", 0.2, 0.9, "p")]
    assert [m.kind for m in markers] == ["run"]
    bars, _ = bars_and_markers(events, ["q"])
    assert bars == [], "the resume settled the step; the bar is the killed run's"


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 10)), max_size=40))
def test_lanes_never_hold_two_bars_at_once(spans: list[tuple[float, float]]) -> None:
    bars = [Bar("o", f"s{i}", "do", "r", "p", start, start + length, "done") for i, (start, length) in enumerate(spans)]
    lanes = assign_lanes(bars)
    for lane in range(lanes):
        mine = sorted((b for b in bars if b.lane == lane), key=lambda b: (b.start, occupied(b)))
        assert all(occupied(a) <= b.start for a, b in zip(mine, mine[1:], strict=False))
    # As many lanes as bars ever overlapped at one moment (a bar of no length still takes a
    # sliver: it is drawn a few pixels wide), no more.
    most = max((sum(1 for b in bars if b.start <= t.start < occupied(b)) for t in bars), default=0)
    assert lanes == most


def test_an_inventory_diff_becomes_one_row_per_difference() -> None:
    leaks = {"aws": {"ec2.vpcs": {"added": [{"id": "vpc-1"}], "removed": [{"id": "vpc-0"}]}},
             "postgres": {"tables": {"unchecked": {"before": None, "after": "denied"}}}}
    rows = [(r.source, r.kind, r.change, r.what) for r in diff_rows(leaks)]
    assert rows == [("aws", "ec2.vpcs", "added", "vpc-1"), ("aws", "ec2.vpcs", "removed", "vpc-0"),
                    ("postgres", "tables", "unchecked", '{"after": "denied", "before": null}')]
    assert diff_rows({}) == []


def test_a_resume_report_shows_the_killed_run_and_the_resume_that_finished_it(tmp_path: Path) -> None:
    env = {**os.environ, "ATOMICOPS_CANARY": "canary-" + uuid.uuid4().hex, "ATOMICOPS_CRASH_AT": "after_effect:left/two"}
    killed = run_cli(["apply", str(PLAN), "--var", "pause=0.01", "--parallelism", "1"], tmp_path, env)
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    env.pop("ATOMICOPS_CRASH_AT")
    assert run_cli(["resume"], tmp_path, env).returncode == 0
    report = run_report.of_journal(state=str(tmp_path / ".atomicops" / "journal.db"))
    assert [r.command for r in report.runs] == ["apply", "resume"], "the resume with the run it finished"
    apply_run, resume_run = (r.id for r in report.runs)
    interrupted = [b for b in report.bars if b.run == apply_run and (b.op, b.step) == ("left", "two")]
    assert [b.status for b in interrupted] == ["in_flight"]
    # Every step is done once across the two runs, but the interrupted one, which the resume
    # settled (by re-doing it or by its probe) and which may thus appear in both.
    done = [(b.op, b.step) for b in by_kind(report, "do") if b.status == "done"]
    assert sorted(set(done)) == sorted(STEPS) and len(done) == len(set(done))
    assert all(b.run == resume_run for b in by_kind(report, "do") if b.op == "late")
    head = dict(report.header)
    assert head["outcome"] == f"apply: interrupted, finished by run {resume_run} → resume: succeeded"
    assert head["exit code"] == "0"


def test_a_fired_trigger_is_marked_where_it_fired_and_phases_band_their_bars() -> None:
    from atomicops.report.from_journal import build

    events = [
        ev(1, "run_started", 0.0, command="apply", host="h", pid=1, user="ana"),
        ev(2, "op_started", 0.1, "a", phase="infra", phase_index=0),
        ev(3, "step_intent", 0.2, "a", "s", key="e/a/s"),
        ev(4, "step_done", 0.5, "a", "s", outputs={"id": "x-1"}),
        ev(5, "op_applied", 0.6, "a"),
        ev(6, "op_started", 0.7, "b", phase="data", phase_index=1, depends_on=["a"]),
        ev(7, "step_intent", 0.8, "b", "t", key="e/b/t"),
        ev(8, "trigger_fired", 0.9, check="error-alarm", during="apply", observed="StateValue: expected not ALARM, got ALARM"),
        ev(9, "step_done", 1.0, "b", "t"),
        ev(10, "undo_intent", 1.1, "b", "t"),
        ev(11, "undo_done", 1.2, "b", "t", already_gone=True),
        ev(12, "op_undone", 1.25, "b"),
        ev(13, "undo_intent", 1.3, "a", "s"),
        ev(14, "undo_done", 1.4, "a", "s"),
        ev(15, "op_undone", 1.45, "a"),
        ev(16, "run_finished", 1.5, outcome="rolled_back"),
    ]
    report = build("e", events)  # no recorded plan: the graph comes from the journal's state
    trigger = [m for m in report.markers if m.kind == "trigger"]
    assert [(m.ts, m.label) for m in trigger] == [(0.9, "trigger error-alarm fired (apply)")]
    assert "got ALARM" in trigger[0].detail
    assert [(n.id, n.state, n.column) for n in report.nodes] == [("a", "rolled_back", 0), ("b", "rolled_back", 1)]
    assert report.edges == [("a", "b")] and report.phases == ["infra", "data"]
    for band in report.bands:
        inside = [b for b in report.bars if (b.run, b.phase, b.kind) == (band.run, band.phase, band.kind)]
        assert inside and all(band.start <= b.start and b.end <= band.end for b in inside)
    assert [b.note for b in report.bars if b.kind == "undo"] == ["already gone", None]
    head = dict(report.header)
    assert head["who"] == "ana@h (pid 1)" and head["exit code"] == "1" and head["plan"] == "(no recorded plan)"
    html = render(report)
    assert html.count('class="mark trigger"') == 1 and html.count('class="bar undo undone"') == 2
