# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The DynamoDB prediction destination: newest-wins conditional writes, exact failures, TTL."""

import json
import logging
import time

import boto3
import pytest
from moto import mock_aws

from chalicelib.template_runtime.destination import MAX_MESSAGE_BYTES, prediction_sink
from chalicelib.template_runtime.publishing import OutgoingMessage
from template_tools.destination import PredictionReader, create_destination, refuse_predictions
from template_tools.stage import stage_environment

TTL_SECONDS = {{ cookiecutter.prediction_ttl_days }} * 24 * 3600


@pytest.fixture
def environment(aws_credentials, stage):
    """The dev stage's environment, with its predictions table in moto."""
    with mock_aws(), stage_environment(stage):
        create_destination(stage.environment_variables)
        yield stage.environment_variables


@pytest.fixture
def session_events(environment):
    """The default session's events: handlers registered here reach the sink's client."""
    boto3.setup_default_session()
    return boto3.DEFAULT_SESSION.events


def prediction(
    n: int, user: str | None = None, event_time_ms: int | None = 1_000, body_bytes: int = 0
) -> OutgoingMessage:
    body = json.dumps({"message_id": f"m-{n}", "n": n, "padding": "x" * body_bytes})
    return OutgoingMessage(
        key=f"m-{n}",
        body=body,
        attributes={"model_version": "7"},
        group=user or f"user-{n}",
        event_time_ms=event_time_ms,
    )


def stored(environment, user: str) -> dict | None:
    table = environment["PREDICTIONS_TABLE_NAME"]
    key = {environment["PARTITION_KEY_FIELD"]: {"S": user}}
    return boto3.client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")


def test_a_batch_larger_than_one_call_is_written_item_by_item_and_every_prediction_is_stored(environment, executor):
    """Conditional writes are one PutItem each; all of them must land, run concurrently."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(40)]
    assert prediction_sink(executor).send(messages) == {}
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(m.key for m in messages)
    item = stored(environment, "user-3")
    assert json.loads(item["envelope"]["S"])["n"] == 3
    assert item["message_id"]["S"] == "m-3"
    assert item["event_time_ms"]["N"] == "1000"


def test_one_refused_write_is_reported_and_the_rest_are_stored(environment, session_events, executor):
    """A failed PutItem must name exactly its message; the others still count as published."""
    messages = [prediction(n) for n in range(12)]
    with refuse_predictions(session_events, lambda item: item["group"] == "user-4"):
        failed = prediction_sink(executor).send(messages)
    assert list(failed) == ["m-4"]
    assert "InternalServerError" in failed["m-4"].reason
    assert stored(environment, "user-4") is None
    assert all(stored(environment, f"user-{n}") for n in range(12) if n != 4)


def test_a_missing_table_fails_every_prediction_instead_of_raising(aws_credentials, stage, executor):
    """The handler turns failures into retries; an exception would fail the whole Lambda batch."""
    with mock_aws(), stage_environment(stage):
        failed = prediction_sink(executor).send([prediction(1), prediction(2)])
    assert set(failed) == {"m-1", "m-2"}
    assert all("ResourceNotFound" in failure.reason for failure in failed.values())


def test_an_older_event_arriving_after_a_newer_one_does_not_overwrite_it(environment, executor, caplog):
    """Sources redeliver and reorder; the table must still hold each user's latest prediction."""
    reader = PredictionReader(environment)
    sink = prediction_sink(executor)
    assert sink.send([prediction(2, user="user-a", event_time_ms=2_000)]) == {}
    with caplog.at_level(logging.INFO):
        assert sink.send([prediction(1, user="user-a", event_time_ms=1_000)]) == {}
    assert json.loads(stored(environment, "user-a")["envelope"]["S"])["n"] == 2
    assert [envelope["n"] for envelope in reader.read()] == [2]
    assert reader.newer_prediction_stored("user-a", 1_000, "m-1")
    assert not reader.newer_prediction_stored("user-a", 3_000, "m-3")
    # The stored prediction's own record is not superseded (its write is in the stream); another
    # record of the same millisecond, which the handler is done with, is: the table kept the other.
    assert not reader.newer_prediction_stored("user-a", 2_000, "m-2")
    assert reader.newer_prediction_stored("user-a", 2_000, "m-1")
    assert reader.newer_prediction_stored("user-a", 2_000, "m-9")
    superseded = [json.loads(r.getMessage()) for r in caplog.records if "prediction_superseded" in r.getMessage()]
    assert superseded == [{"event": "prediction_superseded", "message_id": "m-1"}], "ids only, never features"


