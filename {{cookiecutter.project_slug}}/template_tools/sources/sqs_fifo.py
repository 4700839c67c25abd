# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Local mode's features source: an SQS FIFO queue, its producer, and its Lambda-like trigger.

The producer puts each event in the message group of its {{ cookiecutter.partition_key_field }}, so SQS
hands each group's events over in the order they were sent and holds a group back while any of
its records is in flight; the trigger is the same as for a standard queue.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

from chalicelib.template_runtime.aws_limits import (
    LAMBDA_FIFO_MAX_BATCH_SIZE,
)

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

if TYPE_CHECKING:
    from .features_producer import OutgoingEvent

# The ARN a Lambda record names its event source by (sample_event_files.py fills it in).
# How the benchmark names this source, and the calls its throughput ceiling is measured on.
SOURCE_LABEL = "SQS FIFO queue trigger"
CEILING_PATH = "SQS FIFO queue: SendMessageBatch, ReceiveMessage, DeleteMessageBatch"
SOURCE_ARN_FORMAT = "arn:aws:sqs:{region}:{account}:{name}"


@dataclass(frozen=True)
class FeaturesSource:
    """The FIFO features queue and the FIFO dead-letter queue its redrive policy feeds."""

    url: str
    arn: str
    dead_letter_url: str


def create_source(environment: Mapping[str, str], redelivery: Redelivery) -> FeaturesSource:
    """Create (or bring up to date) FEATURES_QUEUE_NAME and DEAD_LETTER_QUEUE_NAME; idempotent.

    Both names end in .fifo: AWS requires a FIFO queue's dead-letter queue to be FIFO too.
    """
    sqs = boto3.client("sqs")
    dead_letter_url = ensure_dead_letter_queue(sqs, environment["DEAD_LETTER_QUEUE_NAME"])
    # An empty policy removes one left by an earlier run: failing records then come back until
    # retention drops them, and hold their group back all that time.
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
    """Sends event bodies as a producer would: SendMessageBatch, each event in its key's group."""

    def __init__(self, source: FeaturesSource) -> None:
        self._sqs = boto3.client("sqs")
        self._url = source.url

    def send(self, bodies: Sequence[str], groups: Sequence[str]) -> list[str | None]:
        """Send up to MAX_EVENTS_PER_SEND bodies in order; return each one's MessageId, None where refused.

        `groups` gives each body's MessageGroupId (the event's key). The event id (or, for a body
        without one, its hash) is the MessageDeduplicationId, so a retried send is not taken twice.
        """
        response = self._sqs.send_message_batch(
            QueueUrl=self._url,
            Entries=[
                {
                    "Id": str(position),
                    "MessageBody": body,
                    "MessageGroupId": group,
                    "MessageDeduplicationId": _deduplication_id(body),
                }
                for position, (body, group) in enumerate(zip(bodies, groups, strict=True))
            ],
        )
        message_ids: list[str | None] = [None] * len(bodies)
        for entry in response.get("Successful", []):
            message_ids[int(entry["Id"])] = entry["MessageId"]
        return message_ids


def _deduplication_id(body: str) -> str:
    # The event id when the body carries one (a producer retrying an event sends the same id);
    # SQS allows 128 characters.
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    event_id = document.get("event_id") if isinstance(document, dict) else None
    if isinstance(event_id, str) and event_id:
        return event_id[:128]
    return hashlib.sha256(body.encode()).hexdigest()


class StageSender(QueueStageSender):
    """The operator commands' sender: each event in its key's message group, deduplicated by its id."""

    def extra_fields(self, event: OutgoingEvent, event_group: Callable[[str], str]) -> dict[str, str]:
        """The MessageGroupId (the event's own group, else its key) and MessageDeduplicationId."""
        return {
            "MessageGroupId": event.group or event_group(event.body),
            "MessageDeduplicationId": event.deduplication_id or hashlib.sha256(event.body.encode()).hexdigest(),
        }


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
    """The event source mapping Lambda would run: at most 10 records a batch and no batching window;
    with the trigger's FIFO settings, which keep moto handing each group's records over in order."""
    return SqsTrigger(
        handler,
        queue_url=source.url,
        function=function,
        batch_size=min(batch_size, LAMBDA_FIFO_MAX_BATCH_SIZE),
        batching_window_seconds=0,
        maximum_concurrency=maximum_concurrency,
        records_done=records_done,
        visibility_timeout_seconds=redelivery.visibility_timeout_seconds,
        fifo=True,
    )


def lambda_records(
    bodies: Sequence[str], groups: Sequence[str], event_source_arn: str, region: str, *, seed: int | None = None
) -> list[dict[str, Any]]:
    """The records of a Lambda event as this queue's trigger delivers `bodies`, first delivery each.

    For callers that invoke a handler without a queue in between (the benchmark, the sample
    event files). `groups` gives each body's MessageGroupId; sequence numbers increase in the
    order given, as SQS numbers a FIFO queue's messages. `seed` fixes the message ids, timestamps
    and sequence numbers (see DeliveryStamps).
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
                    "SequenceNumber": str(stamps.first_sequence_number + position),
                    "MessageGroupId": group,
                    "MessageDeduplicationId": _deduplication_id(body),
                },
            },
            event_source_arn,
            region,
        )
        for position, (body, group) in enumerate(zip(bodies, groups, strict=True))
    ]


def send_receive_ceiling(messages: int) -> float:
    """Messages per second of a tight SendMessageBatch/ReceiveMessage/DeleteMessageBatch loop on
    a FIFO queue of its own: what one hop of a local pipeline can reach on this emulator.

    One client thread, batches of 10, and the queue never more than one batch deep, which is
    moto's best case: it scans the whole queue on every call.
    """
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="benchmark-emulator-ceiling.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
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
            # Ten groups, so a receive can take a whole batch (SQS holds a group back while it has
            # a message in flight); each message its own deduplication id.
            entries = [
                {
                    "Id": str(n),
                    "MessageBody": f"ceiling-{sent + n}",
                    "MessageGroupId": f"g{(sent + n) % MAX_EVENTS_PER_SEND}",
                    "MessageDeduplicationId": str(sent + n),
                }
                for n in range(count)
            ]
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
