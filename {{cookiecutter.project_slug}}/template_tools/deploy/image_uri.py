# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The serving container's image URI: given explicitly, or looked up with the SageMaker SDK v3.

`sagemaker.core.image_uris.retrieve` works offline from JSON bundled with sagemaker-core. Its
quirks: ask for image_scope="inference" (some versions exist only for training, e.g.
scikit-learn "1.4-2"), and the Python version is part of scikit-learn's version string
("1.4-2-py312"). The SDK is imported only here, when a lookup is needed: it takes over a second
to import, is large, and must never reach the Lambda package.
"""

from __future__ import annotations

from .cli import DeployError
from .settings import EndpointSettings


def resolve_image_uri(endpoint: EndpointSettings, region: str) -> str:
    """The image the endpoint's model runs in."""
    if endpoint.image_uri:
        return endpoint.image_uri
    try:
        from sagemaker.core import image_uris
    except ImportError:
        raise DeployError(
            "looking up the container image needs sagemaker-core (pip install -r requirements-dev.lock); "
            "or pass --image-uri / set endpoint.image_uri in deploy/config.json"
        ) from None
    instance_type = endpoint.realtime.instance_type if endpoint.kind == "realtime" else None
    try:
        return image_uris.retrieve(
            framework=endpoint.framework,
            region=region,
            version=endpoint.framework_version,
            instance_type=instance_type,
            image_scope="inference",
        )
    except ValueError as error:
        raise DeployError(
            f"no {endpoint.framework} {endpoint.framework_version} inference image in {region}: {error}. "
            "Set endpoint.framework_version (e.g. 1.4-2-py312) or endpoint.image_uri in deploy/config.json"
        ) from None
