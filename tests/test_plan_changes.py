"""`plan` shows what changed in an applied operation since it ran, vars included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from atomicops import api

PLAN = """\
atomicops: 1
name: p
vars: {svc: orders}
secrets: {token: {env: PLAN_CHANGES_TOKEN}}
operations:
  - id: queue
    steps:
      - name: create
        do: {run: ["echo", "${vars.svc}-queue"], env: {TOKEN: "${secrets.token}"}}
        undo: {run: ["echo", "${vars.svc}-queue"]}
  - id: other
    steps: [{name: s, read_only: true, do: {run: ["true"]}}]
"""


def applied(tmp_path: Path, monkeypatch) -> tuple[Path, str]:
    monkeypatch.setenv("PLAN_CHANGES_TOKEN", "s3cr3t-value-for-plan")
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    state = str(tmp_path / "j.db")
    api.apply(plan, state=state)
    return plan, state


def test_a_var_that_renames_a_resource_is_a_change_with_its_old_and_new_value(tmp_path: Path, monkeypatch):
    plan, state = applied(tmp_path, monkeypatch)
    same = api.plan_view(plan, state=state)
    assert same["changes"] == {"queue": "no change", "other": "no change"}
    view = api.plan_view(plan, state=state, vars={"svc": "orders2"})
    assert view["changes"] == {"queue": "changed (kept as applied)", "other": "no change"}
    assert view["diffs"]["queue"] == [
        {"path": "steps.create.do.run[1]", "old": "orders-queue", "new": "orders2-queue"},
        {"path": "steps.create.undo.run[1]", "old": "orders-queue", "new": "orders2-queue"},
    ]
    assert "other" not in view["diffs"]


def test_plan_prints_the_changed_fields_and_never_a_secret(tmp_path: Path, monkeypatch):
    plan, state = applied(tmp_path, monkeypatch)
    args = [sys.executable, "-m", "atomicops.cli", "plan", str(plan), "--state", state, "--var", "svc=orders2"]
    text = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert text.returncode == 0, text.stderr
    assert 'steps.create.do.run[1]: "orders-queue" -> "orders2-queue"' in text.stdout
    as_json = subprocess.run([*args, "--json"], capture_output=True, text=True, check=False, timeout=60)
    assert json.loads(as_json.stdout)["diffs"]["queue"][0]["new"] == "orders2-queue"
    events = json.dumps(api.history(state=state))
    assert "${secrets.token}" in events and "s3cr3t-value-for-plan" not in events + text.stdout + as_json.stdout
