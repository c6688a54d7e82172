"""Hostile inputs against secret handling: data that looks like a secret reference, escapes,
rich markup in data. Each case runs the real CLI in a subprocess and asserts the exit code,
the message, and that no canary secret appears in stdout, stderr, --json or the journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def canary() -> str:
    return "canary-" + uuid.uuid4().hex


def cli(args: list[str], cwd: Path, canary: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOSTILE_TOKEN": canary}
    env.pop("ATOMICOPS_CRASH_AT", None)
    return subprocess.run([sys.executable, "-m", "atomicops.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def assert_no_canary(canary: str, results: list[subprocess.CompletedProcess[str]], root: Path) -> None:
    for res in results:
        assert canary not in res.stdout
        assert canary not in res.stderr
    for path in (root / ".atomicops").rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path


# The undo writes the value it was given to a file, so the test sees exactly what it received.
# `v` holds the text of a secret reference as *data*; `said` is a step output that does;
# `$${...}` is the plan's escape for a literal `${...}`.
REREAD_PLAN = """
atomicops: 1
name: hostile-reread
vars: {v: "${secrets.tok}"}
secrets:
  tok: {env: HOSTILE_TOKEN}
operations:
  - id: a
    steps:
      - name: use
        do: {run: ["sh", "-c", "test -n \\"$T\\""], env: {T: "${secrets.tok}"}}
        undo: {run: ["sh", "-c", "true"], env: {T: "${secrets.tok}"}}
      - name: case
        do: {run: ["printf", "%s", "$${secrets.tok}"]}
        outputs: {said: stdout}
        undo: {run: ["sh", "-c", "printf %s \\"$1\\" > undo.out", "x", "UNDO_ARG"]}
"""


@pytest.mark.parametrize(
    "undo_arg, received",
    [
        ("${vars.v}", "${secrets.tok}"),  # a var's value is data
        ("${self.said}", "${secrets.tok}"),  # so is a step's output (external data)
        ("$${secrets.tok}", "${secrets.tok}"),  # the escape, on a command line even
        ("$${HOME}", "${HOME}"),  # the documented escape survives the journal
        ("at $${HOME}: ${vars.v}", "at ${HOME}: ${secrets.tok}"),
    ],
)
def test_rollback_never_turns_data_or_escapes_into_live_secrets(tmp_path, canary, undo_arg, received):
    (tmp_path / "plan.yaml").write_text(REREAD_PLAN.replace("UNDO_ARG", undo_arg))
    applied = cli(["apply", "plan.yaml"], tmp_path, canary)
    assert applied.returncode == 0, applied.stderr
    rolled = cli(["rollback", "--json"], tmp_path, canary)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert json.loads(rolled.stdout)["undone"] == ["a"]
    assert (tmp_path / "undo.out").read_text() == received  # as written, never the secret
    history = cli(["history", "--json"], tmp_path, canary)
    assert_no_canary(canary, [applied, rolled, history], tmp_path)


# The do prints a name that contains the secret's value (`db-<secret>-1`, as a generated name
# may contain a password that is also a common word); the undo must get that name exactly.
OUTPUT_HOLDS_SECRET_PLAN = """
atomicops: 1
name: hostile-output-secret
secrets:
  tok: {env: HOSTILE_TOKEN}
operations:
  - id: a
    steps:
      - name: make
        do: {run: ["sh", "-c", "printf db-%s-1 \\"$T\\""], env: {T: "${secrets.tok}"}}
        outputs: {name: stdout}
        undo: {run: ["sh", "-c", "printf %s \\"$1\\" > undo.out", "x", "${self.name}"]}
  - id: b
    depends_on: [a]
    steps:
      - name: use
        do: {run: ["true"]}
        undo: {run: ["sh", "-c", "printf %s \\"$1\\" > later.out", "x", "${ops.a.name}"]}
"""


def test_a_secret_inside_an_output_is_journalled_as_a_reference_not_a_mask(tmp_path, canary):
    (tmp_path / "plan.yaml").write_text(OUTPUT_HOLDS_SECRET_PLAN)
    applied = cli(["apply", "plan.yaml"], tmp_path, canary)
    assert applied.returncode == 0, applied.stderr
    status = cli(["status", "--json"], tmp_path, canary)
    outputs = {o["id"]: o["outputs"] for o in json.loads(status.stdout)["operations"]}
    assert "canary" not in json.dumps(outputs)
    text_status = cli(["status"], tmp_path, canary)
    assert "db-***-1" in text_status.stdout
    rolled = cli(["rollback"], tmp_path, canary)
    assert rolled.returncode == 0, rolled.stderr
    # Both undos acted on the real name, not on `db-***-1`.
    assert (tmp_path / "undo.out").read_text() == f"db-{canary}-1"
    assert (tmp_path / "later.out").read_text() == f"db-{canary}-1"
    history = cli(["history", "--json"], tmp_path, canary)
    assert_no_canary(canary, [applied, status, text_status, rolled, history], tmp_path)


MARKUP_PLAN = """
atomicops: 1
name: hostile-markup
secrets:
  tok: {env: HOSTILE_TOKEN}
