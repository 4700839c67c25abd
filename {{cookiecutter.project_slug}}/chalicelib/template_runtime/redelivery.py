# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""What a record sent again carries from its first delivery: the event's id and when it happened.

`make redrive` and `make replay` (template_tools/redrive.py, replay.py) send a record again, long
after it first arrived. The source gives the copy a message id and an arrival time of its own,
yet it is the same event: consumers drop duplicates on its event_id, and a newest-wins
destination (DynamoDB) orders predictions by event time. So the copy carries both along, and the
event source (source.py) reads them back into the Delivery. This is the one place the format is
written down:

- An SQS queue (standard or FIFO): the body byte for byte, with two String message attributes,
  `original_event_id` and `original_event_time`.
- A Kinesis stream, whose records have no attributes: the body inside a redelivery wrapper, a
  JSON object that begins with `{"redelivered"` and has exactly these two keys:

      {"redelivered": {"event_id": "<id>", "event_time": "<time>"}, "body": "<the body as text>"}

  The source unwraps it, so the handler, the team's model_input and a dead-letter record see the
  original body. A body that was not UTF-8 text rides in it with its bytes escaped (see wrap).

The event time is ISO-8601 in UTC with milliseconds ("2026-11-25T10:00:00.000Z"); it is left out
when the first delivery's time is not known. An input envelope's own event_id and event_time win
over carried ones (they are the same values anyway): the carried ones are what a bare model
input is known by. The handler's dead-letter records name the same two values in their
attributes `event_id` and `event_time` (DEAD_LETTER_EVENT_ID, DEAD_LETTER_EVENT_TIME), which is
where the redrive takes them from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The SQS message attributes a resent record carries.
ORIGINAL_EVENT_ID = "original_event_id"
ORIGINAL_EVENT_TIME = "original_event_time"
# The handler's dead-letter record names its event with these attributes.
DEAD_LETTER_EVENT_ID = "event_id"
DEAD_LETTER_EVENT_TIME = "event_time"
# How every redelivery wrapper begins (json.dumps keeps the keys in the order written), so a
# body is only parsed a second time when it can be one.
_WRAPPER_START = '{"redelivered"'
_WRAPPER_KEYS = frozenset({"redelivered", "body"})


def iso_time(moment: datetime) -> str:
    """A moment as ISO-8601 in UTC with milliseconds, the form event times travel in."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_time_from_ms(epoch_ms: int) -> str:
    return iso_time(datetime.fromtimestamp(epoch_ms / 1000, tz=UTC))


def _moment(value: str) -> datetime | None:
    try:
        # fromisoformat reads "Z" from Python 3.11 on.
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class EventOrigin:
    """An event's identity and time as its first delivery gave them."""

    event_id: str
    # ISO-8601 in UTC with milliseconds; "" when the first delivery's time is not known.
    event_time: str = ""

    @classmethod
    def read(cls, event_id: object, event_time: object) -> EventOrigin | None:
        """The origin in carried values; None without a usable id. A time that is no ISO-8601 is
        dropped: the record then counts from its arrival, as any record without one."""
        if not isinstance(event_id, str) or not event_id:
            return None
        moment = _moment(event_time) if isinstance(event_time, str) and event_time else None
        return cls(event_id, iso_time(moment) if moment else "")


def from_sqs_record(record: Mapping[str, Any]) -> EventOrigin | None:
    """The origin a Lambda SQS record's message attributes carry; None on a first delivery."""
    attributes = record.get("messageAttributes") or {}

    def value(name: str) -> object:
        attribute = attributes.get(name)
        return attribute.get("stringValue") if isinstance(attribute, Mapping) else None

    return EventOrigin.read(value(ORIGINAL_EVENT_ID), value(ORIGINAL_EVENT_TIME))


def sqs_message_attributes(origin: EventOrigin) -> dict[str, dict[str, str]]:
    """The MessageAttributes of a SendMessage(Batch) entry that carry `origin`."""
    values = {ORIGINAL_EVENT_ID: origin.event_id, ORIGINAL_EVENT_TIME: origin.event_time}
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items() if value}


def sqs_attribute_bytes(origin: EventOrigin | None) -> int:
    """How much the attributes add to a message's size, which SQS counts (names, types and values)."""
    if origin is None:
        return 0
    attributes = sqs_message_attributes(origin).items()
    return sum(len(name) + len(item["DataType"]) + len(item["StringValue"].encode()) for name, item in attributes)


def wrap(body: str, origin: EventOrigin) -> str:
    """The redelivery wrapper around `body` for a stream.

    A body read back from a stream as bytes that are not UTF-8 holds them as surrogate escapes;
    ASCII escapes keep them intact through JSON, and unwrap turns them back.
    """
    redelivered = {"event_id": origin.event_id}
    if origin.event_time:
        redelivered["event_time"] = origin.event_time
    ascii_only = any("\udc80" <= character <= "\udcff" for character in body)
    return json.dumps({"redelivered": redelivered, "body": body}, ensure_ascii=ascii_only)


def unwrap(text: str) -> tuple[str, EventOrigin | None]:
    """The original body and its origin when `text` is a redelivery wrapper; else `text` and None.

    The body may hold surrogate escapes for bytes that are not UTF-8 (see wrap); the caller
    decides what such a body means.
    """
    if not text.startswith(_WRAPPER_START):
        return text, None
    try:
        document = json.loads(text)
    except ValueError:
        return text, None
    if not isinstance(document, dict) or set(document) != _WRAPPER_KEYS:
        return text, None
    redelivered, body = document["redelivered"], document["body"]
    if not isinstance(redelivered, dict) or not isinstance(body, str):
        return text, None
    origin = EventOrigin.read(redelivered.get("event_id"), redelivered.get("event_time"))
    if origin is None:
        return text, None
    try:
        body.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # Escapes wrap never writes: not a wrapper of ours.
        return text, None
    return body, origin
