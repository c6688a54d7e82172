"""Hostile input to the plan loader and the command line: each is refused with exit 2, a
message naming the file (and line), no traceback, and nothing run (no journal, no effect)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from atomicops import api
from atomicops.plan.source import MAX_BYTES

DATA = Path(__file__).parent / "input"
MEMORY_CAP = 1536 << 20  # a regression that expands a bomb fails on memory, not the machine


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atomicops.cli", *args],
        check=False, cwd=cwd, capture_output=True, text=True, timeout=120, preexec_fn=_cap_memory,
        env={**os.environ, "ATOMICOPS_ENV": "default"},
    )


def refused(res: subprocess.CompletedProcess[str], cwd: Path, *needles: str) -> str:
    """Exit 2, every needle in the message, no traceback, and nothing ran."""
    text = res.stderr + res.stdout
    assert res.returncode == 2, text
    assert "Traceback" not in text and "internal error" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    assert not (cwd / ".atomicops").exists()
    assert not (cwd / "ran").exists()
    return text


def plan(tmp_path: Path, name: str) -> str:
    """A copy of a corpus plan in the test's directory, so its `run` steps would act there."""
    shutil.copy(DATA / name, tmp_path / name)
    return name


# --------------------------------------------------------------------------- YAML itself


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    res = cli("apply", plan(tmp_path, "alias_bomb.yaml"), cwd=tmp_path)
    refused(res, tmp_path, "alias_bomb.yaml:", "values once aliases are expanded")


def test_an_alias_bomb_in_a_vars_file_is_refused(tmp_path):
    shutil.copy(DATA / "alias_bomb.yaml", tmp_path / "bomb-vars.yaml")
    res = cli("apply", plan(tmp_path, "vars.yaml"), "--vars-file", "bomb-vars.yaml", cwd=tmp_path)
    refused(res, tmp_path, "bomb-vars.yaml:", "values once aliases are expanded")


def test_a_recursive_alias_is_refused(tmp_path):
    res = cli("apply", plan(tmp_path, "recursive_alias.yaml"), cwd=tmp_path)
    refused(res, tmp_path, "recursive_alias.yaml:4", "recursive alias")


def test_very_deep_nesting_is_refused(tmp_path):
    res = cli("apply", plan(tmp_path, "deep_nesting.yaml"), cwd=tmp_path)
    refused(res, tmp_path, "deep_nesting.yaml:4", "nesting deeper than")


def test_non_utf8_input_is_refused_with_its_line(tmp_path):
    res = cli("apply", plan(tmp_path, "not_utf8.yaml"), cwd=tmp_path)
    refused(res, tmp_path, "not_utf8.yaml:3", "not UTF-8")


