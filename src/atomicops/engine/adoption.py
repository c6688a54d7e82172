"""No adoption: a create that succeeds when the resource already exists must not take over
something this step did not make.

Some AWS create calls return success for a resource that is already there (``CreateCluster``,
``CreateTopic`` and ``CreateQueue`` with the same attributes, ``PutRolePolicy`` and the other
put-style calls, ``CreateBucket`` in us-east-1). The journal would then hold an undo that
deletes a namesake made outside the tool. Before such a call the engine asks the catalog
(engine/catalog.py): absent, or already this step's, and the call goes ahead; otherwise the
step fails naming the resource, before its intent is journalled, so nothing is created and
nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from atomicops.engine.catalog import catalog_probe
from atomicops.errors import AdoptionRefused

# Calls that succeed on an existing resource instead of failing with "already exists".
# Each is covered by the catalog (tests/test_catalog.py checks it). When in doubt a call is
# left out only if AWS is known to refuse a duplicate.
ADOPTING_CALLS = frozenset(
    {
        "ecs.create_cluster",  # returns the existing cluster
        "sns.create_topic",  # returns the existing topic's ARN
        "sns.subscribe",  # returns the existing subscription
        "sqs.create_queue",  # returns the existing queue's URL when attributes match
        "iam.put_role_policy",  # replaces the inline policy of that name
        "iam.attach_role_policy",  # attaching an attached policy is a no-op success
        "s3.create_bucket",  # us-east-1 answers 200 for a bucket you already own
        "logs.put_metric_filter",  # replaces the filter of that name
        "cloudwatch.put_metric_alarm",  # replaces the alarm of that name
        "events.put_rule",  # replaces the rule of that name
        "events.put_targets",  # replaces targets with the same Id
    }
)


def check_no_adoption(
    do_action: Mapping[str, Any], aws: Any, *, step_key: str, env: str, owned: Iterable[str] = ()
) -> None:
    """Raise :class:`AdoptionRefused` if ``do_action`` (resolved) would take over a resource
    that is there and not this step's. ``aws``: a callable giving the connection by name."""
    call = do_action.get("aws")
    if call not in ADOPTING_CALLS:
        return
    probe = catalog_probe(do_action)
    if probe is None:  # pragma: no cover - every adopting call is in the catalog (tested)
        raise AdoptionRefused(str(call), str(call), "unproven", "no built-in probe for it")
    # Any run: what this step made in an earlier attempt is still its own to re-create.
    found = probe.lookup(aws(probe.connection), step_key=step_key, env=env, owned=owned)
    if found.state in ("foreign", "unproven"):
        # There and not provably this step's is as good as someone else's: refused alike.
        raise AdoptionRefused(probe.call, found.resource, "foreign" if found.exists else "unproven", found.why)
