# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Sends event bodies to a stage's existing features {{ "stream" if cookiecutter.input_source == "kinesis" else "queue" }} the way producers do, for the operator commands.

Unlike the local pipeline's EventSender (source.py), it finds a {{ "stream" if cookiecutter.input_source == "kinesis" else "queue" }} that already exists (in AWS,
or in the emulator AWS_ENDPOINT_URL names), splits any number of events into batch calls, and
reports why each refused event was refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

{% if cookiecutter.input_source != "kinesis" -%}
from chalicelib.template_runtime.aws_limits import SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES
{% endif -%}
from chalicelib.template_runtime.feature_events import is_envelope

# The field producers key events by: {% if cookiecutter.input_source == "kinesis" %}the Kinesis partition key{% elif cookiecutter.input_source == "sqs-fifo" %}the FIFO message group{% else %}a standard queue has no groups, but a redrive
# to a FIFO or Kinesis source in another project needs one{% endif %}. The producer takes
# the stage's PARTITION_KEY_FIELD when the stage sets it; this is the project's answer otherwise.
PARTITION_KEY_FIELD = {{ cookiecutter.partition_key_field | tojson }}
{%- if cookiecutter.input_source == "kinesis" %}
# PutRecords takes at most 500 records and 5 MiB per call.
MAX_EVENTS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
# A partition key is at most 256 characters.
MAX_GROUP_CHARS = 256
{%- else %}
MAX_EVENTS_PER_CALL = SQS_MAX_BATCH_ENTRIES
MAX_BYTES_PER_CALL = SQS_MAX_BATCH_BYTES
# A MessageGroupId is at most 128 characters.
MAX_GROUP_CHARS = 128
{%- endif %}
_CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 5})


@dataclass(frozen=True)
class OutgoingEvent:
    """One body to send, byte for byte, and where it goes."""

    body: str
    # {% if cookiecutter.input_source == "kinesis" %}The partition key: a key's events stay on one shard, in order.{% elif cookiecutter.input_source == "sqs-fifo" %}The MessageGroupId: a group's events are handed over in order.{% else %}Not used by a standard queue.{% endif %}
    group: str = ""
    # A FIFO queue's MessageDeduplicationId (SQS drops a message whose id it has seen in the last
    # 5 minutes); {% if cookiecutter.input_source == "sqs-fifo" %}empty: a hash of the body{% else %}not used by this source{% endif %}.
    deduplication_id: str = ""


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
        event_bytes = len(_data(event.body)) + len(event.group.encode())
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
    """Sends to the stage's features {{ "stream" if cookiecutter.input_source == "kinesis" else "queue" }}; never raises for a refusal, reports it."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        # What an event without a group of its own is keyed by.
        self.key_field = producer_key_field(environment)
{%- if cookiecutter.input_source == "kinesis" %}
        self._kinesis = boto3.client("kinesis", config=_CLIENT_CONFIG)
        self.name = environment["FEATURES_STREAM_NAME"]
        # Fails here, with the stream's name, when the stream does not exist.
        self._kinesis.describe_stream_summary(StreamName=self.name)
{%- else %}
        self._sqs = boto3.client("sqs", config=_CLIENT_CONFIG)
        self.name = environment["FEATURES_QUEUE_NAME"]
        # Fails here, with the queue's name, when the queue does not exist.
        self._url = self._sqs.get_queue_url(QueueName=self.name)["QueueUrl"]
{%- endif %}

    def send(self, events: Sequence[OutgoingEvent]) -> list[SendOutcome]:
        """Send every event, in order, and return each one's outcome at its position."""
        outcomes: list[SendOutcome] = []
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
{%- if cookiecutter.input_source == "kinesis" %}

    def _send_call(self, batch: Sequence[OutgoingEvent]) -> list[SendOutcome]:
        response = self._kinesis.put_records(
            StreamName=self.name,
            Records=[
                {"Data": _data(event.body), "PartitionKey": event.group or event_group(event.body, self.key_field)}
                for event in batch
            ],
        )
        # The same id the handler sees: the record's eventID.
        return [
            SendOutcome(None, f"{entry['ErrorCode']}: {entry.get('ErrorMessage', '')}")
            if "ErrorCode" in entry
            else SendOutcome(f"{entry['ShardId']}:{entry['SequenceNumber']}")
            for entry in response["Records"]
        ]
{%- else %}

    def _send_call(self, batch: Sequence[OutgoingEvent]) -> list[SendOutcome]:
        entries = []
        for position, event in enumerate(batch):
            entry = {"Id": str(position), "MessageBody": event.body}
{%- if cookiecutter.input_source == "sqs-fifo" %}
            entry["MessageGroupId"] = event.group or event_group(event.body, self.key_field)
            entry["MessageDeduplicationId"] = event.deduplication_id or hashlib.sha256(event.body.encode()).hexdigest()
{%- endif %}
            entries.append(entry)
        response = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
        outcomes = [SendOutcome(None, "not in the response")] * len(batch)
        for entry in response.get("Successful", []):
            outcomes[int(entry["Id"])] = SendOutcome(entry["MessageId"])
        for entry in response.get("Failed", []):
            outcomes[int(entry["Id"])] = SendOutcome(None, f"{entry['Code']}: {entry.get('Message', '')}")
        return outcomes
{%- endif %}
