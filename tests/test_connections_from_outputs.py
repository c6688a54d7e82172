"""Connections built from what the run makes: a postgres connection whose host, port, user and
database are an operation's outputs and whose password is a secret opens when the first action
needs it, after that operation is applied; rollback and resume in another process build it
again from the journal's outputs and the secret's source, and the password is never written
anywhere. Against the session's real PostgreSQL, as a role of its own with a password."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from run_cli import cli

from atomicops import api
from atomicops.actions.base import ConnectionNotReady
from atomicops.actions.sql_connection import dsn_of_fields
from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.engine.preflight import preflight
from atomicops.engine.runtime import open_runtime
from atomicops.engine.triggers import Watcher
from atomicops.errors import PlanInvalid, PreflightFailed
from atomicops.journal.state import derive
from atomicops.journal.views import store_for
from atomicops.plan.connections import explain
from atomicops.plan.model import Triggers
from atomicops.rehearsal import FLAGSHIP_PLAN

PLAN = Path(__file__).parent / "plans" / "connection_from_outputs.yaml"
PASSWORD_ENV = "CONN_TEST_DB_PASSWORD"


@dataclass
class Login:
    """A database of its own and a role that logs in to it with a password (scram)."""

    host: str
    port: int
    user: str
    dbname: str
    password: str
    admin_url: str

    @property
    def vars(self) -> dict[str, object]:
        return {"pg_host": self.host, "pg_port": self.port, "pg_user": self.user, "pg_db": self.dbname,
                "suffix": self.user}

    def cli_vars(self) -> list[str]:
        return [arg for k, v in self.vars.items() for arg in ("--var", f"{k}={v}")]

    def tables(self) -> set[str]:
        with psycopg.connect(self.admin_url, dbname=self.dbname) as conn:
            rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {r[0] for r in rows}


@pytest.fixture
def login(postgres_url: str) -> Iterator[Login]:
    tag = uuid.uuid4().hex[:10]
    user, dbname = f"conn_{tag}", f"conn_db_{tag}"
    # Characters a connection string would have to quote: the fields are quoted by libpq's rules.
    password = f"pa ss'w\\ord=@:/?{uuid.uuid4().hex}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(user)))
    info = conninfo_to_dict(postgres_url)
    try:
        yield Login(str(info["host"]), int(info["port"]), user, dbname, password, postgres_url)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


def _leaks(login: Login, *texts: str | bytes) -> list[str]:
    """Where the password (as is, or as JSON or a URL would carry it) shows."""
    forms = {login.password, json.dumps(login.password)[1:-1], login.password.replace("'", "\\'"),
             quote(login.password, safe="")}
    found = []
    for i, text in enumerate(texts):
        data = text if isinstance(text, bytes) else text.encode()
        found += [f"text #{i}" for form in forms if form.encode() in data]
    return found


def _journal_bytes(cwd: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((cwd / ".atomicops").glob("journal.db*")))


def test_a_rollback_in_another_process_builds_the_connection_again_from_the_journal(tmp_path, login):
    env = {PASSWORD_ENV: login.password}
    applied = cli("apply", str(PLAN), *login.cli_vars(), cwd=tmp_path, env=env)
    # `report` fails (division by zero) and the plan keeps what it applied: the table is
    # there, made through the connection the cluster's outputs and the secret built.
    assert applied.returncode == 1, applied.stderr
    assert "division by zero" in applied.stderr
    assert login.tables() == {f"items_{login.user}"}

    # Another process, no plan file, no vars: the journal's outputs and the environment's
    # secret are all it has to reach the database with.
    rolled = cli("rollback", cwd=tmp_path, env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert "schema/rows undone" in rolled.stderr and "schema/table undone" in rolled.stderr
    assert login.tables() == set()

    history = cli("history", "--json", cwd=tmp_path)
    status = cli("status", "--json", cwd=tmp_path)
    recorded = json.loads(status.stdout)
    assert recorded["operations"], status.stdout
    assert not _leaks(login, _journal_bytes(tmp_path), history.stdout, status.stdout,
                      applied.stdout, applied.stderr, rolled.stdout, rolled.stderr)
    # The recorded plan keeps the connection as written: the secret's name, never a DSN.
    st = derive("default", store_for(str(tmp_path / ".atomicops" / "journal.db")).events("default"))
    plan = st.latest_plan().plan  # type: ignore[union-attr]
    assert plan["connections"]["db"]["password"] == "${secrets.db_password}"
    assert plan["connections"]["db"]["host"] == "${ops.cluster.host}"


def test_a_killed_apply_is_settled_and_rolled_back_by_resume_in_another_process(tmp_path, login):
    env = {PASSWORD_ENV: login.password}
    # Killed once the rows are inserted and committed, before the journal knows it.
    killed = cli("apply", str(PLAN), *login.cli_vars(), cwd=tmp_path, env=env, crash="after_effect:schema/rows")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    with psycopg.connect(login.admin_url, dbname=login.dbname) as conn:
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(f"items_{login.user}"))).fetchone() == (2,)

    # The in-flight step is settled by its probe (a query through the rebuilt connection),
    # then both SQL steps are undone through it.
    resumed = cli("resume", "--rollback", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert login.tables() == set()
    history = cli("history", "--json", cwd=tmp_path)
    events = [e["type"] for e in json.loads(history.stdout)]
    assert "undo_done" in events
    assert not _leaks(login, _journal_bytes(tmp_path), history.stdout, killed.stderr, resumed.stdout, resumed.stderr)


def test_a_wrong_password_fails_the_step_without_showing_either_password(tmp_path, login):
    wrong = f"wrong'{uuid.uuid4().hex}"
    applied = cli("apply", str(PLAN), *login.cli_vars(), "--json", cwd=tmp_path, env={PASSWORD_ENV: wrong})
    assert applied.returncode == 1
    assert json.loads(applied.stdout)["exit_code"] == 1
    assert "28P01" in applied.stdout or "password authentication failed" in applied.stdout
    assert wrong not in applied.stderr + applied.stdout
    assert wrong.encode() not in _journal_bytes(tmp_path)
    assert login.tables() == set()


def test_the_override_var_replaces_the_fields(tmp_path, login):
    # The cluster's outputs name a host that does not exist: with `database_url` given (a
    # rehearsal's PostgreSQL), the connection is that URL and the fields are never used.
    given = {**login.vars, "pg_host": "cluster.invalid", "database_url": login.admin_url.replace(
        "/postgres?", f"/{login.dbname}?")}
    loaded = api.validate(PLAN, vars=given)
    [shown] = explain(loaded.plan)
    assert shown["waits_on"] == [] and "is given and replaces host, port, user, password, dbname" in shown["how"]
    rt = open_runtime(loaded.plan, env="t", run_id="t", base_dir=str(tmp_path))
    try:
        deferred = rt.connections.deferred("db")
        assert deferred is not None and deferred.waits_on == ()
        # Resolved without the cluster's outputs, and without the password's environment variable.
        assert dict(rt.connections.spec("db")) == {"kind": "postgres", "dsn": given["database_url"]}
    finally:
        rt.close()
    report = api.apply(loaded, env="ov", state=str(tmp_path / "j.db"), targets=["schema"])
    assert sorted(report.applied) == ["cluster", "schema"]
    assert login.tables() == {f"items_{login.user}"}
    api.rollback(env="ov", state=str(tmp_path / "j.db"))
    assert login.tables() == set()


def test_before_its_operations_are_applied_the_connection_is_not_ready(tmp_path, login, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, login.password)
    loaded = api.validate(PLAN, vars=login.vars)
    [shown] = explain(loaded.plan)
    assert shown["waits_on"] == ["cluster"] and "opens when first used, once cluster is applied" in shown["how"]
    # Preflight does not try to open it (its host is not known before the run)...
    preflight(loaded, ["cluster", "schema", "report"], env="t", run_id="t")
    outputs: dict[str, dict[str, object]] = {}
    rt = open_runtime(loaded.plan, env="t", run_id="t", base_dir=str(tmp_path), ops_outputs=lambda op: outputs.get(op, {}))
    try:
        # ...and an action that needs it before `cluster` is applied is told why.
        with pytest.raises(ConnectionNotReady) as exc:
            rt.executor.execute({"sql": "SELECT 1 AS one"})
        assert exc.value.waits_on == ("cluster",) and "not applied yet" in str(exc.value)
        outputs["cluster"] = {"host": login.host, "port": login.port, "user": login.user, "dbname": login.dbname}
        assert rt.executor.execute({"sql": "SELECT current_user AS u"})["rows"] == [{"u": login.user}]
    finally:
        rt.close()


def test_preflight_asks_such_a_connection_once_its_operations_were_applied_by_an_earlier_run(login, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, login.password)
    loaded = api.validate(PLAN, vars=login.vars)
    cluster = {"host": login.host, "port": login.port, "user": login.user, "dbname": login.dbname}
    preflight(loaded, ["schema", "report"], env="t", run_id="t", applied={"cluster": cluster})
    # The journal says where the database is; it does not answer there: refused before any step.
    with pytest.raises(PreflightFailed) as exc:
        preflight(loaded, ["schema", "report"], env="t", run_id="t", applied={"cluster": {**cluster, "port": _closed_port()}})
    assert "connection 'db' (postgres) does not answer" in str(exc.value)
    assert login.password not in str(exc.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_trigger_on_such_a_connection_waits_until_its_operations_are_applied(tmp_path, login, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, login.password)
    loaded = api.validate(PLAN, vars=login.vars)
    outputs: dict[str, dict[str, object]] = {}
    rt = open_runtime(loaded.plan, env="t", run_id="t", base_dir=str(tmp_path), ops_outputs=lambda op: outputs.get(op, {}))
    triggers = Triggers(checks=[{"name": "db-up", "sql": "SELECT 1 AS one", "expect": {"rows[0].one": 1}}])
    watcher = Watcher(triggers, rt, env="t", run_id="t", base_dir=str(tmp_path), on_fire=lambda firing: None)
    try:
        assert watcher.poll_once() is None
        [view] = watcher.snapshot()
        assert view["state"] == "waiting" and view["misses"] == 0 and "cluster" in view["last"]
        outputs["cluster"] = {"host": login.host, "port": login.port, "user": login.user, "dbname": login.dbname}
        assert watcher.poll_once() is None
        assert watcher.snapshot()[0]["state"] == "ok"
    finally:
        watcher.close()
        rt.close()


def test_the_fields_are_quoted_by_libpq_so_a_value_adds_no_parameter():
    dsn = dsn_of_fields({"host": "db.internal sslmode=disable", "user": "u", "password": "p' dbname=evil",
                         "dbname": "app", "port": 5432})
    assert conninfo_to_dict(dsn) == {"host": "db.internal sslmode=disable", "user": "u",
                                     "password": "p' dbname=evil", "dbname": "app", "port": "5432"}
    assert dsn_of_fields({"user": "u"}) is None  # no host: not an address


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        ({"host": "h", "password": "hunter22-literal"}, "password must be a secret"),
        ({"host": "h", "password": "${vars.pw}"}, "password must be a secret"),
        ({"dsn": "postgresql://h/db", "host": "h"}, "give the address one way"),
        ({"host": "h", "override": "postgresql://h/db"}, "a literal would always win"),
        ({"host": "h", "override": "${ops.a.out}"}, "override may name only vars"),
        ({"host": "h", "sslmode": "requires"}, "sslmode must be one of"),
        ({"host": "h", "port": 70000}, "port must be a number"),
        ({"user": "u"}, "needs dsn: postgresql://..., or host"),
        ({"host": "${ops.a.nope}"}, "operation 'a' has no output 'nope'"),
        ({"host": "${ops.nowhere.out}"}, "unknown operation 'nowhere'"),
        ({"host": "${self.out}"}, "cannot be used here"),
    ],
)
def test_validate_refuses_a_connection_that_cannot_be_built(tmp_path, connection, message):
    plan = tmp_path / "p.yaml"
    plan.write_text(json.dumps({
        "atomicops": 1, "name": "p", "vars": {"pw": "x"},
        "connections": {"db": {"kind": "postgres", **connection}},
        "operations": [{"id": "a", "steps": [{"name": "s", "read_only": True, "do": {"run": ["true"]},
                                              "outputs": {"out": "'h'"}}]},
                       {"id": "b", "depends_on": ["a"], "steps": [{"name": "q", "read_only": True,
                                                                   "do": {"sql": "SELECT 1", "connection": "db"}}]}],
    }))
    with pytest.raises(PlanInvalid) as exc:
        api.validate(plan)
    assert any(message in p.message and p.line == 1 for p in exc.value.problems), exc.value


def test_the_flagship_builds_db_from_the_cluster_and_a_rehearsal_var_replaces_it():
    real = api.validate(FLAGSHIP_PLAN)
    db = real.plan.connections["db"].model_dump()
    assert db["host"] == "${ops.aurora.endpoint}" and db["password"] == "${secrets.db_password}"
    shown = {c["connection"]: c for c in explain(real.plan)}
    assert shown["db"]["waits_on"] == ["aurora"]
    rehearsed = api.validate(FLAGSHIP_PLAN, vars={"database_url": "postgresql://postgres@127.0.0.1:5432/postgres"})
    assert {c["connection"]: c for c in explain(rehearsed.plan)}["db"]["waits_on"] == []