operations:
  - id: a
    title: "[bold]title[/] :x:"
    steps:
      - name: s
        do: {run: ["sh", "-c", "printf '%s' '[/oops] [red]x :x:'; echo \\"[/$T]\\" >&2"], env: {T: "${secrets.tok}"}}
        outputs: {said: stdout}
        undo: {run: ["true"]}
"""


def test_rich_markup_and_emoji_codes_in_data_are_printed_as_text(tmp_path, canary):
    (tmp_path / "plan.yaml").write_text(MARKUP_PLAN)
    # Markup in an environment name: refused as a name (exit 2), printed as text, nothing run.
    refused = cli(["apply", "plan.yaml", "--env", "[/bogus]"], tmp_path, canary)
    assert refused.returncode == 2 and "'[/bogus]'" in refused.stderr, refused.stderr
    assert not (tmp_path / ".atomicops").exists()
    applied = cli(["apply", "plan.yaml"], tmp_path, canary)
    assert applied.returncode == 0, applied.stderr
    assert "[bold]title[/] :x:" in applied.stderr
    status = cli(["status"], tmp_path, canary)
    assert status.returncode == 0, status.stderr
    assert "[/oops] [red]x :x:" in status.stdout and "❌" not in status.stdout
    assert "not locked" in cli(["unlock"], tmp_path, canary).stdout  # no lock row left
    history = cli(["history"], tmp_path, canary)
    assert history.returncode == 0 and "[/oops]" in history.stdout
    rolled = cli(["rollback"], tmp_path, canary)
    assert rolled.returncode == 0, rolled.stderr
    assert_no_canary(canary, [applied, status, history, rolled], tmp_path)


DSN_PLAN = """
atomicops: 1
name: hostile-dsn
secrets:
  pw: {env: HOSTILE_TOKEN}
connections:
  db: {kind: postgres, dsn: "postgresql://u:${secrets.pw}@127.0.0.1:1/app"}
operations:
  - id: a
    steps:
      - {name: s, read_only: true, do: {sql: "select 1", connection: db}}
"""


@pytest.mark.parametrize("shape", ["{a}:@/{b}", "{a}@x:1/{b}"])
def test_a_password_with_url_delimiters_is_encoded_into_a_dsn(tmp_path, canary, shape):
    password = shape.format(a=canary[:20], b=canary[20:])
    (tmp_path / "plan.yaml").write_text(DSN_PLAN)
    res = cli(["apply", "plan.yaml"], tmp_path, password)
    assert res.returncode == 2, res.stderr  # the preflight finds nothing listening
    # The DSN parsed as written: the host is 127.0.0.1, not a piece of the password.
    assert "127.0.0.1:1/app" in res.stderr and "Connection refused" in res.stderr
    for piece in (canary[:20], canary[20:]):
        assert piece not in res.stdout + res.stderr
        for path in (tmp_path / ".atomicops").rglob("*"):
            assert piece.encode() not in path.read_bytes()


WEAK_PLAN = """
atomicops: 1
name: hostile-weak
secrets:
  pw: {env: HOSTILE_TOKEN}
operations:
  - id: a
    steps:
      - {name: s, do: {run: ["true"], env: {P: "${secrets.pw}"}}, undo: {run: ["true"]}}
"""


@pytest.mark.parametrize(
    "value, why",
    [("postgres", "too common"), ("Password", "too common"), ("abc123", "shorter than 8")],
)
def test_a_secret_too_short_or_too_common_to_mask_is_refused_before_anything_runs(tmp_path, value, why):
    (tmp_path / "plan.yaml").write_text(WEAK_PLAN)
    for command in ("validate", "apply"):
        res = cli([command, "plan.yaml", "--json"], tmp_path, value)
        assert res.returncode == 2, res.stdout
        doc = json.loads(res.stdout)
        assert doc["problems"][0]["key"] == "secrets.pw" and why in doc["problems"][0]["message"]
    assert not (tmp_path / ".atomicops").exists()  # nothing ran, no journal
