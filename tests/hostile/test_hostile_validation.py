"""Hostile input for validation: expressions, comparators and checks that used to pass
`validate` and then fail (or do nothing) in the middle of a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_cli import cli

from atomicops import api
from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.errors import PlanInvalid, PreflightFailed, RunFailed
from atomicops.sandbox.service import free_port


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


def test_an_output_expression_failing_on_the_data_fails_the_step_and_undoes_it(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the undo's `touch UNDONE` lands
    plan = write(tmp_path, TYPE_ERROR_OUTPUT)
    state = str(tmp_path / "j.db")
    with pytest.raises(RunFailed) as exc:
        api.apply(plan, state=state)
    assert "length(json.n)" in str(exc.value) and "cannot evaluate" in str(exc.value)
    st = api.environment(state=state)
    assert st.in_flight() == []  # the effect was journalled, then undone
    assert st.ops["a"].status in ("failed", "rolled_back") and not st.ops["a"].present
    assert (tmp_path / "UNDONE").exists()


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
        probe:   # not the do's own read (that one would simply be re-done)
          run: ["printf", '{"n": 5}']
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

def test_a_trigger_that_could_write_is_refused_at_its_line(tmp_path: Path):
    # Triggers are polled over and over during a run: a `run` command could do anything.
    plan = write(tmp_path, (
        "atomicops: 1\nname: p\ntriggers:\n  poll_seconds: 5\n  checks:\n"
        "    - {run: [echo, '{}'], expect: {json.ok: {exists: false}}}\n"
        "operations:\n  - id: a\n    steps: [{name: s, read_only: true, do: {run: ['true']}}]\n"
    ))
    with pytest.raises(PlanInvalid) as caught:
        api.validate(plan)
    (problem,) = caught.value.problems
    assert problem.line == 6 and "must only read" in problem.message and problem.file == str(plan)


# -- D: preflight refuses a run that would fail half-way, before anything is created -------

def events_of(state: str) -> list[str]:
    return [e["type"] for e in api.history(state=state)]


MISSING_INPUTS = """\
atomicops: 1
name: p
vars: {host: null}
secrets:
  token: {env: PREFLIGHT_TOKEN_UNSET}
  other: {env: PREFLIGHT_TOKEN_OTHER}
operations:
  - id: first
    steps:
      - {name: make, do: {run: [touch, MADE]}, undo: {run: [rm, -f, MADE]}}
  - id: second
    depends_on: [first]
    steps:
      - name: use
        do: {run: [echo, "http://${vars.host}/x"], env: {A: "${secrets.token}", B: "${secrets.other}"}}
        undo: {run: ["true"]}
"""


def test_preflight_lists_every_missing_secret_and_var_before_the_first_step(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("PREFLIGHT_TOKEN_UNSET", raising=False)
    monkeypatch.delenv("PREFLIGHT_TOKEN_OTHER", raising=False)
    monkeypatch.chdir(tmp_path)
    state = str(tmp_path / "j.db")
    with pytest.raises(PreflightFailed) as exc:
        api.apply(write(tmp_path, MISSING_INPUTS), state=state)
    assert exc.value.exit_code == 2
    text = "\n".join(exc.value.problems)
    assert "PREFLIGHT_TOKEN_UNSET, which is not set" in text
    assert "PREFLIGHT_TOKEN_OTHER, which is not set" in text  # every problem, not the first
    assert "var 'host' has no value" in text and "--var host=" in text
    assert not [t for t in events_of(state) if t.startswith(("op_", "step_"))]
    assert not (tmp_path / "MADE").exists()


def test_preflight_asks_every_connection_the_first_phase_uses(tmp_path: Path, closed_nats_url: str):
    port = free_port()
    plan = write(tmp_path, f"""\
atomicops: 1
name: p
connections:
  aws: {{kind: aws, region: us-east-1, endpoint_url: "http://127.0.0.1:{port}"}}
  db: {{kind: postgres, dsn: "postgresql://nobody@127.0.0.1:{port}/x"}}
  bus: {{kind: nats, url: "{closed_nats_url}"}}
operations:
  - id: a
    steps:
      - {{name: who, read_only: true, do: {{aws: sts.get_caller_identity}}}}
      - {{name: sql, read_only: true, do: {{sql: "select 1"}}}}
      - {{name: bus, read_only: true, do: {{nats: {{stream_info: {{name: S}}}}}}}}
