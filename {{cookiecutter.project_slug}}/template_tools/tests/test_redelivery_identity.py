# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A record keeps its identity and its event time through `make redrive` and `make replay`.

Both send a record again, long after it first arrived, and the {% if cookiecutter.input_source == "kinesis" %}stream{% else %}queue{% endif %} gives the copy a new
{% if cookiecutter.input_source == "kinesis" %}eventID and a new arrival time{% else %}message id and a new SentTimestamp{% endif %}. It is still the same event: consumers drop
duplicates on its event_id, and a newest-wins destination orders it by its event time, so both
must be those of the first delivery. Each test runs the real handler (Chalice's test client), the
real redrive and replay code and the project's own source, in moto, with the local endpoint
serving the echo model.
"""

{% if cookiecutter.input_source == "kinesis" %}import base64
{% endif %}import json
import time
from datetime import UTC, datetime

import boto3
import pytest
from chalice.test import Client

from chalicelib.template_runtime import source
from chalicelib.template_runtime.feature_events import Delivery, FeatureEvent, parse_record
from chalicelib.template_runtime.redelivery import EventOrigin, unwrap, wrap
from template_tools import redrive, replay
from template_tools.emulator import REGION, Redelivery{% if cookiecutter.input_source != "kinesis" %}, queue_arn{% endif %}
from template_tools.endpoint_server import Fault
from template_tools.features_producer import FeaturesProducer, OutgoingEvent
{%- if cookiecutter.input_source == "kinesis" %}
from template_tools.kinesis_trigger import lambda_kinesis_record
{%- else %}
from template_tools.lambda_trigger import lambda_sqs_record
{%- endif %}
from template_tools.operator_progress import Progress
from template_tools.source import create_source
from template_tools.stage import PROJECT_DIR, stage_environment

from .echo_inputs import echo_body, echo_input, id_marker
from .lambda_events import message_id

HANDLER = "handle_feature_events"
# The key two events share where the destination keeps one prediction per key.
SHARED_KEY = "user-ab"


def moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
{%- if cookiecutter.input_source == "kinesis" %}


def delivered_at(record: dict) -> datetime:
    """When the stream took the record in, as its Lambda record says."""
    return datetime.fromtimestamp(float(record["kinesis"]["approximateArrivalTimestamp"]), tz=UTC)


class FeaturesSource:
    """The features stream, read as Lambda's trigger reads it: each record a Lambda record."""

    def __init__(self, environment: dict[str, str]) -> None:
        self._kinesis = boto3.client("kinesis")
        self.name = environment["FEATURES_STREAM_NAME"]
        self._arn = self._kinesis.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]["StreamARN"]
        self._iterators = {
            shard["ShardId"]: self._kinesis.get_shard_iterator(
                StreamName=self.name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for shard in self._kinesis.list_shards(StreamName=self.name)["Shards"]
        }

    def records(self) -> list[dict]:
        """The records put since the last call, shard after shard."""
        records = []
        for shard_id, iterator in self._iterators.items():
            while True:
                response = self._kinesis.get_records(ShardIterator=iterator)
                iterator = response["NextShardIterator"]
                records += [
                    lambda_kinesis_record(record, shard_id, self._arn, REGION, "arn:aws:iam::123456789012:role/test")
                    for record in response["Records"]
                ]
                if not response["Records"]:
                    break
            self._iterators[shard_id] = iterator
        return records

    def done(self, records: list[dict]) -> None:
        """Nothing to do: a stream keeps its records whatever the handler answered."""
{%- else %}


def delivered_at(record: dict) -> datetime:
    """When SQS took the message in, as its Lambda record says."""
    return datetime.fromtimestamp(int(record["attributes"]["SentTimestamp"]) / 1000, tz=UTC)


class FeaturesSource:
    """The features queue, read as Lambda's trigger reads it: each message a Lambda record."""

    def __init__(self, environment: dict[str, str]) -> None:
        self._sqs = boto3.client("sqs")
        self.url = self._sqs.get_queue_url(QueueName=environment["FEATURES_QUEUE_NAME"])["QueueUrl"]
        self._arn = queue_arn(self._sqs, self.url)

    def records(self) -> list[dict]:
        """Every message waiting, received (hidden, not deleted) as the records of one Lambda event."""
        messages = []
        while batch := self._sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages"):
            messages += batch
        return [lambda_sqs_record(message, self._arn, REGION) for message in messages]

    def done(self, records: list[dict]) -> None:
        """Delete what the handler is done with, as Lambda does after a successful invocation."""
        for record in records:
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=record["receiptHandle"])

    def give_back(self, records: list[dict]) -> None:
        """Make the messages visible again at once, as when an invocation times out."""
        for record in records:
            self._sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )
{%- endif %}


