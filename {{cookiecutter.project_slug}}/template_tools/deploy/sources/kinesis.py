# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The features source, a Kinesis data stream: the stream, its trigger, IAM, alarm and checks.

The stream is on-demand (no shards to size) and encrypted with the AWS-managed key. Chalice
writes the trigger (batch size, window, TRIM_HORIZON from app.py); the merge template points
`Stream` at the stack's own stream, under Chalice's `Fn::Sub` key, so the stream is created
first, and adds what Chalice cannot set:
- `FunctionResponseTypes: [ReportBatchItemFailures]`: the handler's failure list names the first
  sequence number to retry, so Lambda resumes the shard from there instead of retrying the batch;
- `BisectBatchOnFunctionError`: a batch whose invocation fails outright is split in halves, so a
  record that crashes the function is isolated instead of blocking its shard;
- `MaximumRetryAttempts` = max_receive_count - 1, so a record gets as many deliveries as an SQS
  source would give it;
- `MaximumRecordAgeInSeconds`, below the stream's retention, so a stuck shard moves on while the
  skipped records can still be read again;
- `DestinationConfig.OnFailure` = the dead-letter queue. Lambda sends it a description of the
  batch it gave up on (shard, first and last sequence number, stream ARN), not the records
  (Lambda's guide, "Retain discarded batch records for a Kinesis Data Streams event source": an
  SQS or SNS destination gets metadata only): the records stay in the stream until its retention
  ends, to be read again from those sequence numbers. Records the handler rejects (bad input,
  model errors) it sends to the same queue itself, with the original data and
  error_code/error_reason attributes, as for an SQS source.

A pointer is only worth its retention while the stream still holds its records. The trigger
gives up on a record at the latest `maximum_record_age_seconds` after it arrived, and the
dead-letter queue then keeps the pointer `dead_letter_retention_seconds`; so the features stream
keeps records at least that sum (features_retention_hours), above `streams.retention_hours` when
needed. Retention beyond 24 hours is billed per GB held (the README says what it costs); lowering
the dead-letter queue's retention lowers the stream's with it. A stream made elsewhere (the plain
`chalice deploy` path) is checked for the same before the trigger is fixed up
(existing_source_problems).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from .metrics import MINUTE_PERIOD_SECONDS, alarm
from .names import stream_name_problem
from .queues import DEAD_LETTER_QUEUE, dead_letter_queue, with_tls_policies

if TYPE_CHECKING:
    from .arns import ArnSource
    from .settings import DeploySettings

DESCRIPTION = "a Kinesis stream"
FEATURES_VARIABLE = "FEATURES_STREAM_NAME"
FEATURES = "FeaturesStream"
# What Chalice calls the trigger of `handle_feature_events`: the SAM event type and its logical
# id in the template, and its resource type in .chalice/deployed/<stage>.json.
EVENT_TYPE = "Kinesis"
EVENT_SOURCE = "HandleFeatureEventsKinesisEventSource"
DEPLOYED_EVENT_TYPE = "kinesis_event"
# None: the permissions Lambda's developer guide lists for a Kinesis event source mapping all take
# the stream's ARN. (The older managed policy AWSLambdaKinesisExecutionRole also grants
# kinesis:ListStreams on "*", which the mapping does not need; SubscribeToShard is for
# enhanced fan-out consumers, which this trigger does not use.)
WILDCARD_ACTIONS: frozenset[str] = frozenset()
REPORT_BATCH_ITEM_FAILURES = ["ReportBatchItemFailures"]
# Kinesis's limits: retention 24 hours to 365 days; a record age limit of 60 s to 7 days.
MIN_RETENTION_HOURS, MAX_RETENTION_HOURS = 24, 8760
MIN_RECORD_AGE_SECONDS, MAX_RECORD_AGE_SECONDS = 60, 604_800


def features_name_problem(name: str) -> str | None:
    """Say why the name cannot be this source's stream, or None if it can."""
    return stream_name_problem(name)


