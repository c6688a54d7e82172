"""Rollback triggers: the plan's ``triggers.checks``, polled while a run works and for a window
after it (the CloudFormation rollback-configuration model), so a deployment that hurts what
it watches is undone without a person in the loop.

A :class:`Watcher` polls from its own thread with its own connections (the specs of the
run's, none of its handles) and its own cancellation: a slow check never holds a step back,
and a step never holds a check back. (Its AWS connection shares the run's botocore clients,
actions/aws.py: a client serves many threads at once, each request with a socket of its own
from the client's pool, so nothing is held there either.) It never writes the journal either: when a check has
missed ``failures`` times in a row it calls ``on_fire`` (which halts the run's walk, see
``Cancellation.fired``), and :class:`Monitoring`, on the run's own thread, records what fired.

A check misses when its ``expect`` does not hold or when it cannot be run (a health endpoint
that refuses connections is unhealthy). A check whose references cannot be resolved yet (it
names ``${ops.X...}`` and X is not applied, or uses a connection built from such outputs)
waits: it is neither a pass nor a miss.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import jmespath
import jmespath.exceptions

from atomicops import clipping
from atomicops.actions.base import ConnectionNotReady, Connections
from atomicops.engine.cancel import Cancellation
from atomicops.engine.executor import Executor
from atomicops.engine.run import Run
from atomicops.engine.runtime import Runtime
from atomicops.errors import AtomicOpsError
from atomicops.expect import evaluate
from atomicops.plan.model import Action, Retry, Triggers

OBSERVED_LIMIT = 300
"""Characters kept of what a check saw (journal, status line, errors), cut between words."""
STATUS_EVERY = 10.0
"""Seconds between two status lines while nothing changes."""
CHECK_KEYS = ("expect", "name", "failures")
"""Keys of a trigger check that belong to the trigger, not to the action it runs."""


def check_name(check: Mapping[str, Any], index: int) -> str:
    return str(check.get("name") or f"triggers[{index}]")


@dataclass
class CheckView:
    """What one check saw: shown on the status line, kept in ``monitor_ended`` and ``--json``."""

    name: str
    failures: int
    misses: int = 0
    polls: int = 0
    state: str = "not polled"  # ok | miss | waiting | not polled
    last: str = ""


@dataclass(frozen=True)
class Firing:
    check: str
    observed: str
    at: float
    misses: int


class Watcher:
    """Polls every check every ``poll_seconds`` from :meth:`start` until :meth:`close` or the
    first firing (after which it stops: the run is going back, nothing more to learn)."""

    def __init__(
        self,
        triggers: Triggers,
        rt: Runtime,
        *,
        env: str,
        run_id: str,
        base_dir: str,
        on_fire: Callable[[Firing], None],
    ):
        self.triggers = triggers
        self.poll_seconds = triggers.poll_seconds
        self.scope = rt.scope  # read-only; `${ops...}` reads the applier's outputs under its lock
        self.secrets = rt.secrets
        self.connections: Connections = rt.connections.fresh()
        self._cancel = Cancellation()  # never the run's: ending the watch must not stop a step
        self.executor = Executor(self.connections, env=env, run_id=run_id, base_dir=base_dir, cancel=self._cancel)
        self.on_fire = on_fire
        self.views = [CheckView(check_name(c, i), int(c.get("failures") or 1)) for i, c in enumerate(triggers.checks)]
        self.fired: Firing | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="triggers", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._cancel.interrupt()
        if self._thread is not None:
            # A check stuck in a long timeout is a daemon thread's business, not the run's.
            self._thread.join(timeout=5)
        self.connections.close()

    def _loop(self) -> None:
        next_poll = time.monotonic()
        while not self._cancel.stop.is_set():
            firing = self.poll_once()
            if firing is not None:
                with self._lock:
                    self.fired = firing
                self.on_fire(firing)
                return
            # A round slower than the interval starts the next at once, never a burst to catch up.
            next_poll = max(next_poll + self.poll_seconds, time.monotonic())
            self._cancel.stop.wait(max(0.0, next_poll - time.monotonic()))

    # -- one round

    def poll_once(self) -> Firing | None:
        """Run every check once, all at once (a slow one must not hold the others back); the
        first, in plan order, that reached its ``failures`` fires."""
        checks = self.triggers.checks
        with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="trigger") as pool:
            answers = list(pool.map(self._poll, checks))
        firing = None
        for i, (outcome, observed) in enumerate(answers):
            if self._cancel.stop.is_set():
                break
            redacted = clipping.head(self.secrets.redactor.text(observed), OBSERVED_LIMIT)
            with self._lock:
                view = self.views[i]
                view.polls += 1
                view.state, view.last = outcome, redacted
                view.misses = view.misses + 1 if outcome == "miss" else 0
                if firing is None and view.misses >= view.failures:
                    firing = Firing(view.name, redacted, time.time(), view.misses)
        return firing

    def _poll(self, check: Action) -> tuple[str, str]:
        action = {k: v for k, v in check.items() if k not in CHECK_KEYS}
        try:
            resolved = self.scope.exec_form(action, self.secrets)
            expect = self.scope.exec_form(check.get("expect") or {}, self.secrets)
        except AtomicOpsError as exc:
            return "waiting", f"waiting: {exc}"
        try:
            result = self.executor.execute(resolved, retry=Retry(attempts=1))
        except ConnectionNotReady as exc:  # built from outputs of operations not applied yet
            return "waiting", f"waiting: {exc.message}"
        except AtomicOpsError as exc:
            return "miss", f"error: {exc}"
        except Exception as exc:  # noqa: BLE001 - a check that crashes is a check that failed
            return "miss", f"error: {type(exc).__name__}: {exc}"
        mismatches = evaluate(expect, result)
        if mismatches:
            return "miss", "; ".join(str(m) for m in mismatches)
        return "ok", _observed(expect, result)

    # -- views

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(v) for v in self.views]

    def status_line(self, seconds_left: float | None) -> str:
        with self._lock:
            checks = "; ".join(f"{v.name}: {v.state} {clipping.head(v.last, 80)}".rstrip() for v in self.views)
        left = "" if seconds_left is None else f"{_clock(seconds_left)} left · "
        return f"monitoring: {left}{checks}"


def _observed(expect: Mapping[str, Any], result: Any) -> str:
    """What a passing check saw: the values its expect looked at, else the result itself."""
    if expect:
        parts = []
        for path in expect:
            try:
                value = jmespath.search(path, result)
            except jmespath.exceptions.JMESPathError:
                value = None
            parts.append(f"{path}={json.dumps(value, default=str)}")
        return "; ".join(parts)
    if isinstance(result, Mapping) and "status" in result:
        return f"status={result['status']}"
    return json.dumps(result, default=str)


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Monitoring:
    """A run's triggers: the watcher plus what the run's journal says about it. Only the run's
    thread records (``monitor_started``, ``trigger_fired``, ``monitor_ended``)."""

    def __init__(self, run: Run, rt: Runtime, triggers: Triggers, *, base_dir: str, during: str):
        self.run = run
        self.during = during
        self.wake = threading.Event()
        self.watcher = Watcher(triggers, rt, env=run.env, run_id=run.id, base_dir=base_dir, on_fire=self._fired)
        self.started = 0.0
        self.window_started: float | None = None
        self.ended: str | None = None
        self.fired_during = during  # "window" once finish() saw it fire after the apply

    @classmethod
    def of(cls, run: Run, rt: Runtime, triggers: Triggers | None, *, base_dir: str, during: str) -> Monitoring | None:
        if triggers is None or not triggers.checks:
            return None
        return cls(run, rt, triggers, base_dir=base_dir, during=during)

    def _fired(self, firing: Firing) -> None:
        # The watcher's thread: halt the walk (steps in flight finish) and wake the window.
        self.run.cancel.fired(f"trigger {firing.check} fired")
        self.wake.set()

    @property
    def fired(self) -> Firing | None:
        return self.watcher.fired

    def start(self, window_minutes: float) -> None:
        w = self.watcher
        self.started = time.time()
        self.run.record(
            "monitor_started", during=self.during, poll_seconds=w.poll_seconds, window_minutes=window_minutes,
            checks=[{"name": v.name, "failures": v.failures} for v in w.views],
        )
        w.start()

    def window(self, seconds: float, *, until: threading.Event) -> str:
        """Keep polling for ``seconds`` after the run's work: ``"elapsed"``, ``"fired"`` or,
        when ``until`` is set (Ctrl-C), ``"interrupted"``. The status line goes to the run's
        observer when something changed and at least every :data:`STATUS_EVERY` seconds."""
        self.window_started = time.time()
        if self.fired is not None:
            return "fired"
        deadline = time.monotonic() + seconds
        self.run.cancel.watching = True
        try:
            return self._wait(deadline, until)
        finally:
            self.run.cancel.watching = False

    def _wait(self, deadline: float, until: threading.Event) -> str:
        last_line, last_shown = "", 0.0
        while True:
            if self.fired is not None:
                return "fired"
            if until.is_set():
                return "interrupted"
            left = deadline - time.monotonic()
            if left <= 0:
                return "elapsed"
            line = self.watcher.status_line(left)
            now = time.monotonic()
            body = line.split(" · ", 1)[-1]
            if body != last_line or now - last_shown >= STATUS_EVERY:
                self.run.observer.note(line)
                last_line, last_shown = body, now
            # Wake on a firing or the deadline; look at `until` at least twice a second.
            self.wake.wait(min(left, 0.5))

    def finish(self, reason: str) -> None:
        """Stop polling and journal the outcome (the firing first, when there is one)."""
        self.watcher.close()
        firing = self.fired
        if firing is not None:
            reason = "fired"
            after = self.window_started is not None and firing.at >= self.window_started
            self.fired_during = "window" if after and self.during == "apply" else self.during
            self.run.record("trigger_fired", check=firing.check, observed=firing.observed, at=firing.at,
                            misses=firing.misses, during=self.fired_during)
        self.ended = reason
        self.run.record("monitor_ended", reason=reason, seconds=round(time.time() - self.started, 2),
                        checks=self.watcher.snapshot())

    def report(self) -> dict[str, Any]:
        firing = self.fired
        return {
            "ended": self.ended,
            "fired": asdict(firing) if firing else None,
            "checks": self.watcher.snapshot(),
        }
