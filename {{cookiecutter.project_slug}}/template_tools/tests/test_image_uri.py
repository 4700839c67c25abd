# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The serving image: each framework's SageMaker container looked up offline with the SDK, or a custom image as is.

The SDK's image lookup reads JSON bundled with sagemaker-core: no network, but seconds to import,
so the lookups are in the slow tier. Whatever framework this project was generated with, every
framework is checked here: switching later is a deploy/config.json edit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from template_tools.deploy.cli import DeployError
from template_tools.deploy.configuration import PROJECT_DIR, load_settings
from template_tools.deploy.image_uri import resolve_image_uri
from template_tools.deploy.names import ECR_IMAGE_URI
from template_tools.deploy.settings import (
    BASE_FRAMEWORK_VERSION_EXAMPLE,
    FRAMEWORK_VERSION_EXAMPLES,
    FRAMEWORKS,
    DeploySettingsError,
)

# The ECR repository of each framework's inference container.
REPOSITORIES = {
    "sklearn": "sagemaker-scikit-learn",
    "xgboost": "sagemaker-xgboost",
    "pytorch": "pytorch-inference",
    "huggingface": "huggingface-pytorch-inference",
}
GPU_INSTANCE_TYPE = "ml.g5.xlarge"


def framework_overrides(framework: str, **changes: object) -> dict[str, object]:
    """Overrides that make a stage use SageMaker's container for `framework`, on a real-time endpoint."""
    return {
        "endpoint.kind": "realtime",
        "endpoint.image_uri": "",
        "endpoint.framework": framework,
        "endpoint.framework_version": FRAMEWORK_VERSION_EXAMPLES.get(framework, "1"),
        "endpoint.base_framework_version": BASE_FRAMEWORK_VERSION_EXAMPLE if framework == "huggingface" else "",
        **changes,
    }


def refusal(overrides: dict[str, object]) -> str:
    with pytest.raises(DeploySettingsError) as refused:
        load_settings("dev", overrides)
    return str(refused.value)


def test_every_framework_has_a_container_repository():
    assert set(REPOSITORIES) == set(FRAMEWORKS)


@pytest.mark.parametrize("framework", ["tensorflow", "custom", "SKLEARN"])
def test_a_framework_the_lookup_does_not_know_is_refused_with_the_choices(framework):
    message = refusal(framework_overrides(framework))
    assert f"endpoint.framework {framework!r}" in message
    assert "sklearn, xgboost, pytorch, huggingface" in message
    assert "endpoint.image_uri" in message


def test_no_framework_and_no_image_is_refused():
    message = refusal(framework_overrides(""))
    assert "endpoint.image_uri or endpoint.framework is needed" in message


def test_a_framework_needs_its_version():
    message = refusal(framework_overrides("xgboost", **{"endpoint.framework_version": ""}))
    example = FRAMEWORK_VERSION_EXAMPLES["xgboost"]
    assert f"endpoint.framework_version is needed to look up the xgboost image, e.g. {example}" in message


@pytest.mark.parametrize("base", ["", "2.6.0", "jax0.4"])
def test_huggingface_needs_the_framework_it_is_built_on(base):
    message = refusal(framework_overrides("huggingface", **{"endpoint.base_framework_version": base}))
    assert f"endpoint.base_framework_version {base!r}" in message
    assert BASE_FRAMEWORK_VERSION_EXAMPLE in message


def test_only_huggingface_reads_a_base_framework_version():
    settings = load_settings("dev", framework_overrides("pytorch", **{"endpoint.base_framework_version": "jax0.4"}))
    assert settings.endpoint.framework == "pytorch"


def test_an_image_in_another_region_is_refused():
    region = load_settings("dev").region
    elsewhere = "us-east-2" if region != "us-east-2" else "eu-west-1"
    image = f"123456789012.dkr.ecr.{elsewhere}.amazonaws.com/team-model:1"
    message = refusal({"endpoint.image_uri": image})
    assert f"endpoint.image_uri is in {elsewhere}" in message
    assert f"push or replicate the image to {region}" in message


def test_an_unknown_framework_is_not_looked_up():
    """resolve_image_uri checks on its own too: it may be handed settings that were never loaded."""
    endpoint = replace(load_settings("dev", framework_overrides("sklearn")).endpoint, framework="tensorflow")
    with pytest.raises(DeployError, match="endpoint.framework 'tensorflow' has no image to look up"):
        resolve_image_uri(endpoint, "eu-west-1")


