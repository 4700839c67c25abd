# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The event source: an SQS standard queue, whose records the handler may take in any order."""

from __future__ import annotations

from typing import Any

from .feature_events import Delivery
from .redelivery import from_sqs_record

# The stage variable naming the queue that triggers the function (TriggerSettings reads it).
FEATURES_SOURCE_VARIABLE = "FEATURES_QUEUE_NAME"
# Whether the trigger takes TRIGGER_MAXIMUM_CONCURRENCY: an SQS event source mapping caps concurrent invocations.
TRIGGER_HAS_MAXIMUM_CONCURRENCY = True

# A standard queue promises no order, so a failed record never holds back the ones after it.
ORDERED_BY_GROUP = False


def _int_attribute(record: dict[str, Any], name: str) -> int | None:
    value = record.get("attributes", {}).get(name)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def delivery(record: dict[str, Any]) -> Delivery:
    """Read one Lambda SQS record; the partial batch response names it by its message id."""
    return Delivery(
        message_id=record["messageId"],
        failure_id=record["messageId"],
        body=record.get("body", ""),
        receive_count=_int_attribute(record, "ApproximateReceiveCount") or 1,
        sent_timestamp_ms=_int_attribute(record, "SentTimestamp"),
        # A copy `make redrive` or `make replay` sent names its first delivery in message attributes.
        origin=from_sqs_record(record),
        # A standard queue keeps no order (and no sequence number): the message id settles a tie
        # of two events' times the same way every time, though not by which was sent first.
        source_order=record["messageId"],
    )
