"""README.md shows `atomicops import` on the seed page with what it prints:
`python scripts/import_readme.py` writes it there."""

from __future__ import annotations

from pathlib import Path

import pytest

from atomicops.importer import import_runbook, report_text

REPO = Path(__file__).resolve().parents[1]
SEED = "000_a498ebe7c5e7fe42.txt"


def test_the_readme_shows_the_import_of_the_seed_page(tmp_path, monkeypatch):
    seed = next((b / "shared" / "seed" / SEED for b in (REPO, *REPO.parents) if (b / "shared" / "seed" / SEED).is_file()), None)
    if seed is None:
        pytest.skip(f"seed {SEED} not found beside the repository")
    (tmp_path / "shared" / "seed").mkdir(parents=True)
    (tmp_path / "shared" / "seed" / SEED).symlink_to(seed)
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    printed = report_text(import_runbook(f"../shared/seed/{SEED}")) + "\nwrote imported/plan.yaml and imported/IMPORT.md"
    readme = (REPO / "README.md").read_text()
    shown = readme.split("<!-- import-readme: start -->\n```text\n", 1)[1].split("\n```\n<!-- import-readme: end -->", 1)[0]
    assert shown == f"$ atomicops import ../shared/seed/{SEED} -o imported\n{printed}"
