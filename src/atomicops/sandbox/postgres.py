"""A real PostgreSQL for the sandbox and the tests, from the binaries the ``pgserver`` wheel ships.

```python
from atomicops.sandbox import postgres

info = postgres.start(Path(".atomicops/sandbox/postgres"))   # initdb on first use
info.url        # postgresql://postgres@127.0.0.1:PORT/postgres?passfile=...  (TCP, password)
...
postgres.stop(info)             # later, from any process; remove_data=False keeps the data
```

``info`` is the sandbox's shared :class:`~atomicops.sandbox.service.ServiceInfo`.

Why not ``pgserver.get_server()``: it registers an ``atexit`` hook that stops the server when
the Python process that started it exits, and it listens on a unix socket only. ``atomicops
sandbox up`` must return with the server still running (``down`` stops it later, by pid), and
plans must reach it over TCP exactly as they reach Aurora. So we run pgserver's bundled
``initdb`` and ``pg_ctl`` ourselves: ``pg_ctl start`` detaches the postmaster into its own
session, so it outlives us and a Ctrl-C in our terminal does not reach it.

Running as root (CI containers, this machine): PostgreSQL refuses to run as root, with no
override. pgserver's answer, followed here, is a system user ``pgserver`` (made with
``useradd`` when missing) that owns the data directory and runs ``initdb``/``pg_ctl``. That user
must be able to *reach* the binaries and the data directory, which often sit under ``/root``
(mode 0700) or ``/tmp/pytest-of-root`` (0700). pgserver adds read and search permission for
everyone on every parent directory; we add only the search bit (``o+x``: others may pass
through to a path they already know, not list the directory), and only where it is missing.
The path must stay passable while the server runs: PostgreSQL opens some files by absolute
path (``global/pg_control`` at every checkpoint) and PANICs when it cannot. pytest, for one,
resets ``/tmp/pytest-of-root`` to 0700 whenever a session starts, so the test fixtures keep
their data directory elsewhere. As a normal user none of this happens.

Start-up: ``initdb`` (first start only, about 1 s) then ``pg_ctl start`` (about 0.15 s).

This is a sandbox server, with ``fsync=off`` (the data does not have to survive a power cut,
and it makes DDL-heavy rehearsals several times faster), but not an open one: anyone on the
machine can reach 127.0.0.1, so the superuser has a generated password (``scram-sha-256``).
The password is in no URL: plans receive the URL as ``vars.database_url``, and vars are
journalled. It sits in a libpq password file in the data directory (0600, ``PASSFILE``) and
the URL names that file (``?passfile=...``), which libpq, psql and pg_dump all read. Why not a
unix socket in a private directory instead: socket paths are limited to about 100 bytes,
which a project path plus ``.atomicops/sandbox/postgres`` can exceed, and plans must reach
this server over TCP as they reach Aurora. The server log records no statement, no bind
parameter and no client error (those may quote values, secrets included; the client gets
them anyway): ``_SETTINGS``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil  # a dependency of pgserver
import psycopg
from psycopg.conninfo import conninfo_to_dict

from atomicops.processes import START_TIME_SLACK, start_time
from atomicops.sandbox.service import ServiceInfo, free_port, private_dir

SERVICE_NAME = "postgres"
SUPERUSER = "postgres"
SYSTEM_USER = "pgserver"  # the name pgserver itself uses, so both can share one user
HOST = "127.0.0.1"
LOG_NAME = "postgres.log"
PASSFILE = "atomicops.pgpass"  # in the data directory, beside the data it protects

# Server settings for a throwaway server; everything else is PostgreSQL's default.
_SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",  # TCP only: no socket path length or permission trouble
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Nothing a client sent reaches the log: no statement (ever, or on error), no parameter,
    # no client error or its DETAIL (ERROR ranks below LOG for log_min_messages).
    "log_statement": "none",
    "log_min_error_statement": "panic",
    "log_min_duration_statement": "-1",
    "log_parameter_max_length": "0",
    "log_parameter_max_length_on_error": "0",
    "log_error_verbosity": "terse",
    "log_min_messages": "log",
}


class PostgresStartError(RuntimeError):
    """The server did not come up; the message ends with the tail of its log."""


# --------------------------------------------------------------------------- binaries, user


def bin_dir() -> Path:
    """pgserver's bundled PostgreSQL binaries (``initdb``, ``pg_ctl``, ``postgres``, ...)."""
    # Found, not imported: importing pgserver sets up its own runtime-dir lock (and warns
    # when XDG_RUNTIME_DIR is unset), none of which we use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresStartError("the pgserver package is not installed (pip install pgserver)")
    path = Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise PostgresStartError(f"pgserver's PostgreSQL binaries are missing from {path}")
    return path


def _is_root() -> bool:
    return os.geteuid() == 0