def settings_problems(settings: DeploySettings) -> list[str]:
    """What deploy/config.json must hold for this source."""
    problems = []
    retention, age = settings.streams.retention_hours or 0, settings.streams.maximum_record_age_seconds or 0
    if not MIN_RETENTION_HOURS <= retention <= MAX_RETENTION_HOURS:
        problems.append(f"streams.retention_hours must be from {MIN_RETENTION_HOURS} to {MAX_RETENTION_HOURS}")
    if not MIN_RECORD_AGE_SECONDS <= age <= MAX_RECORD_AGE_SECONDS:
        problems.append(
            f"streams.maximum_record_age_seconds must be from {MIN_RECORD_AGE_SECONDS} to {MAX_RECORD_AGE_SECONDS}"
        )
    return problems


def pointer_lifetime_hours(dead_letter_retention_seconds: int, maximum_record_age_seconds: int) -> int:
    """How long after a record arrived an on-failure pointer to it may still be in the dead-letter
    queue: the trigger gives up on it at the latest at the maximum record age, and the queue then
    keeps the pointer for its retention. Whole hours, rounded up, as Kinesis takes them."""
    return math.ceil((dead_letter_retention_seconds + maximum_record_age_seconds) / 3600)


def features_retention_hours(settings: DeploySettings) -> int:
    """The features stream's retention: streams.retention_hours, raised so that no on-failure pointer
    outlives the records it names."""
    needed = pointer_lifetime_hours(
        settings.queues.dead_letter_retention_seconds, settings.streams.maximum_record_age_seconds or 0
    )
    return max(settings.streams.retention_hours or MIN_RETENTION_HOURS, needed)


def existing_source_problems(settings: DeploySettings) -> list[str]:
    """Why a stream and dead-letter queue made elsewhere (the plain `chalice deploy` path) would let
    on-failure pointers outlive their records; the stack deploy makes its own stream long enough."""
    kinesis = boto3.client("kinesis", region_name=settings.region)
    sqs = boto3.client("sqs", region_name=settings.region)
    stream, dead_letters = settings.names.features, settings.names.dead_letters
    try:
        kept_hours = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
            "RetentionPeriodHours"
        ]
        url = sqs.get_queue_url(QueueName=dead_letters)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MessageRetentionPeriod"])["Attributes"]
    except ClientError as error:
        return [f"cannot read the retention of {stream} or {dead_letters}: {error}"]
    pointer_seconds = int(attributes["MessageRetentionPeriod"])
    needed = pointer_lifetime_hours(pointer_seconds, settings.streams.maximum_record_age_seconds or 0)
    if kept_hours >= needed:
        return []
    return [
        f"the stream {stream} keeps records {kept_hours} h, but {dead_letters} keeps the trigger's on-failure "
        f"pointers {pointer_seconds / 3600:g} h after the trigger gives up on records up to "
        f"{(settings.streams.maximum_record_age_seconds or 0) / 3600:g} h old: a pointer would outlive its records "
        f"and `make redrive` could not read them back. Raise the stream's retention to at least {needed} h "
        f"(aws kinesis increase-stream-retention-period --stream-name {stream} --retention-period-hours {needed}; "
        "billed beyond 24 h) or lower the queue's MessageRetentionPeriod."
    ]


def source_resources(settings: DeploySettings) -> dict[str, Any]:
    """The features stream and the dead-letter queue, with its TLS-only policy."""
    return with_tls_policies(
        {
            # No queue redrives into it: it receives the handler's dead letters and the trigger's
            # on-failure records, both sent with the function's role.
            DEAD_LETTER_QUEUE: dead_letter_queue(settings, {"redrivePermission": "denyAll"}),
            FEATURES: {
                "Type": "AWS::Kinesis::Stream",
                # Records in the stream are lost with it; `make destroy` checks the dead-letter queue first.
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Properties": {
                    "Name": settings.names.features,
                    "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
                    "RetentionPeriodHours": features_retention_hours(settings),
                    # The AWS-managed key: producers and the trigger need no kms: permissions.
                    "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
                },
            },
        }
    )


def _retry_settings(settings: DeploySettings) -> dict[str, Any]:
    return {
        "FunctionResponseTypes": REPORT_BATCH_ITEM_FAILURES,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": settings.queues.max_receive_count - 1,
        "MaximumRecordAgeInSeconds": settings.streams.maximum_record_age_seconds,
    }


def function_environment(settings: DeploySettings) -> dict[str, str]:
    """What the merge template adds to the function's environment for this source: nothing.

    A Kinesis record carries no delivery count (Lambda's Kinesis event has no attempt number), so
    the handler cannot tell a record's last attempt; after MaximumRetryAttempts the trigger sends
    the batch's range to the dead-letter queue itself.
    """
    return {}


