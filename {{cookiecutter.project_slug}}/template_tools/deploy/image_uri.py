# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The serving container's image URI: given explicitly, or looked up with the SageMaker SDK v3.

A custom container's image (endpoint.image_uri) is used as it is, without the SDK. Otherwise
`sagemaker.core.image_uris.retrieve` finds SageMaker's container for endpoint.framework; it works
offline from JSON bundled with sagemaker-core. Its quirks: ask for image_scope="inference" (some
versions exist only for training, e.g. scikit-learn "1.4-2"); the Python version is part of
scikit-learn's version string ("1.4-2-py312"); PyTorch and Hugging Face have CPU and GPU images,
chosen from the instance type, and without one (serverless) only a serverless config makes it pick
the CPU image; Hugging Face also needs the framework under transformers (base_framework_version).
The SDK is imported only here, when a lookup is needed: it takes over a second to import, is
large, and must never reach the Lambda package.
"""

from __future__ import annotations

from typing import Any

from .cli import DeployError
from .settings import BASE_FRAMEWORK_FRAMEWORKS, FRAMEWORK_VERSION_EXAMPLES, FRAMEWORKS, EndpointSettings


def resolve_image_uri(endpoint: EndpointSettings, region: str) -> str:
    """The image the endpoint's model runs in."""
    if endpoint.image_uri:
        return endpoint.image_uri
    if endpoint.framework not in FRAMEWORKS:
        raise DeployError(
            f"endpoint.framework {endpoint.framework!r} has no image to look up; use one of {', '.join(FRAMEWORKS)}, "
            "or pass --image-uri / set endpoint.image_uri in deploy/config.json to your own ECR image"
        )
    try:
        from sagemaker.core import image_uris
    except ImportError:
        raise DeployError(
            "looking up the container image needs sagemaker-core (pip install -r requirements-dev.lock); "
            "or pass --image-uri / set endpoint.image_uri in deploy/config.json"
        ) from None
    try:
        return image_uris.retrieve(**_lookup_arguments(endpoint, region))
    except ValueError as error:
        example = FRAMEWORK_VERSION_EXAMPLES[endpoint.framework]
        raise DeployError(
            f"no {endpoint.framework} {endpoint.framework_version} inference image in {region}"
            f"{_hardware(endpoint)}: {str(error).rstrip('.')}. Set endpoint.framework_version (e.g. {example})"
            f"{', endpoint.base_framework_version' if endpoint.framework in BASE_FRAMEWORK_FRAMEWORKS else ''}"
            ", endpoint.realtime.instance_type or endpoint.image_uri in deploy/config.json"
        ) from None


def _lookup_arguments(endpoint: EndpointSettings, region: str) -> dict[str, Any]:
    """The keyword arguments of `image_uris.retrieve` for the endpoint's framework and hardware."""
    arguments: dict[str, Any] = {
        "framework": endpoint.framework,
        "region": region,
        "version": endpoint.framework_version,
        "image_scope": "inference",
    }
    if endpoint.kind == "realtime":
        arguments["instance_type"] = endpoint.realtime.instance_type
    else:
        # Serverless endpoints run on CPU and have no instance type: the config tells the SDK so.
        from sagemaker.core.serverless_inference_config import ServerlessInferenceConfig

        arguments["serverless_inference_config"] = ServerlessInferenceConfig(
            memory_size_in_mb=endpoint.serverless.memory_mb, max_concurrency=endpoint.serverless.max_concurrency
        )
    if endpoint.framework in BASE_FRAMEWORK_FRAMEWORKS:
        arguments["base_framework_version"] = endpoint.base_framework_version
    return arguments


def _hardware(endpoint: EndpointSettings) -> str:
    if endpoint.kind == "realtime":
        return f" for {endpoint.realtime.instance_type}"
    return " for a serverless endpoint"
