"""Secret canaries: a unique value in every secret, every path exercised (success, failure,
crash, resume, --debug, --json, history, status): zero occurrences in any file under
.atomicops/, in stdout or stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from atomicops.engine.crash import CRASH_EXIT_CODE

PLANS = Path(__file__).parent / "plans"


@pytest.fixture
def canary():
    return "canary-" + uuid.uuid4().hex


def run_cli(args, cwd, canary, crash=None):
    env = {**os.environ, "ATOMICOPS_CANARY": canary}
    env.pop("ATOMICOPS_CRASH_AT", None)
    if crash:
        env["ATOMICOPS_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "atomicops.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def assert_nowhere(canary: str, outputs: list[str], root: Path, also: list[str] = ()) -> None:
    for text in outputs:
        assert canary not in text
        for value in also:
            assert value not in text
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert canary.encode() not in data, path
            for value in also:
                assert value.encode() not in data, path


def test_secret_values_never_leave_the_process(tmp_path, canary, moto_endpoint, tmp_path_factory):
    suffix = uuid.uuid4().hex[:8]
    vars_ = ["--var", f"aws_endpoint={moto_endpoint}", "--var", f"suffix={suffix}"]
    plan = str(PLANS / "secrets.yaml")
    seen: list[str] = []

    def cli(*args, crash=None, expect=0):
        res = run_cli(list(args), tmp_path, canary, crash)
        seen.extend([res.stdout, res.stderr])
        assert res.returncode == expect, res.stderr
        return res

    # failure (the last operation echoes the secret on stderr), with --debug and --json
    failed = cli("apply", plan, *vars_, "--var", "fail=yes", "--debug", expect=1)
    assert "cannot use ***" in failed.stderr
    cli("apply", plan, *vars_, "--var", "fail=yes", "--json", expect=1)
    # crash right after the secret was stored, then resume
    cli("apply", plan, *vars_, crash="after_effect:store/generated", expect=CRASH_EXIT_CODE)
    cli("resume")
    cli("status", "--json")
    cli("history", "--json")
    cli("history")
    cli("status")
    # the generated secret was read back from its store by this new process: the undo
    # compares its hash with the one recorded at apply
    cli("rollback")

    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert not [n for n in names if suffix in n]  # nothing left behind
    assert_nowhere(canary, seen, tmp_path / ".atomicops")
    # ...nor in the sandbox's logs (moto's request log of this test session).
    logs = list(tmp_path_factory.getbasetemp().glob("moto*/moto.log"))
    assert logs and all(canary not in log.read_text(errors="replace") for log in logs)


def test_a_generated_secret_is_generated_once_and_read_back(tmp_path, canary, moto_endpoint):
    suffix = uuid.uuid4().hex[:8]
    vars_ = ["--var", f"aws_endpoint={moto_endpoint}", "--var", f"suffix={suffix}"]
    res = run_cli(["apply", str(PLANS / "secrets.yaml"), *vars_], tmp_path, canary)
    assert res.returncode == 0, res.stderr
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint)
    generated = sm.get_secret_value(SecretId=f"test/{suffix}/generated")["SecretString"]
    assert len(generated) == 24
    outputs = list(tmp_path.joinpath(".atomicops").rglob("*"))
    assert_nowhere(canary, [res.stdout, res.stderr], tmp_path / ".atomicops", also=[generated])
    assert outputs
    rb = run_cli(["rollback"], tmp_path, canary)
    assert rb.returncode == 0, rb.stderr  # the undo's hash check passed: same value read back


# A plan whose checks see the secret: `echoes` fails and prints it on stderr, `observes`
# reads it back and does not find what it expects (its mismatch shows the observed value).
CHECKS_SEE_THE_SECRET = r"""
atomicops: 1
name: checks-see-the-secret
secrets:
  token: {env: ATOMICOPS_CANARY}
operations:
  - id: a
    steps:
      - {name: s, do: {run: ["true"]}, undo: {run: ["true"]}}
    verify:
      - {name: observes-op, run: ["sh", "-c", "printf '{\"t\": \"%s\"}' \"$T\""], env: {T: "${secrets.token}"}, expect: {"json.t": other}}
verify:
  - {name: echoes, run: ["sh", "-c", "echo \"cannot use $T\" >&2; exit 1"], env: {T: "${secrets.token}"}}
  - {name: observes, run: ["sh", "-c", "printf '{\"t\": \"%s\"}' \"$T\""], env: {T: "${secrets.token}"}, expect: {"json.t": other}}
"""


def test_failing_checks_that_see_a_secret_never_print_it(tmp_path, canary):
    (tmp_path / "plan.yaml").write_text(CHECKS_SEE_THE_SECRET)
    (tmp_path / "plan-verify.yaml").write_text(CHECKS_SEE_THE_SECRET.replace("expect: {\"json.t\": other}}\nverify:", "}\nverify:"))
    seen = []
    for args, code in [
        (["apply", "plan.yaml", "--json"], 1),  # the op's own verify fails: rolled back
        (["apply", "plan.yaml"], 1),
        (["apply", "plan-verify.yaml", "--json"], 1),  # the plan's verify fails after apply
        (["apply", "plan-verify.yaml"], 1),
    ]:
        res = run_cli(args, tmp_path, canary)
        assert res.returncode == code, res.stderr
        seen += [res.stdout, res.stderr]
    doc = json.loads(seen[4])
    assert doc["report"]["verify"][0]["error"] == "run [Exit1]: run: sh -c echo \"cannot use $T\" >&2; exit 1 exited 1: cannot use ***"
    assert doc["report"]["verify"][1]["mismatches"] == ["json.t: expected other, got ***"]
    assert run_cli(["apply", "plan-verify.yaml", "--on-failure", "keep"], tmp_path, canary).returncode == 1
    for args in (["verify", "plan-verify.yaml", "--json"], ["verify", "plan-verify.yaml"]):
        res = run_cli(args, tmp_path, canary)
        assert res.returncode == 1, res.stderr
        seen += [res.stdout, res.stderr]
    assert "got ***" in seen[-2]
    assert_nowhere(canary, seen, tmp_path / ".atomicops")