class Flow:
    """Sends events to the features source, delivers them to the handler, redrives the dead letters."""

    def __init__(self, pipeline, chalice_app, environment: dict[str, str]) -> None:
        self.pipeline = pipeline
        self.environment = environment
        self.source = FeaturesSource(environment)
        self._app = chalice_app.app

    def send(self, *bodies: str, group: str = "") -> None:
        outcomes = FeaturesProducer(self.environment).send([OutgoingEvent(body, group) for body in bodies])
        assert all(outcome.message_id for outcome in outcomes), outcomes

    def deliver(self) -> list[dict]:
        """Hand every record waiting to the handler in one invocation, which must settle them all."""
        records = self.source.records()
        assert records, "nothing was waiting on the features source"
        with Client(self._app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
            response = client.lambda_.invoke(HANDLER, {"Records": records}).payload
        assert response == {"batchItemFailures": []}
        self.source.done(records)
        return records

    def redrive(self) -> None:
        queue = redrive.DeadLetterQueue(self.environment, wait_seconds=0)
        report = redrive.redrive(queue, FeaturesProducer(self.environment), Progress("redriving", None, None))
        assert report.moved and not report.left_behind, report.lines()

    def dead_letters(self) -> list[dict]:
        """The dead-letter queue's messages with their attributes, left where they are."""
        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName=self.environment["DEAD_LETTER_QUEUE_NAME"])["QueueUrl"]
        messages = []
        while batch := sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, MessageAttributeNames=["All"]
        ).get("Messages"):
            messages += batch
        for message in messages:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
        return messages


@pytest.fixture
def flow(pipeline, chalice_app, stage) -> Flow:
    """The dev stage's features source next to the destination and dead-letter queue of `pipeline`.

    One receive before SQS's own redrive policy moves a message, so a test can make it do so.
    """
    environment = stage.environment_variables
    create_source(environment, Redelivery(max_receive_count=1, visibility_timeout_seconds=0))
    return Flow(pipeline, chalice_app, environment)


def dead_lettered_once(flow: Flow, endpoint, number: int, **fields) -> dict:
    """Send echo input `number`, have the model refuse it on its first delivery; return that delivery's record."""
    fault = Fault(error="ModelError", match=id_marker(number))
    endpoint.inject(fault)
    flow.send(echo_body(number, **fields))
    (record,) = flow.deliver()
    endpoint.withdraw(fault)
    assert flow.pipeline.predictions() == []
    return record


def test_a_redriven_record_keeps_the_event_id_and_event_time_of_its_first_delivery(flow, endpoint):
    """A bare input's identity is its first delivery's id, its time that delivery's arrival."""
    first = dead_lettered_once(flow, endpoint, 1)

    flow.redrive()
    (again,) = flow.deliver()

    (envelope,) = flow.pipeline.predictions()
    assert message_id(again) != message_id(first), "the copy is a delivery of its own"
    assert envelope["event_id"] == message_id(first)
    assert moment(envelope["event_time"]) == delivered_at(first)


def test_a_record_that_fails_again_after_a_redrive_is_dead_lettered_as_it_first_was(flow, endpoint):
    """The dead-letter record names the event and its time beside the original body, so a second
    redrive still sends the same event; the body stays the producer's bytes."""
    body = echo_body(2)
    first = dead_lettered_once(flow, endpoint, 2)
    fault = Fault(error="ModelError", match=id_marker(2))
    endpoint.inject(fault)
    flow.redrive()
    flow.deliver()

    (dead,) = flow.dead_letters()
    attributes = {name: value["StringValue"] for name, value in dead["MessageAttributes"].items()}
    assert dead["Body"] == body
    assert attributes["event_id"] == message_id(first)
    assert moment(attributes["event_time"]) == delivered_at(first)

    endpoint.withdraw(fault)
    flow.redrive()
    flow.deliver()
    (envelope,) = flow.pipeline.predictions()
    assert (envelope["event_id"], moment(envelope["event_time"])) == (message_id(first), delivered_at(first))


