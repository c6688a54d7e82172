"""B6, the command line itself: process wall time of `atomicops --help`, `status`, `history`
and `validate` (quickstart and the flagship) against `python -c "import boto3"` as the floor.

    python bench/cli_startup.py --rounds 15
    python bench/cli_startup.py --rounds 1          # what CI runs (a smoke run, not a timing)

Commands alternate within each round (floor, then each command) so that load on a shared
machine falls on all of them alike; each figure is the median over the rounds and is reported
as a ratio to the floor's median. `status` and `history` run on an empty journal in a scratch
directory; every command runs once before timing so the figures are for a warm cache: the
bytecode written (as a pip install writes it; a `PYTHONDONTWRITEBYTECODE` in the caller's
environment is not passed on) and the facts `validate` keeps in its cache filled (a private
ATOMICOPS_CACHE_DIR in the scratch directory). "validate flagship, no cache" runs with the
cache off (`ATOMICOPS_CACHE_DIR=off`): what a first validate after an upgrade pays.
Writes bench/results/cli_startup.json.
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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cli_startup.json"
CLI = [sys.executable, "-m", "atomicops.cli"]

# name -> (argv, target as a multiple of the floor)
COMMANDS: dict[str, tuple[list[str], float | None]] = {
    "floor: import boto3": ([sys.executable, "-c", "import boto3"], None),
    "--help": ([*CLI, "--help"], 1.3),
    "status": ([*CLI, "status"], 1.3),
    "history": ([*CLI, "history"], 1.3),
    "validate quickstart": ([*CLI, "validate", str(ROOT / "examples" / "quickstart")], None),
    "validate flagship": ([*CLI, "validate", str(ROOT / "src" / "atomicops" / "bundled" / "mistersmith")], 2.0),
    "validate flagship, no cache": (["env", "ATOMICOPS_CACHE_DIR=off", *CLI, "validate",
                                     str(ROOT / "src" / "atomicops" / "bundled" / "mistersmith")], None),
}


def wall(argv: list[str], cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["ATOMICOPS_CACHE_DIR"] = str(cwd / "cache")
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="atomicops-bench-") as scratch:
        cwd = Path(scratch)
        for argv, _ in COMMANDS.values():  # warm the OS file cache and any on-disk cache
            wall(argv, cwd)
        for _ in range(args.rounds):
            for name, (argv, _) in COMMANDS.items():
                times[name].append(wall(argv, cwd))
    floor = statistics.median(times["floor: import boto3"])
    rows = []
    for name, (_, target) in COMMANDS.items():
        median = statistics.median(times[name])
        ratio = median / floor
        rows.append({"command": name, "median_s": round(median, 4), "min_s": round(min(times[name]), 4),
                     "ratio": round(ratio, 2), "target": target,
                     "meets": None if target is None else ratio <= target})
    print(f"{'command':<28} {'median s':>9} {'min s':>7} {'x floor':>8} {'target':>7}  ok")
    for r in rows:
        target = f"{r['target']:.1f}x" if r["target"] else "-"
        ok = "-" if r["meets"] is None else ("yes" if r["meets"] else "NO")
        print(f"{r['command']:<28} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['ratio']:>8.2f} {target:>7}  {ok}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "cli_startup", "rounds": args.rounds, "python": sys.version.split()[0],
                                    "floor_s": round(floor, 4), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
