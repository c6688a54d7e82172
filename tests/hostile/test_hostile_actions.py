"""Hostile inputs met by the action kinds: a misspelt step reference, an endpoint that answers
every call with an HTML error page. Each is refused or failed with a short message, and leaves
nothing made."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from run_cli import cli

PLAN = """
atomicops: 1
name: hostile-actions
vars: {aws_endpoint: null}
connections:
  aws: {kind: aws, region: us-east-1, endpoint_url: "${vars.aws_endpoint}", max_attempts: 1}
operations:
  - id: net
    steps:
      - name: vpc
        do: {aws: ec2.create_vpc, params: {CidrBlock: 10.80.0.0/16}}
        outputs: {vpc_id: Vpc.VpcId}
        undo: {aws: ec2.delete_vpc, params: {VpcId: "${self.vpc_id}"}}
        probe:
          aws: ec2.describe_vpcs
          params: {Filters: [{Name: "tag:atomicops:run", Values: ["STEP_RUN"]}]}
          outputs: {vpc_id: "Vpcs[0].VpcId"}
"""


def write(tmp_path: Path, step_run: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace("STEP_RUN", step_run))
    return path


_WHO_AM_I = (
    b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    b"<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/t</Arn><UserId>t</UserId>"
    b"<Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>"
)


class _ErrorPage(BaseHTTPRequestHandler):
    """A gateway that lets the preflight's who-am-I through and answers every other call
    with an HTML error page."""

    def do_POST(self) -> None:
        request = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if b"Action=GetCallerIdentity" in request:
            self._answer(200, "text/xml", _WHO_AM_I)
            return
        body = b"<!doctype html>\n<html><title>502 Bad Gateway</title><h1>Bad Gateway</h1></html>\n"
        self._answer(502, "text/html", body)

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def error_page_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ErrorPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_misspelt_step_reference_is_refused_and_nothing_runs(tmp_path):
    res = cli("apply", str(write(tmp_path, "${step.runs}")), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "plan.yaml" in res.stderr and "${step.key} and ${step.run}" in res.stderr
    assert not (tmp_path / ".atomicops").exists() or not list((tmp_path / ".atomicops").glob("*.db*"))


def test_an_endpoint_answering_html_pages_fails_the_step_with_one_short_line(tmp_path, error_page_endpoint):
    plan = write(tmp_path, "${step.run}")
    res = cli("apply", str(plan), "--var", f"aws_endpoint={error_page_endpoint}", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert "502 Bad Gateway" in res.stderr and "ec2.create_vpc" in res.stderr
    assert "<" not in res.stderr  # no page markup reaches the user
    assert "may have taken effect" in res.stderr  # a 502 leaves open whether the VPC was made