def test_an_oversized_plan_is_refused_unread(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text((DATA / "vars.yaml").read_text() + "#" * (MAX_BYTES + 1) + "\n")
    res = cli("apply", "big.yaml", cwd=tmp_path)
    refused(res, tmp_path, "big.yaml", "larger than")


def test_dev_zero_as_plan_is_refused(tmp_path):
    res = cli("apply", "/dev/zero", cwd=tmp_path)
    refused(res, tmp_path, "/dev/zero", "not a regular file")


@pytest.mark.parametrize("role", ["plan", "vars file"])
def test_a_fifo_is_refused_not_waited_on(tmp_path, role):
    os.mkfifo(tmp_path / "fifo")
    args = ["fifo"] if role == "plan" else [plan(tmp_path, "vars.yaml"), "--vars-file", "fifo"]
    res = cli("apply", *args, cwd=tmp_path)
    refused(res, tmp_path, f"{role} fifo is not a regular file")


# --------------------------------------------------------------------------- --var, --vars-file, --env


def test_var_without_a_value_is_a_usage_error(tmp_path):
    res = cli("apply", plan(tmp_path, "vars.yaml"), "--var", "svc", cwd=tmp_path)
    refused(res, tmp_path, "--var", "NAME=VALUE", "'svc'")


def test_an_undeclared_var_is_refused_with_did_you_mean(tmp_path):
    res = cli("apply", plan(tmp_path, "vars.yaml"), "--var", "regoin=us-west-2", cwd=tmp_path)
    refused(res, tmp_path, "vars.yaml:3", "--var regoin", "did you mean 'region'?")


def test_an_undeclared_key_in_a_vars_file_is_refused_at_its_own_line(tmp_path):
    shutil.copy(DATA / "undeclared_vars_file.yaml", tmp_path / "v.yaml")
    res = cli("apply", plan(tmp_path, "vars.yaml"), "--vars-file", "v.yaml", cwd=tmp_path)
    text = refused(res, tmp_path, "v.yaml:3", "'regoin'", "did you mean 'region'?")
    assert "vars.yaml:1" not in text


def test_an_offered_vars_file_sets_only_what_the_plan_declares(tmp_path):
    # What `atomicops sandbox up` writes: one file for every plan, each taking what it uses.
    (tmp_path / "v.yaml").write_text("atomicops.vars: offered\nregion: eu-west-1\nnats_url: nats://x\n")
    res = cli("plan", plan(tmp_path, "vars.yaml"), "--vars-file", "v.yaml", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("env", ["", "a/b", "a\nb", "x" * 300])
def test_a_malformed_env_name_is_refused(tmp_path, env):
    res = cli("apply", plan(tmp_path, "vars.yaml"), "--env", env, cwd=tmp_path)
    refused(res, tmp_path, "--env")


# --------------------------------------------------------------------------- accepted by validate, failing at run time


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("timeout_inf.yaml", ["timeout_inf.yaml:6", "timeout"]),
        ("retry_delay_huge.yaml", ["retry_delay_huge.yaml:7", "delay"]),
        ("var_dunder_path.yaml", ["var_dunder_path.yaml:7", "'__class__'"]),
        ("run_var_string.yaml", ["run_var_string.yaml:7", "argv"]),
        ("long_id.yaml", ["long_id.yaml:4", "64 characters"]),
        ("dotted_id.yaml", ["dotted_id.yaml:4", "could not be referenced"]),
        ("version_true.yaml", ["version_true.yaml:1", "atomicops: 1"]),
        ("sql_injection.yaml", ["sql_injection.yaml:10", "SQL injection", "params", "ident"]),
        ("sql_file_escape.yaml", ["sql_file_escape.yaml:10", "outside the plan's directory", "outside_plan_dir: true"]),
        ("call_outside.yaml", ["call_outside.yaml:6", "'os' is not in the plan's directory"]),
    ],
)
def test_refused_at_validate_not_at_run_time(tmp_path, name, needles):
    res = cli("apply", plan(tmp_path, name), cwd=tmp_path)
    refused(res, tmp_path, *needles)


def test_a_call_outside_the_plan_directory_runs_when_the_action_says_so(tmp_path):
    text = (DATA / "call_outside.yaml").read_text()
    (tmp_path / "p.yaml").write_text(text.replace('"os:getcwd"}', '"builtins:callable", outside_plan_dir: true}'))
    res = cli("apply", "p.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_retry_on_unquoted_means_what_it_says(tmp_path):
    # YAML 1.1 reads a bare `on` as true; as a mapping key it stays the word written.
    loaded = api.validate(DATA / "retry_on_unquoted.yaml")
    assert loaded.plan.operations[0].steps[0].retry.on == "any"


# --------------------------------------------------------------------------- binary values


def test_binary_values_apply_are_journalled_and_roll_back(tmp_path, moto_endpoint):
    bucket = f"atomicops-binary-{uuid.uuid4().hex[:8]}"
    args = ["--var", f"aws_endpoint={moto_endpoint}", "--var", f"bucket={bucket}"]
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    body = lambda: s3.get_object(Bucket=bucket, Key="blob")["Body"].read()

    applied = cli("apply", str(DATA / "binary_value.yaml"), *args, cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert body() == b"\x89PNG\r\n\x1a\nnew\xfe"
    # The undo of `replace` comes from the journal: the old bytes, exactly.
    undone = cli("rollback", "--target", "replace", cwd=tmp_path)
    assert undone.returncode == 0, undone.stderr
    assert body() == b"\xff\xd8\xff\xe0old\x00"
    rest = cli("rollback", cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_inventory_takes_an_offered_vars_file_for_a_plan_that_declares_less(tmp_path):
    (tmp_path / "v.yaml").write_text("atomicops.vars: offered\nregion: us-east-1\nnats_url: null\n")
    res = cli("inventory", "--plan", plan(tmp_path, "vars.yaml"), "--vars-file", "v.yaml", "--no-aws", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