""")
    state = str(tmp_path / "j.db")
    with pytest.raises(PreflightFailed) as exc:
        api.apply(plan, state=state)
    named = sorted(p.split(" (")[0] for p in exc.value.problems)
    assert named == ["connection 'aws'", "connection 'bus'", "connection 'db'"]
    assert all("does not answer" in p for p in exc.value.problems)
    assert "step_intent" not in events_of(state)


def test_preflight_reads_each_aws_secret_once_and_lets_a_good_run_through(tmp_path: Path, aws_connection, moto_endpoint):
    import boto3

    name = f"preflight/{tmp_path.name}"
    boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint).create_secret(
        Name=name, SecretString="a-long-enough-value")
    text = f"""\
atomicops: 1
name: p
secrets: {{token: {{aws_secret: "%s"}}}}
connections:
  aws: {{kind: aws, region: us-east-1, endpoint_url: "{moto_endpoint}"}}
operations:
  - id: a
    steps: [{{name: s, read_only: true, do: {{run: ["true"], env: {{T: "${{secrets.token}}"}}}}}}]
"""
    state = str(tmp_path / "j.db")
    with pytest.raises(PreflightFailed) as exc:
        api.apply(write(tmp_path, text % (name + "-missing")), state=state)
    (problem,) = exc.value.problems
    assert problem.startswith("secret 'token' cannot be read") and "ResourceNotFound" in problem
    assert api.apply(write(tmp_path, text % name), state=state).applied == ["a"]


def test_a_later_phase_connection_is_checked_for_form_not_asked(tmp_path: Path):
    # The data phase may connect to a database the infrastructure phase creates.
    text = """\
atomicops: 1
name: p
phases: [infrastructure, data]
vars: {database_url: %s}
connections: {db: {kind: postgres, dsn: "${vars.database_url}"}}
operations:
  - id: infra
    phase: infrastructure
    steps: [{name: s, read_only: true, do: {run: ["true"]}}]
  - id: schema
    phase: data
    steps: [{name: s, read_only: true, do: {sql: "select 1"}}]
"""
    state = str(tmp_path / "j.db")
    with pytest.raises(PreflightFailed) as exc:
        api.apply(write(tmp_path, text % "null"), state=state)
    assert exc.value.problems == ["connection 'db' (postgres): dsn: a postgres connection needs dsn: postgresql://..."]
    with pytest.raises(RunFailed) as failed:  # well formed, not there yet: found by its step
        api.apply(write(tmp_path, text % f"'postgresql://nobody@127.0.0.1:{free_port()}/x'"), state=state)
    assert "operation schema" in str(failed.value)


# -- B: outputs may hold constants and references, so names need not be repeated ----------

VALUE_OUTPUTS = """\
atomicops: 1
name: p
vars: {svc: orders}
operations:
  - id: q
    steps:
      - name: create
        do: {run: [touch, "${vars.svc}-queue"]}
        outputs: {name: "${vars.svc}-queue", port: 5432, key: "${step.key}"}
        undo: {run: [rm, "${self.name}"]}
  - id: user
    steps: [{name: s, read_only: true, do: {run: [test, -f, "${ops.q.name}"]}}]
"""


def test_outputs_hold_constants_and_references_for_undo_and_other_operations(tmp_path: Path):
    state = str(tmp_path / "j.db")
    api.apply(write(tmp_path, VALUE_OUTPUTS), state=state)
    assert (tmp_path / "orders-queue").exists()
    outputs = {o["id"]: o["outputs"] for o in api.status(state=state)["operations"]}
    assert outputs["q"] == {"name": "orders-queue", "port": 5432, "key": "default/q/create"}
    api.rollback(state=state)
    assert not (tmp_path / "orders-queue").exists()  # the undo read ${self.name}


def test_an_output_reference_to_a_secret_or_a_later_step_is_refused(tmp_path: Path):
    plan = write(tmp_path, VALUE_OUTPUTS.replace('port: 5432', 'pw: "${secrets.nope}", later: "${self.gone}"'))
    with pytest.raises(PlanInvalid) as exc:
        api.validate(plan)
    messages = sorted(p.message for p in exc.value.problems)
    assert "a secret cannot be an output: outputs are journalled and shown by status" in messages
    assert any("declares no output 'gone'" in m for m in messages), messages
