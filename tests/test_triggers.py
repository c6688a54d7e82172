"""Rollback triggers against the real sandbox servers (moto, PostgreSQL, NATS, a local HTTP
server), with short windows: each kind fires and rolls the run back, a quiet trigger lets
the run finish, `failures: N` needs N misses, the window ends on time, a firing after the
apply rolls back, `atomicops monitor` rolls back on fire, and a writing check is refused.

Each plan "breaks" the watched system from one of its own steps (the way a bad deployment
would), then sleeps a little so the trigger fires while that operation is still running:
the operation after it must never start.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import nats
import psycopg
import pytest
import yaml
from run_cli import cli

from atomicops import api
from atomicops.actions import registry
from atomicops.engine.runtime import open_runtime
from atomicops.engine.secrets import REDACTED
from atomicops.engine.triggers import Watcher
from atomicops.errors import PlanInvalid, TriggerFired

POLL = 0.2


# -- the watched systems --------------------------------------------------------------------


class Health:
    """A local service whose /health answers 200 {"status": "healthy"} until POST /break."""

    def __init__(self) -> None:
        self.healthy = True
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/whoami":  # echoes the caller's credentials, as a careless service may
                    self._answer(200, {"auth": self.headers.get("Authorization")})
                    return
                code, body = (200, {"status": "healthy"}) if health.healthy else (503, {"status": "failing"})
                self._answer(code, body)

            def do_POST(self) -> None:
                health.healthy = self.path == "/fix"
                self._answer(200, {"healthy": health.healthy})

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[Health]:
    h = Health()
    yield h
    h.close()


@pytest.fixture
def alarm(moto_endpoint: str) -> tuple[Any, str]:
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_endpoint)
    name = f"errors-{uuid.uuid4().hex[:8]}"
    cw.put_metric_alarm(AlarmName=name, MetricName="Errors", Namespace="Test", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    return cw, name


@pytest.fixture
def health_table(pg_database: str) -> str:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE health (status text NOT NULL)")
        conn.execute("INSERT INTO health VALUES ('ok')")
    return pg_database


@pytest.fixture
def stream(nats_url: str) -> Iterator[str]:
    name = f"EVENTS_{uuid.uuid4().hex[:8]}"

    async def add() -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"])
        await nc.close()

    async def delete() -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().delete_stream(name)
        await nc.close()

    asyncio.run(add())
    yield name
    asyncio.run(delete())


# -- plans ----------------------------------------------------------------------------------


def write_plan(tmp: Path, check: dict[str, Any], *, breaker: dict[str, Any] | None = None,
               fixer: dict[str, Any] | None = None, connections: dict[str, Any] | None = None,
               minutes: float = 0, settle: float = 1.5) -> Path:
    """first -> broken -> later, each touching a file its undo removes. ``breaker`` (with its
    undo ``fixer``) is the second operation's first step; then it sleeps ``settle`` seconds."""
    out = tmp / "out"
    out.mkdir(exist_ok=True)

    def touch(name: str) -> dict[str, Any]:
        return {"name": "touch", "do": {"run": ["touch", str(out / name)]}, "undo": {"run": ["rm", "-f", str(out / name)]}}

    broken_steps: list[dict[str, Any]] = [touch("broken")]
    if breaker is not None:
        broken_steps.insert(0, {"name": "break", "do": breaker, "undo": fixer})
    broken_steps.append({"name": "settle", "read_only": True, "do": {"run": ["sleep", str(settle)]}})
    plan = {
        "atomicops": 1,
        "name": "triggered",
        "connections": connections or {},
        "triggers": {"monitor_minutes": minutes, "poll_seconds": POLL, "checks": [check]},
        "operations": [
            {"id": "first", "steps": [touch("first")]},
            {"id": "broken", "depends_on": ["first"], "steps": broken_steps},
            {"id": "later", "depends_on": ["broken"], "steps": [touch("later")]},
        ],
    }
    path = tmp / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def events(state: str, env: str = "default", kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in api.history(env=env, state=state) if kind is None or e["type"] == kind]


