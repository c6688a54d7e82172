"""The moto world the settling tests share: the settle plan, its resources, its journal."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
from run_cli import cli

from atomicops.journal.integrity import check_journal
from atomicops.journal.views import store_for

PLAN = Path(__file__).parent / "plans" / "settle.yaml"


class SettleWorld:
    def __init__(self, cwd: Path, endpoint: str):
        self.cwd = cwd
        self.endpoint = endpoint
        self.suffix = uuid.uuid4().hex[:8]
        self.vars = ["--var", f"aws_endpoint={endpoint}", "--var", f"suffix={self.suffix}"]
        self._client = lambda service: boto3.client(service, region_name="us-east-1", endpoint_url=endpoint)

    def apply(self, env: str, crash: str | None = None) -> Any:
        return cli("apply", str(PLAN), "--env", env, "--parallelism", "1", *self.vars, cwd=self.cwd, crash=crash)

    def run(self, *args: str, crash: str | None = None) -> Any:
        return cli(*args, cwd=self.cwd, crash=crash)

    def status(self, env: str) -> dict[str, str]:
        doc = json.loads(cli("status", "--json", "--env", env, cwd=self.cwd).stdout)
        return {o["id"]: o["status"] for o in doc["operations"]}

    def events(self, env: str, type_: str, op: str) -> list[dict[str, Any]]:
        return [e.data for e in store_for(str(self.cwd / ".atomicops")).events(env) if e.type == type_ and e.op == op]

    def coherent(self, env: str) -> list[str]:
        """Problems journal/integrity.py finds in the environment's journal; [] when none."""
        return check_journal(store_for(str(self.cwd / ".atomicops")).events(env))

    # What exists in the account
    def param(self) -> list[str]:
        found = self._client("ssm").describe_parameters(
            ParameterFilters=[{"Key": "Name", "Values": [f"/settle/{self.suffix}/mode"]}])["Parameters"]
        return [p["Name"] for p in found]

    def topics(self) -> list[str]:
        arns = [t["TopicArn"] for t in self._client("sns").list_topics()["Topics"]]
        return [a for a in arns if a.endswith(f":settle-{self.suffix}")]

    def secrets(self) -> list[str]:
        found = self._client("secretsmanager").list_secrets(
            Filters=[{"Key": "name", "Values": [f"settle-{self.suffix}"]}])["SecretList"]
        return [s["ARN"] for s in found]

    def databases(self) -> list[str]:
        names = [d["Name"] for d in self._client("glue").get_databases()["DatabaseList"]]
        return [n for n in names if n == f"settle-{self.suffix}"]

    def nothing_left(self) -> bool:
        return not (self.param() or self.topics() or self.secrets() or self.databases())
