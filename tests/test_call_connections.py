"""`validate` sees the connections a `call:` function opens with `connection_of`, read from its
source (never imported): a connection built from an operation's outputs opens only once that
operation is applied, so the calling operation must come after it, as for an action that
names the connection; a name the plan does not declare fails at validate, not half-way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_cli import cli

from atomicops import api
from atomicops.errors import PlanInvalid
from atomicops.plan.call_target import connections_used

MODULE = '''\
from atomicops.actions.base import connection_of


def load(ctx, table):
    with connection_of(ctx, "sql").session() as conn:  # the kind's default connection: db
        conn.execute("SELECT 1")
    return {}


def by_name(ctx):
    return {"x": connection_of(ctx, kind="sql", name="db")}


def by_argument(ctx, connection):
    return {"x": connection_of(ctx, "sql", connection)}


def through_a_helper(ctx):
    return _open(ctx)


def _open(ctx):
    return connection_of(ctx, "sql")


def elsewhere(ctx):
    return connection_of(ctx, "sql", "warehouse")


def as_nats(ctx):
    return connection_of(ctx, "nats", "db")


def as_run(ctx):
    return connection_of(ctx, "run")


def computed(ctx, n):
    return connection_of(ctx, "sql", f"db{n}")
'''


def write_plan(tmp_path: Path, call: dict, *, depends: bool, connections: dict | None = None) -> Path:
    (tmp_path / "steps.py").write_text(MODULE)
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps({
        "atomicops": 1, "name": "p",
        "secrets": {"pw": {"env": "CALL_CONN_PW"}},
        "connections": connections or {"db": {"kind": "postgres", "host": "${ops.cluster.host}", "user": "app",
                                               "dbname": "app", "password": "${secrets.pw}"}},
        "operations": [
            {"id": "cluster", "steps": [{"name": "make", "read_only": True, "do": {"run": ["true"]},
                                         "outputs": {"host": "'db.internal'"}}]},
            {"id": "load", **({"depends_on": ["cluster"]} if depends else {}),
             "steps": [{"name": "rows", "read_only": True, "do": call}]},
        ],
    }, indent=1))
    return plan


def problems(plan: Path) -> list[str]:
    try:
        api.validate(plan)
    except PlanInvalid as exc:
        return [p.message for p in exc.problems if p.severity == "error"]
    return []


@pytest.mark.parametrize("function", ["steps:load", "steps:by_name", "steps:through_a_helper"])
def test_a_call_that_opens_a_connection_built_from_outputs_must_come_after_them(tmp_path, function):
    plan = write_plan(tmp_path, {"call": function, "args": {"table": "t"} if function == "steps:load" else {}},
                      depends=False)
    found = problems(plan)
    assert any("uses connection 'db'" in m and f"{function} opens it with connection_of" in m
               and "add `depends_on: [cluster]`" in m for m in found), found
    assert problems(write_plan(tmp_path, {"call": function, "args": {"table": "t"} if function == "steps:load" else {}},
                               depends=True)) == []


def test_the_name_the_steps_args_give_the_function_is_checked(tmp_path):
    plan = write_plan(tmp_path, {"call": "steps:by_argument", "args": {"connection": "db"}}, depends=False)
    assert any("uses connection 'db'" in m and "depends_on: [cluster]" in m for m in problems(plan))
    # Given by a reference, the name is known only at run time: nothing to say now.
    plan = write_plan(tmp_path, {"call": "steps:by_argument", "args": {"connection": "${vars.which}"}}, depends=False)
    data = json.loads(plan.read_text())
    data["vars"] = {"which": "db"}
    plan.write_text(json.dumps(data))
    assert problems(plan) == []


def test_a_connection_the_plan_does_not_declare_or_of_another_kind_is_refused_at_the_step(tmp_path):
    found = problems(write_plan(tmp_path, {"call": "steps:elsewhere"}, depends=True))
    assert any("steps:elsewhere opens connection 'warehouse'" in m and "does not declare" in m for m in found), found
    found = problems(write_plan(tmp_path, {"call": "steps:as_nats"}, depends=True))
    assert any("opens connection 'db' as 'nats'" in m and "postgres connection" in m for m in found), found
    found = problems(write_plan(tmp_path, {"call": "steps:as_run"}, depends=True))
    assert any("kind 'run'" in m and "takes no connection: the kinds are aws, nats, sql, sql_file" in m for m in found), found


def test_the_cli_names_the_file_line_and_operation(tmp_path):
    plan = write_plan(tmp_path, {"call": "steps:load", "args": {"table": "t"}}, depends=False)
    done = cli("validate", str(plan), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{plan}:" in done.stderr and "load" in done.stderr and "steps:load opens it with connection_of" in done.stderr


def test_what_the_source_cannot_say_is_left_to_run_time(tmp_path):
    (tmp_path / "steps.py").write_text(MODULE)
    assert connections_used("steps:computed", tmp_path) == ()
    assert connections_used("steps:nowhere", tmp_path) == ()
    [use] = connections_used("steps:by_argument", tmp_path)
    assert (use.kind, use.name, use.param) == ("sql", None, "connection")
    # The helper's use counts for its caller; the line is the helper's.
    [use] = connections_used("steps:through_a_helper", tmp_path)
    assert (use.kind, use.name, use.line) == ("sql", None, MODULE.splitlines().index("    return connection_of(ctx, \"sql\")") + 1)


def test_an_edited_module_is_read_again(tmp_path):
    (tmp_path / "steps.py").write_text(MODULE)
    assert [u.name for u in connections_used("steps:elsewhere", tmp_path)] == ["warehouse"]
    (tmp_path / "steps.py").write_text(MODULE.replace('"warehouse"', '"lake"') + "\n# longer\n")
    assert [u.name for u in connections_used("steps:elsewhere", tmp_path)] == ["lake"]
