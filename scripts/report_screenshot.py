"""Regenerate docs/report.png: the flagship's rehearsal report, as README.md shows it.

    .venv/bin/python scripts/report_screenshot.py [--out docs/report.png]

Rehearses the bundled MisterSmith migration on a sandbox of its own (`atomicops rehearse
--report`), opens the report in Debian's chromium (through playwright, the browser tests'
way) and saves the top of the page. Prints the figures the README quotes: the report's size,
the time to build and write it, and the time the browser took to load and draw it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "report.png"))
    parser.add_argument("--height", type=int, default=1330, help="how much of the page's top to keep (pixels)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="atomicops-report-shot-"))
    work.chmod(0o755)  # as root, PostgreSQL runs as another user and must reach the sandbox
    page_file = work / "flagship-report.html"
    try:
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "atomicops.cli", "rehearse", "--json", "--report", str(page_file)],
                             cwd=work, capture_output=True, text=True, timeout=900, check=False)
        rehearsal = time.monotonic() - t0
        doc = json.loads(res.stdout)
        if res.returncode != 0 or not page_file.exists():
            print(res.stderr, file=sys.stderr)
            return 1
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": args.height})
            t0 = time.monotonic()
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            shown = time.monotonic() - t0
            page.screenshot(path=args.out, full_page=False)
            browser.close()
        figures = {
            "report_bytes": page_file.stat().st_size,
            "report_seconds": doc["timings"].get("report"),  # build from the journal + write, in the rehearsal
            "browser_load_seconds": round(shown, 2),
            "rehearsal_seconds": round(rehearsal, 1),
            "screenshot": str(Path(args.out).resolve().relative_to(ROOT)) if Path(args.out).resolve().is_relative_to(ROOT) else args.out,
        }
        print(json.dumps(figures, indent=2))
        return 0
    finally:
        subprocess.run([sys.executable, "-m", "atomicops.cli", "sandbox", "down"], cwd=work, capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
