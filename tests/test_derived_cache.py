"""What validation derives from botocore's models is kept between processes
(atomicops/derived.py, actions/aws_models.py, plan/passed_checks.py): a second `validate`
reads no model, yet every problem is still reported, and a stale or broken cache is a miss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from atomicops import derived
from atomicops.errors import PlanInvalid
from atomicops.plan.loader import load_plan

ROOT = Path(__file__).resolve().parent.parent
FLAGSHIP = ROOT / "src" / "atomicops" / "bundled" / "mistersmith"

PLAN = textwrap.dedent(
    """\
    atomicops: 1
    name: cached
    connections:
      aws: {kind: aws, region: us-east-1}
    operations:
      - id: queue
        steps:
          - name: create
            do: {aws: sqs.create_queue, params: {QueueName: q-1}}
            outputs: {url: QueueUrl}
            undo: {aws: sqs.delete_queue, params: {QueueUrl: "${self.url}"}}
    """
)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv("ATOMICOPS_CACHE_DIR", str(where))
    return where


def write_plan(tmp_path: Path, text: str = PLAN) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path


def validate_process(plan: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """A fresh `atomicops validate PLAN` that prints the botocore modules it imported."""
    code = (
        "import json, sys\n"
        "from atomicops.cli import main\n"
        f"try:\n    main(['validate', {str(plan)!r}])\nexcept SystemExit as e:\n    code = e.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('botocore'))))\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "ATOMICOPS_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def modules_after_validate(plan: Path, cache: Path) -> list[str]:
    """The botocore modules a fresh, successful `atomicops validate PLAN` imported."""
    done = validate_process(plan, cache)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_second_validate_reads_no_model(tmp_path: Path, cache_dir: Path) -> None:
    first = modules_after_validate(FLAGSHIP, cache_dir)
    assert "botocore.model" in first  # the first one walked the calls against the models
    assert (cache_dir / "checks-aws.json").exists() and (cache_dir / "botocore-facts.json").exists()
    second = modules_after_validate(FLAGSHIP, cache_dir)
    assert "botocore.model" not in second and "botocore.session" not in second, second


def test_an_action_with_a_problem_is_reported_every_time(tmp_path: Path, cache_dir: Path) -> None:
    bad = write_plan(tmp_path, PLAN.replace("QueueName: q-1", "QueueNam: q-1"))
    for _ in range(2):
        with pytest.raises(PlanInvalid, match="unknown parameter 'QueueNam'"):
            load_plan(bad)
    stored = json.loads((cache_dir / "checks-aws.json").read_text())["data"]
    # The undo passed and is remembered; the create with the typo is not.
    assert len(stored) == 1


def test_a_remembered_pass_does_not_hide_a_changed_action(tmp_path: Path, cache_dir: Path) -> None:
    load_plan(write_plan(tmp_path))
    with pytest.raises(PlanInvalid, match="unknown operation 'create_queu'"):
        load_plan(write_plan(tmp_path, PLAN.replace("sqs.create_queue", "sqs.create_queu")))


def test_a_stale_or_broken_cache_is_a_miss(tmp_path: Path, cache_dir: Path) -> None:
    plan = write_plan(tmp_path)
    modules_after_validate(plan, cache_dir)
    facts = cache_dir / "botocore-facts.json"
    doc = json.loads(facts.read_text())
    doc["data"]["models"]["sqs"]["operations"] = {}  # a lie: sqs has no operations
    (cache_dir / "checks-aws.json").write_text("{not json")  # broken: every action is checked
    facts.write_text(json.dumps(doc))
    believed = validate_process(plan, cache_dir)
    assert believed.returncode == 2 and "unknown operation 'create_queue'" in believed.stdout + believed.stderr
    # The same lie stored by another botocore (another stamp) is not used.
    facts.write_text(json.dumps({**doc, "key": "another botocore"}))
    assert validate_process(plan, cache_dir).returncode == 0


def test_facts_from_the_cache_answer_as_the_model_does(tmp_path: Path, cache_dir: Path) -> None:
    calls = ["ec2.create_nat_gateway", "secretsmanager.create_secret", "ec2.create_vpc", "nosuch.call",
             "ecs.run_task", "dynamodb.create_table", "rds.create_db_cluster"]
    code = (
        "import json\nfrom atomicops.actions import aws_models as m\n"
        f"print(json.dumps([m.takes_token(c) for c in {calls!r}] + [m.waiters('ec2')['vpc_available'],"
        " m.waiter_operation('ec2', 'vpc_available'), m.operations('ec2')['create_vpc']]))\n"
    )
    env = {**os.environ, "ATOMICOPS_CACHE_DIR": str(cache_dir)}
    answers = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        for _ in range(2)  # computed from the models, then read from the cache
    ]
    assert answers[0] == answers[1]
    assert json.loads(answers[0]) == [True, True, False, False, True, False, False,
                                      "VpcAvailable", "DescribeVpcs", "CreateVpc"]


def test_off_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATOMICOPS_CACHE_DIR", "off")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    load_plan(write_plan(tmp_path))
    assert derived.directory() is None
    assert not (tmp_path / "home").exists()


def test_an_unwritable_cache_only_loses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ATOMICOPS_CACHE_DIR", str(blocker / "cache"))  # cannot be made
    assert load_plan(write_plan(tmp_path)).plan.name == "cached"


def big_plan(tmp_path: Path, extra: str = "") -> Path:
    """A plan past CACHED_PARSE_BYTES: its parsed values are kept between processes."""
    from atomicops.plan.source import CACHED_PARSE_BYTES

    ops = []
    for i in range(CACHED_PARSE_BYTES // 90 + 1):
        ops.append(f"  - id: op-{i:05d}\n    steps:\n      - name: s\n        do: {{run: ['true']}}\n"
                   f"        undo: {{run: ['true']}}\n")
    text = "atomicops: 1\nname: big\noperations:\n" + "".join(ops) + extra
    assert len(text) >= CACHED_PARSE_BYTES
    return write_plan(tmp_path, text)


def test_a_large_plan_is_parsed_once_and_placed_right_when_wrong(tmp_path: Path, cache_dir: Path) -> None:
    from atomicops.plan import source

    plan = big_plan(tmp_path)
    first = load_plan(plan)
    assert list(cache_dir.glob("parsed-*.json"))
    # Taken from the cache: the same values; no line is known until one is asked for.
    value, smap = source.load_yaml(plan.read_text(), str(plan))
    assert smap.reparse is not None and value["operations"][3]["id"] == "op-00003"
    assert load_plan(plan).plan == first.plan
    # A problem in a cached plan still names its line (the text is parsed again for it).
    text = plan.read_text()
    plan.write_text(text.replace("do: {run: ['true']}", "do: {run: ['true'], bogus: 1}", 1))
    load_plan_problem = pytest.raises(PlanInvalid, match=r"plan.yaml:7: .*unknown key 'bogus'")
    with load_plan_problem:
        load_plan(plan)
    with load_plan_problem:  # the edited text, now from the cache
        load_plan(plan)


def test_values_json_cannot_carry_are_not_kept(tmp_path: Path, cache_dir: Path) -> None:
    plan = big_plan(tmp_path, extra="vars:\n  when: 2026-12-05\n")
    load_plan(plan)
    assert not list(cache_dir.glob("parsed-*.json"))  # a date would come back a string
