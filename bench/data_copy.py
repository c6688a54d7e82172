"""B2, the data copy: JetStream -> DynamoDB of the discovery messages, side by side on one
sandbox (moto and nats-server):

  atomicops   the flagship's stream-copy operation (`atomicops apply --target stream-copy`:
              claim the range, batched copy with journalled marks, checksum, verify);
  raw batch   a batch_write_item loop (25 a call), same reader, no journal, no checksum;
  per item    a put_item loop, one call a message (the seed's style), on a sample;

then the undo: `atomicops rollback --target stream-copy` (the claimed keys deleted in
batches) against the seed's scan-and-delete-each (scan, one delete_item an item) on the
per-item sample; then a copy SIGKILLed when its journalled progress reaches half the claimed
range and `atomicops resume`d, against the uninterrupted apply.

The raw batch loop stays the serial loop the issue defines (one batch_write_item at a time,
no journal, no checksum): the copy's concurrent writers are part of what is measured.

    python bench/data_copy.py --messages 100000 --sample 20000
    python bench/data_copy.py --messages 120 --sample 50      # what CI runs (not a timing)

Writes bench/results/data_copy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from atomicops import sandbox
from atomicops.actions.base import ActionContext, Connections, connection_of
from atomicops.journal import open_store
from atomicops.rehearsal import FLAGSHIP_PLAN

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "data_copy.json"
CLI = [sys.executable, "-m", "atomicops.cli"]
STREAM = "MISTERSMITH_DISCOVERY"
TYPES = ["pattern", "anomaly", "connection", "solution"]
KEYS = {"AttributeDefinitions": [{"AttributeName": "StreamName", "AttributeType": "S"},
                                 {"AttributeName": "SequenceNumber", "AttributeType": "N"}],
        "KeySchema": [{"AttributeName": "StreamName", "KeyType": "HASH"},
                      {"AttributeName": "SequenceNumber", "KeyType": "RANGE"}],
        "BillingMode": "PAY_PER_REQUEST"}


async def _seed(url: str, messages: int) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=STREAM, subjects=["discovery.>"])
    for start in range(0, messages, 1000):
        await asyncio.gather(*(
            js.publish(f"discovery.{TYPES[i % 4]}", json.dumps({
                "id": i, "type": TYPES[i % 4], "agent": f"agent-{i % 3}", "content": f"discovery {i}",
                "confidence": round((i * 37 % 100) / 100, 2)}).encode())
            for i in range(start, min(messages, start + 1000))))
    await nc.close()


def item(m: Any) -> dict[str, Any]:
    """The item the flagship's copy writes for a message."""
    return {"StreamName": {"S": STREAM}, "SequenceNumber": {"N": str(m.seq)},
            "Subject": {"S": m.subject}, "Data": {"B": m.data}}


def raw_batch(bus: Any, ddb: Any, table: str) -> int:
    n, batch = 0, []
    for m in bus.iter_stream(STREAM):
        batch.append({"PutRequest": {"Item": item(m)}})
        if len(batch) == 25:
            n += _write_all(ddb, table, batch)
            batch = []
    if batch:
        n += _write_all(ddb, table, batch)
    return n


def _write_all(ddb: Any, table: str, requests: list[dict[str, Any]]) -> int:
    pending = {table: requests}
    while pending:
        pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return len(requests)


def per_item(bus: Any, ddb: Any, table: str, sample: int) -> int:
    n = 0
    for m in bus.iter_stream(STREAM, end_seq=sample):
        ddb.put_item(TableName=table, Item=item(m))
        n += 1
    return n


def scan_and_delete_each(ddb: Any, table: str) -> int:
    """The seed's undo: scan the keys, one delete_item a key (paged, which the page was not)."""
    n = 0
    for page in ddb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="StreamName,SequenceNumber"):
        for key in page["Items"]:
            ddb.delete_item(TableName=table, Key=key)
            n += 1
    return n


def count(ddb: Any, table: str) -> int:
    return sum(p["Count"] for p in ddb.get_paginator("scan").paginate(TableName=table, Select="COUNT"))


def timed(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:5])} exited {done.returncode}: {done.stderr[-2000:]}")
    return took


def step_seconds(cwd: Path, env: str, op: str, step: str, prefix: str) -> float:
    """How long a step (prefix "step") or its undo (prefix "undo") took, from the journal."""
    store = open_store(str(cwd / ".atomicops" / "journal.db"))
    try:
        ts = [e.ts for e in store.events(env) if e.op == op and e.step == step and e.type.startswith(prefix)]
    finally:
        store.close()
    return max(ts) - min(ts) if ts else 0.0


