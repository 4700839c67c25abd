# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Deploy settings: the types one stage's deploy is described by, and the values they allow.

`deploy/configuration.py` reads them from deploy/config.json and the Chalice stage and checks
them; every other deploy module only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNTIMES = ("python3.12", "python3.13", "python3.14")
ENDPOINT_KINDS = ("realtime", "serverless")
# SageMaker's framework containers the image lookup knows, each with a version it has an inference
# image for (for the error messages; deploy/config.json holds the version actually used).
FRAMEWORK_VERSION_EXAMPLES = {
    "sklearn": "1.4-2-py312",
    "xgboost": "3.0-5",
    "pytorch": "2.6.0",
    "huggingface": "4.51.3",
}
FRAMEWORKS = tuple(FRAMEWORK_VERSION_EXAMPLES)
# The Hugging Face images are built on a deep learning framework, which the lookup must be told.
BASE_FRAMEWORK_FRAMEWORKS = ("huggingface",)
BASE_FRAMEWORK_VERSION_EXAMPLE = "pytorch2.6.0"
VARIANT_NAME = "AllTraffic"
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class DeploySettingsError(ValueError):
    """Some settings cannot be used; the message lists every problem and where to fix it."""


@dataclass(frozen=True)
class RealtimeCapacity:
    """Instances behind a real-time endpoint, and how target tracking scales them."""

    instance_type: str
    instance_count: int
    min_capacity: int
    max_capacity: int
    target_invocations_per_instance: int


@dataclass(frozen=True)
class ServerlessCapacity:
    """Memory and concurrency of a serverless endpoint."""

    memory_mb: int
    max_concurrency: int


@dataclass(frozen=True)
class EndpointSettings:
    """What `make deploy-endpoint` creates, and from which model and image.

    The image is `image_uri` when set (a custom container); otherwise SageMaker's container for
    `framework` at `framework_version`, looked up with the SageMaker SDK (deploy/image_uri.py).
    """

    name: str
    kind: str
    image_uri: str
    framework: str
    framework_version: str
    # Hugging Face only: the framework under transformers, e.g. pytorch2.6.0; empty for the others.
    base_framework_version: str
    model_data: str
    execution_role_arn: str
    wait_minutes: int
    model_version: str
    realtime: RealtimeCapacity
    serverless: ServerlessCapacity


@dataclass(frozen=True)
class PipelineNames:
    """The stage's features source (queue or stream), predictions destination and dead-letter queue."""

    features: str
    predictions: str
    dead_letters: str


@dataclass(frozen=True)
class QueueSettings:
    """How the stage's queues keep and hide messages; None where the chosen options have no such queue."""

    # Deliveries before a record is dead-lettered: SQS receives, or for a Kinesis source the
    # first attempt plus MaximumRetryAttempts.
    max_receive_count: int
    dead_letter_retention_seconds: int
    visibility_timeout_seconds: int | None
    source_retention_seconds: int | None
    predictions_retention_seconds: int | None


@dataclass(frozen=True)
class StreamSettings:
    """How the stage's Kinesis streams keep records; None where the chosen options have no stream."""

    retention_hours: int | None
    # Records older than this are skipped (their batch goes to the on-failure destination).
    maximum_record_age_seconds: int | None


@dataclass(frozen=True)
class AlarmSettings:
    """Thresholds of the pipeline's alarms, and where they notify (optional)."""

    oldest_message_age_seconds: int
    endpoint_latency_ms: int
    action_topic_arn: str


@dataclass(frozen=True)
class DeploySettings:
    """Everything one stage's deploy needs, checked."""

    stage: str
    app_name: str
    region: str
    lambda_runtime: str
    function_name: str
    lambda_timeout: int
    artifacts_bucket: str
    artifacts_prefix: str
    log_retention_days: int
    endpoint: EndpointSettings
    names: PipelineNames
    queues: QueueSettings
    streams: StreamSettings
    alarms: AlarmSettings
    # The stage's environment variables, for the settings only some choices use (PARTITION_KEY_FIELD).
    environment: dict[str, str]

    @property
    def stack_name(self) -> str:
        return f"{self.app_name}-{self.stage}"
