"""The command line imports only what a command needs (docs/performance.md, B6): `--help`,
`status` and `history` never load the plan model (pydantic) or an action kind's client
library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "boto3", "botocore", "psycopg", "nats", "atomicops.plan.model", "atomicops.sandbox")
ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart" / "plan.yaml"


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
    loaded = loaded_after(["validate", str(QUICKSTART)], tmp_path)
    assert "pydantic" in loaded and "botocore" in loaded


def test_validate_loads_no_database_driver(tmp_path: Path) -> None:
    # The sql kind checks a plan without psycopg: it is imported when SQL runs (or when a
    # literal DSN is parsed), and the quickstart's DSN is a reference.
    loaded = loaded_after(["validate", str(QUICKSTART)], tmp_path)
    assert "psycopg" not in loaded


def test_validate_loads_no_sandbox(tmp_path: Path) -> None:
    assert "atomicops.sandbox" not in loaded_after(["validate", str(QUICKSTART)], tmp_path)


def test_the_sandbox_options_name_the_sandbox_modules_own_defaults() -> None:
    # Written in cli.py so that every command does not import the sandbox for them.
    from atomicops import cli, sandbox

    assert cli.SANDBOX_DIR == str(sandbox.DEFAULT_DIR)
    assert cli.SANDBOX_SERVICES == tuple(sandbox.SERVICES)