def left(tmp: Path) -> list[str]:
    return sorted(p.name for p in (tmp / "out").iterdir())


# -- each kind fires during the apply and rolls the run back --------------------------------


def aws_case(request: pytest.FixtureRequest) -> dict[str, Any]:
    cw, name = request.getfixturevalue("alarm")
    conn = request.getfixturevalue("aws_connection")
    set_state = lambda state: {"aws": "cloudwatch.set_alarm_state", "connection": "aws",
                               "params": {"AlarmName": name, "StateValue": state, "StateReason": "test"}}
    return {
        "check": {"name": "error-alarm", "aws": "cloudwatch.describe_alarms", "connection": "aws",
                  "params": {"AlarmNames": [name]}, "expect": {"MetricAlarms[0].StateValue": {"not": "ALARM"}}},
        "breaker": set_state("ALARM"), "fixer": set_state("OK"), "connections": {"aws": conn},
        "seen": "ALARM",
        "restored": lambda: cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] == "OK",
    }


def http_case(request: pytest.FixtureRequest) -> dict[str, Any]:
    h: Health = request.getfixturevalue("health")
    return {
        "check": {"name": "health", "http": {"url": f"{h.url}/health"}, "expect": {"json.status": "healthy"}},
        "breaker": {"http": {"method": "POST", "url": f"{h.url}/break"}},
        "fixer": {"http": {"method": "POST", "url": f"{h.url}/fix"}},
        "seen": "503", "restored": lambda: h.healthy,
    }


def sql_case(request: pytest.FixtureRequest) -> dict[str, Any]:
    url = request.getfixturevalue("health_table")

    def status() -> str:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT status FROM health").fetchone()
            assert row is not None
            return str(row[0])

    return {
        "check": {"name": "db-health", "sql": "SELECT status FROM health", "connection": "db",
                  "expect": {"rows[0].status": "ok"}},
        "breaker": {"sql": "UPDATE health SET status = 'bad'", "connection": "db"},
        "fixer": {"sql": "UPDATE health SET status = 'ok'", "connection": "db"},
        "connections": {"db": {"kind": "postgres", "dsn": url}},
        "seen": "bad", "restored": lambda: status() == "ok",
    }


def nats_case(request: pytest.FixtureRequest) -> dict[str, Any]:
    name = request.getfixturevalue("stream")
    conn = request.getfixturevalue("nats_connection")

    def count() -> int:
        async def go() -> int:
            nc = await nats.connect(conn["url"])
            info = await nc.jetstream().stream_info(name)
            await nc.close()
            return int(info.state.messages)

        return asyncio.run(go())

    return {
        "check": {"name": "no-dead-letters", "nats": {"stream_info": {"name": name}}, "connection": "bus",
                  "expect": {"state.messages": 0}},
        "breaker": {"nats": {"publish": {"subject": f"{name}.dead", "data": "x", "jetstream": True}},
                    "connection": "bus"},
        "fixer": {"nats": {"stream_purge": {"name": name}}, "connection": "bus"},
        "connections": {"bus": conn},
        "seen": "state.messages", "restored": lambda: count() == 0,
    }


