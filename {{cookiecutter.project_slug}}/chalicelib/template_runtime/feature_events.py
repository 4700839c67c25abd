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

An event's identity is the envelope's event_id, else, for a bare input, the message id of its
first delivery; its time is the envelope's event_time, else when the source first took it in.
A record `make redrive` or `make replay` sent again carries both from its first delivery
(redelivery.py), so it is still the same event.

Of two events of one key with the same event time, the one the source put later is the newer:
each record carries its place in the source's order (`source_order`, see sequence_order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib import extension_points

from .failures import RecordFailure
from .redelivery import DEAD_LETTER_EVENT_ID, DEAD_LETTER_EVENT_TIME, EventOrigin, iso_time

_ENVELOPE_KEYS = frozenset({"event_id", "event_time", "features"})
# A "\ud800" escape without its pair parses to a string no UTF-8 can encode: the prediction's
# envelope, which repeats the event's id and may repeat its input, could then be sent nowhere,
# and the whole batch would fail with it. I-JSON (RFC 7493, section 2.1) forbids such strings.
LONE_SURROGATE_REASON = (
    "body holds half a surrogate pair (a \\uD800-\\uDFFF escape without its partner), which I-JSON (RFC 7493) "
    "forbids and UTF-8 cannot carry; escape such a character as a pair, or send it as UTF-8"
)
# Digits of the length prefix sequence_order writes: Kinesis sequence numbers have up to 128
# digits (its API reference), SQS FIFO ones 128 bits, at most 39 digits.
_SEQUENCE_LENGTH_DIGITS = 3
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


def sequence_order(sequence_number: str | None, message_id: str) -> str:
    """A record's place in its source's order, as text that sorts in that order.

    Sequence numbers are decimal and their digit count varies ("9" comes before "10", but sorts
    after it as text), and DynamoDB compares strings byte by byte. So the number goes after its
    digit count, zero-padded: "001:9" < "002:10", and numbers of the same length compare digit
    by digit, as numbers do. A record without a usable sequence number (a hand-made test event)
    falls back to its message id: deterministic, but its order against sequenced records is
    arbitrary.
    """
    digits = (sequence_number or "").lstrip("0") or "0"
    if not sequence_number or not (digits.isascii() and digits.isdigit()):
        return message_id
    return f"{len(digits):0{_SEQUENCE_LENGTH_DIGITS}d}:{digits}"


def is_envelope(document: dict[str, Any]) -> bool:
    """Whether a body's JSON object is the optional envelope around a model input, not the input itself."""
    return "features" in document and set(document) <= _ENVELOPE_KEYS


@dataclass(frozen=True)
class Delivery:
    """One record as the event source delivered it, before its body is read."""

    # This delivery's id, the same when the source delivers the record again; a redrive or
    # replay sends a copy with an id of its own (see event_id).
    message_id: str
    # What the partial batch response names to have this record delivered again.
    failure_id: str
    body: str
    # The queue's ApproximateReceiveCount; None for a source that counts no deliveries (Kinesis).
    receive_count: int | None
    sent_timestamp_ms: int | None
    # Records of one group must be handled in order (FIFO MessageGroupId, Kinesis partition
    # key); "" when the source does not order records.
    group: str = ""
    # Set when the source could not turn the record's bytes into text; the body then holds them
    # base64-encoded so the dead-letter record still carries them unchanged.
    encoding_problem: str = ""
    # The event's id and time from its first delivery, when this is a copy a redrive or replay
    # sent (redelivery.py); None on a first delivery.
    origin: EventOrigin | None = None
    # Where the source put the record among its group's records, as text that sorts in that
    # order (sequence_order): a keyed table keeps the later of two events of one key with the
    # same event time. A source without order (a standard queue) gives the message id, which
    # settles such a tie the same way every time, but arbitrarily; "" reads as the message id.
    source_order: str = ""

    @property
    def event_id(self) -> str:
        """The event's identity unless its envelope names one: the first delivery's message id."""
        return self.origin.event_id if self.origin else self.message_id

    @property
    def event_time(self) -> str | None:
        """The first delivery's time when this is a copy sent again; None on a first delivery."""
        if self.origin is None or not self.origin.event_time:
            return None
        return self.origin.event_time


