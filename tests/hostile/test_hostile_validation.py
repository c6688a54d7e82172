"""Hostile input for validation: expressions, comparators and checks that used to pass
`validate` and then fail (or do nothing) in the middle of a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atomicops import api
from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.errors import PlanInvalid, RunFailed


def cli(*args: str, cwd: Path, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ATOMICOPS_CRASH_AT"}
    if crash:
        env["ATOMICOPS_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "atomicops.cli", *args], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- A: JMESPath that fails on the data is a typed failure, never an internal error -------

TYPE_ERROR_OUTPUT = """\
atomicops: 1
name: p
operations:
  - id: a
    steps:
      - name: s
        do: {run: ["echo", '{"n": 5}']}
        outputs: {n: "length(json.n)"}
        undo: {run: ["touch", "UNDONE"]}
"""


def test_an_output_expression_failing_on_the_data_fails_the_step_and_undoes_it(tmp_path: Path):
    plan = write(tmp_path, TYPE_ERROR_OUTPUT)
    state = str(tmp_path / "j.db")
    with pytest.raises(RunFailed) as exc:
        api.apply(plan, state=state)
    assert "length(json.n)" in str(exc.value) and "cannot evaluate" in str(exc.value)
    st = api.environment(state=state)
    assert st.in_flight() == []  # the effect was journalled, then undone
    assert st.ops["a"].status == "rolled_back"


PROBE_TYPE_ERROR = """\
atomicops: 1
name: p
operations:
  - id: a
    steps:
      - name: s
        do: {run: ["echo", '{"n": 5}']}
        outputs: {n: json.n}
        undo: {run: ["true"]}
        probe:
          run: ["echo", '{"n": 5}']
          outputs: {n: "length(json.n)"}
"""


def test_a_probe_expression_failing_on_the_data_leaves_the_step_for_resolve(tmp_path: Path):
    plan = write(tmp_path, PROBE_TYPE_ERROR)
    assert cli("apply", str(plan), cwd=tmp_path, crash="after_intent").returncode == CRASH_EXIT_CODE
    resumed = cli("resume", cwd=tmp_path)
    assert resumed.returncode == 3, resumed.stderr
    assert "internal error" not in resumed.stderr
    assert "atomicops resolve a s" in resumed.stderr


# -- B: `call:` names a function that exists, found without running the module -------------

CALL_PLAN = """\
atomicops: 1
name: p
operations:
  - id: a
    steps:
      - {name: s, read_only: true, do: {call: "tools.copy:%s"}}
"""


def test_a_call_to_a_missing_function_is_refused_without_importing_the_module(tmp_path: Path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("")
    (tmp_path / "tools" / "copy.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('IMPORTED').touch()\n"
        "from json import dumps as encode\n\ndef copy_rows(ctx):\n    return {}\n"
    )
    plan = write(tmp_path, CALL_PLAN % "copy_row")
    with pytest.raises(PlanInvalid) as exc:
        api.validate(plan)
    (problem,) = exc.value.problems
    assert problem.line == 6 and problem.op == "a"
    assert "has no function 'copy_row'" in problem.message
    for name in ("copy_rows", "encode"):  # a def, and a name bound by an import
        api.validate(write(tmp_path, CALL_PLAN % name))
    assert not (tmp_path / "tools" / "IMPORTED").exists()


# -- B: a misspelt phase is one error, not one per dependency ------------------------------

def test_an_unknown_phase_is_one_error_not_a_later_phase_error_per_dependency(tmp_path: Path):
    deps = "".join(
        f"  - id: app{i}\n    phase: application\n    steps: [{{name: s, read_only: true, do: {{run: ['true']}}}}]\n"
        for i in range(4)
    )
    plan = write(tmp_path, (
        "atomicops: 1\nname: p\nphases: [infrastructure, application, verification]\noperations:\n" + deps +
        "  - id: check\n    phase: verificaton\n    depends_on: [app0, app1, app2, app3]\n"
        "    steps: [{name: s, read_only: true, do: {run: ['true']}}]\n"
    ))
    with pytest.raises(PlanInvalid) as exc:
        api.validate(plan)
    errors = [p for p in exc.value.problems if p.severity == "error"]
    assert [p.message for p in errors] == [
        "unknown phase 'verificaton' (did you mean 'verification'?) (phases: infrastructure, application, verification)"
    ]


# -- C: checks that never ran --------------------------------------------------------------

def test_triggers_that_are_not_polled_are_a_warning_at_their_line(tmp_path: Path):
    plan = write(tmp_path, (
        "atomicops: 1\nname: p\ntriggers:\n  poll_seconds: 5\n  checks:\n"
        "    - {run: [echo, '{}'], expect: {json.ok: {exists: false}}}\n"
        "operations:\n  - id: a\n    steps: [{name: s, read_only: true, do: {run: ['true']}}]\n"
    ))
    (warning,) = api.validate(plan).warnings
    assert warning.line == 3 and "not polled" in warning.message
