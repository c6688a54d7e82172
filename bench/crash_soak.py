"""Crash soak: run the MisterSmith plan, SIGKILL it at a random moment, resume (or resume
with --rollback), roll back, and check that nothing leaked, nothing was made twice and the
journal is coherent. Prints the figures.

    python bench/crash_soak.py --trials 200
    python bench/crash_soak.py --trials 200 --no-probes      # every hand-written probe removed
    python bench/crash_soak.py --trials 3 --messages 100     # what CI runs

Everything runs on one sandbox (moto, PostgreSQL, NATS) this script starts and stops.
"Left for a person" counts the interrupted steps that resume or rollback could not settle
(exit 3, "may or may not have taken effect"): with --no-probes it measures what the engine
settles by itself, without the plan author's probes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from atomicops import api, inventory, sandbox
from atomicops.journal import open_store
from atomicops.journal.integrity import check_journal
from atomicops.rehearsal import FLAGSHIP_PLAN, aws_services, run_setup


def cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "atomicops.cli", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def duplicates(snapshot: dict[str, Any]) -> list[str]:
    """Resources that carry the same atomicops:step tag: one step made two of them."""
    found = []
    for kind, entries in (snapshot.get("aws") or {}).items():
        if not isinstance(entries, list):
            continue
        steps = Counter(e["tags"]["atomicops:step"] for e in entries if (e.get("tags") or {}).get("atomicops:step"))
        found += [f"{kind}: {step} x{n}" for step, n in steps.items() if n > 1]
    return found


def without_probes(into: Path) -> tuple[Path, int]:
    """A copy of the flagship plan (its modules and files too) with every step's hand-written
    ``probe`` removed, and how many were removed."""
    shutil.copytree(FLAGSHIP_PLAN, into)
    doc = yaml.safe_load((into / "plan.yaml").read_text())
    removed = 0
    for op in doc["operations"]:
        for step in op.get("steps", []):
            removed += step.pop("probe", None) is not None
    (into / "plan.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    return into, removed


UNSETTLED = re.compile(r"nothing can tell: (.+)")


def left_for_a_person(stderr: str) -> set[str]:
    """The steps an exit 3 names as neither known applied nor known not applied."""
    found: set[str] = set()
    for match in UNSETTLED.finditer(stderr):
        found.update(s.strip() for s in match.group(1).split(",") if s.strip())
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--messages", type=int, default=300, help="discovery messages seeded")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--no-probes", action="store_true",
                    help="strip every hand-written probe from the flagship plan before running")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    work = Path(tempfile.mkdtemp(prefix="atomicops-soak-"))
    root = work / "sandbox"
    sb = sandbox.up(root)
    os.environ.update(sandbox.aws_env())
    figures: Counter[str] = Counter()
    failures: list[str] = []
    plan = FLAGSHIP_PLAN
    try:
        if args.no_probes:
            plan, removed = without_probes(work / "plan-no-probes")
            figures["probes removed"] = removed
        loaded = api.validate(plan, vars={**sb.vars(), "discovery_messages": args.messages})
        local = run_setup(loaded, lambda text: None)
        vars_file = work / "vars.yaml"
        vars_file.write_text(json.dumps({**sb.vars(), **local, "discovery_messages": args.messages}))
        services = aws_services(loaded.plan)
        sv = sb.vars()

        def take() -> dict[str, Any]:
            return inventory.take(aws_endpoint=sv["aws_endpoint"], region=sv["region"], aws_services=services,
                                  database_url=sv["database_url"], nats_url=sv["nats_url"])

        baseline = take()
        # How long a whole apply takes, to spread the kills over it.
        t0 = time.monotonic()
        first = cli("apply", str(plan), "--vars-file", str(vars_file), "--env", "calibrate", "--monitor", "0", cwd=work)
        first.wait()
        apply_seconds = time.monotonic() - t0
        cli("rollback", "--env", "calibrate", cwd=work).wait()
        print(f"apply takes {apply_seconds:.1f}s; seed {args.seed}", file=sys.stderr)

        started = time.monotonic()
        for trial in range(1, args.trials + 1):
            env = f"soak-{trial}"
            failures_before = len(failures)
            delay = rng.uniform(0.3, apply_seconds)
            # moto names a cluster's automated snapshot by the minute: a cluster re-created
            # within the same minute as the last trial's would collide there, not in AWS.
            unique = ["--var", f"aurora_cluster=mistersmith-aurora-{trial}"]
            proc = cli("apply", str(plan), "--vars-file", str(vars_file), "--env", env, "--monitor", "0", *unique, cwd=work)
            try:
                proc.wait(timeout=delay)
                figures["finished before the kill"] += 1
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                figures["killed"] += 1
            roll_back = rng.random() < 0.5
            resumed = cli("resume", "--env", env, *(["--rollback"] if roll_back else []), cwd=work)
            _, err = resumed.communicate()
            figures[f"resume exit {resumed.returncode}"] += 1
            person = left_for_a_person(err)
            if resumed.returncode not in (0, 1):
                failures.append(f"trial {trial}: resume exited {resumed.returncode}: {err.strip().splitlines()[-1:]}")
            dups = duplicates(take()) if not roll_back else []
            rb = cli("rollback", "--env", env, cwd=work)
            _, err = rb.communicate()
            person |= left_for_a_person(err)
            figures["left for a person"] += len(person)
            figures["trials needing a person"] += bool(person)
            if person:
                failures.append(f"trial {trial}: left for a person: {', '.join(sorted(person))}")
            if rb.returncode != 0:
                failures.append(f"trial {trial}: rollback exited {rb.returncode}: {err.strip().splitlines()[-1:]}")
                figures["rollback failed"] += 1
            after = take()
            leak = inventory.diff(baseline, after)
            store = open_store(str(work / ".atomicops" / "journal.db"))
            problems = check_journal(store.events(env))
            store.close()
            figures["trials"] += 1
            figures["leaks"] += bool(leak)
            figures["duplicates"] += bool(dups)
            figures["corrupt journals"] += bool(problems)
            if leak:
                failures.append(f"trial {trial}: leak {json.dumps(leak, default=str)[:300]}")
                baseline = after  # count each leak once
            if dups:
                failures.append(f"trial {trial}: duplicates {dups}")
            if problems:
                failures.append(f"trial {trial}: journal {problems[:3]}")
            for line in failures[failures_before:]:
                print("  " + line, file=sys.stderr, flush=True)
            print(f"trial {trial}/{args.trials}: killed after {delay:.1f}s, "
                  f"{'rollback' if roll_back else 'continue'}, leak={bool(leak)} dup={bool(dups)} person={len(person)} "
                  f"journal={'ok' if not problems else 'BAD'}", file=sys.stderr, flush=True)
        figures["seconds"] = round(time.monotonic() - started)
    finally:
        sandbox.down(root)
        shutil.rmtree(work, ignore_errors=True)

    result = {"figures": dict(figures), "failures": failures, "seed": args.seed,
              "mode": "no-probes" if args.no_probes else "ordinary"}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{'mode':>26}: {result['mode']}")
        for name in ("trials", "killed", "finished before the kill", "leaks", "duplicates", "left for a person",
                     "trials needing a person", "corrupt journals", "rollback failed", "probes removed", "seconds"):
            print(f"{name:>26}: {figures.get(name, 0)}")
        for name in sorted(k for k in figures if k.startswith("resume exit")):
            print(f"{name:>26}: {figures[name]}")
        for f in failures:
            print("  " + f)
    bad = figures["leaks"] or figures["duplicates"] or figures["corrupt journals"] or figures["rollback failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
