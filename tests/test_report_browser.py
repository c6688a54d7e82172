"""The run report in a real browser: Debian's chromium, driven by playwright (never a browser
that playwright downloads). The flagship rehearsal's report, a failed run's, a plan's: each
opens with no console error and no network request, shows what the journal holds, answers a
hover; a screenshot of each is saved as a test artifact (tests/artifacts/ or
$ATOMICOPS_TEST_ARTIFACTS).

In CI (CI=true) a missing chromium or playwright fails these tests; elsewhere they are skipped
with the reason. `bash .ci/run` installs chromium with apt when it is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atomicops import api
from atomicops.rehearsal import FLAGSHIP_PLAN

CHROMIUM = Path(os.environ.get("ATOMICOPS_CHROMIUM", "/usr/bin/chromium"))
# This machine's network is closed: without these, chromium's own background connections
# (updates, sync, QUIC probes) are refused and logged; none of them is the page's.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("ATOMICOPS_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
PLANS = Path(__file__).parent / "plans"


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Opened:
    """A page opened from a file, with what it logged and asked for."""

    def __init__(self, browser: Any, path: Path):
        self.url = path.resolve().as_uri()
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda req: self.requests.append(req.url))
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def assert_self_contained(self) -> None:
        assert self.errors == []
        assert self.requests == [self.url], "the page asked for nothing but itself"

    def data(self) -> dict[str, Any]:
        return json.loads(self.page.locator("#report-data").text_content() or "{}")

    def count(self, selector: str) -> int:
        return int(self.page.locator(selector).count())

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()


def assert_dependency_order(data: dict[str, Any], deps: dict[str, set[str]]) -> None:
    """On the page's own data: no bar starts before a bar it waited for ends (in its run)."""
    for bar in data["bars"]:
        for other in data["bars"]:
            if other["run"] != bar["run"] or other["kind"] != bar["kind"]:
                continue
            waited = other["op"] in deps[bar["op"]] if bar["kind"] == "do" else bar["op"] in deps[other["op"]]
            if waited:
                assert other["end"] <= bar["start"], (bar["op"], bar["step"], other["op"], other["step"])


def test_the_flagship_rehearsal_report_in_a_browser(browser: Any, flagship_rehearsal: Any) -> None:
    fr = flagship_rehearsal
    assert fr.code == 0, fr.doc
    loaded = api.validate(FLAGSHIP_PLAN)
    steps = [(op.id, s.name) for op in loaded.plan.operations for s in op.steps]
    undoable = [(op.id, s.name) for op in loaded.plan.operations for s in op.steps if not s.read_only]
    assert len(steps) == fr.doc["steps"] and len(loaded.plan.operations) == fr.doc["operations"]

    opened = Opened(browser, fr.report)
    try:
        opened.assert_self_contained()
        data = opened.data()
        # Every step once as a do bar, every step that has an effect once as an undo bar.
        assert sorted((b["op"], b["step"]) for b in data["bars"] if b["kind"] == "do") == sorted(steps)
        assert sorted((b["op"], b["step"]) for b in data["bars"] if b["kind"] == "undo") == sorted(undoable)
        assert_dependency_order(data, loaded.deps)
        # What the browser draws, and the numbers it shows, are the journal's.
        assert opened.count("rect.bar.do") == len(steps)
        assert opened.count("rect.bar.undo") == len(undoable)
        summary = opened.page.locator("#timeline-summary")
        assert summary.inner_text().startswith(f"{len(steps)} step bars, {len(undoable)} undo bars")
        assert opened.count("#graph-svg g.node") == len(loaded.plan.operations)
        assert opened.page.locator("#graph-summary").inner_text().startswith(f"{len(loaded.plan.operations)} operations")
        assert {opened.page.locator("#graph-svg g.node").nth(i).get_attribute("data-state")
                for i in range(len(loaded.plan.operations))} == {"rolled_back"}
        assert opened.count("#verify tbody tr") == len(fr.doc["verify"])
        assert opened.page.locator("#verify").inner_text().count("pass") >= len(fr.doc["verify"])
        assert opened.page.locator("#diff-clean").is_visible()
        # Hovering a bar shows its key, duration and outputs.
        bar = opened.page.locator("rect.bar.do[data-op='network'][data-step='vpc']")
        bar.hover()
        tip = opened.page.locator("#tip")
        assert tip.is_visible()
        text = tip.inner_text()
        assert "rehearsal/network/vpc" in text and "took" in text and "vpc_id" in text
        opened.screenshot("flagship-report.png")
    finally:
        opened.close()


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ATOMICOPS_CANARY": "canary-for-the-browser-test"}
    return subprocess.run([sys.executable, "-m", "atomicops.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_failed_run_report_marks_the_failure_and_the_rollback_after_it(browser: Any, tmp_path: Path) -> None:
    plan = str(PLANS / "report.yaml")
    assert cli(["apply", plan, "--var", "fail=yes", "--var", "pause=0.05"], tmp_path).returncode == 1
    made = cli(["report", "-o", "failed.html"], tmp_path)
    assert made.returncode == 0, made.stderr
    opened = Opened(browser, tmp_path / "failed.html")
    try:
        opened.assert_self_contained()
        failed = opened.page.locator("rect.bar.do.failed")
        assert failed.count() == 1
        assert (failed.get_attribute("data-op"), failed.get_attribute("data-step")) == ("late", "maybe-fail")
        assert "late/maybe-fail failed" in (opened.page.locator("g.mark.failure").text_content() or "")
        # Every undo bar is drawn after the failing step.
        at = float(failed.get_attribute("x") or 0)
        undos = opened.page.locator("rect.bar.undo")
        assert undos.count() > 0
        assert all(float(undos.nth(i).get_attribute("x") or 0) >= at for i in range(undos.count()))
        assert opened.page.locator("#graph-svg g.node[data-op='late']").get_attribute("data-state") == "failed"
        failed.hover()
        assert "cannot use ***" in opened.page.locator("#tip").inner_text()
        # The history's filter: only the undos.
        opened.page.select_option("#history-type", "undo_done")
        shown = opened.page.locator("#history tbody tr:visible").count()
        assert shown == sum(1 for h in opened.data()["history"] if h["type"] == "undo_done") == undos.count() - 1  # one passed over
        assert opened.page.locator("#history-count").inner_text().startswith(f"{shown} of ")
        opened.screenshot("failed-run-report.png")
    finally:
        opened.close()


def test_a_plan_page_for_a_change_board(browser: Any, tmp_path: Path) -> None:
    made = cli(["plan", str(FLAGSHIP_PLAN), "--html", "plan.html"], tmp_path)
    assert made.returncode == 0, made.stderr
    loaded = api.validate(FLAGSHIP_PLAN)
    opened = Opened(browser, tmp_path / "plan.html")
    try:
        opened.assert_self_contained()
        assert opened.count("#graph-svg g.node") == len(loaded.plan.operations)
        assert opened.count("#steps tbody tr") == sum(len(op.steps) for op in loaded.plan.operations)
        waves = [w for _, ws in loaded.forward_waves() for w in ws]
        assert opened.count("#order ol.waves li") == 2 * len(waves)
        opened.page.locator("#graph-svg g.node[data-op='aurora']").hover()
        assert "aurora-sg" in opened.page.locator("#tip").inner_text()  # what it comes after
        opened.screenshot("flagship-plan.png")
    finally:
        opened.close()