CASES: dict[str, Callable[[pytest.FixtureRequest], dict[str, Any]]] = {
    "aws": aws_case, "http": http_case, "sql": sql_case, "nats": nats_case,
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_kind_of_trigger_fires_during_apply_and_rolls_the_run_back(kind, request, tmp_path):
    case = CASES[kind](request)
    plan = write_plan(tmp_path, case["check"], breaker=case["breaker"], fixer=case["fixer"],
                      connections=case.get("connections"))
    state = str(tmp_path / "journal.db")
    with pytest.raises(TriggerFired) as caught:
        api.apply(plan, state=state)
    fired = caught.value
    assert fired.check == case["check"]["name"] and case["seen"] in fired.observed
    assert fired.exit_code == 1 and not fired.kept
    # The operation running finished (its undo then ran); the one after it never started.
    assert left(tmp_path) == []
    ops = {e["op"] for e in events(state, kind="op_started")}
    assert ops == {"first", "broken"}
    assert case["restored"]()  # the breaking step was undone too
    (started,) = events(state, kind="monitor_started")
    assert started["data"]["poll_seconds"] == POLL
    (trig,) = events(state, kind="trigger_fired")
    assert trig["data"]["check"] == fired.check and trig["data"]["during"] == "apply"
    (ended,) = events(state, kind="monitor_ended")
    assert ended["data"]["reason"] == "fired"
    order = [e["type"] for e in events(state)]
    assert order.index("trigger_fired") < order.index("op_undone")
    assert events(state, kind="run_finished")[-1]["data"]["outcome"] == "rolled_back"


def test_with_on_failure_keep_a_fired_trigger_stops_the_run_and_keeps_what_it_applied(request, tmp_path):
    case = http_case(request)
    plan = write_plan(tmp_path, case["check"], breaker=case["breaker"], fixer=case["fixer"])
    state = str(tmp_path / "journal.db")
    with pytest.raises(TriggerFired) as caught:
        api.apply(plan, state=state, on_failure="keep")
    assert caught.value.kept
    assert left(tmp_path) == ["broken", "first"]
    st = {o["id"]: o["status"] for o in api.status(state=state)["operations"]}
    assert st == {"first": "applied", "broken": "applied"}


# -- quiet triggers, INSUFFICIENT_DATA, the window ------------------------------------------


def test_a_quiet_trigger_lets_the_run_finish_and_the_window_ends_on_time(alarm, aws_connection, tmp_path):
    # INSUFFICIENT_DATA is not ALARM: `{not: ALARM}` passes and nothing fires.
    cw, name = alarm
    cw.set_alarm_state(AlarmName=name, StateValue="INSUFFICIENT_DATA", StateReason="no data yet")
    check = {"name": "error-alarm", "aws": "cloudwatch.describe_alarms", "connection": "aws",
             "params": {"AlarmNames": [name]}, "expect": {"MetricAlarms[0].StateValue": {"not": "ALARM"}}}
    plan = write_plan(tmp_path, check, connections={"aws": aws_connection}, settle=0.1)
    state = str(tmp_path / "journal.db")
    window = 0.05  # minutes: 3 s
    t0 = time.monotonic()
    report = api.apply(plan, state=state, monitor=window)
    took = time.monotonic() - t0
    assert sorted(report.applied) == ["broken", "first", "later"]
    assert left(tmp_path) == ["broken", "first", "later"]
    (ended,) = events(state, kind="monitor_ended")
    assert ended["data"]["reason"] == "elapsed"
    (view,) = ended["data"]["checks"]
    assert view["state"] == "ok" and view["misses"] == 0 and view["polls"] >= 10
    assert "INSUFFICIENT_DATA" in view["last"]
    # The window is measured from the end of the apply: 3 s, plus the apply, plus a poll.
    applied_at = events(state, kind="op_applied")[-1]["ts"]
    assert 3.0 <= ended["ts"] - applied_at < 3.0 + 1.0
    assert took < 3.0 + 6.0
    assert not events(state, kind="trigger_fired")


def test_a_reapply_that_changes_nothing_polls_nothing_and_waits_no_window(health, tmp_path):
    check = {"name": "health", "http": {"url": f"{health.url}/health"}, "expect": {"json.status": "healthy"}}
    plan = write_plan(tmp_path, check, settle=0.1, minutes=10)
    state = str(tmp_path / "journal.db")
    api.apply(plan, state=state, monitor=0)
    t0 = time.monotonic()
    again = api.apply(plan, state=state)  # the plan's 10-minute window would apply
    assert again.applied == [] and time.monotonic() - t0 < 10
    assert [e["run"] for e in events(state, kind="monitor_started")] != [again.run_id]
    assert len(events(state, kind="monitor_started")) == 1


def test_insufficient_data_fires_only_when_the_check_says_so(alarm, aws_connection, tmp_path):
    cw, name = alarm
    cw.set_alarm_state(AlarmName=name, StateValue="INSUFFICIENT_DATA", StateReason="no data yet")
    base = {"aws": "cloudwatch.describe_alarms", "connection": "aws", "params": {"AlarmNames": [name]}}
    strict = {**base, "name": "must-be-ok", "expect": {"MetricAlarms[0].StateValue": "OK"}}
    lenient = {**base, "name": "not-alarm", "expect": {"MetricAlarms[0].StateValue": {"not": "ALARM"}}}
    watcher = watcher_for(tmp_path, [lenient, strict], {"aws": aws_connection})
    try:
        firing = watcher.poll_once()
    finally:
        watcher.close()
    assert firing is not None and firing.check == "must-be-ok"
    assert "INSUFFICIENT_DATA" in firing.observed
    assert [v.state for v in watcher.views] == ["ok", "miss"]


def watcher_for(tmp: Path, checks: list[dict[str, Any]], connections: dict[str, Any]) -> Watcher:
    plan = write_plan(tmp, checks[0], connections=connections)
    raw = yaml.safe_load(plan.read_text())
    raw["triggers"]["checks"] = checks
    plan.write_text(yaml.safe_dump(raw))
    loaded = api.validate(plan)
    assert loaded.plan.triggers is not None
    rt = open_runtime(loaded.plan, env="t", run_id="watch", base_dir=loaded.base_dir)
    return Watcher(loaded.plan.triggers, rt, env="t", run_id="watch", base_dir=loaded.base_dir, on_fire=lambda f: None)


def test_failures_3_needs_three_misses_in_a_row(health_table, tmp_path):
    check = {"name": "db-health", "sql": "SELECT status FROM health", "connection": "db",
             "expect": {"rows[0].status": "ok"}, "failures": 3}
    watcher = watcher_for(tmp_path, [check], {"db": {"kind": "postgres", "dsn": health_table}})

    def set_status(value: str) -> None:
        with psycopg.connect(health_table, autocommit=True) as conn:
            conn.execute("UPDATE health SET status = %s", (value,))

    try:
        set_status("bad")
        assert watcher.poll_once() is None and watcher.poll_once() is None  # two misses
        set_status("ok")
        assert watcher.poll_once() is None  # a pass resets the count
        assert watcher.views[0].misses == 0
        set_status("bad")
        assert watcher.poll_once() is None and watcher.poll_once() is None
        firing = watcher.poll_once()
    finally:
        watcher.close()
    assert firing is not None and firing.misses == 3 and "bad" in firing.observed


def test_a_trigger_that_fires_in_the_window_after_apply_rolls_the_run_back(health, tmp_path):
    check = {"name": "health", "http": {"url": f"{health.url}/health"}, "expect": {"json.status": "healthy"}}
    plan = write_plan(tmp_path, check, settle=0.1)
    state = str(tmp_path / "journal.db")

    class BreakWhenWatching:
        """The service falls over once the apply is done and the window starts."""

        def event(self, ev: Any) -> None:
            return None

        def note(self, text: str, *, level: str = "info") -> None:
            if text.startswith("applied; watching"):
                health.healthy = False

    with pytest.raises(TriggerFired) as caught:
        api.apply(plan, state=state, monitor=0.5, observer=BreakWhenWatching())
    assert caught.value.check == "health" and "503" in caught.value.observed
    assert caught.value.during == "window" and "in the window after the apply" in str(caught.value)
    assert left(tmp_path) == []  # all three operations applied, then rolled back
    (trig,) = events(state, kind="trigger_fired")
    assert trig["data"]["during"] == "window"
    assert {e["op"] for e in events(state, kind="op_undone")} == {"first", "broken", "later"}


# -- atomicops monitor ----------------------------------------------------------------------


def test_monitor_rolls_back_what_the_last_apply_applied_when_a_trigger_fires(stream, nats_connection, tmp_path):
    check = {"name": "no-dead-letters", "nats": {"stream_info": {"name": stream}}, "connection": "bus",
             "expect": {"state.messages": 0}}
    plan = write_plan(tmp_path, check, connections={"bus": nats_connection}, settle=0.1)
    state = str(tmp_path / "journal.db")
    applied = api.apply(plan, state=state, monitor=0)
    assert left(tmp_path) == ["broken", "first", "later"]

    class DeadLetterOnFirstStatus:
        """A message lands in the dead-letter stream once the watch is under way."""

        def __init__(self) -> None:
            self.sent = False

        def event(self, ev: Any) -> None:
            return None

        def note(self, text: str, *, level: str = "info") -> None:
            if text.startswith("monitoring:") and not self.sent:
                self.sent = True

                async def publish() -> None:
                    nc = await nats.connect(nats_connection["url"])
                    await nc.jetstream().publish(f"{stream}.dead", b"x")
                    await nc.close()

                asyncio.run(publish())

    with pytest.raises(TriggerFired) as caught:
        api.monitor(state=state, minutes=0.5, observer=DeadLetterOnFirstStatus())
    assert caught.value.check == "no-dead-letters" and caught.value.during == "monitor"
    assert "state.messages" in caught.value.observed
    assert left(tmp_path) == []
    monitor_run = caught.value.run_id
    assert monitor_run != applied.run_id
    (trig,) = events(state, kind="trigger_fired")
    assert trig["run"] == monitor_run and trig["data"]["during"] == "monitor"
    undone = {e["op"] for e in events(state, kind="op_undone") if e["run"] == monitor_run}
    assert undone == {"first", "broken", "later"}


def test_monitor_cli_watches_quietly_reports_each_check_and_leaves_everything_applied(health, tmp_path):
    check = {"name": "health", "http": {"url": f"{health.url}/health"}, "expect": {"json.status": "healthy"}}
    plan = write_plan(tmp_path, check, settle=0.1)
    assert cli("apply", str(plan), "--monitor", "0", cwd=tmp_path).returncode == 0
    t0 = time.monotonic()
    res = cli("monitor", "--minutes", "0.02", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 >= 1.2
    doc = json.loads(res.stdout)
    assert doc["ended"] == "elapsed" and doc["fired"] is None
    (view,) = doc["checks"]
    assert view["name"] == "health" and view["state"] == "ok" and 'json.status="healthy"' in view["last"]
    assert left(tmp_path) == ["broken", "first", "later"]


def test_monitor_cli_rolls_back_on_fire_with_exit_1(health, tmp_path):
    check = {"name": "health", "http": {"url": f"{health.url}/health"}, "expect": {"json.status": "healthy"}}
    plan = write_plan(tmp_path, check, settle=0.1)
    assert cli("apply", str(plan), "--monitor", "0", cwd=tmp_path).returncode == 0
    health.healthy = False
    res = cli("monitor", "--minutes", "1", "--json", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert doc["type"] == "TriggerFired" and doc["trigger"]["check"] == "health"
    assert "503" in doc["trigger"]["observed"]
    assert left(tmp_path) == []
    trail = cli("history", cwd=tmp_path).stdout
    fired = next(line for line in trail.splitlines() if "trigger_fired" in line)
    assert "health (monitor): " in fired and "503" in fired


def test_ctrl_c_ends_the_monitoring_and_never_the_environment(health, tmp_path):
    check = {"name": "health", "http": {"url": f"{health.url}/health"}, "expect": {"json.status": "healthy"}}
    plan = write_plan(tmp_path, check, settle=0.1)
    assert cli("apply", str(plan), "--monitor", "0", cwd=tmp_path).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "atomicops.cli", "monitor", "--minutes", "5"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # the first status line: the watch is under way
        if "monitoring:" in line:
            assert "left" in line and "health" in line
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert "the watch ends; everything stays applied" in err
    assert "ended by Ctrl-C" in out and "everything stays applied" in out
    assert left(tmp_path) == ["broken", "first", "later"]
    state = str(tmp_path / ".atomicops" / "journal.db")
    assert events(state, kind="monitor_ended")[-1]["data"]["reason"] == "interrupted"
    assert not events(state, kind="op_undone")


def test_what_a_trigger_saw_is_journalled_with_secrets_masked(health, tmp_path, monkeypatch):
    token = "tok-" + uuid.uuid4().hex + uuid.uuid4().hex
    monkeypatch.setenv("TRIGGER_TEST_TOKEN", token)
    check = {"name": "whoami", "http": {"url": f"{health.url}/whoami", "headers": {"Authorization": "${secrets.token}"}},
             "expect": {"json.auth": "nobody"}}
    plan = write_plan(tmp_path, check, settle=0.1)
    raw = yaml.safe_load(plan.read_text())
    raw["secrets"] = {"token": {"env": "TRIGGER_TEST_TOKEN"}}
    plan.write_text(yaml.safe_dump(raw, sort_keys=False))
    state = str(tmp_path / "journal.db")
    with pytest.raises(TriggerFired) as caught:
        api.apply(plan, state=state)
    assert token not in caught.value.observed and caught.value.observed == f"json.auth: expected nobody, got {REDACTED}"
    (trig,) = events(state, kind="trigger_fired")
    assert token not in json.dumps(trig) and trig["data"]["observed"] == caught.value.observed
    assert token.encode() not in Path(state).read_bytes()


# -- the read-only rule ---------------------------------------------------------------------


@pytest.mark.parametrize(("action", "writes"), [
    ({"aws": "cloudwatch.describe_alarms"}, False),
    ({"aws": "s3.list_objects_v2"}, False),
    ({"aws": "cloudwatch.set_alarm_state"}, True),
    ({"aws": "dynamodb.batch_write_item"}, True),
    ({"http": {"url": "http://x/health"}}, False),
    ({"http": {"url": "http://x/health", "method": "HEAD"}}, False),
    ({"http": {"url": "http://x/break", "method": "POST"}}, True),
    ({"sql": "SELECT count(*) FROM t WHERE note = 'DELETE me'"}, False),
    ({"sql": "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"}, True),
    ({"sql": "SELECT * INTO copy FROM t"}, True),
    ({"sql": "SELECT 1; DROP TABLE t"}, True),
    ({"sql": "UPDATE t SET a = 1"}, True),
    ({"nats": {"stream_info": "S"}}, False),
    ({"nats": {"publish": {"subject": "s"}}}, True),
    ({"run": ["true"]}, True),
])
def test_what_counts_as_a_write(action, writes):
    key, _ = registry.kind_of(action)
    assert key is not None
    assert registry.get(key).writes(action) is writes


def test_validate_refuses_a_trigger_check_that_writes_naming_file_and_line(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "atomicops: 1\nname: p\n"
        "connections: {db: {kind: postgres, dsn: 'postgresql://x@127.0.0.1/x'}}\n"
        "triggers:\n  poll_seconds: 1\n  checks:\n"
        "    - name: ok-check\n      sql: SELECT 1\n      connection: db\n"
        "    - name: bad-check\n      sql: DELETE FROM events\n      connection: db\n"
        "    - {name: zero, http: {url: 'http://x/h'}, failures: 0}\n"
        "operations:\n  - id: a\n    steps: [{name: s, read_only: true, do: {run: ['true']}}]\n"
    )
    with pytest.raises(PlanInvalid) as caught:
        api.validate(plan)
    problems = {p.line: p for p in caught.value.problems}
    assert problems.keys() == {11, 13}
    assert "must only read" in problems[11].message and "SELECT" in problems[11].message
    assert problems[11].file == str(plan)
    assert "failures" in problems[13].message
