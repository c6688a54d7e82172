"""`rehearse` of the quickstart (AWS + PostgreSQL + JetStream) on one sandbox for the module,
and the inventory diff, through the CLI, catching what a rollback would have left behind.

``rehearse`` keeps a sandbox it found already up, so every rehearsal here runs on the module's
sandbox and leaves it running for the next test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import yaml
from fixtures_flagship import scratch_sandbox

from atomicops import api, sandbox
from atomicops.actions.nats_connection import NatsConnection
from atomicops.errors import EXIT_FAILED, EXIT_OK, EXIT_ROLLBACK_INCOMPLETE
from atomicops.rehearsal import RehearsalReport, rehearse

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
QUICKSTART_OPS = sorted(op.id for op in api.validate(QUICKSTART).plan.operations)


@pytest.fixture(scope="module")
def sandbox_root() -> Iterator[Path]:
    """One sandbox (moto, PostgreSQL, NATS) for the module, in a directory of its own:
    mkdtemp, not pytest's tmp dirs, for the reason ``fixtures_postgres.server_dir`` gives."""
    with scratch_sandbox("atomicops-test-rehearse-") as root:
        yield root


@pytest.fixture(scope="module")
def sandbox_vars(sandbox_root: Path) -> dict[str, Any]:
    found = sandbox.load(sandbox_root)
    assert found is not None
    return found.vars()


@pytest.fixture(scope="module")
def clean_rehearsal(sandbox_root: Path) -> RehearsalReport:
    return rehearse(QUICKSTART, sandbox_dir=sandbox_root)


def test_quickstart_rehearses_with_no_leak(
    clean_rehearsal: RehearsalReport, sandbox_vars: dict[str, Any]
) -> None:
    report = clean_rehearsal
    assert report.apply_error is None
    assert report.leaks == {}
    assert report.exit_code == EXIT_OK
    assert sorted(report.applied) == sorted(report.undone) == QUICKSTART_OPS
    assert {"data", "events"} <= set(report.applied), "the SQL and NATS operations ran"
    assert report.verify and all(v["ok"] for v in report.verify), report.verify
    checked = {v["check"].split(":")[0] for v in report.verify}
    assert {"data", "events"} <= checked, "the SQL and NATS verify checks ran"
    assert report.sandbox_kept, "a sandbox that was up before the rehearsal stays up"
    assert sandbox.status(Path(report.state).parent)["up"]

    # Not only the inventory says so: the table and the stream are gone.
    with psycopg.connect(sandbox_vars["database_url"]) as conn:
        assert conn.execute("SELECT to_regclass('quickstart_signups')").fetchone() == (None,)
    bus = NatsConnection(sandbox_vars["nats_url"])
    try:
        assert "QUICKSTART" not in {s["config"]["name"] for s in bus.streams()}
    finally:
        bus.close()


def failing_plan(tmp_path: Path, *extra: dict[str, Any]) -> Path:
    """The quickstart, ``extra`` operations, and a last operation that fails."""
    plan = yaml.safe_load((QUICKSTART / "plan.yaml").read_text())
    plan["phases"].append("smoke")
    plan["operations"] += [*extra, {
        "id": "smoke-test",
        "phase": "smoke",
        "title": "a last check that fails, after everything else is applied",
        "steps": [{
            "name": "check",
            "read_only": True,
            "do": {"run": [sys.executable, "-c", "import sys; sys.exit('smoke test failed')"]},
        }],
    }]  # fmt: skip
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    return tmp_path / "plan.yaml"


def test_failing_last_operation_rolls_everything_back(sandbox_root: Path, tmp_path: Path) -> None:
    report = rehearse(failing_plan(tmp_path), sandbox_dir=sandbox_root)

    assert report.apply_error is not None and "smoke-test" in report.apply_error
    assert report.exit_code == EXIT_FAILED
    assert report.leaks == {}
    assert sorted(report.applied) == sorted(report.undone) == QUICKSTART_OPS


def atomicops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atomicops.cli", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **sandbox.aws_env()},
    )  # fmt: skip


