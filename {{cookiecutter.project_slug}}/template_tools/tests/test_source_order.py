# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Of two events of one key with the same event time, the one the source put later is the newer.

Event times have millisecond resolution, and a producer easily sends two events of one key in one
millisecond (one batch call). Each record's source_order says where the source put it, as text a
table compares byte by byte:
{%- if cookiecutter.input_source == "kinesis" %} a stream orders a partition key's records by sequence number.
{%- elif cookiecutter.input_source == "sqs-fifo" %} a FIFO queue orders a group's messages by SequenceNumber.
{%- else %} a standard queue keeps no order, so it is the message id (arbitrary, but
always the same).
{%- endif %}
{%- if cookiecutter.output_destination == "dynamodb" and cookiecutter.input_source != "sqs" %}

The table must keep the later event's prediction, whatever order the two are written in: the
handler runs through Chalice's test client against moto and the local endpoint.
{%- endif %}
{%- if cookiecutter.input_source == "sqs-fifo" %}

The local trigger must number a FIFO queue's records as SQS does, which moto does not.
{%- endif %}
"""

{% if cookiecutter.output_destination == "dynamodb" and cookiecutter.input_source != "sqs" %}import json
{% endif %}{% if cookiecutter.input_source == "sqs-fifo" %}import threading
import time
import uuid
{% endif %}{% if cookiecutter.output_destination == "dynamodb" and cookiecutter.input_source != "sqs" %}from dataclasses import dataclass
{% endif %}{% if cookiecutter.input_source != "sqs" and (cookiecutter.output_destination == "dynamodb" or cookiecutter.input_source == "sqs-fifo") %}
import boto3
{% endif %}import pytest
{%- if cookiecutter.output_destination == "dynamodb" and cookiecutter.input_source != "sqs" %}
from chalice.test import Client
{%- endif %}

from chalicelib.template_runtime import source
from chalicelib.template_runtime.feature_events import sequence_order
{%- if cookiecutter.input_source == "sqs-fifo" %}
from template_tools.emulator import ensure_queue
from template_tools.lambda_trigger import FunctionConfiguration, SqsTrigger
{%- endif %}
{%- if cookiecutter.output_destination == "dynamodb" and cookiecutter.input_source != "sqs" %}
from template_tools.stage import PROJECT_DIR

from .echo_inputs import echo_input
from .lambda_events import lambda_event
{%- endif %}


def test_sequence_numbers_of_any_length_sort_as_numbers_do():
    """Sequence numbers grow a digit now and then; as plain text "10" would sort before "9"."""
    numbers = ["9", "10", "0099", "18849496460467696128", "9" * 56, "1" + "0" * 56, "4" * 128, "0"]
    assert sorted(numbers, key=lambda number: sequence_order(number, "m-1")) == sorted(numbers, key=int)
    assert sequence_order("0099", "m-1") == sequence_order("99", "m-2"), "leading zeros change no number"


@pytest.mark.parametrize(
    "number", [None, "", "12a", "-5", "\u0661\u0662"], ids=["none", "empty", "hex", "sign", "arabic-indic"]
)
def test_without_a_decimal_sequence_number_the_message_id_stands_in(number):
    """A hand-made record without a usable number still gets an order, the same on every delivery."""
    assert sequence_order(number, "m-1") == "m-1"
{%- if cookiecutter.input_source == "sqs-fifo" %}


def fifo_record(message_id: str, sequence_number: str | None) -> dict:
    attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": "1764064900123", "MessageGroupId": "user-a"}
    if sequence_number is not None:
        attributes["SequenceNumber"] = sequence_number
    return {"messageId": message_id, "body": "{}", "attributes": attributes, "messageAttributes": {}}


def test_a_fifo_records_order_is_its_sequence_number_not_its_message_id():
    """Message ids are random UUIDs; the SequenceNumber grows in the group's send order."""
    older = source.delivery(fifo_record("f7a1c3e2-0000-4000-8000-000000000000", "99999999999999999999"))
    newer = source.delivery(fifo_record("0b6d9a4e-0000-4000-8000-000000000000", "100000000000000000000"))
    assert older.source_order < newer.source_order
    assert source.delivery(fifo_record("m-1", None)).source_order == "m-1"
{%- elif cookiecutter.input_source == "kinesis" %}


def test_a_stream_records_order_is_its_sequence_number_not_its_event_id():
    """The eventID holds the sequence number as text: "...:10" would sort before "...:9"."""
    records = [
        {"eventID": f"shardId-000000000000:{number}", "kinesis": {"sequenceNumber": number, "data": "e30="}}
        for number in ("9", "10")
    ]
    older, newer = (source.delivery(record) for record in records)
    assert older.source_order < newer.source_order
{%- else %}