def kill_half_way(argv: list[str], cwd: Path, env: str) -> tuple[float, dict[str, Any]]:
    """Run ``argv`` (an apply of stream-copy) and SIGKILL it as soon as its journal shows the
    copy step's progress at half the claimed range: the step_progress events the copy
    journals (with its high-water mark) are read from the run's SQLite journal as they land.
    Returns the seconds until the process ended, and the last progress seen (``killed`` is
    false when the process ended before the copy reached half, as a tiny run can)."""
    store = open_store(str(cwd / ".atomicops" / "journal.db"))  # made by the earlier runs
    seen: dict[str, Any] = {"done": 0, "total": None, "mark": None, "killed": False}
    after = max((e.seq for e in store.events(env)), default=0)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            for e in store.events(env, after=after):
                after = e.seq
                if e.type == "step_progress" and e.op == "stream-copy" and e.step == "copy":
                    seen.update(done=e.data.get("done") or 0, total=e.data.get("total"))
                    if e.data.get("mark") is not None:
                        seen["mark"] = e.data["mark"]
            if seen["total"] and seen["done"] * 2 >= seen["total"]:
                os.kill(proc.pid, signal.SIGKILL)
                seen["killed"] = True
                break
            time.sleep(0.02)
        proc.wait()
    finally:
        store.close()
    return time.perf_counter() - t0, seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=20_000, help="messages the per-item loop and the scan-and-delete take")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    n, sample = args.messages, min(args.sample, args.messages)
    work = Path(tempfile.mkdtemp(prefix="atomicops-b2-"))
    root = work / "sandbox"
    sb = sandbox.up(root, services=["aws", "nats"])
    os.environ.update(sandbox.aws_env())
    sv = sb.vars()
    rows: dict[str, Any] = {}
    try:
        say = lambda text: print(text, file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        asyncio.run(_seed(sv["nats_url"], n))
        say(f"seeded {n} messages in {time.perf_counter() - t0:.1f}s")
        ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=sv["aws_endpoint"])
        for table in ("BenchRaw", "BenchPerItem"):
            ddb.create_table(TableName=table, **KEYS)
        conns = Connections({"bus": {"kind": "nats", "url": sv["nats_url"]}})
        bus = connection_of(ActionContext(connections=conns, env="bench", run_id="bench"), "nats")

        t0 = time.perf_counter()
        copied = raw_batch(bus, ddb, "BenchRaw")
        raw_s = time.perf_counter() - t0
        assert copied == n and count(ddb, "BenchRaw") == n
        say(f"raw batch: {raw_s:.1f}s")

        t0 = time.perf_counter()
        put = per_item(bus, ddb, "BenchPerItem", sample)
        item_s = time.perf_counter() - t0
        say(f"per item ({put}): {item_s:.1f}s")

        vars_file = work / "vars.json"
        vars_file.write_text(json.dumps({"aws_endpoint": sv["aws_endpoint"], "nats_url": sv["nats_url"], "source_stream": STREAM}))
        apply = [*CLI, "apply", str(FLAGSHIP_PLAN), "--vars-file", str(vars_file), "--target", "stream-copy", "--monitor", "0"]
        apply_s = timed([*apply, "--env", "copy"], work)
        copy_s = step_seconds(work, "copy", "stream-copy", "copy", "step")
        assert count(ddb, "MisterSmithStreams") == n
        say(f"atomicops apply: {apply_s:.1f}s (copy step {copy_s:.1f}s)")

        undo_wall = timed([*CLI, "rollback", "--target", "stream-copy", "--env", "copy"], work)
        undo_s = step_seconds(work, "copy", "stream-copy", "copy", "undo") + step_seconds(work, "copy", "stream-copy", "claim-range", "undo")
        assert count(ddb, "MisterSmithStreams") == 0
        say(f"atomicops undo: {undo_s:.1f}s (rollback process {undo_wall:.1f}s)")

        t0 = time.perf_counter()
        deleted = scan_and_delete_each(ddb, "BenchPerItem")
        scan_s = time.perf_counter() - t0
        assert deleted == put and count(ddb, "BenchPerItem") == 0
        say(f"scan and delete each ({deleted}): {scan_s:.1f}s")

        # Killed half-way through the copy step, then resumed.
        timed([*CLI, "rollback", "--env", "copy"], work)  # the tables too: the next env makes them again
        # moto keeps a deleted backup plan's document and refuses the same plan again (the
        # flagship's checkpoint operation, which stream-copy now needs): start it afresh.
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{sv['aws_endpoint']}/moto-api/reset", method="POST"), timeout=30).close()
        killed_s, seen = kill_half_way([*apply, "--env", "kill"], work, "kill")
        at_kill = count(ddb, "MisterSmithStreams") if "MisterSmithStreams" in ddb.list_tables()["TableNames"] else 0
        resume_s = timed([*CLI, "resume", "--env", "kill"], work)
        assert count(ddb, "MisterSmithStreams") == n
        # Valid only if the kill landed inside the copy, past its first half.
        valid = seen["killed"] and seen["total"] is not None and seen["total"] / 2 <= seen["done"] < seen["total"]
        say(f"killed after {killed_s:.1f}s at journalled progress {seen['done']}/{seen['total']} (mark {seen['mark']}), "
            f"{at_kill} items in the table; resume {resume_s:.1f}s{'' if valid else ' (NOT a valid kill at 50%)'}")
        timed([*CLI, "rollback", "--env", "kill"], work)

        rows = {
            "messages": n, "sample": put,
            "raw_batch": {"seconds": round(raw_s, 3), "msgs_per_s": round(n / raw_s)},
            "per_item": {"seconds": round(item_s, 3), "msgs_per_s": round(put / item_s)},
            "atomicops_copy_step": {"seconds": round(copy_s, 3), "msgs_per_s": round(n / copy_s) if copy_s else None},
            "atomicops_apply_process": {"seconds": round(apply_s, 3), "msgs_per_s": round(n / apply_s)},
            "atomicops_undo": {"seconds": round(undo_s, 3), "items_per_s": round(n / undo_s) if undo_s else None,
                               "rollback_process_s": round(undo_wall, 3)},
            "scan_and_delete_each": {"seconds": round(scan_s, 3), "items_per_s": round(deleted / scan_s)},
            "kill_and_resume": {"killed_after_s": round(killed_s, 3), "items_at_kill": at_kill,
                                "journalled_at_kill": {k: seen[k] for k in ("done", "total", "mark")},
                                "killed_in_copy": valid,
                                "resume_s": round(resume_s, 3), "total_s": round(killed_s + resume_s, 3),
                                "uninterrupted_s": round(apply_s, 3)},
        }
        copy_rate = n / copy_s if copy_s else 0.0
        ratios = {
            "copy / raw batch (throughput)": round(copy_rate / (n / raw_s), 2),
            "copy / per item (throughput)": round(copy_rate / (put / item_s), 1),
            "undo / copy (time)": round(undo_s / copy_s, 2) if copy_s else None,
            "undo / scan-and-delete (throughput)": round((n / undo_s) / (deleted / scan_s), 1) if undo_s else None,
            "killed+resumed / uninterrupted (time)": round((killed_s + resume_s) / apply_s, 2),
        }
        meets = {
            "copy >= 0.9x raw batch": ratios["copy / raw batch (throughput)"] >= 0.9,
            "copy >= 10x per item": ratios["copy / per item (throughput)"] >= 10,
            "undo <= 1.1x copy": ratios["undo / copy (time)"] is not None and ratios["undo / copy (time)"] <= 1.1,
            "resume within +-20%": valid and abs(ratios["killed+resumed / uninterrupted (time)"] - 1) <= 0.2,
        }
        rows["ratios"], rows["meets"] = ratios, meets
    finally:
        sandbox.down(root)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'what':<28} {'seconds':>8} {'per s':>8}")
    for name in ("raw_batch", "per_item", "atomicops_copy_step", "atomicops_apply_process", "atomicops_undo", "scan_and_delete_each"):
        r = rows[name]
        print(f"{name:<28} {r['seconds']:>8.2f} {r.get('msgs_per_s') or r.get('items_per_s') or 0:>8}")
    k = rows["kill_and_resume"]
    j = k["journalled_at_kill"]
    print(f"killed at {k['killed_after_s']:.1f}s (journalled {j['done']}/{j['total']}, mark {j['mark']}; "
          f"{k['items_at_kill']} items in the table{'' if k['killed_in_copy'] else '; NOT inside the copy'}), "
          f"resume {k['resume_s']:.1f}s, total {k['total_s']:.1f}s vs uninterrupted {k['uninterrupted_s']:.1f}s")
    for name, value in rows["ratios"].items():
        print(f"{name} = {value}")
    for name, ok in rows["meets"].items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "data_copy", "python": sys.version.split()[0], **rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
