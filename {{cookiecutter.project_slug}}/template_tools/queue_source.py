# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""What the SQS standard and FIFO features sources share; each source module (source.py) hands it on.

A Kinesis project has no queue source, so it does not get this file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from chalicelib.template_runtime.aws_limits import SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES
from chalicelib.template_runtime.redelivery import sqs_message_attributes

if TYPE_CHECKING:
    from .features_producer import OutgoingEvent

# Why a record the trigger itself dead-lettered is there: the queue's redrive policy moved it.
TRIGGER_DEAD_LETTER_REASON = "redrive (maxReceiveCount)"
MAX_EVENTS_PER_SEND = SQS_MAX_BATCH_ENTRIES

# The operator commands' producer (features_producer.py) splits events into batch calls this big.
PRODUCER_MAX_EVENTS_PER_CALL = SQS_MAX_BATCH_ENTRIES
PRODUCER_MAX_BYTES_PER_CALL = SQS_MAX_BATCH_BYTES
# A MessageGroupId is at most 128 characters.
PRODUCER_MAX_GROUP_CHARS = 128


class QueueStageSender:
    """The operator commands' sender (features_producer.py): one batch call to a stage's existing queue.

    Unlike the local EventSender it finds a queue that already exists (in AWS, or in the emulator
    AWS_ENDPOINT_URL names) and reports why each refused event was refused. A source adds its own
    fields to each entry (extra_fields).
    """

    def __init__(self, environment: Mapping[str, str], config: Config) -> None:
        self._sqs = boto3.client("sqs", config=config)
        self.name = environment["FEATURES_QUEUE_NAME"]
        # Fails here, with the queue's name, when the queue does not exist.
        self._url = self._sqs.get_queue_url(QueueName=self.name)["QueueUrl"]

    def as_sent(self, event: OutgoingEvent, event_group: Callable[[str], str]) -> OutgoingEvent:
        """The event as this queue takes it: unchanged (a resent one's origin travels in message attributes)."""
        del event_group
        return event

    def extra_fields(self, event: OutgoingEvent, event_group: Callable[[str], str]) -> dict[str, str]:
        """SendMessageBatch fields beyond the id, body and attributes: none for a standard queue."""
        del event, event_group
        return {}

    def send_call(
        self, batch: Sequence[OutgoingEvent], event_group: Callable[[str], str]
    ) -> list[tuple[str | None, str]]:
        """Send one batch call; each event's (message id, "") or (None, why it was refused), in order.

        `event_group` keys an event without a group of its own.
        """
        entries = [
            {"Id": str(position), "MessageBody": event.body, **self.extra_fields(event, event_group)}
            # A body sent again names its first delivery (chalicelib/template_runtime/redelivery.py).
            | ({"MessageAttributes": sqs_message_attributes(event.origin)} if event.origin else {})
            for position, event in enumerate(batch)
        ]
        response = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
        outcomes: list[tuple[str | None, str]] = [(None, "not in the response")] * len(batch)
        for entry in response.get("Successful", []):
            outcomes[int(entry["Id"])] = (entry["MessageId"], "")
        for entry in response.get("Failed", []):
            outcomes[int(entry["Id"])] = (None, f"{entry['Code']}: {entry.get('Message', '')}")
        return outcomes


class DeadLetterEvents:
    """What the redrive (redrive.py) sends back to the features queue for a dead-letter message."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        # A queue's dead letters carry their bodies: nothing else to read them from.
        del environment

    def read(
        self, message_id: str, body: str, group: str, error_code: str | None, event_group: Callable[[str], str]
    ) -> tuple[list[tuple[str, str, str]], str]:
        """Each event's (body, group, deduplication id), and why none can be sent ("" when they can)."""
        del error_code
        # The same deduplication id every time this message is redriven, and never the
        # original's: a crashed run's resend is not taken twice, the first resend not dropped.
        return [(body, group or event_group(body), f"redrive-{message_id}")], ""


def exports_records(body: str) -> bool:
    """Whether a dead-letter export writes the events a message stands for rather than its body:
    never for a queue, whose dead letters are the events themselves."""
    del body
    return False


def dead_lettered_message_ids(message: dict[str, Any], sent_ids: Iterable[str]) -> list[str]:
    """The features messages one dead-letter queue message stands for.

    The handler names the record in `source_message_id`; a message the queue's redrive moved
    is the record itself and keeps its MessageId.
    """
    source_id = message.get("MessageAttributes", {}).get("source_message_id", {}).get("StringValue")
    return [source_id or message["MessageId"]]


def record_message_id(record: dict[str, Any]) -> str:
    """The id a Lambda SQS record is known by: the ledger's and the partial batch response's."""
    return record["messageId"]


def record_body(record: dict[str, Any]) -> str:
    return record["body"]


def retry_settings(timings: Any, naive: bool) -> str:
    """How a soak's plan names this source's redeliveries: `timings` is its FaultTimings."""
    receives = "none (no redrive policy)" if naive else timings.max_receive_count
    return f"visibility timeout {timings.visibility_timeout_seconds} s, maxReceiveCount {receives}"
