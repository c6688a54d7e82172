"""B5, recovery: `atomicops resume` after a kill, with N applied operations in the journal.

    python bench/recovery.py                          # 1000 applied operations, 5 rounds
    python bench/recovery.py --ops 10 --rounds 1      # what CI runs (a smoke run)

A generated plan of N operations (one `call` step each, returning at once, with an undo) in
one phase, and a last phase holding one operation whose read-only step blocks until released.
`atomicops apply` runs as its own process; once the blocking step has started (every one of
the N operations applied), the process is killed with SIGKILL and the journal (with its WAL)
is kept. Each round resumes a fresh copy of that journal: `atomicops resume` reads it, takes
the dead run's lock over, settles the step left in flight (read-only: run again), and
continues to the end. The figure is that process's wall time, median over the rounds, next to
`python -c "import boto3"` (the floor of any command) measured alternately; CPU time too,
as the machine may be shared. Writes bench/results/recovery.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale import timed_process  # a sibling script: bench/ is on sys.path when run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "recovery.json"
CLI = [sys.executable, "-m", "atomicops.cli"]
STEPS_MODULE = '''"""Steps for the recovery benchmark."""
import os
import time


def instant(ctx, **args):
    return {}


def block(ctx, started, release):
    # Tell the benchmark every earlier operation is applied, then wait to be killed (or,
    # on resume, find the release file and return at once).
    open(started, "w").close()
    while not os.path.exists(release):
        time.sleep(0.01)
    return {}
'''


def write_plan(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench_steps.py").write_text(STEPS_MODULE)
    ops = [{"id": f"op-{i:05d}", "phase": "work",
            "steps": [{"name": "s", "do": {"call": "bench_steps:instant"}, "undo": {"call": "bench_steps:instant"}}]}
           for i in range(n)]
    ops.append({"id": "last", "phase": "last", "steps": [{
        "name": "wait", "read_only": True,
        "do": {"call": "bench_steps:block",
               "args": {"started": str(directory / "started"), "release": str(directory / "release")}},
    }]})
    plan = {"atomicops": 1, "name": f"recovery-{n}", "phases": ["work", "last"], "operations": ops}
    path = directory / "plan.yaml"
    path.write_text(json.dumps(plan, indent=1) + "\n")  # JSON is YAML
    return path


def killed_journal(directory: Path, plan: Path) -> Path:
    """Apply until the blocking step starts, SIGKILL the process, and return the journal."""
    journal = directory / "journal.db"
    # Its progress goes to a file: a pipe nobody reads fills up and blocks the run.
    log = (directory / "apply.log").open("wb")
    proc = subprocess.Popen([*CLI, "apply", str(plan), "--state", str(journal)], cwd=directory,
                            stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 600
    while not (directory / "started").exists():
        if proc.poll() is not None:
            raise SystemExit(f"apply exited {proc.returncode} before the kill: {(directory / 'apply.log').read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("apply did not reach the blocking step within 10 minutes")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    (directory / "release").touch()
    return journal


def copy_journal(journal: Path, to: Path) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):  # the WAL holds what the killed run wrote last
        src = Path(str(journal) + suffix)
        if src.exists():
            shutil.copy2(src, to / (journal.name + suffix))
    return to / journal.name


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process (scale.py measures it, with its memory)."""
    took, _, cpu = timed_process(argv, cwd)
    return took, cpu


def applied_count(journal: Path, cwd: Path) -> int:
    done = subprocess.run([*CLI, "status", "--state", str(journal), "--json"], cwd=cwd,
                          capture_output=True, text=True, check=True)
    doc = json.loads(done.stdout)
    ops = doc.get("operations") or doc.get("ops") or []
    items = ops.values() if isinstance(ops, dict) else ops
    return sum(1 for o in items if (o.get("status") if isinstance(o, dict) else o) == "applied")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1000, help="operations applied before the kill")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="atomicops-recovery-") as tmp:
        scratch = Path(tmp)
        work = scratch / "plan"
        plan = write_plan(work, args.ops)
        journal = killed_journal(work, plan)
        floor: list[tuple[float, float]] = []
        resume: list[tuple[float, float]] = []
        for i in range(args.rounds):
            floor.append(timed([sys.executable, "-c", "import boto3"], scratch))
            copy = copy_journal(journal, scratch / f"round-{i}")
            resume.append(timed([*CLI, "resume", "--state", str(copy)], work))
        applied_after = applied_count(copy, work)
    floor_s = statistics.median(w for w, _ in floor)
    resume_s = statistics.median(w for w, _ in resume)
    row = {
        "applied_before_kill": args.ops, "applied_after_resume": applied_after,
        "resume_s": round(resume_s, 3), "resume_cpu_s": round(statistics.median(c for _, c in resume), 3),
        "floor_s": round(floor_s, 3), "ratio": round(resume_s / floor_s, 2),
        "target_s": 2.0, "meets": resume_s <= 2.0,
    }
    print(f"{'applied':>8} {'resume s':>9} {'cpu s':>6} {'floor s':>8} {'x floor':>8} {'target':>7}  ok")
    print(f"{row['applied_before_kill']:>8} {row['resume_s']:>9.3f} {row['resume_cpu_s']:>6.3f} {row['floor_s']:>8.3f} "
          f"{row['ratio']:>8.2f} {'2.0 s':>7}  {'yes' if row['meets'] else 'NO'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "recovery", "python": sys.version.split()[0], "rounds": args.rounds,
                                    "rows": [row]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
