# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The event source: an SQS FIFO queue, whose records must be handled in order within each group.

Lambda hands a FIFO queue's records over in order, each group's records in the order they were
sent. The handler keeps that order: when a record fails, it and every later record of its group
are reported as failures and none of them is published, so SQS delivers them again, in order.
Other groups go on.
"""

from __future__ import annotations

from typing import Any

from .feature_events import Delivery, sequence_order
from .redelivery import from_sqs_record

# The stage variable naming the queue that triggers the function (TriggerSettings reads it).
FEATURES_SOURCE_VARIABLE = "FEATURES_QUEUE_NAME"
# Whether the trigger takes TRIGGER_MAXIMUM_CONCURRENCY: an SQS event source mapping caps concurrent invocations.
TRIGGER_HAS_MAXIMUM_CONCURRENCY = True

ORDERED_BY_GROUP = True


def _int_attribute(record: dict[str, Any], name: str) -> int | None:
    value = record.get("attributes", {}).get(name)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def delivery(record: dict[str, Any]) -> Delivery:
    """Read one Lambda SQS FIFO record; its MessageGroupId is the group whose order it keeps."""
    return Delivery(
        message_id=record["messageId"],
        failure_id=record["messageId"],
        body=record.get("body", ""),
        receive_count=_int_attribute(record, "ApproximateReceiveCount") or 1,
        sent_timestamp_ms=_int_attribute(record, "SentTimestamp"),
        # A copy `make redrive` or `make replay` sent names its first delivery in message attributes.
        origin=from_sqs_record(record),
        group=record.get("attributes", {}).get("MessageGroupId", ""),
        # "The length of SequenceNumber is 128 bits. SequenceNumber continues to increase for a
        # particular MessageGroupId." (SQS API Reference, SendMessage and ReceiveMessage): the
        # group's send order, where the message id is a random UUID.
        source_order=sequence_order(record.get("attributes", {}).get("SequenceNumber"), record["messageId"]),
    )
