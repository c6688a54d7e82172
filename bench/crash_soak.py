"""Crash soak: run the MisterSmith plan, SIGKILL it at a random moment, resume (or resume
with --rollback), roll back, and check that nothing leaked, nothing was made twice and the
journal is coherent. Prints the figures.

    python bench/crash_soak.py --trials 200
    python bench/crash_soak.py --trials 3 --messages 100     # what CI runs
    python bench/crash_soak.py --trials 200 --strip-probes all   # no hand-written probe at all
    python bench/crash_soak.py --trials 50 --store postgresql    # the team journal (issue 12)

``--strip-probes all`` runs a copy of the plan with every step's ``probe`` removed: what a
killed run leaves is then settled only by what the engine knows by itself (the built-in
probes of engine/catalog.py, ...). ``covered`` removes only the probes of the AWS calls the
catalog covers. Steps left to a person (``resume`` exit 3) are counted by name.

Everything runs on one sandbox (moto, PostgreSQL, NATS) this script starts and stops. With
``--store postgresql`` the journal is a database of the sandbox's PostgreSQL, the server the
plan migrates into (``--state postgresql://...``, as a team keeps it), made before the first
inventory; the kills then land in the middle of its transactions too.
"Left for a person" counts the interrupted steps that resume or rollback could not settle
(exit 3, "may or may not have taken effect"): with --strip-probes all it measures what the engine
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


def stripped_plan(dest: Path, which: str) -> tuple[Path, int]:
    """A copy of the flagship plan directory (its modules and files too) whose steps have no
    ``probe``: every step's (``all``), or only those of AWS calls the built-in catalog covers
    (``covered``); and how many probes were removed."""
    from atomicops.engine.catalog import covers

    shutil.copytree(FLAGSHIP_PLAN, dest)
    from atomicops.plan.source import load_yaml

    # The plan's own reader: PyYAML's safe_load reads a `retry: {on: any}` key as True.
    doc, _ = load_yaml((dest / "plan.yaml").read_text(), str(dest / "plan.yaml"))
    removed = 0
    for op in doc["operations"]:
        for step in op.get("steps", []):
            if which == "all" or covers(str(step["do"].get("aws"))):
                removed += step.pop("probe", None) is not None
    (dest / "plan.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    return dest, removed


def journal_database(server_url: str) -> str:
    """A new database of the sandbox's server for the journal: the URL ``--state`` takes."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("soak_journal")))
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(server_url)._replace(path="/soak_journal"))


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
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite",
                    help="where the journal is: a SQLite file, or a database of the sandbox's PostgreSQL")
    ap.add_argument("--strip-probes", choices=["all", "covered"], default=None,
                    help="remove the hand-written probes first: all of them, or those the built-in catalog covers")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    work = Path(tempfile.mkdtemp(prefix="atomicops-soak-"))
    root = work / "sandbox"
    sb = sandbox.up(root)
    os.environ.update(sandbox.aws_env())
    state = str(work / ".atomicops" / "journal.db")
    if args.store == "postgresql":
        state = journal_database(sb.vars()["database_url"])
    os.environ["ATOMICOPS_STATE"] = state  # every command below, and the integrity check
    figures: Counter[str] = Counter()
    failures: list[str] = []
    plan = FLAGSHIP_PLAN
    person: Counter[str] = Counter()
    try:
        if args.strip_probes:
            plan, removed = stripped_plan(work / "plan-stripped", args.strip_probes)
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
            stuck = left_for_a_person(err)
            if resumed.returncode not in (0, 1):
                failures.append(f"trial {trial}: resume exited {resumed.returncode}: {err.strip().splitlines()[-1:]}")
            dups = duplicates(take()) if not roll_back else []
            rb = cli("rollback", "--env", env, cwd=work)
            _, err = rb.communicate()
            stuck |= left_for_a_person(err)
            person.update(stuck)
            figures["left for a person"] += len(stuck)
            figures["trials needing a person"] += bool(stuck)
            if stuck:
                failures.append(f"trial {trial}: left for a person: {', '.join(sorted(stuck))}")
            if rb.returncode != 0:
                failures.append(f"trial {trial}: rollback exited {rb.returncode}: {err.strip().splitlines()[-1:]}")
                figures["rollback failed"] += 1
            after = take()
            leak = inventory.diff(baseline, after)
            store = open_store(state)
            events = store.events(env)
            # An empty journal would pass the check: the run wrote somewhere else.
            problems = check_journal(events) if events else [f"no event of {env} in {store.url}"]
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
                  f"{'rollback' if roll_back else 'continue'}, leak={bool(leak)} dup={bool(dups)} person={len(stuck)} "
                  f"journal={'ok' if not problems else 'BAD'}", file=sys.stderr, flush=True)
        figures["seconds"] = round(time.monotonic() - started)
    finally:
        sandbox.down(root)
        shutil.rmtree(work, ignore_errors=True)

    mode = f"strip-probes {args.strip_probes}" if args.strip_probes else "ordinary"
    result = {"figures": dict(figures), "failures": failures, "seed": args.seed, "mode": mode, "store": args.store,
              "left_for_a_person": dict(person)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{'mode':>26}: {mode}")
        for name in ("trials", "killed", "finished before the kill", "leaks", "duplicates", "left for a person",
                     "trials needing a person", "corrupt journals", "rollback failed", "probes removed", "seconds"):
            print(f"{name:>26}: {figures.get(name, 0)}")
        for name in sorted(k for k in figures if k.startswith("resume exit")):
            print(f"{name:>26}: {figures[name]}")
        for step, n in person.most_common():
            print(f"  left for a person: {step} x{n}")
        for f in failures:
            print("  " + f)
    bad = figures["leaks"] or figures["duplicates"] or figures["corrupt journals"] or figures["rollback failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
