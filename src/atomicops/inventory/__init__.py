"""Inventories: comparable pictures of what exists in a target, taken before and after a run.

``rehearse`` proves a rollback left nothing behind by taking an inventory before apply and
after rollback and diffing them. :mod:`atomicops.inventory.aws` covers the AWS account; each
module exposes ``snapshot(...)`` and ``diff(before, after)``. Importing this package imports no
client library.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

SOURCES = ("aws", "postgres", "nats")


def aws_types_for(services: Iterable[str]) -> list[str]:
    """The AWS resource types of the given services (``ec2`` -> ``ec2.vpcs``, ...)."""
    from atomicops.inventory.aws import RESOURCE_TYPES

    wanted = set(services)
    names = {t.name for t in RESOURCE_TYPES if t.name.split(".", 1)[0] in wanted}
    # A child type (role attachments) needs its parent listed too.
    names |= {t.parent for t in RESOURCE_TYPES if t.name in names and t.parent}
    return sorted(names)


def take(
    *,
    aws_endpoint: str | None = None,
    region: str | None = None,
    aws_services: Iterable[str] | None = None,
    database_url: str | None = None,
    nats_url: str | None = None,
    include_aws: bool = True,
) -> dict[str, Any]:
    """One inventory of every target given: ``{"aws": ..., "postgres": ..., "nats": ...}``.

    AWS is taken when ``include_aws`` (real AWS through the normal credential chain unless
    ``aws_endpoint`` names an emulator); ``aws_services`` limits it to the services a plan
    touches. PostgreSQL and NATS are taken when their URL is given.
    """
    out: dict[str, Any] = {}
    if include_aws:
        from atomicops.inventory import aws

        types = aws_types_for(aws_services) if aws_services is not None else None
        out["aws"] = aws.snapshot(aws.clients(region=region, endpoint_url=aws_endpoint), types=types)
    if database_url:
        out["postgres"] = importlib.import_module("atomicops.inventory.postgres").snapshot(database_url)
    if nats_url:
        out["nats"] = importlib.import_module("atomicops.inventory.nats").snapshot(nats_url)
    return out


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per source, what is new, gone or changed; ``{}`` when the two inventories agree."""
    out: dict[str, Any] = {}
    for source in SOURCES:
        if source not in before and source not in after:
            continue
        if (source in before) != (source in after):
            out[source] = {"unchecked": f"taken only {'before' if source in before else 'after'}"}
            continue
        module = importlib.import_module(f"atomicops.inventory.{source}")
        changes = module.diff(before[source], after[source])
        if changes:
            out[source] = changes
    return out
