"""Run lifecycle across kills: what a later apply, resume or rollback may do with what an
interrupted run left, checked on real processes killed at named points (``ATOMICOPS_CRASH_AT``)
and on the journal's integrity check."""

from __future__ import annotations

import json
from pathlib import Path

from test_crash import PLANS, cli, world  # noqa: F401 - world is a fixture

from atomicops.engine.crash import CRASH_EXIT_CODE
from atomicops.inventory import aws as inventory
from atomicops.journal import open_store
from atomicops.journal.integrity import check_journal
from atomicops.journal.store import Event


def journal(cwd: Path, env: str) -> list[Event]:
    return open_store(str(cwd / ".atomicops" / "journal.db")).events(env)


def test_apply_after_a_killed_rollback_refuses_until_that_rollback_is_finished(world):  # noqa: F811
    env = "life-killed-rollback"
    before = world.inv()
    assert cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd).returncode == 0
    killed = cli("rollback", "--env", env, cwd=world.cwd, crash="inside_undo:vpc/subnet-a")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    # The VPC of the first apply is still journalled as applied: an apply must not re-create it.
    again = cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd)
    assert again.returncode == 2, again.stderr
    assert "operation vpc was being rolled back" in again.stderr and "atomicops resume" in again.stderr
    assert len(world.vpcs_of(env)) == 1

    assert cli("resume", "--env", env, cwd=world.cwd).returncode == 0
    assert set(world.status(env).values()) == {"rolled_back"}
    assert world.vpcs_of(env) == []
    assert cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd).returncode == 0
    assert cli("rollback", "--env", env, cwd=world.cwd).returncode == 0
    assert inventory.diff(before, world.inv()) == {}
    assert check_journal(journal(world.cwd, env)) == []


def _ev(seq: int, type: str, step: str = "s1", **data: object) -> Event:
    return Event(seq=seq, env="e", run_id="r", ts=float(seq), type=type, op="op", step=step, data=dict(data))


def test_a_new_intent_on_a_step_still_applied_is_an_integrity_error():
    events = [_ev(1, "step_intent"), _ev(2, "step_done"), _ev(3, "step_intent"), _ev(4, "step_done")]
    assert check_journal(events) == ["seq 3: step_intent for op/s1, which is still applied"]
    undone = [_ev(1, "step_intent"), _ev(2, "step_done"), _ev(3, "undo_intent"), _ev(4, "undo_done"),
              _ev(5, "step_intent"), _ev(6, "step_done")]
    assert check_journal(undone) == []
    failed_undo = [_ev(1, "step_intent"), _ev(2, "step_done"), _ev(3, "undo_intent"), _ev(4, "undo_failed"),
                   _ev(5, "step_intent"), _ev(6, "step_done")]
    assert check_journal(failed_undo) == ["seq 5: step_intent for op/s1, which is still applied"]


# `kms` makes a new key file each time it runs (like a KMS key: no name to find it by); its
# undo fails while a file `blocked` exists. `app` fails while a file `fail` exists.
KEYS = """
atomicops: 1
name: lifecycle-keys
operations:
  - id: kms
    steps:
      - name: key
        do: {run: ["python3", "-c", "import json, tempfile; print(json.dumps(tempfile.mkstemp(prefix='key.', dir='.')[1]))"]}
        outputs: {path: json}
        undo: {run: ["sh", "-c", "test ! -e blocked && rm -f \\"$0\\"", "${self.path}"]}
      - {name: label, do: {run: ["true"]}, undo: {run: ["true"]}}
  - id: app
    depends_on: [kms]
    steps:
      - {name: check, do: {run: ["sh", "-c", "test ! -e fail"]}, undo: {run: ["true"]}}
"""


def keys(cwd: Path) -> list[str]:
    return sorted(p.name for p in cwd.glob("key.*"))


