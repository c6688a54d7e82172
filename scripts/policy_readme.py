"""Write `atomicops policy examples/mistersmith --explain` into examples/mistersmith/README.md.

    python scripts/policy_readme.py

tests/test_policy.py checks that the README shows what the command prints.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "examples" / "mistersmith" / "README.md"
HEAD = "<details><summary><code>atomicops policy examples/mistersmith --explain</code></summary>"


def policy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atomicops.cli", "policy", "examples/mistersmith", *args],
                          capture_output=True, text=True, check=True, cwd=ROOT)


def main() -> None:
    text = README.read_text()
    full = policy("--explain")
    shown, explained = full.stdout.rstrip(), full.stderr.rstrip()
    summary = explained.splitlines()[0]
    rollback = json.loads(policy("--for", "rollback", "--json").stdout)["summary"]
    start = text.index(HEAD)
    end = text.index("</details>", start)
    text = text[:start] + HEAD + f"\n\n```text\n{explained}\n```\n\n```json\n{shown}\n```\n\n" + text[end:]
    text = re.sub(r"\n\d+ actions in \d+ statements; [^\n]*characters\.\n", f"\n{summary}.\n", text, count=1)
    text = re.sub(r"- `--for rollback`: \d+ actions in \d+ statements \([\d,]+ characters\)\.",
                  f"- `--for rollback`: {rollback['actions']} actions in {rollback['statements']} statements "
                  f"({rollback['characters']:,} characters).", text, count=1)
    README.write_text(text)
    print(summary)


if __name__ == "__main__":
    main()
