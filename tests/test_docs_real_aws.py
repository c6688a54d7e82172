"""docs/real-aws.md keeps up with the flagship plan: one section per operation, in phase order.

The page says, operation by operation, what real AWS does that the moto rehearsal cannot
show. An operation added to the plan without a section there (or a section left behind for
one that was removed) would make it silently wrong; these tests fail instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import atomicops
from atomicops.plan.loader import load_plan
from atomicops.plan.model import Plan

PLAN_DIR = Path(atomicops.__file__).parent / "bundled" / "mistersmith"
DOC = Path(__file__).resolve().parents[1] / "docs" / "real-aws.md"

# An operation's section: a level-3 heading that is the operation id in backticks.
OP_HEADING = re.compile(r"^### `([^`]+)`\s*$", re.MULTILINE)
AWS_DOCS_LINK = re.compile(r"\(https://docs\.aws\.amazon\.com/[^)\s]+\)")


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(PLAN_DIR).plan


@pytest.fixture(scope="module")
def sections() -> dict[str, str]:
    """Each operation heading of the page and the text up to the next heading of any level 1-3."""
    text = DOC.read_text(encoding="utf-8")
    bounds = [m.start() for m in re.finditer(r"^#{1,3} ", text, re.MULTILINE)] + [len(text)]
    out: dict[str, str] = {}
    for m in OP_HEADING.finditer(text):
        end = next(b for b in bounds if b > m.start())
        assert m.group(1) not in out, f"docs/real-aws.md: two sections for {m.group(1)!r}"
        out[m.group(1)] = text[m.end():end]
    return out


def test_every_operation_has_its_own_section(plan: Plan, sections: dict[str, str]) -> None:
    ops = [op.id for op in plan.operations]
    missing = [op for op in ops if op not in sections]
    stale = [name for name in sections if name not in ops]
    assert not missing, f"docs/real-aws.md has no `### \\`OP\\`` section for: {missing}"
    assert not stale, f"docs/real-aws.md has sections for operations the plan no longer has: {stale}"


def test_sections_follow_the_plans_phase_order(plan: Plan, sections: dict[str, str]) -> None:
    phase_of = {op.id: plan.phases.index(plan.phase_of(op)) for op in plan.operations}
    order = [phase_of[name] for name in sections if name in phase_of]
    assert order == sorted(order), (
        "docs/real-aws.md: operation sections out of phase order: "
        + ", ".join(f"{name} ({plan.phase_of(plan.operation(name))})" for name in sections if name in phase_of)
    )


def test_every_section_says_what_aws_does_and_cites_it(sections: dict[str, str]) -> None:
    rows = ("| Real AWS, not moto |", "| Plan / engine |", "| Residual risk |", "| AWS docs |")
    thin = {name: missing for name, body in sections.items() if (missing := [r for r in rows if r not in body])}
    assert not thin, f"docs/real-aws.md: sections missing rows: {thin}"
    uncited = [name for name, body in sections.items() if not AWS_DOCS_LINK.search(body)]
    assert not uncited, f"sections with no docs.aws.amazon.com link: {uncited}"
