# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The predictions destination, an SQS queue: the queue, IAM, dashboard graph and teardown notice.

The queue is FIFO when its name ends .fifo (then each user's predictions stay in order end to
end). It has no dead-letter queue of ours: its consumers choose their own retries, and a
dead-letter queue here would mix their failures into the alarm that means "records the pipeline
could not predict".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .names import FIFO_SUFFIX, queue_name_problem
from .queues import encrypted_queue, with_tls_policies

if TYPE_CHECKING:
    from .arns import ArnSource
    from .settings import DeploySettings

DESCRIPTION = "an SQS queue"
PREDICTIONS_VARIABLE = "PREDICTIONS_QUEUE_NAME"
PREDICTIONS = "PredictionsQueue"
# Every action this destination needs supports resource-level permissions.
WILDCARD_ACTIONS: frozenset[str] = frozenset()
MAX_RETENTION_SECONDS = 1_209_600


def predictions_name_problem(name: str) -> str | None:
    """Say why the name cannot be the predictions queue, or None if it can."""
    return queue_name_problem(name)


def settings_problems(settings: DeploySettings) -> list[str]:
    """What deploy/config.json must hold for this destination."""
    if not 60 <= (settings.queues.predictions_retention_seconds or 0) <= MAX_RETENTION_SECONDS:
        return [f"queues.predictions_retention_seconds must be from 60 to {MAX_RETENTION_SECONDS} (14 days)"]
    return []


def destination_resources(settings: DeploySettings) -> dict[str, Any]:
    """The predictions queue and its TLS-only policy."""
    name = settings.names.predictions
    # The handler gives every message a deduplication id (the source record's id) and a group
    # (the user), so a FIFO queue deduplicates and throttles per user, not per queue.
    fifo = (
        {
            "ContentBasedDeduplication": False,
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
        }
        if name.endswith(FIFO_SUFFIX)
        else {}
    )
    return with_tls_policies(
        {PREDICTIONS: encrypted_queue(name, retention=settings.queues.predictions_retention_seconds, **fifo)}
    )


def destination_statements(settings: DeploySettings, arns: ArnSource) -> list[dict[str, Any]]:
    """Publishing predictions; SendMessageBatch is authorised as sqs:SendMessage."""
    return [
        {
            "Sid": "PublishPredictions",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl", "sqs:SendMessage"],
            "Resource": [arns.arn(PREDICTIONS, "sqs", settings.names.predictions)],
        }
    ]


def destination_alarms(settings: DeploySettings) -> dict[str, Any]:
    """None: a failed send is a batch item failure, retried and finally dead-lettered (that alarm)."""
    return {}


def destination_metrics(settings: DeploySettings) -> list[list[Any]]:
    """The dashboard's predictions line."""
    return [["AWS/SQS", "NumberOfMessagesSent", "QueueName", settings.names.predictions, {"stat": "Sum"}]]


def destination_outputs() -> dict[str, Any]:
    """Where consumers read predictions."""
    return {"PredictionsQueueUrl": {"Value": {"Ref": PREDICTIONS}}}


def read_api_resources(settings: DeploySettings, arns: ArnSource) -> dict[str, Any]:
    """None: predictions are read from the queue, not through an API."""
    return {}


def chalice_policy_files(settings: DeploySettings, arns: ArnSource, stage: str) -> dict[str, dict[str, Any]]:
    """None besides the handler's: the app has no other function."""
    return {}


def teardown_notice(settings: DeploySettings) -> str:
    """What deleting the stack does to the predictions."""
    return f"Predictions not yet consumed from {settings.names.predictions} are deleted with the queue."
