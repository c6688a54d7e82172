"""Write `atomicops import` on the seed page, with its real output, into README.md.

    python scripts/import_readme.py

The seed is looked for as shared/seed/ beside the repository (or a parent of it) and shown as
`../shared/seed/...`, the way it sits beside a checkout. tests/test_import_readme.py checks
that the README shows what the command prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SEED = "000_a498ebe7c5e7fe42.txt"
COMMAND = f"atomicops import ../shared/seed/{SEED} -o imported"
START = "<!-- import-readme: start -->"
END = "<!-- import-readme: end -->"


def find_seed() -> Path:
    for base in (ROOT, *ROOT.parents):
        if (base / "shared" / "seed" / SEED).is_file():
            return base / "shared" / "seed" / SEED
    sys.exit(f"seed {SEED} not found beside the repository")


def run_import() -> str:
    """The command's output, run in a directory that has the seed at ../shared/seed/."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "shared" / "seed").mkdir(parents=True)
        (Path(tmp) / "shared" / "seed" / SEED).symlink_to(find_seed())
        work = Path(tmp) / "checkout"
        work.mkdir()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.run([sys.executable, "-m", "atomicops.cli", *COMMAND.split()[1:]],
                              capture_output=True, text=True, check=True, cwd=work, env=env)
        return proc.stdout.rstrip()


def block(output: str) -> str:
    return f"{START}\n```text\n$ {COMMAND}\n{output}\n```\n{END}"


def main() -> None:
    text = README.read_text()
    start, end = text.index(START), text.index(END) + len(END)
    README.write_text(text[:start] + block(run_import()) + text[end:])


if __name__ == "__main__":
    main()
