# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Local mode's Kinesis source: the stream it creates, what its producer sends, how dead letters map back."""

import json
import time

import boto3
import pytest
from moto import mock_aws

from template_tools.emulator import Redelivery
from template_tools.lambda_trigger import FunctionConfiguration
from template_tools.source import (
    LOCAL_SHARD_COUNT,
    EventSender,
    create_source,
    dead_lettered_message_ids,
    local_trigger,
    record_body,
    record_message_id,
)

ENVIRONMENT = {"FEATURES_STREAM_NAME": "features-test", "DEAD_LETTER_QUEUE_NAME": "dead-letters-test"}
# Only stops a broken test hanging.
WAIT_SECONDS = 30
FUNCTION = FunctionConfiguration(function_name="test-dev-handle_feature_events", timeout_seconds=10, memory_size_mb=512)


@pytest.fixture
def aws(aws_credentials):
    with mock_aws():
        yield


def test_the_stream_and_its_dead_letter_queue_exist_once_however_often_they_are_created(aws):
    """Local runs are repeated against one emulator: a second create_source must change nothing."""
    first = create_source(ENVIRONMENT, Redelivery())
    assert create_source(ENVIRONMENT, Redelivery()) == first

    shards = boto3.client("kinesis").list_shards(StreamName=first.stream_name)["Shards"]
    assert len(shards) == LOCAL_SHARD_COUNT
    assert boto3.client("sqs").list_queues()["QueueUrls"] == [first.dead_letter_url]


def test_the_sender_returns_the_event_ids_lambda_gives_the_records(aws):
    """The ledger tracks what the sender returns: it must be the eventID the handler's records carry."""
    source = create_source(ENVIRONMENT, Redelivery())
    bodies = [json.dumps({"event_id": f"e-{n}"}) for n in range(6)]
    keys = [f"user-{n % 3}" for n in range(6)]
    sent = EventSender(source).send(bodies, keys)

    kinesis = boto3.client("kinesis")
    delivered = {}
    for shard in kinesis.list_shards(StreamName=source.stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=source.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in kinesis.get_records(ShardIterator=iterator)["Records"]:
            event_id = f"{shard['ShardId']}:{record['SequenceNumber']}"
            delivered[event_id] = (record["Data"].decode(), record["PartitionKey"])
    assert delivered == {message_id: (body, key) for message_id, body, key in zip(sent, bodies, keys, strict=True)}


def test_the_trigger_gives_up_after_the_deliveries_local_mode_allows_and_reports_to_the_dead_letter_queue(aws):
    """maxReceiveCount deliveries become MaximumRetryAttempts (deliveries - 1); then the DLQ gets the metadata."""
    source = create_source(ENVIRONMENT, Redelivery(max_receive_count=3))
    [message_id] = EventSender(source).send(["poison"], ["user-1"])

    def always_fail(event, context):
        return {"batchItemFailures": [{"itemIdentifier": r["kinesis"]["sequenceNumber"]} for r in event["Records"]]}

    trigger = local_trigger(
        always_fail,
        source,
        FUNCTION,
        batch_size=10,
        batching_window_seconds=0,
        maximum_concurrency=5,
        redelivery=Redelivery(max_receive_count=3),
    )
    with trigger:
        give_up = time.monotonic() + WAIT_SECONDS
        while not trigger.stats.batches_to_failure_destination:
            assert time.monotonic() < give_up, "the trigger never gave up"
            time.sleep(0.05)

    assert trigger.stats.invocations == 3
    [dead_letter] = boto3.client("sqs").receive_message(QueueUrl=source.dead_letter_url)["Messages"]
    assert dead_lettered_message_ids(dead_letter, {message_id}) == [message_id]


def test_a_trigger_dead_letter_stands_for_every_sent_record_of_its_range_and_no_other():
    """Lambda's on-failure message names a shard and a sequence number range, not the records."""
    sent = {"shardId-000000000000:5", "shardId-000000000000:7", "shardId-000000000000:9", "shardId-000000000001:7"}
    batch = {"shardId": "shardId-000000000000", "startSequenceNumber": "6", "endSequenceNumber": "9"}
    body = {"KinesisBatchInfo": batch}

    found = dead_lettered_message_ids({"MessageId": "dlq-1", "Body": json.dumps(body)}, sent)

    assert sorted(found) == ["shardId-000000000000:7", "shardId-000000000000:9"]


def test_a_handler_dead_letter_stands_for_the_record_it_names():
    """The handler's own dead letters carry the record's eventID."""
    message = {"MessageId": "dlq-1", "Body": "not json", "MessageAttributes": {
        "source_message_id": {"StringValue": "shardId-000000000000:5"}}}  # fmt: skip
    assert dead_lettered_message_ids(message, {"shardId-000000000000:5"}) == ["shardId-000000000000:5"]


def test_a_record_is_known_by_its_event_id_and_its_body_is_the_decoded_data():
    """Fault injection finds events in delivered records by these two."""
    record = {"eventID": "shardId-000000000000:5", "kinesis": {"data": "eyJhIjogMX0="}}
    assert (record_message_id(record), record_body(record)) == ("shardId-000000000000:5", '{"a": 1}')
