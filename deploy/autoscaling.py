"""Target-tracking autoscaling of an endpoint variant (Application Auto Scaling, via boto3).

The policy keeps `SageMakerVariantInvocationsPerInstance` (invocations per instance per minute)
near `autoscaling_target_invocations`, between `autoscaling_min_instances` and
`autoscaling_max_instances`. The SageMaker SDK has no API for this; boto3 is the interface.

`read` keeps what an endpoint's variants have (scalable target range and policies, whoever set
them) so that `restore` can put it back exactly, e.g. after a blue/green update that had to remove
it and then failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from deploy.config import Settings

LOG = logging.getLogger("deploy")
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
#: What RegisterScalableTarget takes back from DescribeScalableTargets (not RoleARN: Application
#: Auto Scaling uses its service-linked role again, and passing a role would need iam:PassRole).
TARGET_FIELDS = ("MinCapacity", "MaxCapacity", "SuspendedState")
#: What PutScalingPolicy takes back from DescribeScalingPolicies (the alarms are made by the service).
POLICY_FIELDS = (
    "PolicyName",
    "PolicyType",
    "TargetTrackingScalingPolicyConfiguration",
    "StepScalingPolicyConfiguration",
    "PredictiveScalingPolicyConfiguration",
)


@dataclass(frozen=True)
class VariantScaling:
    """One variant's autoscaling as Application Auto Scaling describes it, in the fields that
    register it again: the target's range (`TARGET_FIELDS`) and each policy (`POLICY_FIELDS`)."""

    resource_id: str
    target: dict[str, Any]
    policies: tuple[dict[str, Any], ...]

    @property
    def variant(self) -> str:
        return self.resource_id.rsplit("/", 1)[-1]

    def summary(self) -> str:
        """`endpoint/<name>/variant/<variant> <min>-<max> instances, policy <name>, ...`."""
        names = "".join(f", policy {p['PolicyName']}" for p in self.policies)
        return (
            f"{self.resource_id} {self.target['MinCapacity']}-{self.target['MaxCapacity']} instances{names}"
        )


def resource_ids(endpoint: dict[str, Any]) -> list[str]:
    """Scalable-target ids (`endpoint/<name>/variant/<variant>`) of an endpoint, from DescribeEndpoint."""
    return [
        f"endpoint/{endpoint['EndpointName']}/variant/{v['VariantName']}"
        for v in endpoint.get("ProductionVariants", [])
    ]


def enable(settings: Settings, autoscaling_client: Any, variant: str) -> str:
    """Register the variant as a scalable target and attach the target-tracking policy; its id."""
    resource_id = f"endpoint/{settings.endpoint}/variant/{variant}"
    target = _key(resource_id)
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


def read(autoscaling_client: Any, endpoint: dict[str, Any]) -> tuple[VariantScaling, ...]:
    """The autoscaling of each of the endpoint's variants that has a scalable target."""
    found = []
    for resource_id in resource_ids(endpoint):
        registered = autoscaling_client.describe_scalable_targets(
            ServiceNamespace=NAMESPACE, ResourceIds=[resource_id], ScalableDimension=DIMENSION
        )["ScalableTargets"]
        if not registered:
            continue
        policies = autoscaling_client.describe_scaling_policies(**_key(resource_id))["ScalingPolicies"]
        found.append(
            VariantScaling(
                resource_id,
                {k: v for k, v in registered[0].items() if k in TARGET_FIELDS},
                tuple({k: v for k, v in p.items() if k in POLICY_FIELDS} for p in policies),
            )
        )
    return tuple(found)


def restore(autoscaling_client: Any, scaled: tuple[VariantScaling, ...]) -> None:
    """Register each variant again with the range and policies `read` found."""
    for variant in scaled:
        target = _key(variant.resource_id)
        autoscaling_client.register_scalable_target(**target, **variant.target)
        for policy in variant.policies:
            autoscaling_client.put_scaling_policy(**target, **policy)


def remove(autoscaling_client: Any, endpoint: dict[str, Any]) -> list[str]:
    """Delete the scaling policies and deregister the scalable targets of an endpoint; what went."""
    return deregister(autoscaling_client, read(autoscaling_client, endpoint))


def deregister(autoscaling_client: Any, scaled: tuple[VariantScaling, ...]) -> list[str]:
    """Delete the policies, then deregister the scalable target, of each variant `read` found; what went."""
    removed = []
    for variant in scaled:
        target = _key(variant.resource_id)
        for policy in variant.policies:
            autoscaling_client.delete_scaling_policy(**target, PolicyName=policy["PolicyName"])
            removed.append(f"scaling policy {policy['PolicyName']}")
        autoscaling_client.deregister_scalable_target(**target)
        removed.append(f"scalable target {variant.resource_id}")
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


def _key(resource_id: str) -> dict[str, str]:
    """The fields that name one variant's scalable target in every Application Auto Scaling call."""
    return {"ServiceNamespace": NAMESPACE, "ResourceId": resource_id, "ScalableDimension": DIMENSION}