def test_an_older_event_redriven_after_a_newer_one_stays_the_older(flow, endpoint):
    """The issue's case: B (newer) is {% if cookiecutter.output_destination == "dynamodb" %}stored{% else %}published{% endif %}, then the older A is redriven{% if cookiecutter.output_destination == "dynamodb" %}; the table keeps B{% endif %}."""
    a_first = dead_lettered_once(flow, endpoint, 1, key=SHARED_KEY)
    # B arrives in a later millisecond than A did.
    while datetime.now(UTC) <= delivered_at(a_first):
        time.sleep(0.001)
    flow.send(echo_body(2, key=SHARED_KEY))
    (b_first,) = flow.deliver()
    (b,) = flow.pipeline.predictions()
    assert delivered_at(b_first) > delivered_at(a_first)

    flow.redrive()
    flow.deliver()
{%- if cookiecutter.output_destination == "dynamodb" %}

    assert flow.pipeline.predictions() == [], "A is older than the stored B: nothing is written"
    table, key_field = flow.environment["PREDICTIONS_TABLE_NAME"], flow.environment["PARTITION_KEY_FIELD"]
    item = boto3.client("dynamodb").get_item(TableName=table, Key={key_field: {"S": SHARED_KEY}}, ConsistentRead=True)
    assert json.loads(item["Item"]["envelope"]["S"])["event_id"] == b["event_id"]
{%- else %}

    (a,) = flow.pipeline.predictions()
    assert a["event_id"] == message_id(a_first)
    assert moment(a["event_time"]) < moment(b["event_time"]), "consumers can still tell A came first"
{%- endif %}


def test_a_replayed_export_keeps_the_event_id_and_event_time(flow, endpoint, stage, tmp_path, capsys):
    """An export taken with `make redrive DRY_RUN=1 EXPORT=...` replays the same events, not new ones."""
    first = dead_lettered_once(flow, endpoint, 3)
    export = tmp_path / "dead-letters.jsonl"
    with stage_environment(stage):
        assert redrive.main(["--dry-run", "--export", str(export)]) == 0
        assert replay.main([str(export)]) == 0
    assert "sent     1" in capsys.readouterr().out

    flow.deliver()

    (envelope,) = flow.pipeline.predictions()
    assert (envelope["event_id"], moment(envelope["event_time"])) == (message_id(first), delivered_at(first))
{%- if cookiecutter.input_source == "kinesis" %}


def test_records_an_on_failure_range_puts_back_keep_their_event_ids_so_consumers_drop_them(flow):
    """The trigger's on-failure message names a whole range: the redrive puts every record of it
    back, including those already published. Their copies must be recognisable as duplicates."""
    flow.send(*[echo_body(n, key="user-r") for n in range(3)], group="user-r")
    first = flow.deliver()
    published = flow.pipeline.predictions()
    assert len(published) == 3
    shard_id = first[0]["eventID"].partition(":")[0]
    sequence_numbers = [record["kinesis"]["sequenceNumber"] for record in first]
    batch = {
        "shardId": shard_id,
        "startSequenceNumber": sequence_numbers[0],
        "endSequenceNumber": sequence_numbers[-1],
        "batchSize": 3,
    }
    sqs = boto3.client("sqs")
    dead_letter_url = sqs.get_queue_url(QueueName=flow.environment["DEAD_LETTER_QUEUE_NAME"])["QueueUrl"]
    sqs.send_message(QueueUrl=dead_letter_url, MessageBody=json.dumps({"KinesisBatchInfo": batch}))

    flow.redrive()
    again = flow.deliver()

    copies = flow.pipeline.predictions()
    assert {record["eventID"] for record in again}.isdisjoint(record["eventID"] for record in first)
    assert sorted((e["event_id"], e["event_time"]) for e in copies) == sorted(
        (e["event_id"], e["event_time"]) for e in published
    )
{%- else %}


def test_a_record_the_queue_moved_itself_keeps_the_id_and_time_it_was_sent_with(flow):
    """A record SQS's redrive policy moved (after timeouts, say) carries no handler attributes:
    its dead-letter message keeps the original message id{% if cookiecutter.input_source == "sqs" %} and enqueue time{% endif %}, and the redrive uses them.
    {%- if cookiecutter.input_source == "sqs-fifo" %} (On AWS a FIFO queue
    resets the enqueue time when it moves a message; moto keeps it, so this checks the id and the
    time the message carries.){% endif %}"""
    flow.send(echo_body(4))
    (first,) = flow.source.records()
    flow.source.give_back([first])
    assert flow.source.records() == [], "the second receive is past maxReceiveCount: SQS moved it"

    flow.redrive()
    flow.deliver()

    (envelope,) = flow.pipeline.predictions()
    assert (envelope["event_id"], moment(envelope["event_time"])) == (message_id(first), delivered_at(first))
{%- endif %}


