# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Reads deploy/config.json and one Chalice stage into DeploySettings, with command-line overrides, checked.

Names that differ per stage (features source, predictions destination, dead-letter queue,
endpoint, function) come from the stage in `.chalice/config.json`, the same place the handler
reads them from; which variable holds each name is the chosen source's and destination's
(deploy/source.py, deploy/destination.py). Everything about how the endpoint and the pipeline run
in AWS comes from `deploy/config.json`. Every value is checked before any AWS call, and all
problems are reported at once with the key to fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chalicelib.template_runtime.deadline import DEFAULT_RESERVE_MS, MIN_ENDPOINT_SHARE_MS
from template_tools.stage import PROJECT_DIR, StageSettings, UnknownStageError, load_stage

from . import destination, names, source
from .queues import MIN_MAX_RECEIVE_COUNT
from .settings import (
    BASE_FRAMEWORK_FRAMEWORKS,
    BASE_FRAMEWORK_VERSION_EXAMPLE,
    ENDPOINT_KINDS,
    FRAMEWORK_VERSION_EXAMPLES,
    FRAMEWORKS,
    LOG_RETENTION_DAYS,
    RUNTIMES,
    AlarmSettings,
    DeploySettings,
    DeploySettingsError,
    EndpointSettings,
    PipelineNames,
    QueueSettings,
    RealtimeCapacity,
    ServerlessCapacity,
    StreamSettings,
)

CONFIG_FILE = Path("deploy") / "config.json"
# The SDK reads the framework and its version out of this spelling (pytorch2.6.0, tensorflow2.11.0).
BASE_FRAMEWORK_VERSION = re.compile(r"(pytorch|tensorflow)\d+(\.\d+)*")


def load_settings(
    stage: str = "dev", overrides: Mapping[str, Any] | None = None, project_dir: Path = PROJECT_DIR
) -> DeploySettings:
    """Read deploy/config.json and the stage, apply overrides (dotted keys), and check them all."""
    raw = _read_config(project_dir / CONFIG_FILE)
    for dotted_key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, dotted_key, value)
    try:
        stage_settings = load_stage(stage, project_dir)
    except UnknownStageError as error:
        # Said before anything is named after the stage: a function, stack or role AWS would refuse.
        raise DeploySettingsError(str(error)) from None
    settings = _build(raw, stage_settings)
    problems = settings_problems(settings)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise DeploySettingsError(
            f"cannot deploy stage {stage!r}; fix these in {CONFIG_FILE} (or .chalice/config.json for "
            f"names), or override them on the command line:\n{listed}"
        )
    return settings


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeploySettingsError(f"{path} is missing; restore it from the template") from None
    except json.JSONDecodeError as error:
        raise DeploySettingsError(f"{path} is not valid JSON ({error}); fix the file") from None


def _set_dotted(raw: dict[str, Any], dotted_key: str, value: Any) -> None:
    *parents, leaf = dotted_key.split(".")
    node = raw
    for parent in parents:
        node = node.setdefault(parent, {})
    node[leaf] = value