def test_resume_refuses_an_operation_whose_undo_failed_like_apply_does(tmp_path):
    (tmp_path / "plan.yaml").write_text(KEYS)
    killed = cli("apply", "plan.yaml", cwd=tmp_path, crash="after_result:kms/key")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    (tmp_path / "fail").touch()
    (tmp_path / "blocked").touch()
    # The resume continues kms, app fails, and the rollback cannot delete the key.
    assert cli("resume", cwd=tmp_path).returncode == 3
    assert len(keys(tmp_path)) == 1
    (tmp_path / "fail").unlink()

    refused = [cli("apply", "plan.yaml", cwd=tmp_path), cli("resume", cwd=tmp_path)]
    for res in refused:
        assert res.returncode == 2, res.stdout + res.stderr
        assert "operation kms has steps left applied by a failed undo" in res.stderr
        assert "atomicops rollback --target kms" in res.stderr
    assert len(keys(tmp_path)) == 1  # no second key, and the first is still journalled

    (tmp_path / "blocked").unlink()
    done = cli("rollback", "--target", "kms", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert keys(tmp_path) == []
    assert check_journal(journal(tmp_path, "default")) == []


def test_resume_after_everything_was_settled_has_nothing_to_resume(world):  # noqa: F811
    env = "life-closed"
    before = world.inv()
    killed = cli("apply", str(PLANS / "network.yaml"), "--env", env, *world.vars, cwd=world.cwd, crash="between_operations:vpc")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    assert cli("resume", "--env", env, cwd=world.cwd).returncode == 0
    assert cli("rollback", "--env", env, cwd=world.cwd).returncode == 0
    again = cli("resume", "--env", env, cwd=world.cwd)
    assert again.returncode == 0, again.stderr
    assert "nothing to resume" in again.stdout
    assert set(world.status(env).values()) == {"rolled_back"}
    assert world.vpcs_of(env) == []  # the killed run was not brought back
    assert inventory.diff(before, world.inv()) == {}
    doc = json.loads(cli("resume", "--env", env, "--json", cwd=world.cwd).stdout)
    assert doc["nothing_to_do"] is True


def test_a_failed_undo_is_settled_by_hand_with_a_reason_kept_in_the_history(tmp_path):
    (tmp_path / "plan.yaml").write_text(KEYS)
    assert cli("apply", "plan.yaml", cwd=tmp_path).returncode == 0
    (tmp_path / "blocked").touch()
    assert cli("rollback", cwd=tmp_path).returncode == 3  # the key cannot be deleted
    [key] = keys(tmp_path)

    bare = cli("resolve", "kms", "key", "--not-applied", cwd=tmp_path)
    assert bare.returncode == 2 and "--reason" in bare.stderr
    assert cli("resolve", "kms", "key", "--applied", "--reason", "x", cwd=tmp_path).returncode == 2

    (tmp_path / key).unlink()  # the operator deletes the key by hand, then records it
    ok = cli("resolve", "kms", "key", "--not-applied", "--reason", f"deleted {key} by hand, ticket 42", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert f"deleted {key} by hand, ticket 42" in cli("history", cwd=tmp_path).stdout
    hist = json.loads(cli("history", "--json", cwd=tmp_path).stdout)
    settled = [e for e in hist if e["type"] == "step_settled" and (e["op"], e["step"]) == ("kms", "key")]
    assert [e["data"]["reason"] for e in settled] == [f"deleted {key} by hand, ticket 42"]

    done = cli("rollback", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {o["status"] for o in json.loads(cli("status", "--json", cwd=tmp_path).stdout)["operations"]} == {"rolled_back"}
    assert "failed undo" in cli("resolve", "--help", cwd=tmp_path).stdout
    assert check_journal(journal(tmp_path, "default")) == []


# A probe that finds the file by its name cannot tell it from a file that was there before.
NOTES = """
atomicops: 1
name: lifecycle-notes
operations:
  - id: notes
    steps:
      - name: write
        do: {run: ["sh", "-c", "set -C; echo ours > notes.txt"]}
        undo: {run: ["rm", "-f", "notes.txt"]}
        probe: {run: ["test", "-e", "notes.txt"], ok_exit: [0, 1], expect: {exit: 0}}
"""


def test_what_such_a_probe_finds_is_the_steps_when_it_found_nothing_before_the_intent(tmp_path):
    # No notes.txt before the run: the engine's probe just before the intent finds nothing
    # and says so in the intent, so the file found after the kill can only be this step's.
    (tmp_path / "plan.yaml").write_text(NOTES)
    killed = cli("apply", "plan.yaml", cwd=tmp_path, crash="after_effect:notes/write")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    intents = [e for e in json.loads(cli("history", "--json", cwd=tmp_path).stdout) if e["type"] == "step_intent"]
    assert [e["data"].get("absent_before") for e in intents] == [True]
    resumed = cli("resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = [e for e in json.loads(cli("history", "--json", cwd=tmp_path).stdout) if e["type"] == "step_done"]
    assert [e["data"]["settled_by"] for e in done] == ["probe"]
    assert cli("rollback", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "notes.txt").exists()
    assert check_journal(journal(tmp_path, "default")) == []


CLAIM = """
atomicops: 1
name: lifecycle-claim
operations:
  - id: claim
    steps:
      - name: range   # a read whose outputs are the claim; its undo acts on what they name
        do: {run: ["cat", "range.txt"]}
        outputs: {range: stdout}
        undo: {run: ["sh", "-c", "echo undone ${self.range} >> undone.txt"]}
        probe: {run: ["cat", "range.txt"], outputs: {range: stdout}}
"""


def test_a_step_whose_do_is_its_probe_is_simply_run_again_after_a_kill(tmp_path):
    (tmp_path / "plan.yaml").write_text(CLAIM)
    (tmp_path / "range.txt").write_text("1-60")
    killed = cli("apply", "plan.yaml", cwd=tmp_path, crash="after_effect:claim/range")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    resumed = cli("resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = [e for e in json.loads(cli("history", "--json", cwd=tmp_path).stdout) if e["type"] == "step_done"]
    assert [e["data"]["settled_by"] for e in done] == ["redo"]
    assert cli("rollback", cwd=tmp_path).returncode == 0
    assert (tmp_path / "undone.txt").read_text().split() == ["undone", "1-60"]
    assert check_journal(journal(tmp_path, "default")) == []


def test_resume_does_not_claim_what_a_probe_cannot_prove_it_made(tmp_path):
    (tmp_path / "plan.yaml").write_text(NOTES)
    (tmp_path / "notes.txt").write_text("the user's own notes\n")
    killed = cli("apply", "plan.yaml", cwd=tmp_path, crash="after_intent:notes/write")
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    intents = [e for e in json.loads(cli("history", "--json", cwd=tmp_path).stdout) if e["type"] == "step_intent"]
    assert [e["data"].get("absent_before") for e in intents] == [None]  # the probe found the user's file
    stuck = cli("resume", cwd=tmp_path)
    assert stuck.returncode == 3, stuck.stdout + stuck.stderr
    assert "does not prove" in stuck.stderr and "atomicops resolve notes write" in stuck.stderr
    assert cli("rollback", cwd=tmp_path).returncode == 3  # still uncertain: nothing deleted
    assert (tmp_path / "notes.txt").read_text() == "the user's own notes\n"

    ok = cli("resolve", "notes", "write", "--not-applied", "--reason", "notes.txt was there before", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert cli("rollback", cwd=tmp_path).returncode == 0
    assert (tmp_path / "notes.txt").read_text() == "the user's own notes\n"


def test_a_resume_of_a_killed_resume_carries_out_the_original_command_until_a_settled_run_closes_both():
    from atomicops.journal.state import derive

    def ev(seq: int, run_id: str, type: str, op: str | None = None, **data: object) -> Event:
        return Event(seq=seq, env="e", run_id=run_id, ts=float(seq), type=type, op=op, data=dict(data))

    events = [
        ev(1, "A", "run_started", command="apply", options={"targets": ["db"]}),
        ev(2, "A", "op_started", op="db"),
        ev(3, "R", "run_started", command="resume"),  # killed too, before it finished anything
        ev(4, "R", "run_resumes", run="A", command="apply"),
    ]
    st = derive("e", events)
    assert [r.id for r in st.lineage(st.runs["R"])] == ["R", "A"]
    assert st.lineage(st.runs["R"])[-1].options == {"targets": ["db"]}
    # A run that settles while `db` is still half-done closes nothing...
    events += [ev(5, "S", "run_started", command="resolve"), ev(6, "S", "run_finished", outcome="succeeded")]
    assert {r.id for r in derive("e", events).unfinished_runs()} == {"A", "R"}
    # ...one that leaves nothing half-done closes both for good.
    events += [ev(7, "T", "run_started", command="rollback"), ev(8, "T", "op_undone", op="db"),
               ev(9, "T", "run_finished", outcome="rolled_back")]
    st = derive("e", events)
    assert st.unfinished_runs() == [] and st.runs["A"].closed_by == "T"
