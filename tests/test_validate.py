"""Validation: every broken plan in tests/bad_plans is refused naming file, line and operation.

Each file's first line says what must be reported: ``# expect: LINE OP TEXT`` (OP is ``-``
where no operation is involved).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from atomicops import api
from atomicops.errors import PlanInvalid

BAD = sorted((Path(__file__).parent / "bad_plans").glob("*.yaml"))
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def expectation(path: Path) -> tuple[int, str | None, str]:
    m = re.match(r"# expect: (\d+) (\S+) ?(.*)", path.read_text().splitlines()[0])
    assert m, f"{path.name} lacks its '# expect:' line"
    line, op, text = m.groups()
    return int(line), (None if op == "-" else op), text


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_plan_is_refused_with_file_line_and_operation(path: Path):
    line, op, text = expectation(path)
    with pytest.raises(PlanInvalid) as exc:
        api.validate(path)
    problems = [p for p in exc.value.problems if p.severity == "error"]
    assert problems
    assert all(p.file == str(path) for p in problems)
    hits = [p for p in problems if p.line == line and text in p.message or (p.line == line and text in (p.key or ""))]
    assert hits, f"no problem at line {line} mentioning {text!r}; got:\n" + "\n".join(map(str, problems))
    assert hits[0].op == op
    assert str(path) in str(exc.value) and f":{line}" in str(exc.value)


def test_the_corpus_is_large_enough():
    assert len(BAD) >= 30


def test_all_problems_are_reported_at_once(tmp_path: Path):
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "atomicops: 1\nname: p\noperations:\n"
        "  - id: a\n    steps:\n      - name: s\n        do: {run: [echo, '${vars.nope}']}\n"
        "  - id: b\n    depends_on: [zz]\n    steps: [{name: s, read_only: true, do: {run: ['true']}}]\n"
    )
    with pytest.raises(PlanInvalid) as exc:
        api.validate(plan)
    messages = " | ".join(p.message for p in exc.value.problems)
    assert "no undo" in messages and "unknown var" in messages and "unknown operation 'zz'" in messages


def test_irreversible_steps_are_listed_as_warnings(tmp_path: Path):
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "atomicops: 1\nname: p\noperations:\n  - id: a\n    steps:\n"
        "      - {name: s, do: {run: ['true']}, irreversible: 'sends an email'}\n"
    )
    loaded = api.validate(plan)
    assert [w.message for w in loaded.warnings] == ["step 's' is irreversible: sends an email"]
    assert loaded.warnings[0].line == 6


def test_references_infer_dependencies_and_var_overrides_apply(tmp_path: Path):
    loaded = api.validate(EXAMPLES / "quickstart", vars={"table": "other"})
    assert loaded.deps["app-sg"] == {"vpc"}
    assert loaded.plan.vars["table"] == "other"
    assert [w for _, w in loaded.forward_waves()] == [[["vpc"], ["app-sg"]], [["data", "events", "events-table"]]]


def test_vars_file_overrides_and_var_wins(tmp_path: Path):
    vf = tmp_path / "v.yaml"
    vf.write_text("table: from-file\nregion: eu-west-1\n")
    loaded = api.validate(EXAMPLES / "quickstart", vars_files=[str(vf)], vars={"table": "from-flag"})
    assert loaded.plan.vars["table"] == "from-flag"
    assert loaded.plan.vars["region"] == "eu-west-1"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_a_bad_plan_runs_nothing_and_writes_no_journal(path: Path, tmp_path: Path):
    state = tmp_path / "journal.db"
    with pytest.raises(PlanInvalid) as exc:
        api.apply(path, state=str(state))
    assert exc.value.exit_code == 2
    assert not state.exists()  # validated before the journal is even opened
