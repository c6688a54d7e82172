"""Settling by undo: a step killed in flight whose undo needs none of its outputs (a delete by
name) is undone by `rollback` and `resume --rollback`, "already gone" counting as undone, and
journalled `settled_by: undo`. A forward `resume` that has nothing better undoes it and runs
it again. Real moto server, real crashes (engine/crash.py)."""

from __future__ import annotations

import pytest
from settle_world import SettleWorld

from atomicops.engine.crash import CRASH_EXIT_CODE


@pytest.fixture
def world(tmp_path, moto_endpoint):
    return SettleWorld(tmp_path, moto_endpoint)


@pytest.mark.parametrize(
    ("point", "command", "gone"),
    [
        ("after_effect:database/create", ("rollback",), False),  # the database exists: deleted by name
        ("after_intent:database/create", ("rollback",), True),  # nothing was made: "already gone"
        ("after_effect:database/create", ("resume", "--rollback"), False),
        ("after_intent:database/create", ("resume", "--rollback"), True),
        ("after_effect:param/put", ("rollback",), False),  # undo preferred to a re-do when rolling back
    ],
)
def test_a_rollback_settles_a_step_killed_in_flight_by_its_undo(world, point, command, gone):
    env = "undo-" + "-".join(command) + "-" + point.split(":")[0]
    op = point.split(":")[1].split("/")[0]
    assert world.apply(env, crash=point).returncode == CRASH_EXIT_CODE
    done = world.run(*command, "--env", env)
    assert done.returncode == 0, done.stderr
    assert world.nothing_left()
    intents = world.events(env, "undo_intent", op)
    undone = world.events(env, "undo_done", op)
    assert [i.get("settled_by") for i in intents] == ["undo"]
    assert [(u.get("settled_by"), u["already_gone"]) for u in undone] == [("undo", gone)]
    assert set(world.status(env).values()) == {"rolled_back"}
    assert world.coherent(env) == []


def test_a_forward_resume_undoes_then_runs_the_step_again(world):
    env = "undo-forward"
    assert world.apply(env, crash="after_effect:database/create").returncode == CRASH_EXIT_CODE
    resumed = world.run("resume", "--env", env)
    assert resumed.returncode == 0, resumed.stderr
    assert set(world.status(env).values()) == {"applied"}
    assert [u.get("settled_by") for u in world.events(env, "undo_done", "database")] == ["undo"]
    assert len(world.events(env, "step_done", "database")) == 1  # the second run of the create
    assert world.databases() == [f"settle-{world.suffix}"]
    assert world.run("rollback", "--env", env).returncode == 0
    assert world.nothing_left()
    assert world.coherent(env) == []


def test_a_settling_undo_killed_midway_is_run_again(world):
    env = "undo-killed"
    assert world.apply(env, crash="after_effect:database/create").returncode == CRASH_EXIT_CODE
    killed = world.run("rollback", "--env", env, crash="inside_undo:database/create")
    assert killed.returncode == CRASH_EXIT_CODE
    resumed = world.run("resume", "--env", env)
    assert resumed.returncode == 0, resumed.stderr
    assert world.nothing_left()
    assert [u.get("settled_by") for u in world.events(env, "undo_done", "database")] == ["undo"]


def test_a_forward_resume_killed_in_its_settling_undo_still_goes_forward(world):
    env = "undo-killed-forward"
    assert world.apply(env, crash="after_effect:database/create").returncode == CRASH_EXIT_CODE
    killed = world.run("resume", "--env", env, crash="after_undo:database/create")
    assert killed.returncode == CRASH_EXIT_CODE
    resumed = world.run("resume", "--env", env)
    assert resumed.returncode == 0, resumed.stderr
    assert set(world.status(env).values()) == {"applied"}  # not turned into a rollback
    assert world.run("rollback", "--env", env).returncode == 0
    assert world.nothing_left()
    assert world.coherent(env) == []
