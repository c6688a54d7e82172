"""Checkpoints: a plan's marks and hand marks in the journal, and `rollback --to NAME`, which
undoes what started after the mark and nothing before it. Against a real PostgreSQL; the
snapshot is a real pg_dump whose undo deletes the dump."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest
from run_cli import cli

from atomicops import api, sandbox
from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.errors import PlanInvalid
from atomicops.rehearsal import FLAGSHIP_PLAN, run_setup
from atomicops.sandbox import postgres

PLAN = Path(__file__).parent / "plans" / "checkpoints.yaml"


def _pg_dump() -> str:
    """pgserver's own pg_dump: the same version as the server (a system one may be older)."""
    return str(postgres.bin_dir() / "pg_dump")


@pytest.fixture
def world(tmp_path, pg_database):
    suffix = uuid.uuid4().hex[:8]

    class World:
        cwd = tmp_path
        dump = tmp_path / "before-data-ck.sql"
        vars = ["--var", f"database_url={pg_database}", "--var", f"suffix={suffix}",
                "--var", f"pg_dump={_pg_dump()}", "--var", f"snapshot_dir={tmp_path}"]

        @staticmethod
        def run(*args: str, crash: str | None = None):
            return cli(*args, "--env", "ck", cwd=tmp_path, crash=crash)

        @staticmethod
        def status() -> dict:
            return json.loads(cli("status", "--json", "--env", "ck", cwd=tmp_path).stdout)

        @staticmethod
        def ops() -> dict[str, str]:
            return {o["id"]: o["status"] for o in World.status()["operations"]}

        @staticmethod
        def marks() -> list[str]:
            return [c["name"] for c in World.status()["checkpoints"]]

        @staticmethod
        def tables() -> set[str]:
            with psycopg.connect(pg_database) as conn:
                rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
                return {r[0] for r in rows}

        @staticmethod
        def rows() -> int:
            with psycopg.connect(pg_database) as conn:
                return conn.execute(f"SELECT count(*) FROM accounts_{suffix}").fetchone()[0]

        @staticmethod
        def verify() -> list[dict]:
            return api.verify(PLAN, env="ck", state=str(tmp_path / ".atomicops" / "journal.db"),
                              vars={"database_url": pg_database, "suffix": suffix, "snapshot_dir": str(tmp_path)})

    World.suffix = suffix  # type: ignore[attr-defined]
    return World


def test_rollback_to_undoes_only_what_started_after_the_mark(world):
    assert world.run("apply", str(PLAN), *world.vars).returncode == 0
    assert world.marks() == ["before-data", "after-rows"]
    assert world.dump.exists() and world.rows() == 2

    back = world.run("rollback", "--to", "before-data")
    assert back.returncode == 0, back.stderr
    assert world.ops() == {"accounts": "applied", "snapshot": "applied", "rows": "rolled_back",
                           "after-rows": "rolled_back", "audit": "rolled_back"}
    # What was applied before the mark is there and passes its checks; the data change is not.
    assert f"accounts_{world.suffix}" in world.tables() and f"audit_{world.suffix}" not in world.tables()
    assert world.rows() == 0
    checks = world.verify()
    assert checks and all(c["ok"] for c in checks), checks
    assert world.dump.exists()  # the checkpoint's own snapshot stays: it is what the mark is
    # The mark returned to stays; the one it went back past is gone.
    assert world.marks() == ["before-data"]

    # Applying again re-marks after-rows; a full rollback then removes the snapshot too.
    assert world.run("apply", str(PLAN), *world.vars).returncode == 0
    assert world.marks() == ["before-data", "after-rows"]
    assert world.run("rollback").returncode == 0
    assert not world.dump.exists()  # the snapshot step's undo deleted the dump
    assert world.marks() == []
    assert world.tables() == set()


def test_rollback_to_a_pure_mark_keeps_everything_before_it(world):
    assert world.run("apply", str(PLAN), *world.vars).returncode == 0
    done = world.run("rollback", "--to", "after-rows", "--json")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["undone"] == ["audit"]
    assert world.ops()["rows"] == "applied" and world.rows() == 2
    assert world.marks() == ["before-data", "after-rows"]


