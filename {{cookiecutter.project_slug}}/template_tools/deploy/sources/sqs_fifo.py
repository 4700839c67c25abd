# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The features source, an SQS FIFO queue: the queue, its trigger, IAM, alarm and checks.

Records of one message group (one user) reach the function in order. The features queue hands
records that keep failing to the dead-letter queue after max_receive_count receives; AWS requires
that queue to be FIFO too, and it accepts records from the features queue only. Chalice writes the
trigger (batch size and concurrency from the stage); the merge template adds
`FunctionResponseTypes: [ReportBatchItemFailures]` (aws/chalice#2029) and points `Queue` at the
stack's own queue, under Chalice's `Fn::Sub` key, so the queue is created first.

Deduplication: ContentBasedDeduplication is off, so producers must send a MessageDeduplicationId,
and the right one is the event's own id. A hash of the body would silently drop a second,
genuine event whose body happens to equal the first within SQS's 5-minute window (a user who
clicks the same item twice), while an event id drops only the producer's own retries.

A FIFO trigger takes at most 10 records per batch and no batching window. Chalice always writes
`MaximumBatchingWindowInSeconds` (0 when the stage sets none) and a merge template cannot remove
a key, so the check below accepts 0, which Lambda reads as no window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.template_runtime.aws_limits import LAMBDA_FIFO_MAX_BATCH_SIZE

from .metrics import SQS_PERIOD_SECONDS, alarm
from .names import FIFO_SUFFIX, queue_name_problem
from .queue_source import (
    existing_source_problems as existing_source_problems,
    function_environment as function_environment,
)
from .queues import (
    DEAD_LETTER_QUEUE,
    MIN_MAX_RECEIVE_COUNT,
    VISIBILITY_TIMEOUT_FACTOR,
    dead_letter_queue,
    encrypted_queue,
    queue_arn,
    with_tls_policies,
)

if TYPE_CHECKING:
    from .arns import ArnSource
    from .settings import DeploySettings

DESCRIPTION = "an SQS FIFO queue"
FEATURES_VARIABLE = "FEATURES_QUEUE_NAME"
FEATURES = "FeaturesQueue"
# What Chalice calls the trigger of `handle_feature_events`: the SAM event type and its logical
# id in the template, and its resource type in .chalice/deployed/<stage>.json.
EVENT_TYPE = "SQS"
EVENT_SOURCE = "HandleFeatureEventsSqsEventSource"
DEPLOYED_EVENT_TYPE = "sqs_event"
# Every action this source needs supports resource-level permissions.
WILDCARD_ACTIONS: frozenset[str] = frozenset()
REPORT_BATCH_ITEM_FAILURES = ["ReportBatchItemFailures"]
MAX_RETENTION_SECONDS = 1_209_600


def features_name_problem(name: str) -> str | None:
    """Say why the name cannot be this source's queue, or None if it can."""
    if not name.endswith(FIFO_SUFFIX):
        return f"{name!r} must end in .fifo: the features source is a FIFO queue"
    return queue_name_problem(name)


def settings_problems(settings: DeploySettings) -> list[str]:
    """What deploy/config.json and the stage must hold for this source."""
    queues, problems = settings.queues, []
    if not settings.names.dead_letters.endswith(FIFO_SUFFIX):
        problems.append("DEAD_LETTER_QUEUE_NAME in .chalice/config.json must end in .fifo: a FIFO queue's DLQ is FIFO")
    minimum_visibility = VISIBILITY_TIMEOUT_FACTOR * settings.lambda_timeout
    if not minimum_visibility <= (queues.visibility_timeout_seconds or 0) <= 43_200:
        problems.append(
            f"queues.visibility_timeout_seconds must be from {minimum_visibility} ({VISIBILITY_TIMEOUT_FACTOR} x the "
            f"{settings.lambda_timeout} s function timeout) to 43200, or SQS redelivers records still being worked on"
        )
    retention = queues.source_retention_seconds or 0
    if not 60 <= retention <= MAX_RETENTION_SECONDS:
        problems.append(f"queues.source_retention_seconds must be from 60 to {MAX_RETENTION_SECONDS} (14 days)")
    elif queues.dead_letter_retention_seconds <= retention:
        # A moved message keeps its original enqueue time, so an equal retention would expire
        # dead letters almost as soon as they arrive.
        problems.append("queues.dead_letter_retention_seconds must be longer than source_retention_seconds")
    return problems


def source_resources(settings: DeploySettings) -> dict[str, Any]:
    """The features queue and the (FIFO) dead-letter queue it redrives to, with their TLS-only policies."""
    queues = settings.queues
    return with_tls_policies(
        {
            DEAD_LETTER_QUEUE: dead_letter_queue(
                settings,
                # The features queue's ARN is built from its name: a GetAtt here would be a
                # cycle, since the features queue's redrive policy refers to this queue.
                {"redrivePermission": "byQueue", "sourceQueueArns": [queue_arn(settings.names.features)]},
            ),
            FEATURES: encrypted_queue(
                settings.names.features,
                retention=queues.source_retention_seconds,
                VisibilityTimeout=queues.visibility_timeout_seconds,
                ContentBasedDeduplication=False,
                # High-throughput FIFO: deduplication and the throughput limit apply per message
                # group (per user), not per queue, so many users' events flow in parallel.
                DeduplicationScope="messageGroup",
                FifoThroughputLimit="perMessageGroupId",
                RedrivePolicy={
                    "deadLetterTargetArn": {"Fn::GetAtt": [DEAD_LETTER_QUEUE, "Arn"]},
                    "maxReceiveCount": queues.max_receive_count,
                },
            ),
        }
    )