def test_a_standard_queue_record_is_ordered_by_its_message_id():
    """A standard queue promises no order; the message id at least settles a tie the same way every time."""
    record = {"messageId": "m-1", "body": "{}", "attributes": {"ApproximateReceiveCount": "1"}}
    assert source.delivery(record).source_order == "m-1"
{%- endif %}
{%- if cookiecutter.output_destination == "dynamodb" and cookiecutter.input_source != "sqs" %}


# The handler and the table: two events of one key at the same instant.

HANDLER = "handle_feature_events"
SHARED_KEY = "user-tie"
EVENT_TIME = "2026-11-25T10:00:00.123Z"


@dataclass(frozen=True)
class SourceRecord:
    """One event as the source delivers it: its own id, the record's id and its sequence number."""

    event_id: str
    message_id: str
    sequence_number: str

    def body(self) -> str:
        envelope = {"event_id": self.event_id, "event_time": EVENT_TIME, "features": echo_input(0, key=SHARED_KEY)}
        return json.dumps(envelope)
{%- if cookiecutter.input_source == "sqs-fifo" %}


# Each pair: the older's message id is the greater UUID, so a tie settled by message id keeps the
# older; in the second, its sequence number also has fewer digits, so read as text it is greater.
PAIRS = {
    "same digit count": ("18849496460467696128", "18849496460467696129"),
    "one digit more": ("9" * 20, "1" + "0" * 20),
}


def same_millisecond_pair(older_number: str, newer_number: str) -> tuple[SourceRecord, SourceRecord]:
    return (
        SourceRecord("click-older", "f7a1c3e2-5b1d-4c8e-9f20-3a4b5c6d7e8f", older_number),
        SourceRecord("click-newer", "0b6d9a4e-2c3f-4d5a-8b6c-7d8e9f0a1b2c", newer_number),
    )


def lambda_records(client: Client, records: list[SourceRecord], delivered_before: set[str]) -> dict:
    """The records as Lambda hands a FIFO queue's messages over, in the key's message group."""
    event = lambda_event(client, [record.body() for record in records], [SHARED_KEY] * len(records))
    for lambda_record, record in zip(event["Records"], records, strict=True):
        lambda_record["messageId"] = record.message_id
        lambda_record["attributes"]["SequenceNumber"] = record.sequence_number
        lambda_record["attributes"]["ApproximateReceiveCount"] = "2" if record.message_id in delivered_before else "1"
    return event
{%- else %}


# Each pair: the older's sequence number has fewer digits, so read as text (and in its eventID)
# it is the greater; the second pair has the 56 digits a stream's numbers have, then 57.
PAIRS = {
    "9 then 10": ("9", "10"),
    "56 digits then 57": ("9" * 56, "1" + "0" * 56),
}


def same_millisecond_pair(older_number: str, newer_number: str) -> tuple[SourceRecord, SourceRecord]:
    return (
        SourceRecord("click-older", f"shardId-000000000000:{older_number}", older_number),
        SourceRecord("click-newer", f"shardId-000000000000:{newer_number}", newer_number),
    )


def lambda_records(client: Client, records: list[SourceRecord], delivered_before: set[str]) -> dict:
    """The records as Lambda hands a shard's records over, under the key's partition key.

    A stream's records carry no receive count: a record delivered again looks the same.
    """
    event = lambda_event(client, [record.body() for record in records], [SHARED_KEY] * len(records))
    for lambda_record, record in zip(event["Records"], records, strict=True):
        lambda_record["kinesis"]["sequenceNumber"] = record.sequence_number
        lambda_record["eventID"] = record.message_id
    return event
{%- endif %}


@pytest.fixture(params=list(PAIRS), ids=list(PAIRS))
def pair(request) -> tuple[SourceRecord, SourceRecord]:
    """The older and the newer event of SHARED_KEY, at the same instant."""
    return same_millisecond_pair(*PAIRS[request.param])


