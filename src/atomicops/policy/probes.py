"""The AWS calls each built-in probe (engine/catalog.py) may make.

The catalog's finders are code, so the calls they make are written down here, one line per
catalog entry; tests/test_policy.py fails when an entry is added to the catalog without a
line here, or when the catalog's source names a call this table does not list.
"""

from __future__ import annotations

from atomicops.actions import aws_models

# call -> the reads its probe may send (boto3 spelling; paginators send the listed call).
PROBE_CALLS: dict[str, tuple[str, ...]] = {
    "ec2.create_vpc": ("ec2.describe_vpcs",),
    "ec2.create_subnet": ("ec2.describe_subnets",),
    "ec2.create_internet_gateway": ("ec2.describe_internet_gateways",),
    "ec2.attach_internet_gateway": ("ec2.describe_internet_gateways",),
    "ec2.create_route_table": ("ec2.describe_route_tables",),
    "ec2.create_route": ("ec2.describe_route_tables",),
    "ec2.associate_route_table": ("ec2.describe_route_tables",),
    "ec2.create_security_group": ("ec2.describe_security_groups",),
    "ec2.authorize_security_group_ingress": ("ec2.describe_security_group_rules", "ec2.describe_security_groups"),
    "ec2.create_vpc_endpoint": ("ec2.describe_vpc_endpoints",),
    "ec2.create_nat_gateway": ("ec2.describe_nat_gateways",),
    "ec2.allocate_address": ("ec2.describe_addresses",),
    "rds.create_db_subnet_group": ("rds.describe_db_subnet_groups", "rds.list_tags_for_resource"),
    "rds.create_db_cluster": ("rds.describe_db_clusters", "rds.list_tags_for_resource"),
    "rds.create_db_instance": ("rds.describe_db_instances", "rds.list_tags_for_resource"),
    "rds.create_db_cluster_snapshot": ("rds.describe_db_cluster_snapshots", "rds.list_tags_for_resource"),
    "ecs.create_cluster": ("ecs.describe_clusters",),
    "ecs.create_service": ("ecs.describe_services",),
    "ecs.register_task_definition": ("ecs.list_task_definitions", "ecs.describe_task_definition"),
    "ecr.create_repository": ("ecr.describe_repositories", "ecr.list_tags_for_resource"),
    "logs.create_log_group": ("logs.describe_log_groups", "logs.list_tags_log_group"),
    "logs.put_metric_filter": ("logs.describe_metric_filters", "logs.list_tags_log_group"),
    "iam.create_role": ("iam.get_role",),
    "iam.create_policy": ("iam.list_policies", "iam.list_policy_tags"),
    "iam.attach_role_policy": ("iam.list_attached_role_policies", "iam.get_role"),
    "iam.put_role_policy": ("iam.get_role_policy", "iam.get_role"),
    "iam.create_instance_profile": ("iam.get_instance_profile",),
    "secretsmanager.create_secret": ("secretsmanager.describe_secret",),
    "ssm.put_parameter": ("ssm.describe_parameters", "ssm.list_tags_for_resource"),
    "dynamodb.create_table": ("dynamodb.describe_table", "dynamodb.list_tags_of_resource"),
    "sqs.create_queue": ("sqs.get_queue_url", "sqs.list_queue_tags"),
    "sns.create_topic": ("sns.list_topics", "sns.list_tags_for_resource"),
    "sns.subscribe": ("sns.list_subscriptions_by_topic", "sns.list_tags_for_resource"),
    "s3.create_bucket": ("s3.head_bucket", "s3.get_bucket_location", "s3.get_bucket_tagging"),
    "s3.put_bucket_versioning": ("s3.get_bucket_versioning", "s3.get_bucket_tagging"),
    "s3.put_bucket_encryption": ("s3.get_bucket_encryption", "s3.get_bucket_tagging"),
    "s3.put_public_access_block": ("s3.get_public_access_block", "s3.get_bucket_tagging"),
    "s3.put_bucket_policy": ("s3.get_bucket_policy", "s3.get_bucket_tagging"),
    "s3.put_bucket_lifecycle_configuration": ("s3.get_bucket_lifecycle_configuration", "s3.get_bucket_tagging"),
    "lambda.create_function": ("lambda.get_function",),
    "lambda.add_permission": ("lambda.get_policy", "lambda.get_function"),
    "events.put_rule": ("events.describe_rule", "events.list_tags_for_resource"),
    "events.put_targets": ("events.list_targets_by_rule", "events.describe_rule", "events.list_tags_for_resource"),
    "kms.create_key": ("kms.list_keys", "kms.list_resource_tags", "kms.describe_key"),
    "kms.create_alias": ("kms.list_aliases", "kms.list_resource_tags"),
    "cloudwatch.put_metric_alarm": ("cloudwatch.describe_alarms", "cloudwatch.list_tags_for_resource"),
    "servicediscovery.create_private_dns_namespace": (
        "servicediscovery.list_namespaces", "servicediscovery.list_operations", "servicediscovery.get_operation",
        "servicediscovery.list_tags_for_resource"),
    "servicediscovery.create_public_dns_namespace": (
        "servicediscovery.list_namespaces", "servicediscovery.list_operations", "servicediscovery.get_operation",
        "servicediscovery.list_tags_for_resource"),
    "servicediscovery.create_http_namespace": (
        "servicediscovery.list_namespaces", "servicediscovery.list_operations", "servicediscovery.get_operation",
        "servicediscovery.list_tags_for_resource"),
    "servicediscovery.create_service": (
        "servicediscovery.list_services", "servicediscovery.get_service", "servicediscovery.list_tags_for_resource"),
    "backup.create_backup_vault": ("backup.describe_backup_vault", "backup.list_tags"),
    "backup.create_backup_plan": ("backup.list_backup_plans", "backup.list_tags"),
}  # fmt: skip


def probe_calls(call: str) -> list[tuple[str, str]]:
    """(service, API operation) of each read the built-in probe of ``call`` may make."""
    out = []
    for read in PROBE_CALLS.get(call, ()):
        service, _, method = read.partition(".")
        out.append((service, aws_models.operations(service)[method]))
    return out
