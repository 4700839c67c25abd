# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The Kinesis prediction destination: PutRecords within its limits, exact failures, one shard per key."""

import hashlib
import json
from collections import defaultdict

import boto3
import pytest
from moto import mock_aws

from chalicelib.template_runtime.destination import MAX_MESSAGE_BYTES, prediction_sink
from chalicelib.template_runtime.publishing import OutgoingMessage
from template_tools.destination import PredictionReader, create_destination, refuse_predictions
from template_tools.sink_faults import fail_calls
from template_tools.stage import stage_environment


@pytest.fixture
def environment(aws_credentials, stage):
    """The dev stage's environment, with its predictions stream in moto."""
    with mock_aws(), stage_environment(stage):
        create_destination(stage.environment_variables)
        yield stage.environment_variables


@pytest.fixture
def session_events(environment):
    """The default session's events: handlers registered here reach the sink's client."""
    boto3.setup_default_session()
    return boto3.DEFAULT_SESSION.events


def prediction(n: int, body_bytes: int = 0, user: str | None = None) -> OutgoingMessage:
    body = json.dumps({"message_id": f"m-{n}", "n": n, "padding": "x" * body_bytes})
    return OutgoingMessage(key=f"m-{n}", body=body, attributes={"model_version": "7"}, group=user or f"user-{n % 5}")


def test_a_batch_larger_than_one_call_is_split_and_every_prediction_arrives(environment, executor):
    """PutRecords takes 500 records and 5 MiB (moto checks both); a bigger batch must be split."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(620)] + [prediction(n, 900_000) for n in range(620, 632)]
    assert prediction_sink(executor).send(messages) == {}
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(m.key for m in messages)


def test_one_refused_record_is_reported_and_the_rest_arrive(environment, session_events, executor):
    """A partial PutRecords failure (ErrorCode on one record) must name exactly that message."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(12)]
    with refuse_predictions(session_events, lambda record: '"m-4"' in record["body"]):
        failed = prediction_sink(executor).send(messages)
    assert list(failed) == ["m-4"]
    assert "InternalFailure" in failed["m-4"].reason
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(
        m.key for m in messages if m.key != "m-4"
    )


def test_a_failed_call_fails_each_of_its_predictions_and_only_those(environment, session_events, executor):
    """A call that fails whole must report its messages, not raise and not take other calls down."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(510)]
    with fail_calls(
        session_events, "kinesis.PutRecords", lambda params: any(b'"m-505"' in r["Data"] for r in params["Records"])
    ):
        failed = prediction_sink(executor).send(messages)
    assert set(failed) == {f"m-{n}" for n in range(500, 510)}
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(f"m-{n}" for n in range(500))


def test_a_missing_stream_fails_every_prediction_instead_of_raising(aws_credentials, stage, executor):
    """The handler turns failures into retries; an exception would fail the whole Lambda batch."""
    with mock_aws(), stage_environment(stage):
        failed = prediction_sink(executor).send([prediction(1), prediction(2)])
    assert set(failed) == {"m-1", "m-2"}
    assert all("ResourceNotFound" in failure.reason for failure in failed.values())


def test_the_predictions_of_one_key_land_on_one_shard_in_order(environment, executor):
    """Consumers rely on reading a user's predictions in the order they were made."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(60)]
    assert prediction_sink(executor).send(messages) == {}
    shards, order = defaultdict(set), defaultdict(list)
    for record in reader.read_records():
        shards[record["PartitionKey"]].add(record["ShardId"])
        order[record["PartitionKey"]].append(json.loads(record["Data"])["n"])
    assert set(shards) == {f"user-{k}" for k in range(5)}
    assert all(len(shard_ids) == 1 for shard_ids in shards.values())
    assert len(set().union(*shards.values())) == 2, "the keys spread over both shards"
    assert all(numbers == sorted(numbers) for numbers in order.values())


def test_a_key_longer_than_kinesis_allows_is_hashed_to_a_stable_partition_key(environment, executor):
    """Partition keys take 256 characters; a longer key value must still keep to one shard."""
    reader = PredictionReader(environment)
    long_user = "u" * 300
    assert prediction_sink(executor).send([prediction(1, user=long_user), prediction(2, user=long_user)]) == {}
    records = reader.read_records()
    assert {record["PartitionKey"] for record in records} == {hashlib.sha256(long_user.encode()).hexdigest()}
    assert [json.loads(record["Data"])["n"] for record in records] == [1, 2]


def test_a_prediction_of_the_largest_size_the_handler_lets_through_is_accepted(environment, executor):
    """The handler dead-letters predictions above MAX_MESSAGE_BYTES; anything up to it must publish."""
    reader = PredictionReader(environment)
    largest = prediction(1, MAX_MESSAGE_BYTES - prediction(1).size(), user="é" * 256)
    assert largest.size() == MAX_MESSAGE_BYTES
    assert prediction_sink(executor).send([largest]) == {}
    assert [envelope["message_id"] for envelope in reader.read()] == ["m-1"]


def test_creating_the_destination_twice_is_harmless(environment):
    """Local mode creates it on every run, against an emulator that may already have it."""
    create_destination(environment)
    kinesis = boto3.client("kinesis")
    assert kinesis.list_streams()["StreamNames"] == [environment["PREDICTIONS_STREAM_NAME"]]