class Deliveries:
    """Hands batches of records to the handler, one invocation each, and reads the table back."""

    def __init__(self, chalice_app, pipeline, environment: dict[str, str]) -> None:
        self._app = chalice_app.app
        self._pipeline = pipeline
        self._environment = environment
        self._delivered: set[str] = set()

    def deliver(self, *records: SourceRecord) -> list[str]:
        """Invoke the handler on the records, which must settle them all; return the event ids it stored."""
        with Client(self._app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
            event = lambda_records(client, list(records), self._delivered)
            response = client.lambda_.invoke(HANDLER, event).payload
        assert response == {"batchItemFailures": []}
        self._delivered.update(record.message_id for record in records)
        return [envelope["event_id"] for envelope in self._pipeline.predictions()]

    def stored(self) -> dict:
        """The key's item as the table holds it now."""
        table, key_field = self._environment["PREDICTIONS_TABLE_NAME"], self._environment["PARTITION_KEY_FIELD"]
        return boto3.client("dynamodb").get_item(
            TableName=table, Key={key_field: {"S": SHARED_KEY}}, ConsistentRead=True
        )["Item"]

    def stored_event_id(self) -> str:
        return json.loads(self.stored()["envelope"]["S"])["event_id"]


@pytest.fixture
def deliveries(pipeline, chalice_app, stage) -> Deliveries:
    return Deliveries(chalice_app, pipeline, stage.environment_variables)


@pytest.mark.parametrize("batches", ["one batch", "two batches", "the newer first"])
def test_the_later_of_two_same_millisecond_events_is_kept_whichever_is_written_first(deliveries, pair, batches):
    """The table keeps the newer event's prediction, whether the two are written at once (the
    destination writes a batch's items concurrently), in order, or the older one last."""
    older, newer = pair
    if batches == "one batch":
        deliveries.deliver(older, newer)
    elif batches == "two batches":
        assert deliveries.deliver(older) == [older.event_id]
        assert deliveries.deliver(newer) == [newer.event_id], "the newer replaces the older"
    else:
        assert deliveries.deliver(newer) == [newer.event_id]
        assert deliveries.deliver(older) == [], "the older is refused"
    assert deliveries.stored_event_id() == newer.event_id


def test_the_older_of_two_same_millisecond_events_delivered_again_is_refused(deliveries, pair):
    """{% if cookiecutter.input_source == "sqs-fifo" %}SQS delivers a message again after an invocation failed or timed out{% else %}Lambda hands a shard's records over again after a batch failed{% endif %}: the older
    event's second delivery must not replace the newer one's prediction."""
    older, newer = pair
    deliveries.deliver(older, newer)
    assert deliveries.stored_event_id() == newer.event_id

    assert deliveries.deliver(older) == [], "nothing is written"
    assert deliveries.stored_event_id() == newer.event_id


def test_the_same_event_written_twice_changes_nothing(deliveries, pair):
    """A record delivered again after its prediction was stored is done with, not retried, and the
    item stays as it was (its expiry included)."""
    _, newer = pair
    deliveries.deliver(newer)
    stored = deliveries.stored()

    assert deliveries.deliver(newer) == []
    assert deliveries.stored() == stored
{%- endif %}
{%- if cookiecutter.input_source == "sqs-fifo" %}


# The local trigger: SequenceNumbers as SQS gives them.

FUNCTION = FunctionConfiguration(function_name="test-dev-handle_feature_events", timeout_seconds=10, memory_size_mb=512)
GROUPS = ("group-a", "group-b")
MESSAGES_PER_GROUP = 6
# Only stops a broken test hanging.
WAIT_SECONDS = 30


@pytest.mark.slow
def test_the_local_trigger_numbers_a_groups_records_in_send_order_and_keeps_each_number_on_redelivery(emulator):
    """moto gives a FIFO message 20 random digits (and only when the sender names a deduplication
    id); SQS's SequenceNumber grows in a group's send order and stays the message's own. The
    trigger must give the handler SQS's."""
    sqs = boto3.client("sqs")
    url = ensure_queue(sqs, f"features-{uuid.uuid4().hex[:8]}.fifo", VisibilityTimeout="2")
    sent: dict[str, list[str]] = {group: [] for group in GROUPS}
    for n in range(MESSAGES_PER_GROUP):
        for group in GROUPS:
            message = sqs.send_message(
                QueueUrl=url, MessageBody=f"{group}-{n}", MessageGroupId=group, MessageDeduplicationId=f"{group}-{n}"
            )
            sent[group].append(message["MessageId"])
    numbers: dict[str, list[str]] = {}
    lock = threading.Lock()

    def fail_all_but_the_first_on_first_delivery(event, context):
        # As the handler fails records of a FIFO source: one fails, and every later one is held back.
        records = event["Records"]
        with lock:
            for record in records:
                numbers.setdefault(record["messageId"], []).append(record["attributes"]["SequenceNumber"])
        failed = [record for record in records[1:] if record["attributes"]["ApproximateReceiveCount"] == "1"]
        return {"batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in failed]}

    trigger = SqsTrigger(
        fail_all_but_the_first_on_first_delivery,
        queue_url=url,
        function=FUNCTION,
        batch_size=4,
        maximum_concurrency=2,
        fifo=True,
        visibility_timeout_seconds=0.25,
    )
    with trigger as running:
        give_up = time.monotonic() + WAIT_SECONDS
        while running.stats.records_deleted < len(GROUPS) * MESSAGES_PER_GROUP:
            assert time.monotonic() < give_up, "the records were not all handled"
            time.sleep(0.05)

    assert any(len(delivered) > 1 for delivered in numbers.values()), "records failed and came back"
    for message_id, delivered in numbers.items():
        assert len(set(delivered)) == 1, f"{message_id} kept its number on every delivery: {delivered}"
    for group, message_ids in sent.items():
        in_send_order = [int(numbers[message_id][0]) for message_id in message_ids]
        assert in_send_order == sorted(in_send_order) and len(set(in_send_order)) == len(in_send_order), group
{%- endif %}
