"""Target-tracking autoscaling of an endpoint variant (Application Auto Scaling, via boto3).

The policy keeps `SageMakerVariantInvocationsPerInstance` (invocations per instance per minute)
near `autoscaling_target_invocations`, between `autoscaling_min_instances` and
`autoscaling_max_instances`. The SageMaker SDK has no API for this; boto3 is the interface.
"""

from __future__ import annotations

import logging
from typing import Any

from deploy.config import Settings

LOG = logging.getLogger("deploy")
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


def resource_ids(endpoint: dict[str, Any]) -> list[str]:
    """Scalable-target ids (`endpoint/<name>/variant/<variant>`) of an endpoint, from DescribeEndpoint."""
    return [
        f"endpoint/{endpoint['EndpointName']}/variant/{v['VariantName']}"
        for v in endpoint.get("ProductionVariants", [])
    ]


def enable(settings: Settings, autoscaling_client: Any, variant: str) -> str:
    """Register the variant as a scalable target and attach the target-tracking policy; its id."""
    resource_id = f"endpoint/{settings.endpoint}/variant/{variant}"
    target = {"ServiceNamespace": NAMESPACE, "ResourceId": resource_id, "ScalableDimension": DIMENSION}
    autoscaling_client.register_scalable_target(
        **target,
        MinCapacity=settings.autoscaling_min_instances,
        MaxCapacity=settings.autoscaling_max_instances,
    )
    autoscaling_client.put_scaling_policy(
        **target,
        PolicyName=f"{settings.project}-invocations-per-instance",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": settings.autoscaling_target_invocations,
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": settings.autoscaling_scale_in_cooldown,
            "ScaleOutCooldown": settings.autoscaling_scale_out_cooldown,
        },
    )
    return resource_id


def remove(autoscaling_client: Any, endpoint: dict[str, Any]) -> list[str]:
    """Delete the scaling policies and deregister the scalable targets of an endpoint; what went."""
    removed = []
    for resource_id in resource_ids(endpoint):
        target = {"ServiceNamespace": NAMESPACE, "ResourceId": resource_id, "ScalableDimension": DIMENSION}
        for policy in autoscaling_client.describe_scaling_policies(**target)["ScalingPolicies"]:
            autoscaling_client.delete_scaling_policy(**target, PolicyName=policy["PolicyName"])
            removed.append(f"scaling policy {policy['PolicyName']}")
        registered = autoscaling_client.describe_scalable_targets(
            ServiceNamespace=NAMESPACE, ResourceIds=[resource_id], ScalableDimension=DIMENSION
        )["ScalableTargets"]
        if registered:
            autoscaling_client.deregister_scalable_target(**target)
            removed.append(f"scalable target {resource_id}")
    return removed


def describe(autoscaling_client: Any, endpoint: dict[str, Any]) -> str:
    """`min-max` instances of the endpoint's scalable targets, or '' when it does not autoscale."""
    targets = (
        autoscaling_client.describe_scalable_targets(
            ServiceNamespace=NAMESPACE, ResourceIds=resource_ids(endpoint), ScalableDimension=DIMENSION
        )["ScalableTargets"]
        if resource_ids(endpoint)
        else []
    )
    return ", ".join(f"{t['MinCapacity']}-{t['MaxCapacity']}" for t in targets)