def test_inventory_diff_names_each_planted_leftover(
    clean_rehearsal: RehearsalReport,
    sandbox_root: Path,
    sandbox_vars: dict[str, Any],
    tmp_path: Path,
) -> None:
    assert clean_rehearsal.leaks == {}
    vars_file = str(sandbox_root / "vars.yaml")
    tag = uuid.uuid4().hex[:8]
    table, stream, queue = f"leftover_{tag}", f"LEFTOVER_{tag}", f"leftover-{tag}"
    sqs = boto3.client(
        "sqs", endpoint_url=sandbox_vars["aws_endpoint"], region_name=sandbox_vars["region"]
    )
    bus = NatsConnection(sandbox_vars["nats_url"])
    db = psycopg.connect(sandbox_vars["database_url"], autocommit=True)
    queue_url = None
    try:
        # An empty table and an empty stream exist before: what is planted is a row and a
        # message in them, the leftovers a half-undone data step would leave.
        db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
        bus.stream_add({"name": stream, "subjects": [f"{stream.lower()}.>"]})

        taken = atomicops("inventory", "--vars-file", vars_file, "--json")
        assert taken.returncode == 0, taken.stderr
        before = tmp_path / "before.json"
        before.write_text(taken.stdout)
        assert (
            atomicops("inventory", "--vars-file", vars_file, "--diff", str(before)).returncode == 0
        )

        queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        db.execute(f"INSERT INTO {table} VALUES (1, 'left behind')")
        bus.publish(f"{stream.lower()}.orphan", {"left": "behind"})

        found = atomicops("inventory", "--vars-file", vars_file, "--diff", str(before), "--json")
        assert found.returncode == EXIT_FAILED, found.stderr
        doc = json.loads(found.stdout)
        assert doc["clean"] is False
        changes = doc["changes"]
        # Each leftover, and nothing else.
        assert changes.keys() == {"aws", "postgres", "nats"}
        assert changes["aws"] == {"sqs.queues": {"added": [{"id": queue_url}]}}
        assert queue_url.endswith(f"/{queue}")
        (row,) = changes["postgres"]["tables"]["changed"]
        assert changes["postgres"].keys() == {"tables"} and changes["postgres"][
            "tables"
        ].keys() == {"changed"}
        assert row["id"] == f"postgres/public.{table}"
        assert (row["before"]["rows"], row["after"]["rows"]) == (0, 1)
        (message,) = changes["nats"]["jetstream.streams"]["changed"]
        assert changes["nats"].keys() == {"jetstream.streams"}
        assert changes["nats"]["jetstream.streams"].keys() == {"changed"}
        assert message["id"] == stream
        assert (message["before"]["messages"], message["after"]["messages"]) == (0, 1)

        # Without --json, as a person reads it: it fails and names all three.
        shown = atomicops("inventory", "--vars-file", vars_file, "--diff", str(before))
        assert shown.returncode == EXIT_FAILED
        for name in (queue, table, stream):
            assert name in shown.stdout
    finally:
        if queue_url:
            sqs.delete_queue(QueueUrl=queue_url)
        db.execute(f"DROP TABLE IF EXISTS {table}")
        db.close()
        try:
            bus.stream_delete(stream)
        finally:
            bus.close()


def rehearse_cli(plan: Path, sandbox_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atomicops.cli", "rehearse", str(plan), "--dir", str(sandbox_root), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_failed_rehearsal_says_where_it_failed_why_and_what_the_rollback_undid(
    sandbox_root: Path, tmp_path: Path
) -> None:
    plan = failing_plan(tmp_path)

    done = rehearse_cli(plan, sandbox_root, "--json")
    doc = json.loads(done.stdout)
    assert done.returncode == EXIT_FAILED, {k: doc[k] for k in ("failures", "rollback", "leaks")}
    (failure,) = doc["failures"]
    assert (failure["op"], failure["step"]) == ("smoke-test", "check")
    assert "smoke test failed" in failure["error"]
    assert sorted(doc["rollback"]["undone"]) == QUICKSTART_OPS
    assert doc["rollback"]["failed"] == {} and doc["leaks"] == {}

    shown = rehearse_cli(plan, sandbox_root)
    assert shown.returncode == EXIT_FAILED, shown.stderr
    text = " ".join(shown.stdout.split())  # the table may wrap long cells
    assert "operation smoke-test, step check" in text and "smoke test failed" in text
    for op in QUICKSTART_OPS:
        assert op in text


def test_a_rehearsal_whose_undo_fails_names_the_operation_and_the_error(
    sandbox_root: Path, tmp_path: Path
) -> None:
    stubborn = {
        "id": "stubborn",
        "phase": "network",
        "title": "a step whose undo always fails",
        "steps": [{
            "name": "mark",
            "do": {"run": [sys.executable, "-c", "pass"]},
            "undo": {"run": [sys.executable, "-c", "import sys; sys.exit('cannot undo the mark')"]},
        }],
    }  # fmt: skip
    plan = failing_plan(tmp_path, stubborn)

    done = rehearse_cli(plan, sandbox_root, "--json")
    assert done.returncode == EXIT_ROLLBACK_INCOMPLETE, done.stderr
    doc = json.loads(done.stdout)
    assert [(f["op"], f["step"]) for f in doc["failures"]] == [("smoke-test", "check")]
    assert list(doc["rollback"]["failed"]) == ["stubborn"]
    assert "cannot undo the mark" in doc["rollback"]["failed"]["stubborn"]
    assert sorted(doc["rollback"]["undone"]) == QUICKSTART_OPS  # the rest was undone

    shown = rehearse_cli(plan, sandbox_root)
    assert shown.returncode == EXIT_ROLLBACK_INCOMPLETE
    text = " ".join(shown.stdout.split())
    assert "undo failed" in text and "stubborn" in text and "cannot undo the mark" in text
