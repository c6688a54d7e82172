"""Loading the ``nats`` kind imports no nats-py (docs/performance.md, B6): the registry loads
every kind for every command, ``validate`` included, and nats-py takes tens of milliseconds to
import. It comes in when a connection opens, or when a check reads a config dataclass."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

NATS_MODULES = "[m for m in sys.modules if m == 'nats' or m.startswith('nats.')]"


def fresh(body: str) -> Any:
    """Run ``body`` in a fresh interpreter; the JSON it printed last."""
    code = f"import json, sys\n{body}\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_kind_imports_no_nats_py() -> None:
    loaded = fresh(f"import atomicops.actions.nats\nprint(json.dumps({NATS_MODULES}))")
    assert loaded == []


def test_loading_every_kind_imports_no_nats_py() -> None:
    loaded = fresh(
        "from atomicops.actions import registry\n"
        "assert 'nats' in registry.kinds()\n"
        f"print(json.dumps({NATS_MODULES}))"
    )
    assert loaded == []


def test_checks_without_a_config_dataclass_import_no_nats_py() -> None:
    # A publish or a stream_delete names no nats-py dataclass; nor does a connection.
    out = fresh(
        "from atomicops.actions.nats import NatsKind\n"
        "kind = NatsKind()\n"
        "issues = [*kind.check({'nats': {'publish': {'subject': 'a.b', 'dta': 1}}}),\n"
        "          *kind.check({'nats': {'stream_delete': 'A.B'}}),\n"
        "          *kind.check_connection({'kind': 'nats', 'url': 'http://x', 'usr': 'u'})]\n"
        f"print(json.dumps([[list(i.path) for i in issues], {NATS_MODULES}]))"
    )
    paths, loaded = out
    assert paths == [["nats", "publish", "dta"], ["nats", "stream_delete", "name"], ["usr"], ["url"]]
    assert loaded == []


def test_a_config_field_is_still_checked_from_a_cold_start() -> None:
    # The verb table names StreamConfig; the check imports it when it first needs it.
    out = fresh(
        "from atomicops.actions.nats import NatsKind\n"
        "action = {'nats': {'stream_add': {'name': 'S', 'subjects': ['s.>'], 'max_msg': 5,\n"
        "                                  'storage': 'disk'}}}\n"
        "issues = list(NatsKind().check(action))\n"
        "print(json.dumps([[list(i.path), i.message] for i in issues]))"
    )
    found = {tuple(path): message for path, message in out}
    assert set(found) == {("nats", "stream_add", "max_msg"), ("nats", "stream_add", "storage")}
    assert "StreamConfig" in found["nats", "stream_add", "max_msg"]
    assert "'max_msgs'" in found["nats", "stream_add", "max_msg"]
    assert "'file'" in found["nats", "stream_add", "storage"]


def test_a_consumer_config_is_checked_with_its_extra_argument() -> None:
    out = fresh(
        "from atomicops.actions.nats import NatsKind\n"
        "action = {'nats': {'consumer_add': {'stream': 'S', 'durable_name': 'D',\n"
        "                                    'ack_policy': 'sometimes'}}}\n"
        "print(json.dumps([list(i.path) for i in NatsKind().check(action)]))"
    )
    assert out == [["nats", "consumer_add", "ack_policy"]]
