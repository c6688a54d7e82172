"""The MisterSmith migration rehearsed end to end on the sandbox, as `atomicops rehearse` runs
it: apply, verify, roll back, and an empty leak diff over AWS, PostgreSQL and JetStream.
Also with a late operation failing, and a small sample of the crash soak."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from atomicops import api, sandbox
from atomicops.engine.apply import step_key
from atomicops.engine.ownership import proves_ownership
from atomicops.engine.probe import ProbeAnswer, probe
from atomicops.engine.resume import outputs_before
from atomicops.engine.runtime import open_runtime
from atomicops.journal.state import EnvState
from atomicops.plan.loader import LoadedPlan
from atomicops.rehearsal import FLAGSHIP_PLAN, run_setup

ROOT = Path(__file__).resolve().parents[1]


def rehearse(*args: str, cwd: Path) -> tuple[int, dict]:
    res = subprocess.run([sys.executable, "-m", "atomicops.cli", "rehearse", "--json", *args],
                         cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    return res.returncode, json.loads(res.stdout)


@pytest.fixture
def workdir():
    # Not under pytest's tmp: as root, PostgreSQL runs as another user and needs to reach it.
    path = Path(tempfile.mkdtemp(prefix="atomicops-flagship-"))
    path.chmod(0o755)
    yield path
    subprocess.run([sys.executable, "-m", "atomicops.cli", "sandbox", "down"], cwd=path, capture_output=True, check=False)


def test_the_whole_migration_rehearses_with_a_clean_leak_check(flagship_rehearsal):
    # No plan: the bundled MisterSmith plan (the session's one rehearsal, tests/fixtures_flagship.py).
    code, report, workdir = flagship_rehearsal.code, flagship_rehearsal.doc, flagship_rehearsal.workdir
    assert code == 0, report
    assert report["plan"] == "mistersmith-aws"
    assert report["operations"] == 24 and report["steps"] >= 60
    assert sorted(report["applied"]) == sorted(report["undone"]) and len(report["applied"]) == 24
    assert report["verify"] and all(v["ok"] for v in report["verify"])
    names = {v["check"] for v in report["verify"]}
    assert {"orchestrator-health", "agents-query", "message-flow", "ecs-services"} <= names
    assert report["leaks"] == {}
    assert not (workdir / ".atomicops" / "sandbox" / "state.json").exists()  # sandbox down
    assert report["report_file"] == str(flagship_rehearsal.report) and flagship_rehearsal.report.is_file()


def test_a_late_failure_rolls_everything_back_with_a_clean_leak_check(workdir):
    # The exported state file is missing: the state import (data phase) fails.
    code, report = rehearse("--var", "state_file=/nonexistent/state.jsonl", cwd=workdir)
    assert code == 1, report
    assert "state-import" in report["apply_error"]
    assert len(report["undone"]) == len(report["applied"]) > 15
    assert report["leaks"] == {}


def test_a_crash_soak_sample():
    # On the team journal (a database of the PostgreSQL the plan migrates into): the SQLite
    # journal's soak runs in tests/test_bench_smoke.py.
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "crash_soak.py"), "--trials", "2",
                          "--messages", "60", "--seed", "7", "--store", "postgresql", "--json"],
                         capture_output=True, text=True, timeout=600, check=False)
    doc = json.loads(res.stdout)
    assert res.returncode == 0, doc
    assert doc["figures"]["trials"] == 2 and doc["store"] == "postgresql"
    assert doc["figures"].get("leaks", 0) == 0 and doc["figures"].get("duplicates", 0) == 0
    assert doc["figures"].get("corrupt journals", 0) == 0


def probe_all(loaded: LoadedPlan, journal: EnvState, env: str) -> dict[str, ProbeAnswer]:
    """Every step's probe, as ``resume`` runs it for a step in flight in ``env``: ``${self...}``
    and ``${ops...}`` are what ``journal`` recorded."""
    def ops_outputs(op_id: str) -> dict:
        found: dict = {}
        for st in journal.ops[op_id].steps.values():
            found.update(st.outputs)
        return found

    rt = open_runtime(loaded.plan, env=env, run_id="probes", base_dir=loaded.base_dir, ops_outputs=ops_outputs)
    try:
        return {
            f"{op.id}/{s.name}": probe(rt, s, outputs_before(op, journal.ops[op.id], s), step_key(env, op.id, s.name), op.id)
            for op in loaded.plan.operations for s in op.steps if s.probe is not None
        }  # fmt: skip
    finally:
        rt.close()


def test_every_probe_finds_what_its_step_made_and_nothing_it_did_not(workdir, monkeypatch):
    root = workdir / "sandbox"
    sb = sandbox.up(root)
    for k, v in sandbox.aws_env().items():
        monkeypatch.setenv(k, v)
    try:
        given = {**sb.vars(), "discovery_messages": 20}
        local = run_setup(api.validate(FLAGSHIP_PLAN, vars=given), lambda text: None)
        loaded = api.validate(FLAGSHIP_PLAN, vars={**given, **local})
        state = str(workdir / "journal.db")
        api.apply(loaded, env="a", state=state, monitor=0)  # the flagship's window is 10 minutes
        journal = api.environment("a", state)
        owned = {f"{op.id}/{s.name}" for op in loaded.plan.operations for s in op.steps
                 if s.probe is not None and proves_ownership(s, op)}  # fmt: skip

        # Its own environment: each probe finds what its step made, with the same outputs.
        # Two exceptions: after the cutover the orchestrator family's latest revision is the
        # cutover's (that probe only runs before it); moto ignores the tags create_bucket
        # is given, so the bucket's probe finds no tag here (on AWS it does).
        mine = probe_all(loaded, journal, "a")
        for where, answer in mine.items():
            op, _, step = where.partition("/")
            if where not in ("task-definitions/orchestrator", "artifacts-bucket/bucket"):
                assert answer.found is True, (where, answer.why)
                assert answer.outputs == journal.ops[op].steps[step].outputs, where

        # Another environment with the same plan: what environment a made carries a's tags,
        # so no probe that proves ownership by the tag takes it.
        theirs = probe_all(loaded, journal, "b")
        by_tag = {w for w in owned if "${step.key}" in json.dumps(_probe_of(loaded, w))}
        assert by_tag and {w for w in by_tag if theirs[w].found is not False} == set()

        # After the rollback nothing is found, and every probe says so (no probe that cannot
        # tell): a deleted resource that is still listed (a VPC endpoint) is not taken.
        api.rollback(env="a", state=state)
        after = probe_all(loaded, journal, "a")
        left = {w: a.why for w, a in after.items() if a.found is not False}
        assert left.keys() == {"stream-copy/claim-range"}, left  # it reads the source stream
    finally:
        sandbox.down(root)


def _probe_of(loaded: LoadedPlan, where: str) -> dict:
    op, _, step = where.partition("/")
    return next(s.probe for s in loaded.plan.operation(op).steps if s.name == step) or {}
