"""The PostgreSQL journal store where it differs from SQLite, against the session's real
server: the schema the tool creates and versions, a role with only the README's GRANTs, the
password kept out of every message, two "machines" (separate working directories, hostnames
in the lock record) racing and handing a run over, `state copy` there and back, and reads
that never wait for a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import psycopg
import pytest
from fixtures_tls import TlsServer, authority
from run_cli import cli

from atomicops import api
from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.errors import SchemaTooNew, StorePermissionDenied, UsageError
from atomicops.inventory import aws as inventory
from atomicops.journal import JournalStore, LockHolder, open_store
from atomicops.journal.postgres import SCHEMA_VERSION, PostgresStore

PLANS = Path(__file__).parent / "plans"
TYPES = ["ec2.vpcs", "ec2.subnets"]


def with_login(url: str, user: str, password: str | None) -> str:
    """``url`` logging in as ``user`` (with ``password`` in the URL, or none: PGPASSWORD)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    login = f"{user}:{password}" if password else user
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "passfile"])
    return urlunsplit(parts._replace(netloc=f"{login}@{host}", query=query))


def admin(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def team_role(pg_database: str) -> Iterator[tuple[str, str]]:
    """A login role with no privilege but the README's: CONNECT and CREATE on the database."""
    name = f"ops_{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex}"
    database = urlsplit(pg_database).path.lstrip("/")
    admin(pg_database,
          f"CREATE ROLE {name} LOGIN PASSWORD '{password}'",
          f"REVOKE ALL ON DATABASE {database} FROM PUBLIC",
          f"GRANT CONNECT, CREATE ON DATABASE {database} TO {name}")
    yield name, password


def on_machine(host: str, *args: str, cwd: Path, env: dict[str, str], crash: str | None = None) -> subprocess.Popen[str]:
    """``atomicops ARGS`` as run on another machine: its own working directory, and ``host``
    as the hostname its lock record carries."""
    code = ("import socket, sys\n"
            f"socket.gethostname = lambda: {host!r}\n"
            "from atomicops.cli import main\n"
            "main()\n")
    environ = {k: v for k, v in os.environ.items() if k != "ATOMICOPS_CRASH_AT"} | env
    if crash:
        environ["ATOMICOPS_CRASH_AT"] = crash
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(state: str, env: str, kind: str, op: str | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["type"] == kind and (op is None or e["op"] == op) for e in api.history(env=env, state=state)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event within {timeout}s")


# -- the schema ---------------------------------------------------------------------------


def test_the_schema_is_created_once_and_versioned(pg_database: str) -> None:
    open_store(pg_database).close()
    open_store(pg_database).close()  # the second open finds it made
    with psycopg.connect(pg_database) as conn:
        rows = conn.execute("SELECT version, applied_by FROM atomicops.schema_version").fetchall()
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'atomicops'").fetchall()}
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
    assert rows[0][1].startswith("atomicops on ")
    assert tables == {"events", "locks", "fences", "schema_version"}


def test_machines_opening_a_new_database_at_once_make_one_schema(pg_database: str) -> None:
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_store(pg_database).close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_an_older_tool_refuses_a_newer_schema_with_a_clear_message(pg_database: str, tmp_path: Path) -> None:
    open_store(pg_database).close()
    admin(pg_database, f"INSERT INTO atomicops.schema_version (version, applied_by) VALUES ({SCHEMA_VERSION + 1}, 'atomicops 9')")
    with pytest.raises(SchemaTooNew) as too_new:
        open_store(pg_database)
    assert (too_new.value.found, too_new.value.understood) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    done = cli("status", "--state", pg_database, cwd=tmp_path)
    assert done.returncode == 2
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this atomicops understands" in done.stderr
    assert "Upgrade atomicops" in done.stderr


# -- roles, passwords, URLs ---------------------------------------------------------------


def test_a_role_with_the_readme_grants_runs_everything_and_no_superuser_is_needed(
    pg_database: str, team_role: tuple[str, str], tmp_path: Path
) -> None:
    name, password = team_role
    url = with_login(pg_database, name, None)
    env = {"PGPASSWORD": password}
    applied = cli("apply", str(PLANS / "slow.yaml"), "--var", "seconds=0", "--state", url, cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    status = cli("status", "--json", "--state", url, cwd=tmp_path, env=env)
    assert {o["status"] for o in json.loads(status.stdout)["operations"]} == {"applied"}
    assert cli("rollback", "--state", url, cwd=tmp_path, env=env).returncode == 0
    history = cli("history", "--json", "--state", url, cwd=tmp_path, env=env)
    for done in (applied, status, history):
        assert password not in done.stdout + done.stderr
    with psycopg.connect(pg_database) as conn:
        stored = conn.execute("SELECT string_agg(data || run_id, '') FROM atomicops.events").fetchone()[0]
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (name,)).fetchone()[0]
    assert password not in stored and superuser is False


def test_a_missing_grant_is_named(pg_database: str, team_role: tuple[str, str]) -> None:
    open_store(pg_database).close()  # made by its owner; the team role was granted nothing in it
    name, password = team_role
    with pytest.raises(StorePermissionDenied) as denied:
        open_store(with_login(pg_database, name, password))
    assert denied.value.grant == f"GRANT USAGE ON SCHEMA atomicops TO {name};"
    admin(pg_database, f"GRANT USAGE ON SCHEMA atomicops TO {name}",
          f"GRANT SELECT ON atomicops.schema_version, atomicops.events, atomicops.locks TO {name}")
    reader = open_store(with_login(pg_database, name, password))
    assert reader.events("default") == []  # an auditor's role reads
    with pytest.raises(StorePermissionDenied) as denied:
        reader.acquire_lock("default", LockHolder("l", "r", os.getpid(), "h", time.time()))
    assert "GRANT SELECT, INSERT, UPDATE ON atomicops.fences TO" in str(denied.value)
    assert password not in str(denied.value)


def test_the_password_never_reaches_a_message(pg_database: str, team_role: tuple[str, str], tmp_path: Path) -> None:
    name, password = team_role
    wrong = with_login(pg_database, name, "not-" + password)
    with pytest.raises(UsageError) as refused:
        open_store(wrong)
    assert "not-" + password not in str(refused.value)
    assert "PGPASSWORD" in str(refused.value)
    done = cli("status", "--json", "--state", wrong, cwd=tmp_path)
    assert done.returncode == 2 and password not in done.stdout + done.stderr
    store = open_store(with_login(pg_database, name, password))
    assert password not in store.url and password not in repr(store)
    with pytest.raises(UsageError, match="not a valid PostgreSQL URL") as bad:
        open_store(f"postgresql://{name}:{password}@127.0.0.1:1/db?sslmode=sometimes&x=")
    assert password not in str(bad.value)


def test_sslmode_verify_full_is_passed_to_libpq_and_refuses_a_server_without_tls(pg_database: str) -> None:
    # The test server has no TLS (pgserver's build): verify-full must refuse it, not fall back.
    url = pg_database + ("&" if "?" in pg_database else "?") + "sslmode=verify-full"
    with pytest.raises(UsageError, match="SSL|ssl") as refused:
        open_store(url)
    assert "cannot reach the journal" in str(refused.value)


def through_tls(pg_database: str, tls: TlsServer, login: tuple[str, str], *, host: str = "localhost",
                rootcert: Path | None = None, **params: str) -> str:
    """``pg_database``'s database reached through the TLS front as ``login`` (password in the
    URL), with ``sslmode=verify-full`` and the test CA as ``sslrootcert`` unless told otherwise."""
    database = urlsplit(pg_database).path
    query = {"sslmode": "verify-full", "sslrootcert": str(rootcert or tls.ca.pem)} | params
    return urlunsplit(("postgresql", f"{login[0]}:{login[1]}@{host}:{tls.port}", database,
                       urlencode(query, safe="/"), ""))


def test_sslmode_verify_full_runs_the_journal_over_tls(
    pg_database: str, team_role: tuple[str, str], tls_postgres: TlsServer, tmp_path: Path
) -> None:
    # The URL as a team writes it (docs/team.md): the server's name, verify-full, the CA.
    url = through_tls(pg_database, tls_postgres, team_role)
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    assert store._conn is not None and store._conn.pgconn.ssl_in_use
    fence = held_fence(store, "e")
    ev = store.append("e", "r", "t", data={"over": "tls"}, fence=fence)
    assert store.events("e") == [ev]
    store.close()
    runs = [cli("apply", str(PLANS / "slow.yaml"), "--var", "seconds=0", "--state", url, cwd=tmp_path),
            cli("status", "--json", "--state", url, cwd=tmp_path),
            cli("rollback", "--state", url, cwd=tmp_path)]
    for done in runs:
        assert done.returncode == 0, done.stderr
        assert team_role[1] not in done.stdout + done.stderr
    assert {o["status"] for o in json.loads(runs[1].stdout)["operations"]} == {"applied"}
    with psycopg.connect(pg_database) as conn:  # the real server holds what went through the front
        types = [r[0] for r in conn.execute("SELECT type FROM atomicops.events WHERE env = 'default' ORDER BY seq")]
    assert types.count("run_started") == types.count("run_finished") == 2  # apply, rollback
    front = tls_postgres.front
    front.wait_idle()
    assert front.handshakes >= 1 + len(runs) and (front.failed_handshakes, front.refused) == (0, 0)
    # The front turns away a client that asks for no TLS: every connection above was TLS.
    with pytest.raises(UsageError, match="cannot reach the journal"):
        open_store(through_tls(pg_database, tls_postgres, team_role, sslmode="disable"))
    assert front.refused == 1


def test_sslmode_verify_full_refuses_a_certificate_from_another_ca(
    pg_database: str, team_role: tuple[str, str], tls_postgres: TlsServer, tmp_path: Path
) -> None:
    stranger = authority(tmp_path, "stranger")
    url = through_tls(pg_database, tls_postgres, team_role, rootcert=stranger.pem)
    with pytest.raises(UsageError) as refused:
        open_store(url)
    message = str(refused.value)
    assert "cannot reach the journal" in message and "certificate verify failed" in message
    assert "sslrootcert=PATH" in message and team_role[1] not in message
    done = cli("status", "--state", url, cwd=tmp_path)
    assert done.returncode == 2 and "certificate verify failed" in done.stderr
    assert team_role[1] not in done.stdout + done.stderr
    tls_postgres.front.wait_idle()
    assert tls_postgres.front.failed_handshakes == 2 and tls_postgres.front.handshakes == 0


def test_sslmode_verify_full_refuses_a_host_name_the_certificate_does_not_carry(
    pg_database: str, team_role: tuple[str, str], tls_postgres: TlsServer
) -> None:
    # The right server (hostaddr) under a name its certificate does not carry: the CA is the
    # right one, so verify-ca connects and only verify-full's name check can refuse.
    with pytest.raises(UsageError) as refused:
        open_store(through_tls(pg_database, tls_postgres, team_role, host="db.internal", hostaddr="127.0.0.1"))
    message = str(refused.value)
    assert "cannot reach the journal" in message and 'does not match host name "db.internal"' in message
    assert "must be a name on the server's certificate" in message and "needs sslrootcert" not in message
    assert team_role[1] not in message
    open_store(through_tls(pg_database, tls_postgres, team_role, host="db.internal", hostaddr="127.0.0.1",
                           sslmode="verify-ca")).close()


# -- machines -----------------------------------------------------------------------------


def test_two_machines_race_for_one_environment_and_exactly_one_runs(pg_database: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    env = {"ATOMICOPS_STATE": pg_database}
    args = ("apply", str(PLANS / "slow.yaml"), "--var", "seconds=60", "--var", f"release={release}")
    runs = {host: on_machine(host, *args, cwd=tmp_path / host, env=env) for host in ("laptop-a", "ci-runner-b")}
    outcomes: dict[str, tuple[int, str, str]] = {}
    deadline = time.monotonic() + 60
    while len(outcomes) < 1 and time.monotonic() < deadline:  # the loser ends; the winner waits
        outcomes |= {h: finish(p) for h, p in runs.items() if p.poll() is not None}
        time.sleep(0.05)
    release.touch()
    outcomes |= {h: finish(p) for h, p in runs.items() if h not in outcomes}
    codes = sorted(code for code, _, _ in outcomes.values())
    assert codes == [0, 4], outcomes
    winner = next(h for h, (code, _, _) in outcomes.items() if code == 0)
    loser_err = next(err for code, _, err in outcomes.values() if code == 4)
    assert f"host={winner}" in loser_err
    started = [e for e in api.history(state=pg_database) if e["type"] == "run_started"]
    assert [e["data"]["host"] for e in started] == [winner]


def test_a_dead_machines_run_is_finished_by_another_after_its_lease(
    pg_database: str, tmp_path: Path, moto_endpoint: str
) -> None:
    factory = inventory.clients(region="us-east-1", endpoint_url=moto_endpoint)
    before = inventory.snapshot(factory, types=TYPES)
    env = {"ATOMICOPS_STATE": pg_database, "ATOMICOPS_LEASE_SECONDS": "6"}
    plan_vars = ("--var", f"aws_endpoint={moto_endpoint}", "--var", f"suffix={uuid.uuid4().hex[:8]}", "--var", "seconds=0")
    a = on_machine("machine-a", "apply", str(PLANS / "handoff.yaml"), "--env", "team", *plan_vars,
                   cwd=tmp_path / "a", env=env, crash="after_effect:vpc/create-vpc")
    code, _, err = finish(a)
    died = time.monotonic()
    assert code == CRASH_EXIT_CODE, err
    # Machine B cannot see A's pid: until A's lease lapses, A may just be slow.
    early = finish(on_machine("machine-b", "resume", "--env", "team", cwd=tmp_path / "b", env=env))
    if time.monotonic() - died < 5:
        assert early[0] == 4 and "host=machine-a" in early[2], early
    time.sleep(max(0.0, 6.5 - (time.monotonic() - died)))
    # As the issue spells it: `atomicops resume --state ...` on B.
    code, _, err = finish(on_machine("machine-b", "resume", "--env", "team", "--state", pg_database,
                                     cwd=tmp_path / "b", env={"ATOMICOPS_LEASE_SECONDS": "6"}))
    assert code == 0, err
    status = api.status(env="team", state=pg_database)
    assert {o["status"] for o in status["operations"]} == {"applied"}
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:atomicops:env", "Values": ["team"]}])["Vpcs"]
    assert len(vpcs) == 1  # A's VPC, found by its tag: no duplicate
    code, _, err = finish(on_machine("machine-b", "rollback", "--env", "team", cwd=tmp_path / "b", env=env))
    assert code == 0, err
    assert inventory.diff(before, inventory.snapshot(factory, types=TYPES)) == {}


def test_a_paused_machine_is_taken_over_and_its_late_writes_are_refused(
    pg_database: str, tmp_path: Path, moto_endpoint: str
) -> None:
    factory = inventory.clients(region="us-east-1", endpoint_url=moto_endpoint)
    before = inventory.snapshot(factory, types=TYPES)
    release = tmp_path / "release"
    env = {"ATOMICOPS_STATE": pg_database, "ATOMICOPS_LEASE_SECONDS": "1"}
    plan_vars = ("--var", f"aws_endpoint={moto_endpoint}", "--var", f"suffix={uuid.uuid4().hex[:8]}",
                 "--var", f"release={release}")
    a = on_machine("machine-a", "apply", str(PLANS / "handoff.yaml"), "--env", "team", *plan_vars,
                   cwd=tmp_path / "a", env=env)
    wait_for(pg_database, "team", "step_intent", op="slow")
    os.kill(a.pid, signal.SIGSTOP)
    try:
        time.sleep(1.5)  # past A's lease: no heartbeat while stopped
        release.touch()  # the slow step, re-run by B, returns at once
        code, _, err = finish(on_machine("machine-b", "resume", "--env", "team", cwd=tmp_path / "b", env=env))
        assert code == 0, err
    finally:
        os.kill(a.pid, signal.SIGCONT)
    code, _, err = finish(a)
    assert code == 4 and "no longer holds" in err, err
    events = api.history(env="team", state=pg_database)
    first_run = events[0]["run"]
    takeover = next(e for e in events if e["type"] == "run_started" and e["run"] != first_run)
    assert takeover["data"]["host"] == "machine-b"
    assert takeover["data"]["took_over"]["host"] == "machine-a"
    assert [e for e in events if e["run"] == first_run and e["seq"] > takeover["seq"]] == []
    assert {o["status"] for o in api.status(env="team", state=pg_database)["operations"]} == {"applied"}
    code, _, err = finish(on_machine("machine-a", "rollback", "--env", "team", cwd=tmp_path / "a", env=env))
    assert code == 0, err
    assert inventory.diff(before, inventory.snapshot(factory, types=TYPES)) == {}


# -- copies and concurrency ---------------------------------------------------------------


def test_state_copy_round_trip_sqlite_postgres_sqlite_keeps_the_event_log(pg_database: str, tmp_path: Path) -> None:
    first = tmp_path / "first.db"
    for env_name in ("default", "staging"):
        api.apply(PLANS / "slow.yaml", env=env_name, state=str(first), vars={"seconds": 0})
    api.checkpoint("after-slow", env="default", state=str(first))  # a mark naming a seq
    api.rollback(env="staging", state=str(first))
    original = {e: open_store(str(first)).events(e) for e in ("default", "staging")}

    there = cli("state", "copy", "--from", str(first), "--to", pg_database, "--all-envs", "--json", cwd=tmp_path)
    assert there.returncode == 0, there.stderr
    assert [c["env"] for c in json.loads(there.stdout)["copied"]] == ["default", "staging"]
    back_path = tmp_path / "back.db"
    back = cli("state", "copy", "--from", pg_database, "--to", f"sqlite:///{back_path}", "--env", "staging", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert "copied environment 'staging'" in back.stdout
    back2 = cli("state", "copy", "--to", str(back_path), "--state", pg_database, cwd=tmp_path)  # --from is --state
    assert back2.returncode == 0, back2.stderr

    pg = open_store(pg_database)
    returned = open_store(str(back_path))
    for env_name, events in original.items():
        assert pg.events(env_name) == events
        assert returned.events(env_name) == events
    assert api.status(env="default", state=pg_database)["operations"] == api.status(env="default", state=str(first))["operations"]
    again = cli("state", "copy", "--from", str(first), "--to", pg_database, cwd=tmp_path)
    assert again.returncode == 2 and "already holds" in again.stderr
    # The team store carries on where the file left off: a new run appends after the copy.
    api.rollback(env="default", state=pg_database)
    assert pg.events("default")[-1].seq > original["default"][-1].seq


def test_reads_never_wait_for_a_run_and_environments_apply_at_once(pg_database: str, tmp_path: Path) -> None:
    store = PostgresStore(pg_database)
    holder = LockHolder("l", "r", os.getpid(), "h", time.time(), "apply", 30.0)
    store.acquire_lock("busy", holder)
    store.append("busy", "r", "run_started", fence=store.read_lock("busy").fence)
    with psycopg.connect(pg_database) as run:  # an append in flight: the lock row held
        run.execute("SELECT * FROM atomicops.locks WHERE env = 'busy' FOR UPDATE")
        t0 = time.monotonic()
        for done in (cli("status", "--env", "busy", "--state", pg_database, cwd=tmp_path),
                     cli("history", "--env", "busy", "--state", pg_database, cwd=tmp_path)):
            assert done.returncode == 0, done.stderr
        assert time.monotonic() - t0 < 30
    envs = [f"env{n}" for n in range(4)]
    procs = [subprocess.Popen([sys.executable, "-m", "atomicops.cli", "apply", str(PLANS / "slow.yaml"), "--var", "seconds=1",
                               "--env", e, "--state", pg_database], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for e in envs]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    for e in envs:
        assert {o["status"] for o in api.status(env=e, state=pg_database)["operations"]} == {"applied"}


def test_a_schema_made_by_another_owner_is_used_when_granted(pg_database: str, team_role: tuple[str, str]) -> None:
    """The README's per-person variant: a DBA-owned schema and a team role with table GRANTs."""
    open_store(pg_database).close()
    name, password = team_role
    admin(pg_database, *[s.strip() for s in README_TEAM_GRANTS.replace("atomicops_team", name).split(";") if s.strip()])
    store = open_store(with_login(pg_database, name, password))
    holder = LockHolder("l", "r", os.getpid(), "h", time.time(), "apply", 30.0)
    store.acquire_lock("e", holder)
    ev = store.append("e", "r", "t", data={"x": 1}, fence=store.read_lock("e").fence)
    assert store.events("e") == [ev]
    assert store.heartbeat("e", "l")
    store.release_lock("e", "l")


# The GRANTs the README gives for people who each log in with their own role.
README_TEAM_GRANTS = """
GRANT USAGE ON SCHEMA atomicops TO atomicops_team;
GRANT SELECT ON atomicops.schema_version TO atomicops_team;
GRANT SELECT, INSERT ON atomicops.events TO atomicops_team;
GRANT SELECT, INSERT, UPDATE, DELETE ON atomicops.locks TO atomicops_team;
GRANT SELECT, INSERT, UPDATE ON atomicops.fences TO atomicops_team;
"""


def test_the_journal_benchmark_measures_the_postgresql_store(pg_database: str, tmp_path: Path) -> None:
    out = tmp_path / "journal.json"
    done = subprocess.run([sys.executable, str(Path(__file__).parent.parent / "bench" / "journal.py"), "--steps", "3",
                           "--dir", str(tmp_path), "--postgres", pg_database, "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())["postgresql"]
    assert [r["what"] for r in doc["rows"]] == ["bare postgresql insert (floor)", "journal append (postgresql)"]
    assert all(r["median_ms"] > 0 for r in doc["rows"])


def test_a_connection_lost_between_writes_is_replaced_and_nothing_is_written_twice(pg_database: str) -> None:
    store = PostgresStore(pg_database)
    holder = LockHolder("l", "r", os.getpid(), "h", time.time(), "apply", 30.0)
    store.acquire_lock("e", holder)
    fence = store.read_lock("e").fence
    first = store.append("e", "r", "one", fence=fence)

    def drop_the_stores_session() -> None:  # a failover, a pooler restart, an idle timeout
        pid = store._conn.info.backend_pid  # type: ignore[union-attr]
        admin(pg_database, f"SELECT pg_terminate_backend({pid})")

    drop_the_stores_session()
    second = store.append("e", "r", "two", fence=fence)
    drop_the_stores_session()
    assert store.events("e") == [first, second]
    drop_the_stores_session()
    assert store.heartbeat("e", "l")


def test_a_newer_tool_migrates_forward_and_the_older_one_then_refuses(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atomicops.journal import postgres

    old = open_store(pg_database)
    fence = held_fence(old, "e")
    before = old.append("e", "r", "t", data={"kept": True}, fence=fence)
    old.close()
    # Version 2 as a later atomicops would ship it: one more migration, applied on first open.
    monkeypatch.setattr(postgres, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(postgres._MIGRATIONS, 2, ("ALTER TABLE atomicops.locks ADD COLUMN note text",))
    newer = open_store(pg_database)
    assert newer.events("e") == [before]
    with psycopg.connect(pg_database) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM atomicops.schema_version ORDER BY 1")] == [1, 2]
    newer.close()
    monkeypatch.undo()
    with pytest.raises(SchemaTooNew, match="schema version 2, newer than this atomicops understands \\(1\\)"):
        open_store(pg_database)


def held_fence(store: JournalStore, env: str) -> int:
    store.acquire_lock(env, LockHolder("l", "r", os.getpid(), "h", time.time(), "apply", 30.0))
    lock = store.read_lock(env)
    assert lock is not None
    return lock.fence


def test_a_password_in_the_url_reaches_neither_the_journal_nor_the_output(
    pg_database: str, team_role: tuple[str, str], tmp_path: Path
) -> None:
    name, password = team_role
    url = with_login(pg_database, name, password)
    outputs = [cli("apply", str(PLANS / "slow.yaml"), "--var", "seconds=0", "--state", url, cwd=tmp_path),
               cli("status", "--state", url, cwd=tmp_path), cli("history", "--json", "--state", url, cwd=tmp_path),
               cli("unlock", "--state", url, cwd=tmp_path), cli("rollback", "--json", "--state", url, cwd=tmp_path)]
    for done in outputs:
        assert done.returncode == 0, done.stderr
        assert password not in done.stdout + done.stderr
    with psycopg.connect(pg_database) as conn:
        rows = conn.execute("SELECT data, run_id, type FROM atomicops.events").fetchall()
        locks = conn.execute("SELECT * FROM atomicops.locks").fetchall()
    assert rows and password not in json.dumps(rows) + json.dumps(locks, default=str)
