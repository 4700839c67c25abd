# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The event source: a Kinesis data stream, whose records stay in order per partition key.

Lambda reads one shard at a time and, with ReportBatchItemFailures, starts the next attempt at
the lowest sequence number the handler reports. The handler therefore treats each partition key
as an ordered group: when a record fails, it and every later record of the same key are
reported and none of them is published. Records of other keys after the lowest reported one are
delivered again too (Lambda cannot skip them) and published a second time: consumers drop such
duplicates on the envelope's event_id, which is the record's eventID on every attempt, and stays
the first delivery's eventID when `make redrive` or `make replay` puts the record back (wrapped
as redelivery.py describes; the wrapper is taken off here).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .feature_events import Delivery, sequence_order
from .redelivery import EventOrigin, unwrap

# The stage variable naming the stream that triggers the function (TriggerSettings reads it).
FEATURES_SOURCE_VARIABLE = "FEATURES_STREAM_NAME"
# Whether the trigger takes TRIGGER_MAXIMUM_CONCURRENCY: a Kinesis one runs one invocation per shard instead.
TRIGGER_HAS_MAXIMUM_CONCURRENCY = False

ORDERED_BY_GROUP = True


def delivery(record: dict[str, Any]) -> Delivery:
    """Read one Lambda Kinesis record; the partial batch response names it by sequence number."""
    kinesis = record["kinesis"]
    arrived = kinesis.get("approximateArrivalTimestamp")
    body, origin, problem = _record_data(kinesis.get("data", ""))
    return Delivery(
        message_id=record["eventID"],
        failure_id=kinesis["sequenceNumber"],
        body=body,
        # Lambda's Kinesis records carry no attempt number (its retry limit bounds the attempts
        # instead), so none is claimed: a dead letter then has no attempt_count.
        receive_count=None,
        # Seconds with milliseconds: rounded, since 0.123 * 1000 is not 123 in floating point.
        sent_timestamp_ms=round(float(arrived) * 1000) if arrived is not None else None,
        group=kinesis.get("partitionKey", ""),
        encoding_problem=problem,
        origin=origin,
        # Decimal, up to 128 digits (Kinesis API Reference, Record); it increases over time for
        # one partition key within a shard, so it is the key's order.
        source_order=sequence_order(kinesis["sequenceNumber"], record["eventID"]),
    )


def _record_data(data: str) -> tuple[str, EventOrigin | None, str]:
    """The record's body as text, the origin a redelivery wrapper carried (taken off), and why
    the bytes are not text ("" when they are).

    Bytes that are not UTF-8 are kept base64-encoded, so the dead-letter record carries exactly
    the bytes that were sent.
    """
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as error:
        return data, None, f"record data is not UTF-8 text (kept base64-encoded): {error}"
    body, origin = unwrap(text)
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        # A redelivered body that was not UTF-8 when it first arrived either.
        raw = body.encode("utf-8", "surrogateescape")
        return base64.b64encode(raw).decode("ascii"), origin, "record data is not UTF-8 text (kept base64-encoded)"
    return body, origin, ""