def _build(raw: Mapping[str, Any], stage: StageSettings) -> DeploySettings:
    env = stage.environment_variables
    endpoint, realtime, serverless = raw["endpoint"], raw["endpoint"]["realtime"], raw["endpoint"]["serverless"]
    queues, streams, alarms = raw["queues"], raw.get("streams", {}), raw["alarms"]
    return DeploySettings(
        stage=stage.stage,
        app_name=stage.app_name,
        region=str(raw["region"]),
        lambda_runtime=str(raw["lambda_runtime"]),
        function_name=stage.function_name,
        lambda_timeout=stage.lambda_timeout,
        artifacts_bucket=str(raw["artifacts"]["bucket"]),
        artifacts_prefix=str(raw["artifacts"]["prefix"]).strip("/"),
        log_retention_days=_int(raw["log_retention_days"]),
        endpoint=EndpointSettings(
            name=env.get("ENDPOINT_NAME", ""),
            kind=str(endpoint["kind"]),
            image_uri=str(endpoint["image_uri"]),
            framework=str(endpoint["framework"]),
            framework_version=str(endpoint["framework_version"]),
            # Projects generated before the framework answer have no such key.
            base_framework_version=str(endpoint.get("base_framework_version", "")),
            model_data=str(endpoint["model_data"]),
            execution_role_arn=str(endpoint["execution_role_arn"]),
            wait_minutes=_int(endpoint["wait_minutes"]),
            model_version=env.get("MODEL_VERSION", ""),
            realtime=RealtimeCapacity(
                instance_type=str(realtime["instance_type"]),
                instance_count=_int(realtime["instance_count"]),
                min_capacity=_int(realtime["min_capacity"]),
                max_capacity=_int(realtime["max_capacity"]),
                target_invocations_per_instance=_int(realtime["target_invocations_per_instance"]),
            ),
            serverless=ServerlessCapacity(
                memory_mb=_int(serverless["memory_mb"]), max_concurrency=_int(serverless["max_concurrency"])
            ),
        ),
        names=PipelineNames(
            features=env.get(source.FEATURES_VARIABLE, ""),
            predictions=env.get(destination.PREDICTIONS_VARIABLE, ""),
            dead_letters=env.get("DEAD_LETTER_QUEUE_NAME", ""),
        ),
        queues=QueueSettings(
            max_receive_count=_int(queues["max_receive_count"]),
            dead_letter_retention_seconds=_int(queues["dead_letter_retention_seconds"]),
            visibility_timeout_seconds=_optional_int(queues, "visibility_timeout_seconds"),
            source_retention_seconds=_optional_int(queues, "source_retention_seconds"),
            predictions_retention_seconds=_optional_int(queues, "predictions_retention_seconds"),
        ),
        streams=StreamSettings(
            retention_hours=_optional_int(streams, "retention_hours"),
            maximum_record_age_seconds=_optional_int(streams, "maximum_record_age_seconds"),
        ),
        alarms=AlarmSettings(
            oldest_message_age_seconds=_int(alarms["oldest_message_age_seconds"]),
            endpoint_latency_ms=_int(alarms["endpoint_latency_ms"]),
            action_topic_arn=str(alarms["action_topic_arn"]),
        ),
        environment=dict(env),
    )


def _int(value: Any) -> int:
    # Command-line overrides arrive as text; a value that is not a whole number becomes -1,
    # which every range check below refuses with the key's name.
    if isinstance(value, bool):
        return -1
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _optional_int(section: Mapping[str, Any], key: str) -> int | None:
    return None if key not in section else _int(section[key])