def event_source_properties(settings: DeploySettings) -> dict[str, Any]:
    """What the merge template sets on Chalice's trigger; the rest comes from the stage."""
    return {"Queue": {"Fn::Sub": "${" + FEATURES + ".Arn}"}, "FunctionResponseTypes": REPORT_BATCH_ITEM_FAILURES}


def mapping_settings(settings: DeploySettings, dead_letter_arn: str) -> dict[str, Any]:
    """What `deploy.event_source_mapping` sets on the mapping after a plain `chalice deploy`."""
    return {"FunctionResponseTypes": REPORT_BATCH_ITEM_FAILURES}


def source_statements(settings: DeploySettings, arns: ArnSource) -> list[dict[str, Any]]:
    """What Lambda's SQS event source polls with on the function's behalf."""
    return [
        {
            "Sid": "ReceiveFeatureEvents",
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": [arns.arn(FEATURES, "sqs", settings.names.features)],
        }
    ]


def source_alarms(settings: DeploySettings) -> dict[str, Any]:
    """The features backlog is getting old: the function is failing, throttled or too slow."""
    features, age = settings.names.features, settings.alarms.oldest_message_age_seconds
    return {
        "FeaturesBacklogAgeAlarm": alarm(
            settings,
            "features-backlog-age",
            f"The oldest record in {features} is older than {age} s: "
            "the function is failing, throttled or too slow for the traffic.",
            namespace="AWS/SQS",
            metric="ApproximateAgeOfOldestMessage",
            dimensions=[{"Name": "QueueName", "Value": features}],
            statistic="Maximum",
            period=SQS_PERIOD_SECONDS,
            threshold=age,
        )
    }


def source_metrics(settings: DeploySettings) -> list[list[Any]]:
    """The dashboard's feature-events graph."""
    features = settings.names.features
    return [
        ["AWS/SQS", "NumberOfMessagesSent", "QueueName", features, {"stat": "Sum"}],
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", features],
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", features, {"yAxis": "right"}],
    ]


def source_outputs() -> dict[str, Any]:
    """Where producers send feature events."""
    return {"FeaturesQueueUrl": {"Value": {"Ref": FEATURES}}}


def event_source_problems(event: dict[str, Any], template: dict[str, Any], settings: DeploySettings) -> list[str]:
    """Why the packaged trigger, or the queue it reads, must not be deployed."""
    problems = []
    if not 1 <= event.get("BatchSize", 10) <= LAMBDA_FIFO_MAX_BATCH_SIZE:
        problems.append(
            f"a FIFO trigger takes at most {LAMBDA_FIFO_MAX_BATCH_SIZE} records per batch, not {event['BatchSize']}"
        )
    if event.get("MaximumBatchingWindowInSeconds", 0) != 0:
        problems.append("a FIFO trigger takes no batching window: set TRIGGER_BATCHING_WINDOW_SECONDS to 0")
    if event.get("FunctionResponseTypes") != REPORT_BATCH_ITEM_FAILURES:
        problems.append(
            "the SQS event source lacks FunctionResponseTypes [ReportBatchItemFailures]: "
            "Lambda would ignore the returned failures and delete whole batches"
        )
    if event.get("Queue") != {"Fn::Sub": "${" + FEATURES + ".Arn}"}:
        problems.append(f"the SQS event source must read {FEATURES} (one Fn::Sub key), not {event.get('Queue')}")
    resources = template.get("Resources", {})
    features = resources.get(FEATURES, {}).get("Properties")
    if features is None:
        return [*problems, f"the SQS trigger reads {FEATURES}, which the template does not create"]
    redrive = features.get("RedrivePolicy", {})
    if redrive.get("maxReceiveCount", 0) < MIN_MAX_RECEIVE_COUNT:
        problems.append(f"{FEATURES} needs a RedrivePolicy with maxReceiveCount >= {MIN_MAX_RECEIVE_COUNT}")
    target = redrive.get("deadLetterTargetArn", {}).get("Fn::GetAtt", [None])[0]
    dead_letters = resources.get(target, {}).get("Properties", {})
    if not (features.get("FifoQueue") is True and dead_letters.get("FifoQueue") is True):
        problems.append(f"{FEATURES} and its dead-letter queue must both be FIFO queues")
    if dead_letters.get("MessageRetentionPeriod", 0) <= features.get("MessageRetentionPeriod", 345_600):
        problems.append(f"{FEATURES}'s dead-letter queue must keep messages longer than {FEATURES} does")
    if features.get("VisibilityTimeout", 30) < VISIBILITY_TIMEOUT_FACTOR * settings.lambda_timeout:
        problems.append(
            f"{FEATURES}'s VisibilityTimeout must be at least {VISIBILITY_TIMEOUT_FACTOR}x the function timeout"
        )
    return problems
