# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Sends event bodies to a stage's existing features queue or stream the way producers do, for the operator commands.

Unlike the local pipeline's EventSender (source.py), it finds a queue or stream that already
exists (in AWS, or in the emulator AWS_ENDPOINT_URL names), splits any number of events into
batch calls, and reports why each refused event was refused. The batch call itself is the
source's (source.StageSender).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.template_runtime.feature_events import is_envelope
from chalicelib.template_runtime.redelivery import EventOrigin, sqs_attribute_bytes

from .source import PRODUCER_MAX_BYTES_PER_CALL, PRODUCER_MAX_EVENTS_PER_CALL, PRODUCER_MAX_GROUP_CHARS, StageSender
from .stage import PROJECT_DIR

# The answers the project was generated with; its partition_key_field is the producers' default.
TEMPLATE_ANSWERS_FILE = PROJECT_DIR / ".template-answers.json"


def answered_key_field() -> str:
    """The project's partition_key_field answer, read from .template-answers.json; empty without one."""
    try:
        answers = json.loads(TEMPLATE_ANSWERS_FILE.read_text(encoding="utf-8"))
        return str(answers["cookiecutter"]["partition_key_field"]).strip()
    except (OSError, ValueError, KeyError, TypeError):
        # No answer: producers fall back on each event's event_id.
        return ""


# The field producers key events by: a Kinesis partition key, a FIFO message group (a standard
# queue has no groups, but a redrive to a FIFO or Kinesis source in another project needs one).
# The producer takes the stage's PARTITION_KEY_FIELD when the stage sets it; this is the
# project's answer otherwise. It is read from the answers file rather than set in the stage:
# a stage's PARTITION_KEY_FIELD makes the handler require the field in every model input.
PARTITION_KEY_FIELD = answered_key_field()
MAX_EVENTS_PER_CALL = PRODUCER_MAX_EVENTS_PER_CALL
MAX_BYTES_PER_CALL = PRODUCER_MAX_BYTES_PER_CALL
MAX_GROUP_CHARS = PRODUCER_MAX_GROUP_CHARS
_CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 5})


@dataclass(frozen=True)
class OutgoingEvent:
    """One body to send, byte for byte, and where it goes."""

    body: str
    # The partition key or MessageGroupId: a key's events stay in order (a standard queue has no groups).
    group: str = ""
    # A FIFO queue's MessageDeduplicationId (SQS drops a message whose id it has seen in the last
    # 5 minutes); empty: a hash of the body. Other sources do not use it.
    deduplication_id: str = ""
    # Set when the body is sent again (`make redrive`, `make replay`): the event's id and time
    # from its first delivery, which the copy carries along (chalicelib/template_runtime/redelivery.py).
    origin: EventOrigin | None = None


@dataclass(frozen=True)
class SendOutcome:
    """What the source said about one event: its message id, or why it refused it."""

    message_id: str | None
    error: str = ""


def producer_key_field(environment: Mapping[str, str]) -> str:
    """The model-input field producers key events by: the stage's PARTITION_KEY_FIELD, else the answer's."""
    return environment.get("PARTITION_KEY_FIELD", "").strip() or PARTITION_KEY_FIELD


def event_group(body: str, key_field: str = PARTITION_KEY_FIELD) -> str:
    """The key a producer sends `body` under: its model input's `key_field` (the body itself, or
    an envelope's `features`), else its event_id, else (a body that is not a feature event) a
    hash of the body."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        # A bare model input is the main form: read the key from it, so each user's events keep
        # their order whichever form the producer chose.
        features = document["features"] if is_envelope(document) else document
        key = features.get(key_field) if key_field and isinstance(features, dict) else None
        key = key if key not in (None, "") else document.get("event_id")
        if key not in (None, ""):
            return str(key)[:MAX_GROUP_CHARS]
    return hashlib.sha256(body.encode()).hexdigest()


def plan_calls(events: Sequence[OutgoingEvent]) -> Iterator[list[int]]:
    """Positions of `events` per batch call, in order, within the call's count and size limits."""
    call: list[int] = []
    size = 0
    for position, event in enumerate(events):
        event_bytes = len(_data(event.body)) + len(event.group.encode()) + sqs_attribute_bytes(event.origin)
        if call and (len(call) == MAX_EVENTS_PER_CALL or size + event_bytes > MAX_BYTES_PER_CALL):
            yield call
            call, size = [], 0
        call.append(position)
        size += event_bytes
    if call:
        yield call


def _data(body: str) -> bytes:
    # surrogateescape: a body read back from a stream as bytes that are not UTF-8 (see redrive.py)
    # goes out byte for byte.
    return body.encode("utf-8", "surrogateescape")


class FeaturesProducer:
    """Sends to the stage's features queue or stream; never raises for a refusal, reports it."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        # What an event without a group of its own is keyed by.
        self.key_field = producer_key_field(environment)
        # Fails here, with the source's name, when the queue or stream does not exist.
        self._sender = StageSender(environment, _CLIENT_CONFIG)
        self.name = self._sender.name

    def send(self, events: Sequence[OutgoingEvent]) -> list[SendOutcome]:
        """Send every event, in order, and return each one's outcome at its position."""
        outcomes: list[SendOutcome] = []
        # What goes out: a stream wraps a resent body with its origin, which counts in the calls' sizes.
        events = [self._sender.as_sent(event, self._event_group) for event in events]
        for call in plan_calls(events):
            batch = [events[position] for position in call]
            try:
                outcomes.extend(self._send_call(batch))
            except (ClientError, BotoCoreError) as error:
                # The whole call failed (after botocore's retries): each of its events is refused.
                reason = str(error)
                if isinstance(error, ClientError):
                    reason = error.response["Error"].get("Code", reason)
                outcomes.extend(SendOutcome(None, reason) for _ in batch)
        return outcomes

    def _event_group(self, body: str) -> str:
        return event_group(body, self.key_field)

    def _send_call(self, batch: Sequence[OutgoingEvent]) -> list[SendOutcome]:
        sent = self._sender.send_call(batch, self._event_group)
        return [SendOutcome(message_id, error) for message_id, error in sent]