# The format's pieces, one by one.


def test_an_envelopes_own_event_id_and_time_win_over_those_a_copy_carries():
    """The envelope is the producer's word on its event; what a copy carries only stands in for a bare input."""
    body = json.dumps({"event_id": "click-1", "event_time": "2026-11-25T10:00:00.000Z", "features": echo_input(1)})
    origin = EventOrigin("m-1", "2026-11-25T09:00:00.000Z")
    event = parse_record(Delivery("m-2", "m-2", body, 1, 1_800_000_000_000, origin=origin), max_record_bytes=10_000)
    assert isinstance(event, FeatureEvent)
    assert (event.event_id, event.event_time) == ("click-1", "2026-11-25T10:00:00.000Z")


def test_a_carried_time_that_is_no_iso_8601_is_dropped_and_the_id_kept():
    """A hand-made copy with a bad time counts from its arrival rather than failing."""
    assert EventOrigin.read("m-1", "yesterday") == EventOrigin("m-1", "")
    assert EventOrigin.read("m-1", "2026-11-25T10:00:00+01:00") == EventOrigin("m-1", "2026-11-25T09:00:00.000Z")
    assert EventOrigin.read("", "2026-11-25T10:00:00Z") is None


@pytest.mark.parametrize(
    "body",
    ['{"id": "rec-1"}', "not json: caf\u00e9 \u2713", b"\xff\xfe not utf-8".decode("utf-8", "surrogateescape")],
    ids=["json", "text", "bytes-not-utf-8"],
)
def test_a_wrapped_body_comes_back_exactly(body):
    """The wrapper must not change one byte of what it carries, text or not."""
    origin = EventOrigin("shardId-000000000000:7", "2026-11-25T10:00:00.000Z")
    wrapped = wrap(body, origin)
    wrapped.encode("utf-8")
    assert unwrap(wrapped) == (body, origin)


@pytest.mark.parametrize(
    "body",
    [
        '{"redelivered": "not an object", "body": "x"}',
        '{"redelivered": {"event_id": "e-1"}, "body": "x", "user_id": "u-1"}',
        '{"redelivered": {"event_id": ""}, "body": "x"}',
        '{"redelivered": {"event_id": "e-1"}, "body": 7}',
    ],
    ids=["not-an-object", "more-keys", "no-id", "body-not-text"],
)
def test_a_body_that_only_looks_like_a_wrapper_is_left_as_it_is(body):
    """A team's input that happens to use these names reaches the model unchanged."""
    assert unwrap(body) == (body, None)
{%- if cookiecutter.input_source == "kinesis" %}


def test_a_copy_of_a_record_that_was_not_utf8_is_still_refused_with_its_exact_bytes():
    """Bytes that were not text stay refused (InvalidEncoding) after a redrive, kept exactly, and keep their event."""
    raw = b"\xff\xfe not text"
    origin = EventOrigin("shardId-000000000000:1", "2026-11-25T10:00:00.000Z")
    data = wrap(raw.decode("utf-8", "surrogateescape"), origin)
    record = {
        "eventID": "shardId-000000000000:9",
        "kinesis": {
            "data": base64.b64encode(data.encode()).decode(),
            "sequenceNumber": "9",
            "partitionKey": "k",
            "approximateArrivalTimestamp": 1764064900.123,
        },
    }
    delivery = source.delivery(record)
    assert delivery.encoding_problem
    assert base64.b64decode(delivery.body) == raw
    assert (delivery.event_id, delivery.event_time) == ("shardId-000000000000:1", "2026-11-25T10:00:00.000Z")
    assert delivery.sent_timestamp_ms == 1764064900123, "the arrival's milliseconds, not one less"
{%- else %}


def test_a_copy_names_its_first_delivery_in_message_attributes():
    """What Lambda hands over for a message with the two attributes (stringValue, camel case)."""
    record = {
        "messageId": "m-2",
        "body": "{}",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764064900123"},
        "messageAttributes": {
            "original_event_id": {"stringValue": "m-1", "dataType": "String"},
            "original_event_time": {"stringValue": "2026-11-25T10:00:00.000Z", "dataType": "String"},
        },
    }
    delivery = source.delivery(record)
    assert (delivery.message_id, delivery.event_id, delivery.event_time) == ("m-2", "m-1", "2026-11-25T10:00:00.000Z")
    assert source.delivery(record | {"messageAttributes": {}}).event_id == "m-2"
{%- endif %}
