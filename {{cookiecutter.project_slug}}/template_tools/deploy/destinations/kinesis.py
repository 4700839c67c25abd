# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The predictions destination, a Kinesis data stream: the stream, IAM, alarm, dashboard graph and outputs.

Each prediction is a record whose partition key is the value of PARTITION_KEY_FIELD, so one key's
predictions stay in order on one shard. The stream is on-demand and encrypted with the
AWS-managed key alias/aws/kinesis, so neither the handler nor readers need kms: permissions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .metrics import MINUTE_PERIOD_SECONDS, alarm
from .names import stream_name_problem

if TYPE_CHECKING:
    from .arns import ArnSource
    from .settings import DeploySettings

DESCRIPTION = "a Kinesis stream"
PREDICTIONS_VARIABLE = "PREDICTIONS_STREAM_NAME"
PREDICTIONS = "PredictionsStream"
# Every action this destination needs supports resource-level permissions.
WILDCARD_ACTIONS: frozenset[str] = frozenset()
MIN_RETENTION_HOURS, MAX_RETENTION_HOURS = 24, 8760


def predictions_name_problem(name: str) -> str | None:
    """Say why the name cannot be the predictions stream, or None if it can."""
    return stream_name_problem(name)


def settings_problems(settings: DeploySettings) -> list[str]:
    """What deploy/config.json and the stage must hold for this destination."""
    problems = []
    if not MIN_RETENTION_HOURS <= (settings.streams.retention_hours or 0) <= MAX_RETENTION_HOURS:
        problems.append(f"streams.retention_hours must be from {MIN_RETENTION_HOURS} to {MAX_RETENTION_HOURS}")
    if not settings.environment.get("PARTITION_KEY_FIELD", "").strip():
        problems.append("PARTITION_KEY_FIELD in .chalice/config.json must name the field that keys predictions")
    return problems


def destination_resources(settings: DeploySettings) -> dict[str, Any]:
    """The predictions stream."""
    return {
        PREDICTIONS: {
            "Type": "AWS::Kinesis::Stream",
            # Readers that have not caught up lose the records still in the stream.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "Name": settings.names.predictions,
                "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
                "RetentionPeriodHours": settings.streams.retention_hours,
                "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
            },
        }
    }


def destination_statements(settings: DeploySettings, arns: ArnSource) -> list[dict[str, Any]]:
    """Publishing predictions: the handler sends every batch with PutRecords, never PutRecord."""
    return [
        {
            "Sid": "PublishPredictions",
            "Effect": "Allow",
            "Action": ["kinesis:PutRecords"],
            "Resource": [arns.arn(PREDICTIONS, "kinesis", f"stream/{settings.names.predictions}")],
        }
    ]


def destination_alarms(settings: DeploySettings) -> dict[str, Any]:
    """The stream keeps throttling writes: an on-demand stream adapts to twice its recent peak only."""
    stream = settings.names.predictions
    return {
        "PredictionsWriteThrottledAlarm": alarm(
            settings,
            "predictions-write-throttled",
            f"{stream} keeps refusing PutRecords entries (WriteProvisionedThroughputExceeded): the handler "
            "reports them as failures, so records are retried and may reach the dead-letter queue. Traffic "
            "grew faster than the on-demand stream scales, or one partition key is too hot.",
            namespace="AWS/Kinesis",
            metric="WriteProvisionedThroughputExceeded",
            dimensions=[{"Name": "StreamName", "Value": stream}],
            statistic="Sum",
            period=MINUTE_PERIOD_SECONDS,
            threshold=0,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        )
    }


def destination_metrics(settings: DeploySettings) -> list[list[Any]]:
    """The dashboard's predictions lines."""
    stream = settings.names.predictions
    return [
        ["AWS/Kinesis", "IncomingRecords", "StreamName", stream, {"stat": "Sum"}],
        ["AWS/Kinesis", "WriteProvisionedThroughputExceeded", "StreamName", stream, {"stat": "Sum"}],
    ]


def destination_outputs() -> dict[str, Any]:
    """The stream's ARN, which readers need."""
    return {"PredictionsStreamArn": {"Value": {"Fn::GetAtt": [PREDICTIONS, "Arn"]}}}


def read_api_resources(settings: DeploySettings, arns: ArnSource) -> dict[str, Any]:
    """None: predictions are read from the stream, not through an API."""
    return {}


def chalice_policy_files(settings: DeploySettings, arns: ArnSource, stage: str) -> dict[str, dict[str, Any]]:
    """None besides the handler's: the app has no other function."""
    return {}


def teardown_notice(settings: DeploySettings) -> str:
    """What deleting the stack does to the predictions."""
    return f"Predictions still in {settings.names.predictions} are deleted with the stream."
