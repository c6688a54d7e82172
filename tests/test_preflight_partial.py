"""A partial apply (--target) does not run the plan's own verify checks, so its preflight must
not refuse for a var or connection only those checks use (the flagship's orchestrator URL and
database, for a run that only creates the network); a full apply still refuses."""

from __future__ import annotations

from pathlib import Path

from run_cli import cli

PLAN = """\
atomicops: 1
name: partial-preflight
vars: {health_url: null}
operations:
  - id: first
    steps:
      - {name: touch, do: {run: ["true"]}, undo: {run: ["true"]}}
  - id: second
    depends_on: [first]
    steps:
      - {name: touch, do: {run: ["true"]}, undo: {run: ["true"]}}
verify:
  - {name: health, http: {url: "${vars.health_url}/health", timeout: 1}, expect: {status: 200}}
"""


def test_targeted_apply_is_not_asked_for_what_only_the_plan_verify_uses(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    partial = cli("apply", "plan.yaml", "--target", "first", cwd=tmp_path)
    assert partial.returncode == 0, partial.stderr
    assert "1 operation(s) applied" in partial.stdout

    full = cli("apply", "plan.yaml", cwd=tmp_path)
    assert full.returncode == 2
    assert "var 'health_url' has no value" in full.stderr
    assert "second" not in full.stdout  # nothing ran