def test_a_newer_event_replaces_the_stored_prediction(environment, executor):
    """Newest wins in both directions: a later event must not be kept out by an earlier one."""
    sink = prediction_sink(executor)
    assert sink.send([prediction(1, user="user-a", event_time_ms=1_000)]) == {}
    assert sink.send([prediction(2, user="user-a", event_time_ms=2_000)]) == {}
    assert json.loads(stored(environment, "user-a")["envelope"]["S"])["n"] == 2


@pytest.mark.parametrize("order", [(1, 2), (2, 1)], ids=["in order", "reversed"])
def test_events_of_the_same_millisecond_keep_the_same_prediction_in_any_order(environment, executor, order):
    """A tie must not depend on arrival order: redeliveries and concurrent writes reorder events."""
    sink = prediction_sink(executor)
    for n in order:
        assert sink.send([prediction(n, user="user-a", event_time_ms=5_000)]) == {}
    assert json.loads(stored(environment, "user-a")["envelope"]["S"])["n"] == 2, "m-2 sorts after m-1"


def test_the_same_event_written_twice_is_not_a_failure(environment, executor):
    """A record redelivered after its prediction was stored must not be retried forever."""
    reader = PredictionReader(environment)
    sink = prediction_sink(executor)
    message = prediction(1, user="user-a")
    assert sink.send([message]) == {}
    assert sink.send([message]) == {}
    assert [envelope["message_id"] for envelope in reader.read()] == ["m-1"]


def test_every_prediction_expires_after_the_configured_days(environment, executor):
    """Old predictions must not pile up: DynamoDB's TTL deletes items past expires_at."""
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=environment["PREDICTIONS_TABLE_NAME"])
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    before = int(time.time())
    assert prediction_sink(executor).send([prediction(1)]) == {}
    after = int(time.time())
    assert before + TTL_SECONDS <= int(stored(environment, "user-1")["expires_at"]["N"]) <= after + TTL_SECONDS


def test_a_prediction_without_an_event_time_is_stored_with_the_write_time(environment, executor):
    """Newest-wins needs a time; the write time is the best one left."""
    before = int(time.time() * 1000)
    assert prediction_sink(executor).send([prediction(1, event_time_ms=None)]) == {}
    after = int(time.time() * 1000)
    assert before <= int(stored(environment, "user-1")["event_time_ms"]["N"]) <= after


def test_a_prediction_of_the_largest_size_the_handler_lets_through_is_stored(environment, executor):
    """The handler dead-letters predictions above MAX_MESSAGE_BYTES; anything up to it must fit in an item."""
    largest = prediction(1, user="u" * 2048, body_bytes=MAX_MESSAGE_BYTES - prediction(1).size())
    assert largest.size() == MAX_MESSAGE_BYTES
    assert prediction_sink(executor).send([largest]) == {}
    assert stored(environment, "u" * 2048)["message_id"]["S"] == "m-1"


def test_creating_the_destination_twice_is_harmless(environment):
    """Local mode creates it on every run, against an emulator that may already have it."""
    create_destination(environment)
    dynamodb = boto3.client("dynamodb")
    assert dynamodb.list_tables()["TableNames"] == [environment["PREDICTIONS_TABLE_NAME"]]
    table = dynamodb.describe_table(TableName=environment["PREDICTIONS_TABLE_NAME"])["Table"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
