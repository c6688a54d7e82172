"""Preflight looks at what the plan's rollback triggers need, since they are polled from the
first operation of every apply (a partial one too): a check that cannot run misses, and
``failures`` misses in a row roll the run back part-way. The flagship's `source-stream`
check on a NATS connection with no ``nats_url`` did exactly that to any apply that lasted
longer than two polls; such a run must stop at preflight (exit 2) with nothing applied."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nats
import yaml
from run_cli import cli

STEP_SECONDS = 1.5  # several polls (0.2 s, failures: 2): long enough for a trigger to fire


def plan(tmp_path: Path, *, nats_url: str | None, stream: str, health_url: str | None = "unused") -> str:
    body = {
        "atomicops": 1,
        "name": "trigger-preflight",
        "vars": {"nats_url": nats_url, "stream": stream, "health_url": health_url},
        "connections": {"bus": {"kind": "nats", "url": "${vars.nats_url}", "connect_timeout": 1}},
        "triggers": {
            "poll_seconds": 0.2,
            "monitor_minutes": 0,
            "checks": [{"name": "source-stream", "nats": {"stream_info": {"name": "${vars.stream}"}},
                        "connection": "bus", "expect": {"config.name": "${vars.stream}"}, "failures": 2}],
        },
        "operations": [{"id": "slow", "steps": [
            {"name": "work", "do": {"run": ["sleep", str(STEP_SECONDS)]}, "undo": {"run": ["true"]}}]}],
    }
    if health_url != "unused":
        body["triggers"]["checks"].append(  # type: ignore[index]
            {"name": "health", "http": {"url": "${vars.health_url}/health", "timeout": 1}, "expect": {"status": 200}})
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return "plan.yaml"


def add_stream(url: str, name: str) -> None:
    async def add() -> None:
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"])
        await nc.close()

    asyncio.run(add())


def test_a_trigger_connection_with_no_url_fails_preflight_not_the_run(tmp_path: Path) -> None:
    done = cli("apply", plan(tmp_path, nats_url=None, stream="S"), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "preflight found 1 problem" in done.stderr
    assert "connection 'bus' (nats) does not answer" in done.stderr
    assert "rollback trigger source-stream" in done.stderr
    assert "applied" not in done.stdout  # nothing ran, nothing to roll back
    assert "trigger" not in done.stdout.replace("target", "")


def test_a_trigger_connection_that_does_not_answer_fails_preflight(tmp_path: Path, closed_nats_url: str) -> None:
    done = cli("apply", plan(tmp_path, nats_url=closed_nats_url, stream="S"), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "connection 'bus' (nats) does not answer" in done.stderr
    assert "source-stream" in done.stderr


def test_a_var_only_a_trigger_uses_is_asked_for(tmp_path: Path, nats_url: str) -> None:
    stream = f"PF_{uuid.uuid4().hex[:8]}"
    add_stream(nats_url, stream)
    done = cli("apply", plan(tmp_path, nats_url=nats_url, stream=stream, health_url=None), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "var 'health_url' has no value" in done.stderr


def test_a_partial_apply_with_a_reachable_trigger_runs_with_it_polling(tmp_path: Path, nats_url: str) -> None:
    stream = f"PF_{uuid.uuid4().hex[:8]}"
    add_stream(nats_url, stream)
    done = cli("apply", plan(tmp_path, nats_url=nats_url, stream=stream), "--target", "slow", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = yaml.safe_load(done.stdout)
    (check,) = report["triggers"]["checks"]
    assert check["name"] == "source-stream" and check["polls"] >= 2 and check["misses"] == 0