@dataclass(frozen=True)
class FeatureEvent:
    """One record the model will be asked about."""

    message_id: str
    # The body as received, kept so a record the model rejects reaches the dead-letter queue
    # exactly as it was sent.
    body: str
    features: dict[str, Any]
    event_id: str
    # ISO-8601: the envelope's, else (a bare input sent again) the first delivery's time; None
    # for a bare input on its first delivery, whose sent_timestamp_ms stands in.
    event_time: str | None
    sent_timestamp_ms: int | None
    receive_count: int | None
    failure_id: str
    group: str = ""
    # What keys the prediction in a keyed destination (extension_points.prediction_key); set
    # once the input is admitted, "" when the destination is not keyed.
    prediction_key: str = ""
    # The delivery's source_order, never "" (the message id stands in).
    source_order: str = ""

    def rejected(self, failure: RecordFailure) -> RejectedRecord:
        """This record, refused for good: it keeps its body and its event's identity."""
        return RejectedRecord(
            message_id=self.message_id,
            body=self.body,
            receive_count=self.receive_count,
            failure=failure,
            failure_id=self.failure_id,
            group=self.group,
            event_id=self.event_id,
            event_time=self.event_time,
            sent_timestamp_ms=self.sent_timestamp_ms,
        )


@dataclass(frozen=True)
class RejectedRecord:
    """A record that can never become a prediction, kept with its body untouched."""

    message_id: str
    body: str
    receive_count: int | None
    failure: RecordFailure
    failure_id: str
    group: str = ""
    # The event's identity and time as far as they are known (see FeatureEvent), so that a
    # redrive sends the same event again.
    event_id: str = ""
    event_time: str | None = None
    sent_timestamp_ms: int | None = None


def _reject(delivery: Delivery, code: str, reason: str) -> RejectedRecord:
    return RejectedRecord(
        message_id=delivery.message_id,
        body=delivery.body,
        receive_count=delivery.receive_count,
        failure=RecordFailure.permanent_failure(code, reason),
        failure_id=delivery.failure_id,
        group=delivery.group,
        event_id=delivery.event_id,
        event_time=delivery.event_time,
        sent_timestamp_ms=delivery.sent_timestamp_ms,
    )


def event_moment(item: FeatureEvent | RejectedRecord) -> datetime | None:
    """When the event happened: its own or its first delivery's event time, else when the source took it in."""
    if item.event_time is not None:
        moment = datetime.fromisoformat(item.event_time)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if item.sent_timestamp_ms is not None:
        return datetime.fromtimestamp(item.sent_timestamp_ms / 1000, tz=UTC)
    return None


def identity_attributes(item: FeatureEvent | RejectedRecord) -> dict[str, str]:
    """The dead-letter attributes naming the record's event and its time, which a redrive sends along."""
    attributes = {}
    if item.event_id:
        attributes[DEAD_LETTER_EVENT_ID] = item.event_id
    if (moment := event_moment(item)) is not None:
        attributes[DEAD_LETTER_EVENT_TIME] = iso_time(moment)
    return attributes


def _holds_a_lone_surrogate(body: str, document: dict[str, Any]) -> bool:
    """Whether a string of the parsed body holds half a surrogate pair.

    Only a \\uD800-\\uDFFF escape can put one there (the body itself is valid UTF-8), so only
    such a body is encoded again to look: no cost for the rest.
    """
    if "\\ud" not in body and "\\uD" not in body:
        return False
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
    if _holds_a_lone_surrogate(body, document):
        return _reject(record, "InvalidJson", LONE_SURROGATE_REASON)

    # A bare input is known by its first delivery; an envelope's own values win.
    event_id = record.event_id
    event_time = record.event_time
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
        source_order=record.source_order or record.message_id,
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