def test_a_hand_mark_and_its_refusals(world):
    assert world.run("apply", str(PLAN), *world.vars, "--target", "accounts").returncode == 0
    marked = world.run("checkpoint", "by-hand", "--json")
    assert marked.returncode == 0, marked.stdout
    doc = json.loads(marked.stdout)["checkpoint"]
    assert doc["name"] == "by-hand" and doc["by"] == "hand" and doc["op"] is None

    again = world.run("checkpoint", "by-hand", "--json")
    assert again.returncode == 2 and json.loads(again.stdout)["type"] == "CheckpointExists"
    # The plan's own mark name is taken too: it will be marked when its operation completes.
    theirs = world.run("checkpoint", "before-data")
    assert theirs.returncode == 2 and "snapshot" in theirs.stderr
    assert world.run("checkpoint", "no/slash").returncode == 2

    assert world.run("apply", str(PLAN), *world.vars).returncode == 0
    assert world.marks() == ["by-hand", "before-data", "after-rows"]
    assert world.run("rollback", "--to", "by-hand").returncode == 0
    assert world.ops() == {"accounts": "applied", "snapshot": "rolled_back", "rows": "rolled_back",
                           "after-rows": "rolled_back", "audit": "rolled_back"}
    assert not world.dump.exists()
    assert world.marks() == ["by-hand"]  # the plan's marks were rolled back past


def test_an_unknown_checkpoint_is_refused_with_the_known_ones(world):
    assert world.run("apply", str(PLAN), *world.vars).returncode == 0
    refused = world.run("rollback", "--to", "nope", "--json")
    assert refused.returncode == 2
    doc = json.loads(refused.stdout)
    assert doc["type"] == "UnknownCheckpoint"
    assert "before-data, after-rows" in doc["error"]
    assert set(world.ops().values()) == {"applied"}  # nothing ran
    assert world.run("rollback", "--to", "before-data", "--target", "rows").returncode == 2


@pytest.mark.both_stores
def test_a_killed_rollback_to_is_finished_by_resume(world):
    assert world.run("apply", str(PLAN), *world.vars).returncode == 0
    killed = world.run("rollback", "--to", "before-data", crash="inside_undo:rows/insert")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    assert world.ops()["rows"] == "rolling_back"
    resumed = world.run("resume")
    assert resumed.returncode == 0, resumed.stderr
    # The same partial rollback, not a full one: what is before the mark stays applied.
    assert world.ops() == {"accounts": "applied", "snapshot": "applied", "rows": "rolled_back",
                           "after-rows": "rolled_back", "audit": "rolled_back"}
    assert world.dump.exists() and world.rows() == 0
    assert world.marks() == ["before-data"]


def test_a_mark_a_killed_apply_did_not_write_is_written_by_resume(world):
    killed = world.run("apply", str(PLAN), *world.vars, crash="before_checkpoint:snapshot")
    assert killed.returncode == CRASH_EXIT_CODE
    assert world.marks() == []
    assert world.run("resume").returncode == 0
    marks = {c["name"]: c for c in world.status()["checkpoints"]}
    assert list(marks) == ["before-data", "after-rows"]
    assert marks["before-data"]["by"] == "resume"
    # It stands where the snapshot completed, before the rows the resume applied.
    assert world.run("rollback", "--to", "before-data").returncode == 0
    assert world.ops()["snapshot"] == "applied" and world.ops()["rows"] == "rolled_back"


def test_status_and_history_show_the_marks(world):
    assert world.run("apply", str(PLAN), *world.vars).returncode == 0
    text = world.run("status").stdout
    assert "checkpoint before-data: seq" in text and "by operation snapshot" in text
    assert world.run("rollback", "--to", "before-data").returncode == 0
    history = world.run("history").stdout
    assert "checkpoint" in history and "before-data at seq" in history
    assert "checkpoint_dropped" in history and "after-rows" in history
    events = json.loads(world.run("history", "--json").stdout)
    dropped = [e for e in events if e["type"] == "checkpoint_dropped"]
    assert [e["data"]["name"] for e in dropped] == ["after-rows"]
    assert "after-rows undone" in dropped[0]["data"]["reason"]
    rb = [e for e in events if e["type"] == "run_started" and e["data"].get("command") == "rollback"]
    assert rb[-1]["data"]["options"]["to"] == "before-data"


