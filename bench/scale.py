"""B4, scale: a generated plan of N operations in 20 phases with random dependencies.

    python bench/scale.py                                   # sizes 1000 5000 10000, apply 1000
    python bench/scale.py --sizes 20 40 --apply 10 --rounds 1   # what CI runs (a smoke run)

For each size: `atomicops validate` and `atomicops plan` of the plan, each as its own process
(wall time and peak RSS, the median of --rounds), so the figures include the interpreter and
imports as a user pays them. The processes share a private cache (ATOMICOPS_CACHE_DIR in the
scratch directory, atomicops/derived.py): the first `validate` of each plan ("first validate")
parses it and fills the cache, the rounds after it are the warm figures. Then, in-process, `apply` of --apply operations whose one step is a
`call` that returns at once, at parallelism 1 and 10, and `rollback` of the same: the wall time
of the run divided by the operations is the engine's own cost per operation (journal writes
with fsync, state, scope, the walk), since the steps themselves cost nothing.
Writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "scale.json"
PHASES = 20
STEPS_MODULE = '''"""Steps for the generated scale plan: they return at once."""


def instant(ctx, **args):
    return {}
'''


def generate(n: int, seed: int = 11) -> dict[str, Any]:
    """N operations spread over 20 phases; each depends on up to 3 random earlier operations
    of its own phase or an earlier one (so the graph is acyclic and phases are respected)."""
    rng = random.Random(seed)
    ops: list[dict[str, Any]] = []
    for i in range(n):
        phase = i * PHASES // n
        op: dict[str, Any] = {
            "id": f"op-{i:05d}",
            "phase": f"p{phase:02d}",
            "steps": [{"name": "s", "do": {"call": "bench_steps:instant", "args": {"i": i}},
                       "undo": {"call": "bench_steps:instant"}}],
        }
        if i:
            deps = {f"op-{rng.randrange(i):05d}" for _ in range(rng.randint(0, 3))}
            if deps:
                op["depends_on"] = sorted(deps)
        ops.append(op)
    return {"atomicops": 1, "name": f"scale-{n}", "phases": [f"p{p:02d}" for p in range(PHASES)], "operations": ops}


def write_plan(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench_steps.py").write_text(STEPS_MODULE)
    plan = directory / "plan.yaml"
    # JSON is YAML: written one operation a line (1.7 MB for 10,000, under the 8 MiB limit),
    # and parsed as any plan is.
    doc = generate(n)
    ops = doc.pop("operations")
    head = json.dumps(doc)[:-1]
    lines = ",\n".join(json.dumps(op, separators=(",", ":")) for op in ops)
    plan.write_text(f'{head}, "operations": [\n{lines}\n]}}\n')
    return plan


def timed_process(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds) of one process."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: nobody reads while it runs
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} exited {code}: {err.read().decode()[-2000:]}")
    return took, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # ru_maxrss is in KiB on Linux


def measure_load(plan: Path, rounds: int, scratch: Path) -> dict[str, Any]:
    cli = [sys.executable, "-m", "atomicops.cli"]
    validate = [*cli, "validate", str(plan)]
    show = [*cli, "plan", str(plan), "--json", "--state", str(scratch / "plan-journal.db")]
    # Bytecode as an installed package has it (this machine's PYTHONDONTWRITEBYTECODE is not
    # passed on), and the cache of derived facts the scratch directory's own.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["ATOMICOPS_CACHE_DIR"] = str(scratch / "cache")
    first, _, first_cpu = timed_process(validate, scratch, env)
    runs: dict[str, list[tuple[float, float, float]]] = {"validate": [], "plan": []}
    for _ in range(rounds):  # alternating, so load on a shared machine falls on both alike
        runs["validate"].append(timed_process(validate, scratch, env))
        runs["plan"].append(timed_process(show, scratch, env))
    out: dict[str, Any] = {"first_validate_s": round(first, 3), "first_validate_cpu_s": round(first_cpu, 3)}
    for name, samples in runs.items():
        out[f"{name}_s"] = round(statistics.median(s for s, _, _ in samples), 3)
        out[f"{name}_cpu_s"] = round(statistics.median(c for _, _, c in samples), 3)
        out[f"{name}_peak_mb"] = round(max(m for _, m, _ in samples), 1)
    return out


def measure_apply(n: int, parallelism: int, scratch: Path) -> dict[str, Any]:
    from atomicops import api

    directory = scratch / f"apply-{n}-p{parallelism}"
    plan = write_plan(directory, n)
    loaded = api.validate(str(plan))
    state = str(directory / "journal.db")
    t0, c0 = time.perf_counter(), time.process_time()
    report = api.apply(loaded, state=state, parallelism=parallelism)
    applied, applied_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(report.applied) == n, report
    t0, c0 = time.perf_counter(), time.process_time()
    back = api.rollback(state=state, parallelism=parallelism)
    rolled, rolled_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(back.undone) == n, back
    return {
        "operations": n, "parallelism": parallelism,
        "apply_s": round(applied, 3), "apply_ms_per_op": round(1000 * applied / n, 3),
        "rollback_s": round(rolled, 3), "rollback_ms_per_op": round(1000 * rolled / n, 3),
        # CPU of the whole process (every thread): what the engine costs when the machine is shared
        "apply_cpu_ms_per_op": round(1000 * applied_cpu / n, 3), "rollback_cpu_ms_per_op": round(1000 * rolled_cpu / n, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--apply", type=int, default=1000, help="operations applied and rolled back")
    ap.add_argument("--rounds", type=int, default=3, help="validate/plan processes per size (median)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="atomicops-scale-") as tmp:
        scratch = Path(tmp)
        load_rows = []
        for n in args.sizes:
            plan = write_plan(scratch / f"plan-{n}", n)
            row = {"operations": n, **measure_load(plan, args.rounds, scratch)}
            row["validate_plus_plan_s"] = round(row["validate_s"] + row["plan_s"], 3)
            row["validate_plus_plan_cpu_s"] = round(row["validate_cpu_s"] + row["plan_cpu_s"], 3)
            load_rows.append(row)
        apply_rows = [measure_apply(args.apply, p, scratch) for p in (1, 10)]
    print(f"{'operations':>10} {'first validate s':>16} {'validate s':>10} {'plan s':>7} {'v+p s':>6} "
          f"{'v+p cpu s':>9} {'peak MB':>8}")
    for r in load_rows:
        peak = max(r["validate_peak_mb"], r["plan_peak_mb"])
        print(f"{r['operations']:>10} {r['first_validate_s']:>16.3f} {r['validate_s']:>10.3f} {r['plan_s']:>7.3f} "
              f"{r['validate_plus_plan_s']:>6.2f} {r['validate_plus_plan_cpu_s']:>9.2f} {peak:>8.1f}")
    print()
    print(f"{'operations':>10} {'par':>4} {'apply s':>8} {'ms/op':>6} {'cpu ms/op':>9} {'rollback s':>10} {'ms/op':>6} {'cpu ms/op':>9}")
    for r in apply_rows:
        print(f"{r['operations']:>10} {r['parallelism']:>4} {r['apply_s']:>8.3f} {r['apply_ms_per_op']:>6.2f} "
              f"{r['apply_cpu_ms_per_op']:>9.2f} {r['rollback_s']:>10.3f} {r['rollback_ms_per_op']:>6.2f} "
              f"{r['rollback_cpu_ms_per_op']:>9.2f}")
    largest = load_rows[-1]
    doc = {
        "benchmark": "scale", "python": sys.version.split()[0], "phases": PHASES, "rounds": args.rounds,
        "load": load_rows, "apply": apply_rows,
        "targets": {"validate_plus_plan_s": 3.0, "peak_mb": 300, "ms_per_op": 5.0},
        "meets": {
            "validate_plus_plan": largest["validate_plus_plan_s"] <= 3.0,
            "peak_memory": max(largest["validate_peak_mb"], largest["plan_peak_mb"]) <= 300,
            "overhead": all(r["apply_ms_per_op"] <= 5.0 and r["rollback_ms_per_op"] <= 5.0 for r in apply_rows),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
