# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Local mode's features source: an SQS standard queue, its producer, and its Lambda-like trigger."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3

from .emulator import Redelivery, ensure_dead_letter_queue, ensure_queue, queue_arn
from .lambda_trigger import DeliveryStamps, FunctionConfiguration, Handler, SqsTrigger, lambda_sqs_record
from .queue_source import (
    MAX_EVENTS_PER_SEND as MAX_EVENTS_PER_SEND,
    PRODUCER_MAX_BYTES_PER_CALL as PRODUCER_MAX_BYTES_PER_CALL,
    PRODUCER_MAX_EVENTS_PER_CALL as PRODUCER_MAX_EVENTS_PER_CALL,
    PRODUCER_MAX_GROUP_CHARS as PRODUCER_MAX_GROUP_CHARS,
    TRIGGER_DEAD_LETTER_REASON as TRIGGER_DEAD_LETTER_REASON,
    DeadLetterEvents as DeadLetterEvents,
    QueueStageSender,
    dead_lettered_message_ids as dead_lettered_message_ids,
    exports_records as exports_records,
    record_body as record_body,
    record_message_id as record_message_id,
    retry_settings as retry_settings,
)

# The ARN a Lambda record names its event source by (sample_event_files.py fills it in).
# How the benchmark names this source, and the calls its throughput ceiling is measured on.
SOURCE_LABEL = "SQS standard queue trigger"
CEILING_PATH = "SQS standard queue: SendMessageBatch, ReceiveMessage, DeleteMessageBatch"
SOURCE_ARN_FORMAT = "arn:aws:sqs:{region}:{account}:{name}"


@dataclass(frozen=True)
class FeaturesSource:
    """The features queue and the dead-letter queue its redrive policy feeds."""

    url: str
    arn: str
    dead_letter_url: str


def create_source(environment: Mapping[str, str], redelivery: Redelivery) -> FeaturesSource:
    """Create (or bring up to date) FEATURES_QUEUE_NAME and DEAD_LETTER_QUEUE_NAME; idempotent."""
    sqs = boto3.client("sqs")
    dead_letter_url = ensure_dead_letter_queue(sqs, environment["DEAD_LETTER_QUEUE_NAME"])
    # An empty policy removes one left by an earlier run: failing records then come back until
    # retention drops them.
    redrive_policy = ""
    if redelivery.max_receive_count is not None:
        redrive_policy = json.dumps(
            {"deadLetterTargetArn": queue_arn(sqs, dead_letter_url), "maxReceiveCount": redelivery.max_receive_count}
        )
    url = ensure_queue(
        sqs,
        environment["FEATURES_QUEUE_NAME"],
        VisibilityTimeout=str(redelivery.queue_visibility_timeout_seconds),
        RedrivePolicy=redrive_policy,
    )
    return FeaturesSource(url=url, arn=queue_arn(sqs, url), dead_letter_url=dead_letter_url)


class EventSender:
    """Sends event bodies as a producer would: SendMessageBatch, 10 at a time."""

    def __init__(self, source: FeaturesSource) -> None:
        self._sqs = boto3.client("sqs")
        self._url = source.url

    def send(self, bodies: Sequence[str], groups: Sequence[str]) -> list[str | None]:
        """Send up to MAX_EVENTS_PER_SEND bodies; return each one's MessageId, None where SQS refused it.

        A standard queue has no message groups: `groups` is not used.
        """
        response = self._sqs.send_message_batch(
            QueueUrl=self._url,
            Entries=[{"Id": str(position), "MessageBody": body} for position, body in enumerate(bodies)],
        )
        message_ids: list[str | None] = [None] * len(bodies)
        for entry in response.get("Successful", []):
            message_ids[int(entry["Id"])] = entry["MessageId"]
        return message_ids


class StageSender(QueueStageSender):
    """The operator commands' sender: a standard queue takes each event's body alone."""


def local_trigger(
    handler: Handler,
    source: FeaturesSource,
    function: FunctionConfiguration,
    *,
    batch_size: int,
    batching_window_seconds: int,
    maximum_concurrency: int,
    redelivery: Redelivery,
    records_done: Callable[[Sequence[str]], None] | None = None,
) -> SqsTrigger:
    """The event source mapping Lambda would run: the queue itself handles redelivery and redrive, and
    the trigger ends a fractional (scaled) visibility timeout on time, which the queue cannot."""
    return SqsTrigger(
        handler,
        queue_url=source.url,
        function=function,
        batch_size=batch_size,
        batching_window_seconds=batching_window_seconds,
        maximum_concurrency=maximum_concurrency,
        records_done=records_done,
        visibility_timeout_seconds=redelivery.visibility_timeout_seconds,
    )


def lambda_records(
    bodies: Sequence[str], groups: Sequence[str], event_source_arn: str, region: str, *, seed: int | None = None
) -> list[dict[str, Any]]:
    """The records of a Lambda event as this queue's trigger delivers `bodies`, first delivery each.

    For callers that invoke a handler without a queue in between (the benchmark, the sample
    event files). A standard queue has no message groups: `groups` is not used. `seed` fixes the
    message ids and timestamps (see DeliveryStamps).
    """
    stamps = DeliveryStamps(seed)
    return [
        lambda_sqs_record(
            {
                "MessageId": str(stamps.unique_id()),
                "ReceiptHandle": stamps.unique_id().hex,
                "Body": body,
                "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "Attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": stamps.time_ms,
                    "SenderId": "AROAEXAMPLEEXAMPLEEXA:feature-producer",
                    "ApproximateFirstReceiveTimestamp": stamps.time_ms,
                },
            },
            event_source_arn,
            region,
        )
        for body in bodies
    ]


def send_receive_ceiling(messages: int) -> float:
    """Messages per second of a tight SendMessageBatch/ReceiveMessage/DeleteMessageBatch loop on
    a standard queue of its own: what one hop of a local pipeline can reach on this emulator.

    One client thread, batches of 10, and the queue never more than one batch deep, which is
    moto's best case: it scans the whole queue on every call.
    """
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="benchmark-emulator-ceiling")["QueueUrl"]
    try:
        return _send_receive_loop(sqs, queue_url, messages)
    finally:
        sqs.delete_queue(QueueUrl=queue_url)


def _send_receive_loop(sqs: Any, queue_url: str, messages: int) -> float:
    sent = received = 0
    started = time.perf_counter()
    while received < messages:
        if sent < messages and sent - received < MAX_EVENTS_PER_SEND:
            count = min(MAX_EVENTS_PER_SEND, messages - sent)
            entries = [{"Id": str(n), "MessageBody": f"ceiling-{sent + n}"} for n in range(count)]
            sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            sent += count
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=MAX_EVENTS_PER_SEND).get("Messages", [])
        if batch:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)],
            )
            received += len(batch)
    return messages / (time.perf_counter() - started)
