"""The command line imports only what a command needs (docs/performance.md, B6): `--help`,
`status` and `history` never load the plan model (pydantic) or an action kind's client
library, and a plan parsed by libyaml reads exactly as one parsed in pure Python."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atomicops.errors import PlanInvalid
from atomicops.plan import source

HEAVY = ("pydantic", "boto3", "botocore", "psycopg", "nats", "atomicops.plan.model")
ROOT = Path(__file__).resolve().parent.parent
PLANS = [ROOT / "examples" / "quickstart" / "plan.yaml", ROOT / "src" / "atomicops" / "bundled" / "mistersmith" / "plan.yaml"]


def loaded_after(argv: list[str], cwd: Path) -> list[str]:
    """The heavy modules in sys.modules after the CLI ran ``argv`` in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from atomicops.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["status"], ["history"], ["status", "--json"], ["history", "--json"]])
def test_journal_commands_load_no_engine(argv: list[str], tmp_path: Path) -> None:
    assert loaded_after(argv, tmp_path) == []


def test_validate_still_loads_what_it_checks_with(tmp_path: Path) -> None:
    # The lazy imports moved, they did not vanish: validate needs the model and botocore.
    loaded = loaded_after(["validate", str(PLANS[0])], tmp_path)
    assert "pydantic" in loaded and "botocore" in loaded


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.parent.name)
def test_libyaml_reads_a_plan_as_pure_python_does(plan: Path) -> None:
    assert source._FAST_LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text = plan.read_text()
    fast = source._load(source._FAST_LOADER(text), str(plan))
    slow = source._load(yaml.SafeLoader(text), str(plan))
    assert fast[0] == slow[0]
    assert fast[1].lines == slow[1].lines


def test_a_syntax_error_reads_as_pure_python_reports_it() -> None:
    text = "a: 1\nb: [1, 2\nc: 3\n"
    with pytest.raises(PlanInvalid) as fast:
        source.load_yaml(text, "p.yaml")
    with pytest.raises(PlanInvalid) as slow:
        source._load(yaml.SafeLoader(text), "p.yaml")
    assert str(fast.value) == str(slow.value)
    assert [(p.line, p.message) for p in fast.value.problems] == [(p.line, p.message) for p in slow.value.problems]