def test_a_custom_image_is_used_as_it_is_without_the_sdk():
    """A custom container needs no SageMaker SDK: the URI is the image, even with a framework also set."""
    code = (
        "import json, sys\n"
        "from template_tools.deploy.configuration import load_settings\n"
        "from template_tools.deploy.image_uri import resolve_image_uri\n"
        "region = load_settings('dev').region\n"
        "image = f'123456789012.dkr.ecr.{region}.amazonaws.com/team-model@sha256:' + 'ab' * 32\n"
        "settings = load_settings('dev', {'endpoint.image_uri': image, 'endpoint.framework': 'pytorch'})\n"
        "uri = resolve_image_uri(settings.endpoint, settings.region)\n"
        "sdk = sorted(name for name in sys.modules if name.startswith('sagemaker'))\n"
        "print(json.dumps({'given': image, 'resolved': uri, 'sdk': sdk}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    outcome = json.loads(result.stdout)
    assert outcome["resolved"] == outcome["given"]
    assert outcome["sdk"] == []


def lookup(overrides: dict[str, object]) -> tuple[str, str]:
    """Look the image up for the dev stage with these overrides; return it and the stage's region."""
    pytest.importorskip("sagemaker.core.image_uris", reason="sagemaker-core is not installed")
    settings = load_settings("dev", overrides)
    return resolve_image_uri(settings.endpoint, settings.region), settings.region


def assert_image_of(uri: str, framework: str, region: str) -> None:
    image = ECR_IMAGE_URI.fullmatch(uri)
    assert image, uri
    assert image["region"] == region
    assert image["repository"] == REPOSITORIES[framework]


# Slow tier: importing the SageMaker SDK takes seconds.
@pytest.mark.slow
def test_the_configured_image_is_in_the_projects_region():
    """What `make deploy-endpoint` would run, as deploy/config.json stands."""
    pytest.importorskip("sagemaker.core.image_uris", reason="sagemaker-core is not installed")
    settings = load_settings("dev")
    uri = resolve_image_uri(settings.endpoint, settings.region)
    image = ECR_IMAGE_URI.fullmatch(uri)
    assert image, uri
    assert image["region"] == settings.region
    if settings.endpoint.image_uri:
        assert uri == settings.endpoint.image_uri
    else:
        assert image["repository"] == REPOSITORIES[settings.endpoint.framework]


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_framework_is_looked_up_in_the_projects_region(framework):
    uri, region = lookup(framework_overrides(framework))
    assert_image_of(uri, framework, region)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["pytorch", "huggingface"])
def test_the_instance_type_picks_a_cpu_or_gpu_image(framework):
    cpu, region = lookup(framework_overrides(framework, **{"endpoint.realtime.instance_type": "ml.m5.large"}))
    gpu, _ = lookup(framework_overrides(framework, **{"endpoint.realtime.instance_type": GPU_INSTANCE_TYPE}))
    assert_image_of(cpu, framework, region)
    assert_image_of(gpu, framework, region)
    assert "-cpu-" in cpu and "-gpu-" in gpu


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_serverless_endpoint_gets_a_cpu_image(framework):
    """Serverless has no instance type; the frameworks with GPU images must still find the CPU one."""
    uri, region = lookup(framework_overrides(framework, **{"endpoint.kind": "serverless"}))
    assert_image_of(uri, framework, region)
    assert "gpu" not in uri


@pytest.mark.slow
def test_a_version_the_sdk_does_not_know_says_what_to_set():
    with pytest.raises(DeployError) as refused:
        lookup(framework_overrides("xgboost", **{"endpoint.framework_version": "0.1-9"}))
    message = str(refused.value)
    assert "no xgboost 0.1-9 inference image" in message
    assert f"endpoint.framework_version (e.g. {FRAMEWORK_VERSION_EXAMPLES['xgboost']})" in message


@pytest.mark.slow
def test_a_framework_without_gpu_images_on_a_gpu_instance_says_what_to_set():
    with pytest.raises(DeployError) as refused:
        lookup(framework_overrides("sklearn", **{"endpoint.realtime.instance_type": GPU_INSTANCE_TYPE}))
    message = str(refused.value)
    assert f"for {GPU_INSTANCE_TYPE}" in message
    assert "endpoint.realtime.instance_type" in message
