# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Target-tracking autoscaling of a real-time endpoint's instances on invocations per instance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .settings import VARIANT_NAME, RealtimeCapacity

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# Scale out fast when traffic grows; scale in slowly so a short lull does not drop capacity.
SCALE_OUT_COOLDOWN_SECONDS = 60
SCALE_IN_COOLDOWN_SECONDS = 300


def resource_id(endpoint_name: str) -> str:
    return f"endpoint/{endpoint_name}/variant/{VARIANT_NAME}"


def policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-invocations-per-instance"


def is_registered(autoscaling: Any, endpoint_name: str) -> bool:
    """Whether the endpoint's variant is a scalable target now."""
    targets = autoscaling.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[resource_id(endpoint_name)], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    return bool(targets)


def enable(autoscaling: Any, endpoint_name: str, capacity: RealtimeCapacity, say: Callable[[str], None]) -> None:
    """Register the variant and keep invocations per instance near the target."""
    autoscaling.register_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=resource_id(endpoint_name),
        ScalableDimension=DIMENSION,
        MinCapacity=capacity.min_capacity,
        MaxCapacity=capacity.max_capacity,
    )
    autoscaling.put_scaling_policy(
        PolicyName=policy_name(endpoint_name),
        ServiceNamespace=NAMESPACE,
        ResourceId=resource_id(endpoint_name),
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(capacity.target_invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN_SECONDS,
            "ScaleInCooldown": SCALE_IN_COOLDOWN_SECONDS,
        },
    )
    say(
        f"Autoscaling {capacity.min_capacity}-{capacity.max_capacity} x {capacity.instance_type}, "
        f"target {capacity.target_invocations_per_instance} invocations per instance per minute"
    )


def disable(autoscaling: Any, endpoint_name: str, say: Callable[[str], None]) -> None:
    """Deregister the variant (its policies go with it); nothing to do if it is not registered."""
    if is_registered(autoscaling, endpoint_name):
        autoscaling.deregister_scalable_target(
            ServiceNamespace=NAMESPACE, ResourceId=resource_id(endpoint_name), ScalableDimension=DIMENSION
        )
        say(f"Autoscaling of {endpoint_name} removed")
