# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The event source: a Kinesis data stream, whose records stay in order per partition key.

Lambda reads one shard at a time and, with ReportBatchItemFailures, starts the next attempt at
the lowest sequence number the handler reports. The handler therefore treats each partition key
as an ordered group: when a record fails, it and every later record of the same key are
reported and none of them is published. Records of other keys after the lowest reported one are
delivered again too (Lambda cannot skip them) and published a second time: consumers drop such
duplicates on the envelope's message_id, which is the record's eventID on every attempt.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .feature_events import Delivery

# The stage variable naming the stream that triggers the function (TriggerSettings reads it).
FEATURES_SOURCE_VARIABLE = "FEATURES_STREAM_NAME"
# Whether the trigger takes TRIGGER_MAXIMUM_CONCURRENCY: a Kinesis one runs one invocation per shard instead.
TRIGGER_HAS_MAXIMUM_CONCURRENCY = False

ORDERED_BY_GROUP = True


def delivery(record: dict[str, Any]) -> Delivery:
    """Read one Lambda Kinesis record; the partial batch response names it by sequence number."""
    kinesis = record["kinesis"]
    data = kinesis.get("data", "")
    arrived = kinesis.get("approximateArrivalTimestamp")
    try:
        body, problem = base64.b64decode(data, validate=True).decode("utf-8"), ""
    except (binascii.Error, UnicodeDecodeError) as error:
        # Kept base64-encoded, so the dead-letter record carries the exact bytes that arrived.
        body, problem = data, f"record data is not UTF-8 text (kept base64-encoded): {error}"
    return Delivery(
        message_id=record["eventID"],
        failure_id=kinesis["sequenceNumber"],
        body=body,
        # Kinesis does not count attempts; Lambda's retry limit bounds them instead.
        receive_count=1,
        sent_timestamp_ms=int(float(arrived) * 1000) if arrived is not None else None,
        group=kinesis.get("partitionKey", ""),
        encoding_problem=problem,
    )
