# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Turns delivered records into feature events, or into a permanent failure that says why not.

The event source (chalicelib/source.py) reads its own record format into a Delivery; from there
on every source is handled alike.

A message body is either the model's input JSON itself, or an envelope that carries an event
id and event time around it:

    {"event_id": "e-1", "event_time": "2026-11-25T10:00:00Z", "features": {...model input...}}

A body is read as an envelope when it is an object whose keys are only those three and
`features` is among them, so a model input that happens to have a `features` field next to
other fields is still taken as a bare input. Any other body becomes the model input through the
team's chalicelib/extension_points.py model_input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib import extension_points

from .failures import RecordFailure

_ENVELOPE_KEYS = frozenset({"event_id", "event_time", "features"})
# The error code of a record a hook of chalicelib/extension_points.py raised for, or answered
# something unusable for.
EXTENSION_POINT_ERROR = "ExtensionPointError"


class ExtensionPointError(Exception):
    """A team hook failed for one record; the message names the hook and says how."""

    @classmethod
    def raised(cls, hook: str, error: Exception) -> ExtensionPointError:
        return cls(f"extension_points.{hook} raised {type(error).__name__}: {error}")

    @classmethod
    def returned(cls, hook: str, problem: str) -> ExtensionPointError:
        return cls(f"extension_points.{hook} {problem}")

    def failure(self) -> RecordFailure:
        return RecordFailure.permanent_failure(EXTENSION_POINT_ERROR, str(self))


def is_envelope(document: dict[str, Any]) -> bool:
    """Whether a body's JSON object is the optional envelope around a model input, not the input itself."""
    return "features" in document and set(document) <= _ENVELOPE_KEYS


@dataclass(frozen=True)
class Delivery:
    """One record as the event source delivered it, before its body is read."""

    # Stable across redeliveries: consumers drop duplicates on it.
    message_id: str
    # What the partial batch response names to have this record delivered again.
    failure_id: str
    body: str
    receive_count: int
    sent_timestamp_ms: int | None
    # Records of one group must be handled in order (FIFO MessageGroupId, Kinesis partition
    # key); "" when the source does not order records.
    group: str = ""
    # Set when the source could not turn the record's bytes into text; the body then holds them
    # base64-encoded so the dead-letter record still carries them unchanged.
    encoding_problem: str = ""


@dataclass(frozen=True)
class FeatureEvent:
    """One record the model will be asked about."""

    message_id: str
    # The body as received, kept so a record the model rejects reaches the dead-letter queue
    # exactly as it was sent.
    body: str
    features: dict[str, Any]
    event_id: str
    # ISO-8601 as sent, or None when the producer sent a bare input.
    event_time: str | None
    sent_timestamp_ms: int | None
    receive_count: int
    failure_id: str
    group: str = ""
    # What keys the prediction in a keyed destination (extension_points.prediction_key); set
    # once the input is admitted, "" when the destination is not keyed.
    prediction_key: str = ""


@dataclass(frozen=True)
class RejectedRecord:
    """A record that can never become a prediction, kept with its body untouched."""

    message_id: str
    body: str
    receive_count: int
    failure: RecordFailure
    failure_id: str
    group: str = ""


def _reject(delivery: Delivery, code: str, reason: str) -> RejectedRecord:
    return RejectedRecord(
        message_id=delivery.message_id,
        body=delivery.body,
        receive_count=delivery.receive_count,
        failure=RecordFailure.permanent_failure(code, reason),
        failure_id=delivery.failure_id,
        group=delivery.group,
    )


def _is_iso8601(value: str) -> bool:
    try:
        # fromisoformat reads "Z" from Python 3.11 on.
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def parse_record(record: Delivery, max_record_bytes: int) -> FeatureEvent | RejectedRecord:
    """Read one delivered record into a FeatureEvent, or reject it with the reason."""
    if record.encoding_problem:
        return _reject(record, "InvalidEncoding", record.encoding_problem)
    body = record.body
    size = len(body.encode("utf-8"))
    if size > max_record_bytes:
        return _reject(record, "RecordTooLarge", f"body is {size} bytes; the limit is {max_record_bytes}")
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        return _reject(record, "InvalidJson", f"body is not JSON: {error}")
    if not isinstance(document, dict):
        return _reject(record, "InvalidInput", f"body must be a JSON object, not {type(document).__name__}")

    event_id = record.message_id
    event_time = None
    if not is_envelope(document):
        try:
            features = bare_model_input(document)
        except ExtensionPointError as error:
            return _reject(record, EXTENSION_POINT_ERROR, str(error))
    else:
        features = document["features"]
        if not isinstance(features, dict):
            return _reject(record, "InvalidEnvelope", "envelope field 'features' must be a JSON object")
        if "event_id" in document:
            if not isinstance(document["event_id"], str) or not document["event_id"]:
                return _reject(record, "InvalidEnvelope", "envelope field 'event_id' must be a non-empty string")
            event_id = document["event_id"]
        if "event_time" in document:
            event_time = document["event_time"]
            if not isinstance(event_time, str) or not _is_iso8601(event_time):
                return _reject(record, "InvalidEnvelope", "envelope field 'event_time' must be an ISO-8601 timestamp")

    return FeatureEvent(
        message_id=record.message_id,
        body=body,
        features=features,
        event_id=event_id,
        event_time=event_time,
        sent_timestamp_ms=record.sent_timestamp_ms,
        receive_count=record.receive_count,
        failure_id=record.failure_id,
        group=record.group,
    )


def bare_model_input(document: dict[str, Any]) -> dict[str, Any]:
    """The team's model input for a body that is not the envelope; ExtensionPointError if it has none."""
    try:
        features = extension_points.model_input(document)
    except Exception as error:  # noqa: BLE001 - team code: whatever it raises fails this record alone
        raise ExtensionPointError.raised("model_input", error) from error
    if not isinstance(features, dict):
        raise ExtensionPointError.returned("model_input", f"returned {type(features).__name__}, not a dict")
    if features is not document:
        # A body parsed from JSON always encodes again; a new object might not, and one record
        # the endpoint call cannot encode would fail the whole batch.
        try:
            json.dumps(features)
        except (TypeError, ValueError) as error:
            raise ExtensionPointError.returned("model_input", f"returned a dict JSON cannot hold: {error}") from error
    return features