def event_source_properties(settings: DeploySettings) -> dict[str, Any]:
    """What the merge template sets on Chalice's trigger; the rest comes from app.py and the stage."""
    return {
        "Stream": {"Fn::Sub": "${" + FEATURES + ".Arn}"},
        **_retry_settings(settings),
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [DEAD_LETTER_QUEUE, "Arn"]}}},
    }


def mapping_settings(settings: DeploySettings, dead_letter_arn: str) -> dict[str, Any]:
    """What `deploy.event_source_mapping` sets on the mapping after a plain `chalice deploy`."""
    return {**_retry_settings(settings), "DestinationConfig": {"OnFailure": {"Destination": dead_letter_arn}}}


def source_statements(settings: DeploySettings, arns: ArnSource) -> list[dict[str, Any]]:
    """What Lambda's Kinesis event source reads the stream with on the function's behalf.

    The on-failure records go to the dead-letter queue with the function's role too: the
    handler's sqs:SendMessage on that queue covers them.
    """
    return [
        {
            "Sid": "ReadFeatureStream",
            "Effect": "Allow",
            "Action": [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            ],
            "Resource": [arns.arn(FEATURES, "kinesis", f"stream/{settings.names.features}")],
        },
    ]


def source_alarms(settings: DeploySettings) -> dict[str, Any]:
    """The trigger is falling behind the stream: records wait longer than the threshold."""
    age = settings.alarms.oldest_message_age_seconds
    return {
        "FeaturesIteratorAgeAlarm": alarm(
            settings,
            "features-iterator-age",
            f"{settings.function_name} is reading records older than {age} s from {settings.names.features}: "
            "it is failing, throttled or too slow for the traffic, and records near the end of the stream's "
            "retention will be skipped.",
            namespace="AWS/Lambda",
            metric="IteratorAge",
            dimensions=[{"Name": "FunctionName", "Value": settings.function_name}],
            statistic="Maximum",
            period=MINUTE_PERIOD_SECONDS,
            # IteratorAge is reported in milliseconds.
            threshold=age * 1000,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        )
    }


def source_metrics(settings: DeploySettings) -> list[list[Any]]:
    """The dashboard's feature-events graph."""
    stream, function = settings.names.features, settings.function_name
    return [
        ["AWS/Kinesis", "IncomingRecords", "StreamName", stream, {"stat": "Sum"}],
        ["AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName", stream, {"yAxis": "right"}],
        ["AWS/Lambda", "IteratorAge", "FunctionName", function, {"yAxis": "right"}],
    ]


def source_outputs() -> dict[str, Any]:
    """Where producers put feature events."""
    return {"FeaturesStreamArn": {"Value": {"Fn::GetAtt": [FEATURES, "Arn"]}}}


def event_source_problems(event: dict[str, Any], template: dict[str, Any], settings: DeploySettings) -> list[str]:
    """Why the packaged trigger, or the stream it reads, must not be deployed."""
    problems = []
    if event.get("Stream") != {"Fn::Sub": "${" + FEATURES + ".Arn}"}:
        problems.append(f"the Kinesis event source must read {FEATURES} (one Fn::Sub key), not {event.get('Stream')}")
    expected = _retry_settings(settings)
    for key, value in expected.items():
        if event.get(key) != value:
            problems.append(f"the Kinesis event source needs {key} {value!r}, not {event.get(key)!r}")
    destination = event.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    if destination != {"Fn::GetAtt": [DEAD_LETTER_QUEUE, "Arn"]}:
        problems.append(
            f"the Kinesis event source's on-failure destination must be {DEAD_LETTER_QUEUE}, not {destination}"
        )
    stream = template.get("Resources", {}).get(FEATURES)
    if stream is None:
        return [*problems, f"the Kinesis trigger reads {FEATURES}, which the template does not create"]
    kept_hours = stream.get("Properties", {}).get("RetentionPeriodHours", MIN_RETENTION_HOURS)
    if kept_hours < (needed := features_retention_hours(settings)):
        problems.append(
            f"{FEATURES} keeps records {kept_hours} h; on-failure pointers to them live up to {needed} h "
            "(dead-letter retention plus the maximum record age)"
        )
    return problems