def settings_problems(settings: DeploySettings) -> list[str]:
    """Every reason the settings cannot be deployed, each naming its key; empty when all is well."""
    problems: list[str] = []
    if not names.REGION.fullmatch(settings.region):
        problems.append(f"region {settings.region!r} is not an AWS region code such as eu-west-1")
    if settings.lambda_runtime not in RUNTIMES:
        problems.append(f"lambda_runtime {settings.lambda_runtime!r} must be one of {', '.join(RUNTIMES)}")
    if settings.artifacts_bucket and not names.BUCKET_NAME.fullmatch(settings.artifacts_bucket):
        problems.append(
            f"artifacts.bucket {settings.artifacts_bucket!r} is not an S3 bucket name (3-63 lowercase letters, "
            "digits and hyphens); leave it empty for sagemaker-<region>-<account>"
        )
    if not names.KEY_PREFIX.fullmatch(settings.artifacts_prefix):
        problems.append(f"artifacts.prefix {settings.artifacts_prefix!r} must be S3 key segments such as team/model")
    if settings.log_retention_days not in LOG_RETENTION_DAYS:
        problems.append(f"log_retention_days must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
    if not names.STACK_NAME.fullmatch(settings.stack_name):
        problems.append(f"stack name {settings.stack_name!r} (app name + stage) is not a CloudFormation stack name")
    problems += _endpoint_problems(settings.endpoint)
    problems += _image_problems(settings.endpoint, settings.region)
    problems += _name_problems(settings.names)
    problems += _queue_problems(settings.queues)
    problems += source.settings_problems(settings)
    problems += destination.settings_problems(settings)
    problems += _alarm_problems(settings.alarms)
    problems += _time_budget_problems(settings)
    return problems


def _time_budget_problems(settings: DeploySettings) -> list[str]:
    """A function timeout that leaves too little before DEADLINE_RESERVE_MS would retry every record on its deadline."""
    try:
        reserve_ms = int(settings.environment.get("DEADLINE_RESERVE_MS", DEFAULT_RESERVE_MS))
    except ValueError:
        return []  # The handler refuses it by name at its first invocation (settings.py).
    endpoint_share_ms = settings.lambda_timeout * 1000 - reserve_ms
    if endpoint_share_ms >= MIN_ENDPOINT_SHARE_MS:
        return []
    return [
        f"lambda_timeout {settings.lambda_timeout} s leaves {endpoint_share_ms} ms to call the endpoint before "
        f"DEADLINE_RESERVE_MS ({reserve_ms} ms), which the handler keeps to publish and answer; it needs at least "
        f"{MIN_ENDPOINT_SHARE_MS} ms: raise lambda_timeout in .chalice/config.json or lower DEADLINE_RESERVE_MS"
    ]


def _endpoint_problems(endpoint: EndpointSettings) -> list[str]:
    problems: list[str] = []
    name_problem = names.sagemaker_name_problem(endpoint.name)
    if name_problem:
        problems.append(f"ENDPOINT_NAME in .chalice/config.json: {name_problem}")
    if endpoint.kind not in ENDPOINT_KINDS:
        problems.append(f"endpoint.kind {endpoint.kind!r} must be one of {', '.join(ENDPOINT_KINDS)}")
    if endpoint.model_data and not (
        names.S3_URI.fullmatch(endpoint.model_data) and endpoint.model_data.endswith(".tar.gz")
    ):
        problems.append(f"endpoint.model_data {endpoint.model_data!r} must be s3://bucket/key/model.tar.gz or empty")
    if endpoint.execution_role_arn and not names.ROLE_ARN.fullmatch(endpoint.execution_role_arn):
        problems.append(f"endpoint.execution_role_arn {endpoint.execution_role_arn!r} is not an IAM role ARN")
    if not 1 <= endpoint.wait_minutes <= 180:
        problems.append("endpoint.wait_minutes must be from 1 to 180")
    realtime, serverless = endpoint.realtime, endpoint.serverless
    if endpoint.kind == "realtime":
        if not names.INSTANCE_TYPE.fullmatch(realtime.instance_type):
            problems.append(f"endpoint.realtime.instance_type {realtime.instance_type!r} must look like ml.m5.large")
        if not 1 <= realtime.min_capacity <= realtime.max_capacity <= 100:
            problems.append(
                "endpoint.realtime needs 1 <= min_capacity <= max_capacity <= 100 "
                f"(it has {realtime.min_capacity} and {realtime.max_capacity})"
            )
        if not realtime.min_capacity <= realtime.instance_count <= realtime.max_capacity:
            problems.append("endpoint.realtime.instance_count must be between min_capacity and max_capacity")
        if realtime.target_invocations_per_instance < 1:
            problems.append("endpoint.realtime.target_invocations_per_instance must be at least 1 (per minute)")
    else:
        # SageMaker's serverless limits: 1-6 GB in 1 GB steps, 1-200 concurrent invocations.
        if serverless.memory_mb not in range(1024, 6145, 1024):
            problems.append("endpoint.serverless.memory_mb must be 1024, 2048, 3072, 4096, 5120 or 6144")
        if not 1 <= serverless.max_concurrency <= 200:
            problems.append("endpoint.serverless.max_concurrency must be from 1 to 200")
    return problems


def _image_problems(endpoint: EndpointSettings, region: str) -> list[str]:
    """Check the serving image: an ECR image in the endpoint's region, or a framework the lookup knows."""
    if endpoint.image_uri:
        image = names.ECR_IMAGE_URI.fullmatch(endpoint.image_uri)
        if not image:
            return [
                f"endpoint.image_uri {endpoint.image_uri!r} must be an ECR image such as "
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/repo:tag; leave it empty to look it up"
            ]
        if image["region"] != region:
            return [
                f"endpoint.image_uri is in {image['region']}, but SageMaker pulls an endpoint's image from ECR "
                f"in the endpoint's region ({region}): push or replicate the image to {region}"
            ]
        # An explicit image is used as it is; the framework keys are then ignored.
        return []
    choices = ", ".join(FRAMEWORKS)
    if not endpoint.framework:
        return [f"endpoint.image_uri or endpoint.framework is needed: your ECR image, or one of {choices}"]
    if endpoint.framework not in FRAMEWORKS:
        return [
            f"endpoint.framework {endpoint.framework!r} is not a framework whose container the image lookup "
            f"knows; use one of {choices}, or set endpoint.image_uri to serve with your own ECR image"
        ]
    problems: list[str] = []
    if not endpoint.framework_version:
        example = FRAMEWORK_VERSION_EXAMPLES[endpoint.framework]
        problems.append(
            f"endpoint.framework_version is needed to look up the {endpoint.framework} image, e.g. {example}"
        )
    if endpoint.framework in BASE_FRAMEWORK_FRAMEWORKS and not BASE_FRAMEWORK_VERSION.fullmatch(
        endpoint.base_framework_version
    ):
        problems.append(
            f"endpoint.base_framework_version {endpoint.base_framework_version!r} must name the framework the "
            f"{endpoint.framework} image is built on, e.g. {BASE_FRAMEWORK_VERSION_EXAMPLE}"
        )
    return problems


def _name_problems(pipeline: PipelineNames) -> list[str]:
    problems: list[str] = []
    for variable, problem in (
        (source.FEATURES_VARIABLE, source.features_name_problem(pipeline.features)),
        (destination.PREDICTIONS_VARIABLE, destination.predictions_name_problem(pipeline.predictions)),
        ("DEAD_LETTER_QUEUE_NAME", names.queue_name_problem(pipeline.dead_letters)),
    ):
        if problem:
            problems.append(f"{variable} in .chalice/config.json: {problem}")
    if len({pipeline.features, pipeline.predictions, pipeline.dead_letters}) != 3:
        problems.append("the features, predictions and dead-letter names in .chalice/config.json must differ")
    return problems


def _queue_problems(queues: QueueSettings) -> list[str]:
    problems: list[str] = []
    if not MIN_MAX_RECEIVE_COUNT <= queues.max_receive_count <= 1000:
        problems.append(f"queues.max_receive_count must be from {MIN_MAX_RECEIVE_COUNT} to 1000 (Lambda's guidance)")
    if not 60 <= queues.dead_letter_retention_seconds <= 1_209_600:
        problems.append("queues.dead_letter_retention_seconds must be from 60 to 1209600 (14 days)")
    return problems


def _alarm_problems(alarms: AlarmSettings) -> list[str]:
    problems: list[str] = []
    if alarms.oldest_message_age_seconds < 60:
        problems.append("alarms.oldest_message_age_seconds must be at least 60")
    if alarms.endpoint_latency_ms < 1:
        problems.append("alarms.endpoint_latency_ms must be at least 1")
    if alarms.action_topic_arn and not names.TOPIC_ARN.fullmatch(alarms.action_topic_arn):
        problems.append(
            f"alarms.action_topic_arn {alarms.action_topic_arn!r} is not an SNS topic ARN (or leave it empty)"
        )
    return problems
