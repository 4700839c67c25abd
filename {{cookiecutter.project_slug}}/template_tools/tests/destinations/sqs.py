# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The SQS prediction destination: batches within SQS's limits, exact failures, read back from the queue."""

import json

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
    """The dev stage's environment, with its predictions queue in moto."""
    with mock_aws(), stage_environment(stage):
        create_destination(stage.environment_variables)
        yield stage.environment_variables


@pytest.fixture
def session_events(environment):
    """The default session's events: handlers registered here reach the sink's client."""
    boto3.setup_default_session()
    return boto3.DEFAULT_SESSION.events


def prediction(n: int, body_bytes: int = 0) -> OutgoingMessage:
    body = json.dumps({"message_id": f"m-{n}", "padding": "x" * body_bytes})
    return OutgoingMessage(key=f"m-{n}", body=body, attributes={"model_version": "7"}, group=f"user-{n % 3}")


def test_a_batch_larger_than_one_call_is_split_and_every_prediction_arrives(environment, executor):
    """SendMessageBatch takes 10 entries and 1 MiB; a bigger batch must be split, not refused."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(23)] + [prediction(n, 300_000) for n in range(23, 30)]
    assert prediction_sink(executor).send(messages) == {}
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(m.key for m in messages)


def test_one_refused_prediction_is_reported_and_the_rest_arrive(environment, session_events, executor):
    """A partial SendMessageBatch failure must name exactly the refused message."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(12)]
    with refuse_predictions(session_events, lambda entry: '"m-4"' in entry["body"]):
        failed = prediction_sink(executor).send(messages)
    assert list(failed) == ["m-4"]
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(
        m.key for m in messages if m.key != "m-4"
    )


def test_a_failed_call_fails_each_of_its_predictions_and_only_those(environment, session_events, executor):
    """A call that fails whole must report its messages, not raise and not take other calls down."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(15)]
    with fail_calls(
        session_events,
        "sqs.SendMessageBatch",
        lambda params: any('"m-12"' in e["MessageBody"] for e in params["Entries"]),
    ):
        failed = prediction_sink(executor).send(messages)
    assert set(failed) == {f"m-{n}" for n in range(10, 15)}
    assert all("InternalError" in failure.reason for failure in failed.values())
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(f"m-{n}" for n in range(10))


def test_a_missing_queue_fails_every_prediction_instead_of_raising(aws_credentials, stage, executor):
    """The handler turns failures into retries; an exception would fail the whole Lambda batch."""
    with mock_aws(), stage_environment(stage):
        failed = prediction_sink(executor).send([prediction(1), prediction(2)])
    assert set(failed) == {"m-1", "m-2"}


def test_a_prediction_of_the_largest_size_the_handler_lets_through_is_accepted(environment, executor):
    """The handler dead-letters predictions above MAX_MESSAGE_BYTES; anything up to it must publish."""
    reader = PredictionReader(environment)
    message = prediction(1)
    padding = MAX_MESSAGE_BYTES - message.size()
    largest = prediction(1, padding)
    assert largest.size() == MAX_MESSAGE_BYTES
    assert prediction_sink(executor).send([largest]) == {}
    assert [envelope["message_id"] for envelope in reader.read()] == ["m-1"]


def test_creating_the_destination_twice_is_harmless(environment):
    """Local mode creates it on every run, against an emulator that may already have it."""
    create_destination(environment)
    assert len(boto3.client("sqs").list_queues()["QueueUrls"]) == 1