def _plan(tmp_path: Path, ops: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text("atomicops: 1\nname: marks\noperations:\n" + ops)
    return path


STEP = "    steps: [{name: s, do: {run: [\"true\"]}, read_only: true}]\n"


def test_validation_names_the_line_and_operation_of_a_bad_mark(tmp_path):
    dup = _plan(tmp_path, "  - id: a\n    checkpoint: m\n" + STEP + "  - id: b\n    checkpoint: m\n")
    with pytest.raises(PlanInvalid) as caught:
        api.validate(dup)
    [problem] = caught.value.problems
    assert problem.op == "b" and problem.line == 8 and "already marked by operation 'a'" in problem.message

    bad = _plan(tmp_path, "  - id: a\n    checkpoint: 'no/slash'\n" + STEP)
    with pytest.raises(PlanInvalid) as caught:
        api.validate(bad)
    assert caught.value.problems[0].op == "a" and "checkpoint" in (caught.value.problems[0].key or "")

    empty = _plan(tmp_path, "  - id: a\n    title: nothing\n")
    with pytest.raises(PlanInvalid) as caught:
        api.validate(empty)
    assert "pure mark" in str(caught.value)

    pure = _plan(tmp_path, "  - id: a\n" + STEP + "  - id: mark\n    depends_on: [a]\n    checkpoint: m\n")
    assert api.validate(pure).plan.operation("mark").steps == []


def test_the_flagship_rolls_back_to_before_data_and_keeps_its_snapshot(monkeypatch):
    # Not under pytest's tmp: as root, PostgreSQL runs as another user and needs to reach it.
    workdir = Path(tempfile.mkdtemp(prefix="atomicops-checkpoints-"))
    workdir.chmod(0o755)
    sb = sandbox.up(workdir / "sandbox")
    for k, v in sandbox.aws_env().items():
        monkeypatch.setenv(k, v)
    try:
        given = {**sb.vars(), "discovery_messages": 20}
        local = run_setup(api.validate(FLAGSHIP_PLAN, vars=given), lambda text: None)
        loaded = api.validate(FLAGSHIP_PLAN, vars={**given, **local})
        state = str(workdir / "journal.db")
        api.apply(loaded, env="fl", state=state, monitor=0)
        [mark] = api.status(env="fl", state=state)["checkpoints"]
        assert (mark["name"], mark["op"]) == ("before-data", "checkpoint")

        report = api.rollback(env="fl", state=state, to="before-data")
        data_phase = {"schema", "dynamodb", "cutover", "state-import", "stream-copy"}
        assert set(report.undone) == data_phase
        ops = {o["id"]: o["status"] for o in api.status(env="fl", state=state)["operations"]}
        assert {o for o, s in ops.items() if s == "rolled_back"} == data_phase
        # Everything before the mark is applied and still passes its verify checks.
        checks = api.verify(loaded, env="fl", state=state)
        assert checks and all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
        rds = boto3.client("rds", region_name=given["region"], endpoint_url=given["aws_endpoint"])
        snapshot = {"DBClusterSnapshotIdentifier": "mistersmith-before-data-fl"}
        assert rds.describe_db_cluster_snapshots(**snapshot)["DBClusterSnapshots"]

        api.rollback(env="fl", state=state)
        with pytest.raises(rds.exceptions.DBClusterSnapshotNotFoundFault):
            rds.describe_db_cluster_snapshots(**snapshot)  # the snapshot step's undo deleted it
        assert api.status(env="fl", state=state)["checkpoints"] == []
    finally:
        sandbox.down(workdir / "sandbox")
        shutil.rmtree(workdir, ignore_errors=True)


def test_an_operation_still_running_at_the_mark_counts_as_started_after_it():
    from atomicops.engine.checkpoints import started_after
    from atomicops.journal.store import Event

    def ev(seq: int, type: str, op: str) -> Event:
        return Event(seq=seq, env="e", run_id="r", ts=float(seq), type=type, op=op)

    events = [ev(1, "op_started", "before"), ev(2, "op_applied", "before"),
              ev(3, "op_started", "straddles"), ev(4, "step_intent", "straddles"),
              ev(5, "op_applied", "mark-op"),  # the mark stands for seq 5
              ev(6, "step_intent", "straddles"), ev(7, "op_started", "after")]
    assert started_after(events, 5) == {"straddles", "after"}
    assert started_after(events, 7) == set()
