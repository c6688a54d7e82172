"""AwsConnection's clients reuse the service models the process already parsed (validation's
botocore loader) instead of reading each service's JSON again, and stay correct when many
threads ask for them at once against a real moto server."""

from __future__ import annotations

import threading
from typing import Any

from atomicops.actions import aws, aws_models
from atomicops.actions.aws import AwsConnection

SERVICES = ["ec2", "iam", "sts", "ssm", "dynamodb", "sqs", "sns", "logs"]


def test_a_client_reuses_the_model_validation_parsed(moto_endpoint: str) -> None:
    parsed = aws.service_model("ec2")  # what validation loads
    conn = AwsConnection("eu-west-1", moto_endpoint)
    try:
        ec2 = conn.client("ec2")
        assert ec2.meta.service_model._service_description is parsed._service_description
        assert ec2.meta.region_name == "eu-west-1"
        assert conn.client("ec2", resend=False) is not ec2
        assert ec2.describe_vpcs()["Vpcs"] is not None
    finally:
        conn.close()


def test_clients_made_by_many_threads_at_once_all_answer(moto_endpoint: str) -> None:
    paths_before = list(aws_models.shared_loader().search_paths)
    conns = [AwsConnection("us-east-1", moto_endpoint) for _ in range(3)]
    results: dict[tuple[int, str, bool], Any] = {}
    errors: list[Exception] = []
    start = threading.Barrier(len(conns) * len(SERVICES) * 2)

    def ask(i: int, service: str, resend: bool) -> None:
        try:
            start.wait()
            client = conns[i].client(service, resend=resend)
            # Each client's own model answers for its own service.
            assert client.meta.service_model.service_name == service
            results[(i, service, resend)] = client
        except Exception as exc:  # noqa: BLE001 (reported below, with the others)
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i, s, r)) for i in range(len(conns)) for s in SERVICES for r in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        # One client per (connection, service, resend), each the one later calls get.
        for (i, service, resend), client in results.items():
            assert conns[i].client(service, resend=resend) is client
        assert conns[0].client("sts").get_caller_identity()["Account"]
        assert conns[1].client("dynamodb").list_tables()["TableNames"] is not None
        # boto3 adds its data directory per Session: the shared loader keeps it once.
        paths = aws_models.shared_loader().search_paths
        assert len(paths) == len(set(paths)) and set(paths_before) <= set(paths)
    finally:
        for conn in conns:
            conn.close()
