"""Runtime errors after a step's intent (not an ActionError: an outputs expression that fails
on the real result, a retry delay too large to sleep): the effect may have happened, so the
step must stay for resume, rollback or `resolve` to settle, and the run must not claim a
rollback it did not do. Each case runs the real command in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from run_cli import cli

HEAD = """
atomicops: 1
name: hostile-lifecycle
operations:
  - id: files
    steps:
      - {name: first, do: {run: [touch, first]}, undo: {run: [rm, -f, first]}}
"""

# The effect (the file) happens, then the outputs expression fails on the result.
BAD_OUTPUTS = HEAD + """
      - name: second
        do: {run: [touch, second]}
        outputs: {n: "abs(stdout)"}
        undo: {run: [rm, -f, second]}
"""

# The effect happens, then its result cannot be journalled: an error that is no failed call
# (validation refuses what it can see beforehand, such as a retry delay of 1e308).
UNJOURNALLABLE = HEAD + """
      - name: second
        do: {call: "weird:make"}
        outputs: {made: made}
        undo: {run: [rm, -f, second]}
"""

WEIRD_MODULE = """
class Unprintable:
    def __str__(self):
        raise RuntimeError("this value cannot be written down")

    __repr__ = __str__


def make(ctx):
    open("second", "w").close()
    return {"made": Unprintable()}
"""


# As BAD_OUTPUTS, with a probe that proves the file is this step's (it holds the step key).
BAD_OUTPUTS_PROBED = HEAD + """
      - name: second
        do: {run: [sh, -c, 'echo "$0" > second', "${step.key}"]}
        outputs: {n: "abs(stdout)"}
        undo: {run: [rm, -f, second]}
        probe: {run: [grep, -qx, "${step.key}", second], ok_exit: [0, 1, 2], expect: {exit: 0}}
"""


def statuses(cwd: Path) -> dict[str, str]:
    doc = json.loads(cli("status", "--json", cwd=cwd).stdout)
    return {f"{o['id']}/{s['name']}": s["status"] for o in doc["operations"] for s in o["steps"]}


def test_an_outputs_expression_failing_on_the_result_journals_the_effect_and_really_rolls_it_back(tmp_path):
    # The result is in hand, so the effect is journalled (outputs that found nothing) and the
    # operation's undo takes it back: exit 1 is the truth here.
    (tmp_path / "plan.yaml").write_text(BAD_OUTPUTS)
    res = cli("apply", "plan.yaml", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "cannot evaluate" in res.stderr
    assert not (tmp_path / "second").exists() and not (tmp_path / "first").exists()
    assert set(statuses(tmp_path).values()) == {"undone"}
    assert cli("rollback", cwd=tmp_path).returncode == 0


def test_an_error_after_the_effect_leaves_the_step_to_settle_not_a_false_rollback(tmp_path):
    (tmp_path / "plan.yaml").write_text(UNJOURNALLABLE)
    (tmp_path / "weird.py").write_text(WEIRD_MODULE)
    res = cli("apply", "plan.yaml", cwd=tmp_path)
    assert res.returncode == 3, res.stdout + res.stderr  # not 1: nothing was rolled back
    assert "failed and was rolled back" not in res.stderr
    assert "atomicops resolve files second" in res.stderr
    assert (tmp_path / "second").exists() and (tmp_path / "first").exists()
    assert statuses(tmp_path)["files/second"] == "uncertain"
    assert cli("status", cwd=tmp_path).returncode == 3

    # Not "nothing to do": the step is still owed. Its undo needs none of its outputs (a
    # delete by name), so the rollback settles it by running it (engine/resume.py).
    done = cli("rollback", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "files/second: may or may not have taken effect; undoing it" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name in ("first", "second")) == []
    assert cli("status", cwd=tmp_path).returncode == 0


def test_an_error_after_the_effect_is_settled_by_an_ownership_probe_and_really_rolled_back(tmp_path):
    (tmp_path / "plan.yaml").write_text(BAD_OUTPUTS_PROBED)
    res = cli("apply", "plan.yaml", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "failed and was rolled back" in res.stderr
    assert not (tmp_path / "second").exists() and not (tmp_path / "first").exists()
    assert set(statuses(tmp_path).values()) == {"undone"}