def _service_user() -> pwd.struct_passwd:
    """The unprivileged user the server runs as when we are root (see the module doc)."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    # --system: no password, no aging; no home directory: the server never uses one.
    with contextlib.suppress(OSError):
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            capture_output=True,
            check=False,  # exit 9 (exists) when a concurrent start made it first: fine
        )
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        # Minimal images have no useradd (busybox has adduser); nobody always exists.
        return pwd.getpwnam("nobody")


def _grant_search(path: Path) -> None:
    """Let other users pass through every parent of ``path`` (``o+x`` where missing)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _grant_install(install: Path) -> None:
    """Make pgserver's install tree readable by the service user if the wheel was not."""
    for root, dirs, files in os.walk(install):
        for name in dirs:
            path = Path(root, name)
            mode = path.stat().st_mode
            if mode & 0o005 != 0o005:
                path.chmod(stat.S_IMODE(mode) | 0o005)
        for name in files:
            path = Path(root, name)
            mode = path.stat().st_mode
            want = 0o004 | (0o001 if mode & stat.S_IXUSR else 0)
            if mode & want != want:
                path.chmod(stat.S_IMODE(mode) | want)


def _run_as(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess keyword arguments that drop root to ``user`` in the child, before exec."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _clean_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGHOST...) from the caller's shell would silently override
    # our arguments; LC_ALL=C keeps server messages in English, which error handling reads.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


# --------------------------------------------------------------------------- start


def url_for(port: int, database: str = "postgres", passfile: Path | None = None) -> str:
    url = f"postgresql://{SUPERUSER}@{HOST}:{port}/{database}"
    return f"{url}?passfile={quote(str(passfile), safe='/')}" if passfile else url


def _passfile(data_dir: Path) -> Path | None:
    # None for a data directory made before the server had a password (trust): it still works.
    path = data_dir / PASSFILE
    return path if path.exists() else None


def _postmaster(data_dir: Path) -> tuple[int, int] | None:
    """(pid, port) from ``postmaster.pid`` when the process it names is alive."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if _alive(pid) else None


def _log_tail(log_file: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _initdb(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    password = secrets.token_hex(24)
    # initdb reads the password from a file, as the service user: a private one beside the
    # data directory (which must be empty for initdb), removed as soon as initdb has it.
    pwfile = data_dir.parent / f".{data_dir.name}.pw.{secrets.token_hex(4)}"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if user is not None:
            os.fchown(fd, user.pw_uid, user.pw_gid)
        os.write(fd, f"{password}\n".encode())
        os.close(fd)
        _run_initdb(data_dir, user, pwfile)
    finally:
        pwfile.unlink(missing_ok=True)
    # The format libpq reads: host:port:database:user:password, '*' for any.
    fd = os.open(data_dir / PASSFILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"*:*:*:{SUPERUSER}:{password}\n")


def _run_initdb(data_dir: Path, user: pwd.struct_passwd | None, pwfile: Path) -> None:
    proc = subprocess.run(
        [
            str(bin_dir() / "initdb"),
            "-D", str(data_dir),
            "-U", SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-locale",  # C collation: no OS locale needed, byte order for ORDER BY text
            "--no-sync",  # a sandbox: skip the fsync of every new file (about half the time)
            "--no-instructions",
        ],
        capture_output=True,
        text=True,
        cwd=data_dir,
        env=_clean_env(),
        check=False,
        **_run_as(user),
    )  # fmt: skip
    if proc.returncode != 0:
        raise PostgresStartError(
            f"initdb failed ({proc.returncode}):\n{proc.stderr or proc.stdout}"
        )


def _info(url: str, pid: int, data_dir: Path) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_NAME, url, pid, str(data_dir), str(data_dir / LOG_NAME), started_at=start_time(pid)
    )


def start(data_dir: Path, *, port: int | None = None, timeout: float = 30.0) -> ServiceInfo:
    """Start PostgreSQL on ``data_dir`` (``initdb`` first if it is new) and wait until it answers.

    Listens on 127.0.0.1:``port`` (a free port when None), TCP only. If a server is already
    running on ``data_dir``, returns it instead of starting a second one. The server keeps
    running after this process exits; :func:`stop` ends it.
    """
    data_dir = Path(data_dir).resolve()
    log_file = data_dir / LOG_NAME
    running = _postmaster(data_dir)
    if running is not None:
        pid, running_port = running
        return _info(url_for(running_port, passfile=_passfile(data_dir)), pid, data_dir)

    user = _service_user() if _is_root() else None
    private_dir(data_dir)
    if user is not None:
        _grant_search(data_dir)
        _grant_search(bin_dir())
        _grant_install(bin_dir().parent)
        os.chown(data_dir, user.pw_uid, user.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, user)
    # A postmaster.pid whose process is dead is left by a killed server; postgres would
    # refuse to start if that pid now belongs to an unrelated process.
    with contextlib.suppress(FileNotFoundError):
        (data_dir / "postmaster.pid").unlink()

    # A free port can be taken between our probe and the server's bind: try a few.
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        # pg_ctl hands -o to ``sh -c "exec postgres ..."``, so each value is shell-quoted.
        settings = {**_SETTINGS, "port": chosen}
        options = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())
        proc = subprocess.run(
            [
                str(bin_dir() / "pg_ctl"), "start",
                "-D", str(data_dir),
                "-l", str(log_file),  # opened by the service user: it lives in the data dir
                "-o", options,
                "-w", "-t", str(max(1, int(timeout))),
                "-s",
            ],
            # Files, not pipes: pg_ctl's background postmaster inherits them, and a pipe
            # nobody reads would make communicate() wait for the postmaster to exit.
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=data_dir,
            env=_clean_env(),
            check=False,
            **_run_as(user),
        )  # fmt: skip
        found = _postmaster(data_dir)
        if proc.returncode == 0 and found is not None:
            pid, _ = found
            url = url_for(chosen, passfile=_passfile(data_dir))
            wait_ready(url, timeout)
            return _info(url, pid, data_dir)
        tail = _log_tail(log_file)
        if found is not None:  # pg_ctl gave up waiting, but the server is there
            stop(_info(url_for(chosen), found[0], data_dir))
        if "could not bind" not in tail or attempt == attempts - 1:
            raise PostgresStartError(
                f"PostgreSQL did not start on {HOST}:{chosen} (pg_ctl exit {proc.returncode}); "
                f"log {log_file}:\n{tail}"
            )
    raise AssertionError("unreachable")


def wait_ready(url: str, timeout: float = 30.0) -> None:
    """Return once a connection to ``url`` succeeds; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL at {_where(url)} not ready: {exc}") from None
            time.sleep(0.05)


def _where(url: str) -> str:
    parts = conninfo_to_dict(url)
    return f"{parts.get('host', HOST)}:{parts.get('port', 5432)}"


# --------------------------------------------------------------------------- stop


def _running(proc: psutil.Process) -> bool:
    try:
        # is_running() also compares the start time, so a reused pid does not count.
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _alive(pid: int) -> bool:
    try:
        return _running(psutil.Process(pid))
    except psutil.Error:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; return those still running after ``timeout``.

    Not psutil.wait_procs: for a process that is not our child it waits until the pid is
    gone, and an exited postmaster stays a zombie until init reaps it, which some container
    inits do only once a second. A zombie holds no port and no file: it counts as gone.
    """
    deadline = time.monotonic() + timeout
    while True:
        procs = [p for p in procs if _running(p)]
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.01)


def _is_postmaster(info: ServiceInfo) -> psutil.Process | None:
    """The process ``info.pid`` if it is still this server's postmaster (pids get reused).

    Proven by the start time recorded when it started: without one, nothing is.
    """
    if not info.started_at:
        return None
    try:
        proc = psutil.Process(info.pid)
        if proc.status() == psutil.STATUS_ZOMBIE or not proc.name().startswith("postgres"):
            return None
        if abs(proc.create_time() - info.started_at) >= START_TIME_SLACK:
            return None
        return proc
    except psutil.Error:
        return None


def stop(info: ServiceInfo, *, remove_data: bool = True, timeout: float = 10.0) -> None:
    """Stop the server ``info`` describes; leaves no process and no listening port behind.

    Works from any process (``sandbox down`` runs long after ``up`` exited). SIGINT is
    PostgreSQL's *fast* shutdown (roll back open transactions, disconnect, checkpoint);
    SIGTERM would be *smart* shutdown, which waits for every client to leave. If that does
    not finish within ``timeout``, SIGQUIT (immediate), then SIGKILL for the postmaster and
    every backend it had. ``remove_data`` deletes the data directory and the log in it, like
    the other sandbox services; ``remove_data=False`` keeps both for a later :func:`start`.
    """
    postmaster = _is_postmaster(info)
    if postmaster is not None:
        try:
            # Backends call setsid(), so they are not in the postmaster's process group:
            # list them now, while they still have a parent to be found by.
            children = postmaster.children(recursive=True)
        except psutil.Error:
            children = []
        everyone = [postmaster, *children]
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 2.0)):
            with contextlib.suppress(psutil.Error):
                postmaster.send_signal(sig)
            everyone = _wait_gone(everyone, wait)
            if not everyone:
                break
        for proc in everyone:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _wait_gone(everyone, 5.0)
    if remove_data:
        shutil.rmtree(info.data_dir, ignore_errors=True)


def is_running(info: ServiceInfo) -> bool:
    return _is_postmaster(info) is not None
